"""The bundle runtime (nnunetv2_lightmedseg.runtime) against nnU-Net's own functions, its CLI errors, and its
import without torch/nnunetv2. Fast: no trained model (tests/test_bundle.py has the export round trips)."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nnunetv2_lightmedseg.runtime import FORMAT_VERSION, pipeline
from nnunetv2_lightmedseg.runtime.resampling import resample_data

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ steps vs nnU-Net's
@pytest.mark.parametrize("shape, spacing, new_spacing, order, dtype", [
    ((1, 12, 40, 36), (5.0, 1.2, 1.3), (10.0, 1.5, 1.5), 3, np.float32),    # separate-z (axis 0), z downsampled
    ((2, 9, 30, 28), (1.1, 1.0, 6.0), (1.0, 1.0, 3.0), 3, np.float32),      # separate-z on the last axis
    ((3, 20, 30, 25), (1.0, 1.0, 1.0), (1.3, 0.8, 1.1), 3, np.float32),     # isotropic: one 3D resize
    ((4, 6, 20, 18), (10.0, 1.5, 1.5), (5.0, 1.3, 1.4), 1, np.float16),     # logits back (order 1, float16)
    ((2, 10, 10, 10), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), 1, np.float16),     # no change: returned as is
])
def test_resampling_is_nnunets(shape, spacing, new_spacing, order, dtype):
    from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape

    x = (np.random.default_rng(0).normal(size=shape) * 100).astype(dtype)
    new_shape = [int(round(a * b / c)) for a, b, c in zip(shape[1:], spacing, new_spacing)]
    ref = resample_data_or_seg_to_shape(x, new_shape, spacing, new_spacing, is_seg=False, order=order, order_z=0,
                                        force_separate_z=None)
    out = resample_data(x, new_shape, spacing, new_spacing, order=order, order_z=0, force_separate_z=None)
    assert out.dtype == ref.dtype and out.shape == ref.shape
    assert np.array_equal(out, ref)


def test_gaussian_and_steps_are_nnunets():
    import torch
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian, compute_steps_for_sliding_window

    for patch in [(40, 56, 40), (10, 64, 48), (7, 9, 11)]:
        ref = compute_gaussian(patch, 1. / 8, 10, dtype=torch.float16, device=torch.device("cpu")).numpy()
        assert np.array_equal(pipeline.compute_gaussian(patch, 1. / 8, 10), ref)
        for size in [patch, tuple(p + 13 for p in patch), tuple(3 * p + 1 for p in patch)]:
            assert pipeline.compute_steps(size, patch, 0.5) == compute_steps_for_sliding_window(size, patch, 0.5)


# --------------------------------------------------------------------------- a model description without training
def _plans(transpose=(0, 1, 2), schemes=("ZScoreNormalization",), use_mask=(False,), spacing=(1.5, 1.0, 1.0),
           patch=(16, 24, 20)):
    return {
        "dataset_name": "Dataset999_X", "plans_name": "nnUNetPlans", "original_median_spacing_after_transp": spacing,
        "original_median_shape_after_transp": [30, 40, 36], "image_reader_writer": "SimpleITKIO",
        "transpose_forward": list(transpose), "transpose_backward": [int(i) for i in np.argsort(transpose)],
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            str(c): {"max": 500.0, "mean": 120.0, "median": 118.0, "min": -50.0, "percentile_00_5": 20.0,
                     "percentile_99_5": 300.0, "std": 40.0} for c in range(len(schemes))},
        "configurations": {"3d_fullres": {
            "data_identifier": "x", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": list(patch), "median_image_size_in_voxels": [30, 40, 36], "spacing": list(spacing),
            "normalization_schemes": list(schemes), "use_mask_for_norm": list(use_mask),
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": {"network_class_name": "x", "arch_kwargs": {}, "_kw_requires_import": []},
            "batch_dice": False}},
    }


def _model(regions=False, n_channels=1, mirror=(0, 1, 2), **plans_kw):
    """A stand-in for nnU-Net's predictor (plans/configuration/label managers, dataset.json) and its bundle.json."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_lightmedseg.deploy.bundle import bundle_metadata

    labels = {"background": 0, "whole": [1, 2, 3], "inner": [1, 3], "core": 1} if regions else \
        {"background": 0, "a": 1, "b": 2}
    dj = {"channel_names": {str(c): f"MR{c}" for c in range(n_channels)}, "labels": labels, "file_ending": ".nii.gz",
          **({"regions_class_order": [2, 3, 1]} if regions else {})}
    pm = PlansManager(_plans(**plans_kw))
    predictor = SimpleNamespace(plans_manager=pm, configuration_manager=pm.get_configuration("3d_fullres"),
                                label_manager=pm.get_label_manager(dj), dataset_json=dj,
                                allowed_mirroring_axes=mirror)
    meta = bundle_metadata(predictor, dataset=999, configuration="3d_fullres", trainer="T", plans="nnUNetPlans",
                           checkpoint="c.pth", folds=[0], networks=[], postprocessing=None,
                           postprocessing_source=None)
    return predictor, json.loads(json.dumps(meta))  # as the runtime reads it back


def _write_case(folder: Path, name: str, shape=(14, 30, 26), spacing=(1.0, 1.0, 4.0), n_channels=1, seed=0,
                zero_border=True):
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for c in range(n_channels):
        img = (100 + 30 * rng.normal(size=shape)).astype(np.float32)
        if zero_border:  # a zero frame: crop to non-zero is exercised
            img[:2] = 0
            img[:, -3:] = 0
        im = sitk.GetImageFromArray(img)
        im.SetSpacing(spacing)
        im.SetOrigin((3.0, -7.0, 11.5))
        im.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
        f = folder / f"{name}_{c:04d}.nii.gz"
        sitk.WriteImage(im, str(f))
        files.append(str(f))
    return files


@pytest.mark.parametrize("kw", [
    {},
    {"transpose": (2, 0, 1), "spacing": (1.0, 1.0, 2.5)},
    {"schemes": ("CTNormalization", "ZScoreNormalization"), "use_mask": (False, True), "n_channels": 2},
], ids=["zscore", "transposed", "ct+masked-zscore"])
def test_preprocessing_is_default_preprocessor(tmp_path, kw):
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    n_channels = kw.pop("n_channels", 1)
    predictor, bundle = _model(n_channels=n_channels, **kw)
    files = _write_case(tmp_path, "c", n_channels=n_channels)
    ref, _, ref_props = DefaultPreprocessor(verbose=False).run_case(
        files, None, predictor.plans_manager, predictor.configuration_manager, predictor.dataset_json)
    data, props = pipeline.read_images(files)
    data, props = pipeline.preprocess(data, props, bundle)
    assert data.shape == ref.shape and np.array_equal(data, ref)
    for k in ("bbox_used_for_cropping", "shape_before_cropping", "shape_after_cropping_and_before_resampling"):
        assert [list(map(int, b)) if isinstance(b, (list, tuple)) else int(b) for b in props[k]] == \
            [list(map(int, b)) if isinstance(b, (list, tuple)) else int(b) for b in ref_props[k]]


@pytest.mark.parametrize("regions", [False, True], ids=["labels", "regions"])
def test_export_back_to_original_geometry_is_nnunets(tmp_path, regions):
    import torch
    from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

    predictor, bundle = _model(regions=regions)
    data, props = pipeline.read_images(_write_case(tmp_path, "c"))
    data, props = pipeline.preprocess(data, props, bundle)
    heads = predictor.label_manager.num_segmentation_heads
    logits = (np.random.default_rng(1).normal(size=(heads, *data.shape[1:])) * 3).astype(np.float16)
    ref = convert_predicted_logits_to_segmentation_with_correct_shape(
        torch.from_numpy(logits.copy()), predictor.plans_manager, predictor.configuration_manager,
        predictor.label_manager, props)
    out = pipeline.export_segmentation(logits, props, bundle)
    assert out.shape == ref.shape and np.array_equal(out, np.asarray(ref))
    assert len(np.unique(out)) > 2


def test_sliding_window_mirroring_and_fold_ensemble_are_nnunets():
    """With the same network (a PyTorch conv) the runtime's logits equal nnUNetPredictor's bit for bit: padding,
    steps, Gaussian, float16 accumulation, mirroring order, fold average."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor, bundle = _model(patch=(16, 24, 20))
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 3, 3, padding=1).eval()
    params = [{k: torch.randn_like(v) for k, v in net.state_dict().items()} for _ in range(3)]
    nn_pred = nnUNetPredictor(device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    nn_pred.manual_initialization(net, predictor.plans_manager, predictor.configuration_manager, params,
                                  predictor.dataset_json, "T", (0, 1, 2))
    data = np.random.default_rng(0).normal(size=(1, 13, 50, 33)).astype(np.float32)  # < patch on axis 0: padding
    ref = nn_pred.predict_logits_from_preprocessed_data(torch.from_numpy(data)).numpy()

    def fold(p):
        m = torch.nn.Conv3d(1, 3, 3, padding=1).eval()
        m.load_state_dict(p)
        return lambda x: m(torch.from_numpy(x)).detach().numpy()

    sw = bundle["sliding_window"]
    per_fold = [pipeline.sliding_window(fold(p), data, 3, sw["patch_size"], sw["tile_step_size"],
                                        bundle["mirroring"]["allowed_axes"], sw["gaussian"]) for p in params]
    out = pipeline.ensemble(per_fold)
    assert out.dtype == ref.dtype == np.float16 and out.shape == ref.shape
    assert np.array_equal(out, ref)


def test_postprocessing_is_nnunets_and_pickle_is_not_executed(tmp_path):
    from batchgenerators.utilities.file_and_folder_operations import save_pickle
    from nnunetv2.postprocessing.remove_connected_components import (
        apply_postprocessing, remove_all_but_largest_component_from_segmentation)
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    from nnunetv2_lightmedseg.deploy.bundle import BundleError, read_postprocessing

    lm = LabelManager({"background": 0, "a": 1, "b": 2}, None)
    fns = [remove_all_but_largest_component_from_segmentation] * 2
    kwargs = [{"labels_or_regions": lm.foreground_labels}, {"labels_or_regions": lm.foreground_labels[1]}]
    save_pickle((fns, kwargs), str(tmp_path / "postprocessing.pkl"))  # as nnUNetv2_find_best_configuration does
    steps = read_postprocessing(tmp_path / "postprocessing.pkl")
    assert [s["function"] for s in steps] == [f.__name__ for f in fns]
    assert steps[0]["kwargs"] == {"labels_or_regions": [1, 2]} and steps[1]["kwargs"] == {"labels_or_regions": 2}
    rng = np.random.default_rng(0)
    seg = (rng.random((20, 22, 18)) < 0.08).astype(np.uint8) + 2 * (rng.random((20, 22, 18)) < 0.05)
    seg = np.minimum(seg, 2).astype(np.uint8)
    seg[5:12, 5:12, 5:12] = 1
    seg[14:18, 14:18, 10:14] = 2
    ref = apply_postprocessing(seg, fns, kwargs)
    out = pipeline.postprocess(seg, json.loads(json.dumps(steps)))
    assert np.array_equal(out, ref) and not np.array_equal(out, seg)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(([Evil()], [{}])))
    with pytest.raises(BundleError, match="not nnU-Net's postprocessing"):
        read_postprocessing(tmp_path / "evil.pkl")
    assert not marker.exists()


# ------------------------------------------------------------------------------- synthetic bundle: CLI and imports
def synthetic_bundle(folder: Path, n_channels=1, heads=3, version=FORMAT_VERSION, **model_kw) -> Path:
    """A bundle whose network is one 3x3x3 convolution (built with onnx.helper, seeded)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from nnunetv2_lightmedseg.runtime import BUNDLE_JSON
    from nnunetv2_lightmedseg.runtime.bundle import sha256

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(size=(heads, n_channels, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=heads).astype(np.float32), "b")
    node = helper.make_node("Conv", ["image", "w", "b"], ["logits"], pads=[1] * 6)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                          ["n", n_channels, "x", "y", "z"])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", heads, "x", "y", "z"])],
                              initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(folder / "fold_0.onnx"))
    _, meta = _model(n_channels=n_channels, **({"schemes": ("ZScoreNormalization",) * n_channels,
                                                "use_mask": (False,) * n_channels} if n_channels > 1 else {}),
                     **model_kw)
    meta["format_version"] = version
    meta["networks"] = [{"fold": "0", "file": "fold_0.onnx", "sha256": sha256(folder / "fold_0.onnx"),
                         "input_name": "image", "output_name": "logits"}]
    (folder / BUNDLE_JSON).write_text(json.dumps(meta))
    return folder


def _run(args, **kw):
    return subprocess.run([sys.executable, "-m", "nnunetv2_lightmedseg.runtime.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120, **kw)


def test_runtime_runs_without_torch_or_nnunet(tmp_path):
    """A process where torch and nnunetv2 cannot be imported segments a case with lightmedseg-run."""
    bundle = synthetic_bundle(tmp_path / "bundle")
    _write_case(tmp_path / "in", "case1")
    blocker = tmp_path / "block" / "sitecustomize.py"
    blocker.parent.mkdir()
    blocker.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'nnunetv2', 'batchgenerators', 'acvl_utils', 'skimage'):\n"
        "            raise ImportError(f'{name} is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n")
    env = {**os.environ, "PYTHONPATH": f"{blocker.parent}{os.pathsep}{REPO}"}
    check = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert check.returncode != 0 and "blocked" in check.stderr  # the blocker works
    p = _run(["-i", tmp_path / "in", "-o", tmp_path / "out", "--bundle", bundle], env=env)
    assert p.returncode == 0, p.stderr
    import SimpleITK as sitk
    out = sitk.ReadImage(str(tmp_path / "out" / "case1.nii.gz"))
    ref = sitk.ReadImage(str(tmp_path / "in" / "case1_0000.nii.gz"))
    assert out.GetSize() == ref.GetSize() and out.GetDirection() == ref.GetDirection()
    assert np.allclose(out.GetOrigin(), ref.GetOrigin()) and np.allclose(out.GetSpacing(), ref.GetSpacing())
    assert set(np.unique(sitk.GetArrayFromImage(out))) <= {0, 1, 2}


def test_runtime_matches_its_own_pipeline_and_refuses_overwrite(tmp_path):
    from nnunetv2_lightmedseg.runtime.predictor import BundlePredictor

    bundle = synthetic_bundle(tmp_path / "bundle")
    files = _write_case(tmp_path / "in", "c7", seed=4)
    out = tmp_path / "single.nii.gz"
    assert _run(["-i", files[0], "-o", out, "--bundle", bundle, "--disable_tta"]).returncode == 0
    import SimpleITK as sitk
    seg, _ = BundlePredictor(bundle, use_mirroring=False).predict_case(files)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), seg)
    before = out.read_bytes()
    p = _run(["-i", files[0], "-o", out, "--bundle", bundle])
    assert p.returncode == 2 and "--overwrite" in p.stderr and out.read_bytes() == before
    assert _run(["-i", files[0], "-o", out, "--bundle", bundle, "--overwrite"]).returncode == 0
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")]  # no temporary file left


@pytest.mark.parametrize("case", ["no_bundle", "not_a_bundle", "version", "channels", "ending", "naming",
                                  "damaged_network"])
def test_runtime_errors_are_one_line_exit_2(tmp_path, case):
    bundle = synthetic_bundle(tmp_path / "bundle", n_channels=2 if case == "channels" else 1,
                              version=FORMAT_VERSION + 1 if case == "version" else FORMAT_VERSION)
    _write_case(tmp_path / "in", "c1")
    inp = tmp_path / "in"
    if case == "no_bundle":
        bundle = tmp_path / "missing"
    elif case == "not_a_bundle":
        bundle = tmp_path / "in"
    elif case == "ending":
        (tmp_path / "png").mkdir()
        (tmp_path / "png" / "c1_0000.png").write_bytes(b"x")
        inp = tmp_path / "png"
    elif case == "naming":
        inp = tmp_path / "in" / "c1.nii.gz"
        (tmp_path / "in" / "c1_0000.nii.gz").rename(inp)
    elif case == "damaged_network":
        with open(bundle / "fold_0.onnx", "ab") as f:
            f.write(b"\0")
    p = _run(["-i", inp, "-o", tmp_path / "out", "--bundle", bundle])
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lightmedseg-run: error: "), p.stderr
    expected = {"no_bundle": "does not exist", "not_a_bundle": "no bundle.json", "version": "format version",
                "channels": "2 channel(s)", "ending": "found files ending .png", "naming": "CASE_0000.nii.gz",
                "damaged_network": "SHA-256"}[case]
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_thread_tuner_keeps_the_faster_count_and_tries_again():
    import time

    from nnunetv2_lightmedseg.runtime.predictor import ThreadTunedNetwork

    calls = []

    def fake(count, delay):
        def run(x):
            calls.append(count)
            time.sleep(delay)
            return x * 2
        return run

    net = ThreadTunedNetwork.__new__(ThreadTunedNetwork)
    net.candidates, net.trials, net.recheck, net.max_recheck, net.chosen = [2, 1], 3, 5, 1024, None
    net.sessions = {2: fake(2, 0.03), 1: fake(1, 0.001)}
    net._start_trial()
    x = np.ones(3, np.float32)
    for _ in range(8):  # one warm-up and three timed calls per count
        assert np.array_equal(net(x), x * 2)
    assert net.chosen == 1 and sorted(calls) == [1, 1, 1, 1, 2, 2, 2, 2]
    calls.clear()
    for _ in range(4):
        net(x)
    assert calls == [1] * 4
    net(x)  # the fifth call starts a check; it keeps 1 thread, so the next check comes after 10 calls
    for _ in range(8):
        net(x)
    assert net.chosen == 1 and net.recheck == 10
    net.sessions[1], net.sessions[2] = fake(1, 0.03), fake(2, 0.001)  # the load moved
    for _ in range(10 + 8):
        net(x)
    assert net.chosen == 2 and net.recheck == 10
