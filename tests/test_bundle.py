"""``lightmedseg export --bundle`` -> ``lightmedseg-run`` round trips on tiny nnU-Net models, against nnU-Net's
predictor on the same generated cases: an isotropic case, an anisotropic one (separate-z resampling) and a
region-based model. Slow: they plan, 'train' (initialise and save) and run nnU-Net's predictor."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from helpers import TINY_ID, nnunet_env, run_cmd, write_blob_dataset
from test_runtime import _write_case

pytestmark = pytest.mark.slow

REGION_ID = 991
TRAINER, CONFIG = "nnUNetTrainer_LightMedSeg", "3d_fullres"


def _initialised_model(base: Path, dataset_id: int) -> None:
    """What nnUNetv2_train writes before its first epoch (as tests/tiny_model.py): plans/dataset.json copies and
    a checkpoint of the initialised network, saved by the trainer itself."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import save_json
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(str(dataset_id), CONFIG, 0, TRAINER, "nnUNetPlans", device=torch.device("cpu"))
    trainer.initialize()
    Path(trainer.output_folder).mkdir(parents=True, exist_ok=True)
    save_json(trainer.plans_manager.plans, os.path.join(trainer.output_folder_base, "plans.json"), sort_keys=False)
    save_json(trainer.dataset_json, os.path.join(trainer.output_folder_base, "dataset.json"), sort_keys=False)
    trainer.save_checkpoint(os.path.join(trainer.output_folder, "checkpoint_final.pth"))


@pytest.fixture(scope="module")
def label_model():
    from tiny_model import trained_model_results
    trained_model_results()  # sets nnUNet_* in os.environ
    return TINY_ID


@pytest.fixture(scope="module")
def region_model():
    """A region-based dataset (BraTS-like, two channels) next to the tiny one: same nnUNet_* folders, because
    nnunetv2.paths reads them once per process."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                       preprocess)
    from helpers import tiny_preprocessed_dataset
    base = tiny_preprocessed_dataset()
    write_blob_dataset(base / "raw", REGION_ID, "LMSRegions", n_cases=5, n_channels=2, regions=True)
    paths = {k: v for k, v in nnunet_env(base).items() if k.startswith("nnUNet_")}
    with mock.patch.dict(os.environ, paths):
        extract_fingerprints([REGION_ID], num_processes=1, check_dataset_integrity=False, verbose=False)
        plan_experiments([REGION_ID])
        preprocess([REGION_ID], configurations=(CONFIG,), num_processes=(1,), verbose=False)
        _initialised_model(base, REGION_ID)
        yield REGION_ID


def _roundtrip(tmp_path, dataset_id, n_channels, spacing, mirroring=True):
    """(runtime labels, nnU-Net predictor labels, runtime logits with the PyTorch network, nnU-Net logits)."""
    import torch

    from nnunetv2_lightmedseg.deploy.bundle import export_bundle
    from nnunetv2_lightmedseg.deploy.loading import load_predictor
    from nnunetv2_lightmedseg.runtime import pipeline
    from nnunetv2_lightmedseg.runtime.predictor import BundlePredictor

    meta = export_bundle(dataset_id, CONFIG, TRAINER, [0], tmp_path / "bundle", log=lambda *a: None)
    assert meta["networks"][0]["parity_vs_pytorch"]["checks"][0]["max_abs_diff"] < 1e-3
    files = _write_case(tmp_path / "in", "case", shape=(14, 34, 30), spacing=spacing, n_channels=n_channels)
    runtime = BundlePredictor(tmp_path / "bundle", use_mirroring=mirroring)
    seg, _ = runtime.predict_case(files)

    nn = load_predictor(dataset_id, CONFIG, 0, TRAINER)
    nn.use_mirroring = mirroring
    ref = np.asarray(nn.predict_from_files_sequential([files], None)[0])

    # the same pipeline with nnU-Net's PyTorch network instead of onnxruntime: identical logits
    def torch_net(x):
        with torch.no_grad():
            return nn.network(torch.from_numpy(x)).float().numpy()
    data, props = pipeline.read_images(files)
    data, props = pipeline.preprocess(data, props, runtime.bundle)
    runtime.networks = [torch_net]
    ours = runtime.predict_logits(data)
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    d_ref, _, _ = DefaultPreprocessor(verbose=False).run_case(files, None, nn.plans_manager, nn.configuration_manager,
                                                              nn.dataset_json)
    theirs = nn.predict_logits_from_preprocessed_data(torch.from_numpy(d_ref)).numpy()
    return seg, ref, ours, theirs


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.5), (0.9, 1.1, 5.0)], ids=["isotropic-ish", "anisotropic"])
def test_label_model_roundtrip(tmp_path, label_model, spacing):
    seg, ref, ours, theirs = _roundtrip(tmp_path, label_model, 1, spacing)
    assert seg.shape == ref.shape
    assert np.array_equal(ours, theirs)  # every step but the network is nnU-Net's, bit for bit
    assert (seg == ref).mean() >= 0.9999, (seg != ref).sum()
    assert len(np.unique(ref)) > 1


def test_region_model_roundtrip(tmp_path, region_model):
    seg, ref, ours, theirs = _roundtrip(tmp_path, region_model, 2, (1.0, 1.0, 1.5), mirroring=False)
    assert np.array_equal(ours, theirs)
    assert (seg == ref).mean() >= 0.9999, (seg != ref).sum()
    assert seg.dtype != np.int64 and len(np.unique(ref)) > 1


def test_export_bundle_cli_refuses_a_non_empty_folder(tmp_path, label_model):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    env = {**os.environ}
    p = run_cmd(["lightmedseg", "export", "--bundle", "-d", label_model, "-c", CONFIG, "-tr", TRAINER, "-f", "0",
                 "-o", out], env, check=False)
    assert p.returncode == 2 and "not empty" in p.stderr and "--overwrite" in p.stderr, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["notes.txt"]
    p = run_cmd(["lightmedseg", "export", "--bundle", "-d", label_model, "-c", CONFIG, "-tr", TRAINER, "-f", "0", "1",
                 "-o", tmp_path / "other"], env, check=False)
    assert p.returncode == 2 and "fold(s) 1" in p.stderr and not (tmp_path / "other").exists(), p.stderr
    p = run_cmd(["lightmedseg", "export", "--bundle", "-d", label_model, "-c", CONFIG, "-tr", TRAINER, "-f", "0",
                 "-o", out, "--overwrite"], env, check=False)
    assert p.returncode == 0, p.stderr
    assert sorted(x.name for x in out.iterdir()) == ["bundle.json", "fold_0.onnx", "notes.txt"]
    p = run_cmd([Path(sys.executable).parent / "lightmedseg-run", "-i", _write_case(tmp_path / "in", "x")[0],
                 "-o", tmp_path / "x.nii.gz", "--bundle", out, "--disable_tta"], env, check=False)
    assert p.returncode == 0 and (tmp_path / "x.nii.gz").is_file(), p.stderr
