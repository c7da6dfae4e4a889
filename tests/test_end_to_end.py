"""End-to-end: nnU-Net's real commands (nnUNetv2_plan_and_preprocess, _train, _predict, _evaluate_folder) in
subprocesses with LightMedSeg trainers, on CPU.

* ``lightmedseg demo`` (which runs exactly those commands) on a generated label-based dataset, a generated
  BraTS-like region-based dataset with 4 channels, and 12 real hippocampus cases. Each asserts the outputs
  exist and that the held-out Dice is a number in [0, 1] ABOVE what untrained weights reach: the same model
  folder predicted with freshly initialised LightMedSeg weights (nnU-Net's own predictor, same plans,
  preprocessing and resampling), and the best constant prediction (one class everywhere), whichever is higher.
* A generated thick-slice (cine-MRI-like, 10 slices 8 mm apart) dataset trained with ``-c 3d_fullres`` as nnU-Net
  plans it (a 10-slice patch, in-plane poolings first): LightMedSeg's per-axis schedule follows the plans.
* ``nnUNetv2_train`` killed (SIGKILL, like a crash) in the middle of epoch 1 and resumed with ``--c``.
* Clear errors: channel count different from the checkpoint's, a patch smaller than LightMedSeg's 16 voxels,
  ``nnUNet_extTrainer`` not set.

Speed on 2 CPU cores: 10 training + 3 test cases of 32x48x40 voxels, ``nnUNetTrainer_LightMedSeg_Smoke``
(2 epochs x 10 iterations), prediction without test-time mirroring, no augmentation worker processes.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Tuple
from unittest import mock

import numpy as np
import pytest

from helpers import BIN, HIPPOCAMPUS, HIPPOCAMPUS_MISSING, REPO, hippocampus_subset, run_console
from nnunetv2_lightmedseg.data import write_region_dataset, write_thick_slice_dataset
from nnunetv2_lightmedseg.utils.nnunet_env import ENV_VAR, nnunet_env, trainers_folder, training_env

pytestmark = pytest.mark.slow

SMOKE = "nnUNetTrainer_LightMedSeg_Smoke"
# tests/e2e_trainers: Smoke with peak LR 1e-2, 2 x 15 iterations, a checkpoint every epoch (see its docstring)
E2E = "nnUNetTrainer_LightMedSeg_E2E"
TEST_TRAINERS = Path(__file__).resolve().parent / "e2e_trainers"
MARGIN = 0.05  # the trained Dice must beat the untrained/constant level by at least this much
DEMO_ARGS = ["--trainer", E2E, "--keep", "--disable-tta", "--num-processes", "1"]
TIMEOUT = 1800  # only a hang reaches it (each step takes seconds to minutes on 2 idle cores)


# ------------------------------------------------------------------------------------------------ helpers
def clean_env() -> Dict[str, str]:
    """The caller's environment without nnU-Net's variables: the demo must set them itself."""
    return {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}


def run_demo(workdir: Path, *args: str) -> dict:
    """``lightmedseg demo --workdir W ... --keep`` in a subprocess; returns its demo_summary.json.

    ``nnUNet_extTrainer`` holds the tests' trainer folder, as a user's own value would: the demo must keep it
    (and append the package's folder, as ``lightmedseg env`` does) for nnU-Net to find the E2E trainer.
    """
    env = dict(clean_env(), **{ENV_VAR: str(TEST_TRAINERS)})
    p = run_console(["lightmedseg", "demo", "--workdir", workdir, *DEMO_ARGS, *args], env, timeout=TIMEOUT)
    return dict(json.loads((workdir / "demo_summary.json").read_text()), printed=p.stdout)


def dice_table(refs: list, preds: list, classes: list) -> float:
    """nnU-Net's aggregation: per class the mean over cases (NaN when reference and prediction are both
    empty), then the mean over foreground classes/regions."""
    from nnunetv2.evaluation.evaluate_predictions import compute_tp_fp_fn_tn, region_or_label_to_mask

    per_class = []
    for c in classes:
        values = []
        for ref, pred in zip(refs, preds):
            tp, fp, fn, _ = compute_tp_fp_fn_tn(region_or_label_to_mask(ref, c), region_or_label_to_mask(pred, c))
            values.append(np.nan if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn))
        per_class.append(np.nanmean(values))
    return float(np.mean(per_class))


def untrained_level(result: dict, images: Path, labels: Path) -> Tuple[float, float]:
    """(Dice of freshly initialised weights, Dice of the best constant prediction) on the held-out cases.

    The untrained model is the trained model folder with its weights replaced by the trainer's own freshly
    built network (``build_network_architecture``, default init), predicted by nnU-Net's ``nnUNetPredictor``
    with the same plans, preprocessing and resampling as ``nnUNetv2_predict``.
    """
    import torch
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    model_dir = Path(result["model_folder"])
    with mock.patch.dict(os.environ, {ENV_VAR: os.pathsep.join([str(TEST_TRAINERS), trainers_folder()])}):
        predictor = nnUNetPredictor(use_mirroring=False, perform_everything_on_device=False,
                                    device=torch.device("cpu"), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(model_dir), (0,), "checkpoint_final.pth")
        trainer_class = recursive_find_trainer_class_by_name(predictor.trainer_name)
    lm = predictor.label_manager
    torch.manual_seed(0)
    fresh = trainer_class.build_network_architecture(
        predictor.plans_manager, predictor.configuration_manager, len(predictor.dataset_json["channel_names"]),
        lm.num_segmentation_heads, enable_deep_supervision=False)
    predictor.list_of_parameters = [fresh.state_dict()]
    io = SimpleITKIO()
    n_channels = len(predictor.dataset_json["channel_names"])
    refs, preds = [], []
    for label_file in sorted(labels.glob("*.nii.gz")):
        case = label_file.name[: -len(".nii.gz")]
        data, props = io.read_images([str(images / f"{case}_{c:04d}.nii.gz") for c in range(n_channels)])
        preds.append(predictor.predict_single_npy_array(data, props, None, None, False))
        refs.append(io.read_seg(str(label_file))[0][0])
    classes = lm.foreground_regions if lm.has_regions else lm.foreground_labels
    untrained = dice_table(refs, preds, classes)
    # constant predictions: every region can cover the whole image at once, labels only one at a time
    if lm.has_regions:
        constant = float(np.mean([_constant_region_dice(refs, c) for c in classes]))
    else:
        constant = max(dice_table(refs, [np.full_like(r, c) for r in refs], classes) for c in classes)
    return untrained, constant


def _constant_region_dice(refs: list, region) -> float:
    """Mean Dice over cases of predicting ``region`` everywhere."""
    from nnunetv2.evaluation.evaluate_predictions import region_or_label_to_mask

    values = [2 * region_or_label_to_mask(r, region).sum() / (region_or_label_to_mask(r, region).sum() + r.size)
              for r in refs]
    return float(np.mean(values))


def check_demo_result(result: dict, images: Path, labels: Path, expected_classes: list) -> None:
    predictions = sorted(p.name for p in (Path(result["workdir"]) / "predictions").glob("*.nii.gz"))
    assert predictions == sorted(p.name for p in labels.glob("*.nii.gz")), "a prediction per held-out case"
    assert Path(result["summary_json"]).is_file()
    assert (Path(result["model_folder"]) / "fold_0" / "checkpoint_final.pth").is_file()
    assert list(result["dice"]) == expected_classes
    mean = result["mean_dice"]
    assert 0.0 <= mean <= 1.0 and all(0.0 <= d <= 1.0 for d in result["dice"].values()), result["dice"]
    untrained, constant = untrained_level(result, images, labels)
    level = max(untrained, constant)
    print(f"{result['dataset']}: trained mean Dice {mean:.3f} {result['dice']}; untrained weights "
          f"{untrained:.3f}, best constant {constant:.3f}; times {result['seconds']}")
    assert mean > level + MARGIN, (f"trained Dice {mean:.3f} does not beat untrained weights ({untrained:.3f}) / "
                                   f"constant prediction ({constant:.3f}) by {MARGIN}")


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def label_run(tmp_path_factory) -> dict:
    """The demo's default path: generated label-based dataset (10 training + 3 test cases), Smoke trainer."""
    workdir = tmp_path_factory.mktemp("e2e") / "label_demo"
    return run_demo(workdir, "--num-train", "10", "--num-test", "3")


@pytest.fixture(scope="module")
def region_run(tmp_path_factory) -> Tuple[dict, Path]:
    """A generated BraTS-like region dataset (4 channels) given to the demo with --dataset."""
    root = tmp_path_factory.mktemp("e2e_region")
    dataset = write_region_dataset(root / "raw", dataset_id=991, num_channels=4, num_train=10, num_test=3)
    return run_demo(root / "demo", "--dataset", str(dataset), "--trainer", "nnUNetTrainer_LightMedSeg_E2ESeeded3x20"), dataset


# ------------------------------------------------------------------------------------------- main paths
def test_label_dataset_plan_train_predict_evaluate(label_run):
    raw = Path(label_run["workdir"]) / "nnUNet_raw" / label_run["dataset"]
    check_demo_result(label_run, raw / "imagesTs", raw / "labelsTs", ["outer", "inner"])
    assert set(label_run["seconds"]) == {"generate data", "plan+preprocess", "train", "predict", "evaluate"}


def test_printed_predict_line_works_in_a_new_shell(label_run):
    """The nnUNetv2_predict line the demo prints, pasted into a new shell (nothing of the demo's environment, no
    nnUNet_* variable) after activating the environment, predicts with the kept model."""
    printed = label_run["printed"].splitlines()
    use = next(i for i, line in enumerate(printed) if line.startswith("Use the model with nnU-Net"))
    activate = re.search(r"after `(source [^`]+)`", printed[use]).group(1)
    line = printed[use + 1].strip()
    assert " nnUNetv2_predict " in line and line.startswith("nnUNet_raw=")
    out = Path(label_run["workdir"]) / "predictions_again"
    assert not out.exists()
    fresh = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "OMP_NUM_THREADS": "2"}
    p = subprocess.run(["bash", "-c", f"{activate} && {line} -npp 1 -nps 1 --disable_tta"], env=fresh,
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    assert sorted(f.name for f in out.glob("*.nii.gz")) == sorted(
        f.name for f in (Path(label_run["workdir"]) / "predictions").glob("*.nii.gz"))


def test_region_dataset_several_channels(region_run):
    result, dataset = region_run
    check_demo_result(result, dataset / "imagesTs", dataset / "labelsTs",
                      ["whole tumor", "tumor core", "enhancing tumor"])
    # predictions are written back as integer labels (regions_class_order), like nnU-Net's BraTS convention
    import SimpleITK as sitk
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(next((Path(result["workdir"]) / "predictions")
                                                          .glob("*.nii.gz")))))
    assert set(np.unique(pred)) <= {0, 1, 2, 3}


@pytest.mark.skipif(not HIPPOCAMPUS.is_dir(), reason=HIPPOCAMPUS_MISSING)
def test_real_hippocampus_cases(tmp_path):
    dataset = hippocampus_subset(tmp_path / "raw", n_train=12, n_test=3)
    result = run_demo(tmp_path / "demo", "--dataset", str(dataset), "--trainer", "nnUNetTrainer_LightMedSeg_E2E3x20")
    check_demo_result(result, dataset / "imagesTs", dataset / "labelsTs", ["Anterior", "Posterior"])


# ------------------------------------------------------------------------ thick slices, plans as planned
@pytest.fixture(scope="module")
def thick_slice_run(tmp_path_factory) -> Tuple[dict, Path]:
    """A generated cine-MRI-like dataset (10 slices 8 mm apart, 1.25 mm pixels), plain ``3d_fullres``."""
    root = tmp_path_factory.mktemp("e2e_thick")
    dataset = write_thick_slice_dataset(root / "raw", dataset_id=992, num_train=10, num_test=3)
    return run_demo(root / "demo", "--dataset", str(dataset), "--trainer", "nnUNetTrainer_LightMedSeg_E2ESeeded"), dataset


def test_thick_slice_dataset_trains_with_3d_fullres_as_planned(thick_slice_run):
    """Issue 9: nnU-Net plans a 10-slice patch with in-plane poolings first; LightMedSeg trains on it without any
    plans override (before the per-axis schedule, the patch's 10 slices were below the network's minimum of 16)
    and follows the plans' strides (with the paper's 3x3x3 kernels), and the trained model beats the untrained
    level."""
    import torch
    from nnunetv2_lightmedseg.network.schedule import schedule_from_plans

    result, dataset = thick_slice_run
    model_dir = Path(result["model_folder"])
    arch = json.loads((model_dir / "plans.json").read_text())["configurations"]["3d_fullres"]
    patch, kw = arch["patch_size"], arch["architecture"]["arch_kwargs"]
    assert patch[0] < 16 <= min(patch[1:]), patch
    strides, kernels = schedule_from_plans(kw["strides"], kw["kernel_sizes"])
    assert strides[0] == (1, 2, 2) and kernels[1] == (1, 3, 3), (kw["strides"], kw["kernel_sizes"])
    weights = torch.load(model_dir / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                         weights_only=False)["network_weights"]
    head_up, = [v for k, v in weights.items() if k.startswith("head") and k.endswith("weight") and v.dim() == 5
                and tuple(v.shape[2:]) != (1, 1, 1)]  # the transposed conv (the other head conv is 1x1x1)
    # the head undoes the in-plane stem step only: kernel 2 x stride (the overlapping head) in-plane, 1 in z
    assert tuple(head_up.shape[2:]) == tuple(2 * s if s > 1 else 1 for s in strides[0]) == (1, 4, 4)
    assert tuple(weights["stem.primary.weight"].shape[2:]) == (3, 3, 3)  # the paper's kernels (PlannedKernels: 1x3x3)
    check_demo_result(result, dataset / "imagesTs", dataset / "labelsTs", ["RV", "MYO", "LV"])


# ---------------------------------------------------------------------------------------- kill and resume
def _train_env(workdir: Path) -> Dict[str, str]:
    env = training_env(nnunet_env(Path(workdir), base=clean_env()), n_proc_da=0)
    env[ENV_VAR] = os.pathsep.join([str(TEST_TRAINERS), trainers_folder()])
    return env


def test_kill_mid_epoch_and_resume_with_c(label_run):
    import torch

    workdir = Path(label_run["workdir"])
    env = _train_env(workdir)
    env["nnUNet_results"] = str(workdir / "results_resume")  # the demo's trained model stays as it is
    fold = Path(env["nnUNet_results"]) / label_run["dataset"] / f"{E2E}__nnUNetPlans__3d_fullres" / "fold_0"
    cmd = [str(BIN / "nnUNetv2_train"), "990", "3d_fullres", "0", "-tr", E2E, "-device", "cpu"]
    log = workdir / "resume_first_run.log"
    progress = workdir / "resume_progress.txt"  # the E2E trainer appends each finished iteration's epoch
    progress.unlink(missing_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=dict(env, LMS_E2E_PROGRESS=str(progress)), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + TIMEOUT
            # wait until epoch 0 is checkpointed AND an iteration of epoch 1 has finished (of 15): then kill, in the
            # middle of epoch 1
            while time.time() < deadline and proc.poll() is None:
                if ((fold / "checkpoint_latest.pth").is_file() and progress.is_file()
                        and "1" in progress.read_text().split()):
                    break
                time.sleep(0.1)
            assert proc.poll() is None, f"training ended before it could be killed:\n{log.read_text()[-3000:]}"
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not (fold / "checkpoint_final.pth").exists(), "the killed run must not have finished"
    latest = torch.load(fold / "checkpoint_latest.pth", map_location="cpu", weights_only=False)
    assert latest["current_epoch"] == 1  # epoch 0 done

    resumed = run_console([*cmd, "--c"], env, timeout=TIMEOUT)
    out = resumed.stdout + resumed.stderr
    epochs_run = re.findall(r": Epoch (\d+)\s*$", out, flags=re.M)
    assert epochs_run == ["1"], f"the resumed run must do epoch 1 only, did {epochs_run}"
    final = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert final["current_epoch"] == 2
    # nothing lost: epoch 0's logged values come from the checkpoint, and epoch 1 was added after them
    assert final["logging"]["train_losses"][0] == latest["logging"]["train_losses"][0]
    assert len(final["logging"]["train_losses"]) == 2
    assert (fold / "validation" / "summary.json").is_file()


# --------------------------------------------------------------------------------------------- bad input
def test_channel_count_differs_from_checkpoint(region_run, label_run, tmp_path):
    """A 4-channel model given 1-channel images: the user sees LightMedSeg's message naming the channels."""
    result, _ = region_run
    env = _train_env(Path(result["workdir"]))
    images = Path(label_run["workdir"]) / "nnUNet_raw" / label_run["dataset"] / "imagesTs"
    trainer = Path(result["model_folder"]).name.split("__")[0]  # the trainer the region model was trained with
    p = run_console(["nnUNetv2_predict", "-i", images, "-o", tmp_path / "out", "-d", "991", "-c", "3d_fullres",
                 "-f", "0", "-tr", trainer, "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_tta",
                 "--disable_progress_bar"], env, timeout=900, check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "LightMedSeg was built for 4 input channel(s) but got 1" in out, out[-3000:]


def test_patch_too_small_for_the_network(label_run):
    """Plans whose patch is below the divisor on an axis: the trainer names the axis, its minimum and what to do."""
    workdir = Path(label_run["workdir"])
    plans_file = workdir / "nnUNet_preprocessed" / label_run["dataset"] / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    # nnU-Net's own convention for a derived configuration: inherits_from + the changed entries
    plans["configurations"]["3d_fullres_tinypatch"] = {"inherits_from": "3d_fullres", "patch_size": [12, 16, 16]}
    plans_file.write_text(json.dumps(plans, indent=2))
    env = _train_env(workdir)
    p = run_console(["nnUNetv2_train", "990", "3d_fullres_tinypatch", "0", "-tr", SMOKE, "-device", "cpu"], env,
                timeout=900, check=False)
    out = p.stdout + p.stderr
    assert p.returncode != 0
    assert "patch axis 0 (D) is 12 voxels but must be at least 16" in out, out[-3000:]
    assert "[12, 16, 16]" in out and "lightmedseg plans" in out


def test_missing_ext_trainer_tells_the_fix(label_run, tmp_path):
    """Without nnUNet_extTrainer nnU-Net says it cannot find the trainer; `lightmedseg env` prints the fix."""
    workdir = Path(label_run["workdir"])
    env = nnunet_env(workdir, base=clean_env())
    del env[ENV_VAR]
    train = run_console(["nnUNetv2_train", "990", "3d_fullres", "0", "-tr", SMOKE, "-device", "cpu"], env,
                    timeout=900, check=False)
    assert train.returncode != 0
    assert f"Could not find requested nnunet trainer {SMOKE}" in train.stdout + train.stderr
    # a model trained with the variable set, predicted in a shell without it
    images = workdir / "nnUNet_raw" / label_run["dataset"] / "imagesTs"
    predict = run_console(["nnUNetv2_predict", "-i", images, "-o", tmp_path / "out", "-d", "990", "-c", "3d_fullres",
                       "-f", "0", "-tr", E2E, "-device", "cpu", "-npp", "1", "-nps", "1"], env, timeout=900,
                      check=False)
    assert predict.returncode != 0
    assert f"Could not find requested nnunet trainer {E2E}" in predict.stdout + predict.stderr
    fix = run_console(["lightmedseg", "env"], clean_env()).stdout.strip()
    assert fix.startswith(f"export {ENV_VAR}=") and trainers_folder() in fix
    assert 'eval "$(lightmedseg env)"' in (REPO / "README.md").read_text()
