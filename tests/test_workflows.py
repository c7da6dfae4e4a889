"""End-to-end: what nnU-Net users do after training, with a LightMedSeg model, in nnU-Net's own commands.

One module fixture trains fold 0 of the tiny blob dataset (``helpers.tiny_preprocessed_dataset``) twice with
``nnUNetv2_train``: ``nnUNetTrainer_LightMedSeg_Smoke`` (a package trainer, 2 epochs x 10 iterations) and a stock
``nnUNetTrainer`` of the same length (``tests/e2e_trainers``). The tests then run, each in a subprocess:

* ``nnUNetv2_train ... --val --npz`` (validation only, from the checkpoint's stored network);
* ``nnUNetv2_find_best_configuration`` over both trainers (cross-validation results, the ensemble of the two,
  postprocessing), ``nnUNetv2_ensemble`` of the two models' probabilities and ``nnUNetv2_apply_postprocessing``;
* ``nnUNetv2_export_model_to_zip`` -> ``nnUNetv2_install_pretrained_model_from_zip`` into a fresh results folder
  -> ``nnUNetv2_predict`` in an environment without ``nnUNet_extTrainer``, before and after
  ``lightmedseg install-trainers`` (into a private copy of nnU-Net, so the shared environment is not changed);
* ``nnUNetv2_train ... -pretrained_weights`` on a second dataset with four labels instead of three.

Training quality is not under test here (the end-to-end Dice tests are in test_end_to_end.py); every step is
seeded or deterministic given the checkpoints.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import (TINY_ID, TINY_NAME, nnunet_env, plan_and_preprocess, run_console, tiny_preprocessed_dataset,
                     write_blob_dataset)
from nnunetv2_lightmedseg.utils.nnunet_env import trainers_folder

pytestmark = pytest.mark.slow

LMS = "nnUNetTrainer_LightMedSeg_Smoke"
STOCK = "nnUNetTrainer_E2EStock"
TEST_TRAINERS = Path(__file__).resolve().parent / "e2e_trainers"
TIMEOUT = 1800


def env_for(results: Path, ext_trainer: bool = True, **extra) -> dict:
    env = nnunet_env(tiny_preprocessed_dataset(), nnUNet_results=str(results), nnUNet_n_proc_DA="0",
                     nnUNet_def_n_proc="1", **extra)
    if ext_trainer:
        env["nnUNet_extTrainer"] = os.pathsep.join([str(TEST_TRAINERS), trainers_folder()])
    else:
        env.pop("nnUNet_extTrainer", None)
    Path(results).mkdir(parents=True, exist_ok=True)
    return env


def model_dir(results: Path, trainer: str, dataset: str = TINY_NAME) -> Path:
    return Path(results) / dataset / f"{trainer}__nnUNetPlans__3d_fullres"


def seg_files(folder: Path):
    return sorted(p.name for p in Path(folder).glob("*.nii.gz"))


def read_seg(path: Path) -> np.ndarray:
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Fold 0 trained with the LightMedSeg Smoke trainer (without --npz) and the stock trainer (with --npz)."""
    results = tmp_path_factory.mktemp("workflows") / "results"
    env = env_for(results)
    for trainer, extra in ((LMS, []), (STOCK, ["--npz"])):
        run_console(["nnUNetv2_train", TINY_ID, "3d_fullres", "0", "-tr", trainer, "-device", "cpu", *extra], env,
                    timeout=TIMEOUT)
    images = tiny_preprocessed_dataset() / "raw" / TINY_NAME / "imagesTr"
    return {"results": results, "env": env, "images": images}


@pytest.fixture(scope="module")
def lms_val_npz(trained) -> dict:
    """``nnUNetv2_train ... --val --npz`` for the LightMedSeg model; the summary before and after."""
    val = model_dir(trained["results"], LMS) / "fold_0" / "validation"
    before = json.loads((val / "summary.json").read_text())
    assert not list(val.glob("*.npz")), "trained without --npz"
    run_console(["nnUNetv2_train", TINY_ID, "3d_fullres", "0", "-tr", LMS, "-device", "cpu", "--val", "--npz"],
                trained["env"], timeout=TIMEOUT)
    return {"before": before, "after": json.loads((val / "summary.json").read_text()), "folder": val}


def test_val_npz_rebuilds_the_trained_network_and_writes_probabilities(lms_val_npz):
    val = lms_val_npz["folder"]
    cases = [c["reference_file"] for c in lms_val_npz["after"]["metric_per_case"]]
    assert cases and sorted(p.name[:-4] for p in val.glob("*.npz")) == sorted(Path(c).name[:-7] for c in cases)
    assert len(list(val.glob("*.pkl"))) == len(cases)
    with np.load(next(val.glob("*.npz"))) as z:
        probs = z["probabilities"]
    assert probs.shape[0] == 3 and np.allclose(probs.sum(0), 1, atol=1e-3)  # softmax over bg/core/shell
    # same checkpoint, same predictor: the same validation result as at the end of training
    assert lms_val_npz["after"]["foreground_mean"]["Dice"] == pytest.approx(
        lms_val_npz["before"]["foreground_mean"]["Dice"], abs=1e-6)


@pytest.fixture(scope="module")
def best(trained, lms_val_npz) -> dict:
    run_console(["nnUNetv2_find_best_configuration", TINY_ID, "-c", "3d_fullres", "-tr", LMS, STOCK, "-f", "0",
                 "-np", "1"], trained["env"], timeout=TIMEOUT)
    return json.loads((trained["results"] / TINY_NAME / "inference_information.json").read_text())


def test_find_best_configuration_compares_lightmedseg_stock_and_their_ensemble(best, trained):
    names = set(best["all_results"])
    lms_id, stock_id = f"{LMS}__nnUNetPlans__3d_fullres", f"{STOCK}__nnUNetPlans__3d_fullres"
    assert {lms_id, stock_id} <= names
    ensemble = [n for n in names if n.startswith("ensemble___")]
    assert len(ensemble) == 1 and lms_id in ensemble[0] and stock_id in ensemble[0]
    assert all(0.0 <= v <= 1.0 for v in best["all_results"].values())
    assert Path(best["best_model_or_ensemble"]["postprocessing_file"]).is_file()
    crossval = model_dir(trained["results"], LMS) / "crossval_results_folds_0"
    assert (crossval / "summary.json").is_file()


@pytest.fixture(scope="module")
def predictions(trained, tmp_path_factory) -> dict:
    """Both models predict two raw images with --save_probabilities (nnUNetv2_predict)."""
    root = tmp_path_factory.mktemp("workflow_predictions")
    images = root / "images"
    images.mkdir()
    for case in ("case000", "case003"):
        shutil.copy(trained["images"] / f"{case}_0000.nii.gz", images)
    out = {}
    for trainer in (LMS, STOCK):
        out[trainer] = root / trainer
        run_console(["nnUNetv2_predict", "-i", images, "-o", out[trainer], "-d", TINY_ID, "-c", "3d_fullres",
                     "-f", "0", "-tr", trainer, "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_tta",
                     "--save_probabilities", "--disable_progress_bar"], trained["env"], timeout=TIMEOUT)
    out["root"], out["images"] = root, images
    return out


def test_ensemble_of_lightmedseg_and_stock_averages_their_probabilities(predictions, trained):
    ens = predictions["root"] / "ensemble"
    run_console(["nnUNetv2_ensemble", "-i", predictions[LMS], predictions[STOCK], "-o", ens, "-np", "1"],
                trained["env"], timeout=TIMEOUT)
    assert seg_files(ens) == ["case000.nii.gz", "case003.nii.gz"]
    for case in ("case000", "case003"):
        with np.load(predictions[LMS] / f"{case}.npz") as a, np.load(predictions[STOCK] / f"{case}.npz") as b:
            # nnU-Net's arithmetic: float32 sum, divided by the number of models, then argmax
            expected = np.argmax((a["probabilities"].astype(np.float32) + b["probabilities"]) / 2, 0)
        assert np.array_equal(read_seg(ens / f"{case}.nii.gz"), expected)


def test_apply_postprocessing_of_the_best_configuration(predictions, best, trained):
    ens = predictions["root"] / "ensemble_pp_input"
    run_console(["nnUNetv2_ensemble", "-i", predictions[LMS], predictions[STOCK], "-o", ens, "-np", "1"],
                trained["env"], timeout=TIMEOUT)
    pp = predictions["root"] / "postprocessed"
    info = best["best_model_or_ensemble"]
    run_console(["nnUNetv2_apply_postprocessing", "-i", ens, "-o", pp, "-pp_pkl_file", info["postprocessing_file"],
                 "-np", "1", "-plans_json", info["some_plans_file"]], trained["env"], timeout=TIMEOUT)
    assert seg_files(pp) == seg_files(ens)
    for f in seg_files(pp):
        assert set(np.unique(read_seg(pp / f))) <= {0, 1, 2}


# ----------------------------------------------------------------------------------- shared model (item 3)
def test_zip_install_predict_in_a_clean_environment(trained, predictions, tmp_path):
    zip_file = tmp_path / "lightmedseg_model.zip"
    run_console(["nnUNetv2_export_model_to_zip", "-d", TINY_ID, "-o", zip_file, "-c", "3d_fullres", "-tr", LMS,
                 "-f", "0"], trained["env"], timeout=TIMEOUT)
    # "another machine": fresh results folder, no nnUNet_extTrainer, its own nnU-Net installation
    nnunet_copy = tmp_path / "site"
    import nnunetv2
    shutil.copytree(Path(nnunetv2.__file__).parent, nnunet_copy / "nnunetv2",
                    ignore=shutil.ignore_patterns("__pycache__"))
    fresh = tmp_path / "fresh_results"
    env = env_for(fresh, ext_trainer=False, PYTHONPATH=os.pathsep.join(
        [str(nnunet_copy)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    run_console(["nnUNetv2_install_pretrained_model_from_zip", zip_file], env, timeout=TIMEOUT)
    installed = model_dir(fresh, LMS)
    assert (installed / "fold_0" / "checkpoint_final.pth").is_file()
    plans = json.loads((installed / "plans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["lightmedseg_network"]["config"]["num_anchors"] == 8

    predict = ["nnUNetv2_predict", "-i", predictions["images"], "-o", tmp_path / "pred", "-d", TINY_ID, "-c",
               "3d_fullres", "-f", "0", "-tr", LMS, "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_tta",
               "--disable_progress_bar"]
    check = run_console(["lightmedseg", "install-trainers", "--check"], env, check=False)
    assert check.returncode == 1 and "not registered" in check.stdout
    missing = run_console(predict, env, timeout=TIMEOUT, check=False)
    assert missing.returncode != 0 and f"Could not find requested nnunet trainer {LMS}" in missing.stderr

    done = run_console(["lightmedseg", "install-trainers"], env)
    shim = nnunet_copy / "nnunetv2" / "training" / "nnUNetTrainer" / "variants" / "nnunetv2_lightmedseg_trainers.py"
    assert shim.is_file() and str(shim) in done.stdout
    run_console(predict, env, timeout=TIMEOUT)  # a new process: found through nnU-Net's own trainer folder
    for f in seg_files(predictions[LMS]):
        assert np.array_equal(read_seg(tmp_path / "pred" / f), read_seg(predictions[LMS] / f)), f

    run_console(["lightmedseg", "install-trainers", "--uninstall"], env)
    assert not shim.exists()
    assert run_console(predict, env, timeout=TIMEOUT, check=False).returncode != 0


# -------------------------------------------------------------------------------------- fine-tuning (item 1)
def test_finetune_with_pretrained_weights_on_a_dataset_with_other_labels(trained, tmp_path):
    base = tiny_preprocessed_dataset()
    env = env_for(tmp_path / "results")
    write_blob_dataset(base / "raw", 994, "LMSFourLabels", n_cases=5, seed=1, blob_label=True)
    # nnU-Net's planner calls torch.set_num_threads(nnUNet_n_proc_DA): 0 (single-threaded augmentation, set for
    # training) is invalid there
    plan_and_preprocess({k: v for k, v in env.items() if k != "nnUNet_n_proc_DA"}, 994)
    pretrained = model_dir(trained["results"], LMS) / "fold_0" / "checkpoint_final.pth"
    p = run_console(["nnUNetv2_train", "994", "3d_fullres", "0", "-tr", LMS, "-device", "cpu",
                     "-pretrained_weights", pretrained], env, timeout=TIMEOUT)
    assert "Loading pretrained weights" in p.stdout
    import torch
    ckpt = torch.load(model_dir(tmp_path / "results", LMS, "Dataset994_LMSFourLabels") / "fold_0" /
                      "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["lightmedseg_network"]["num_classes"] == 4
    heads = [k for k in ckpt["network_weights"] if ".seg_layers." in k]
    assert heads and all(ckpt["network_weights"][k].shape[0] == 4 for k in heads if k.endswith(".0.weight"))


def test_benchmark_predict_times_both_models_on_the_folds_validation_cases(trained, tmp_path):
    """``lightmedseg benchmark predict`` runs nnU-Net's predictor for a stock and a LightMedSeg model on the fold's
    validation cases (splits_final.json), with and without mirroring, and reports one row per model and setting."""
    out = tmp_path / "predict.json"
    p = run_console(["lightmedseg", "benchmark", "predict", "-d", TINY_ID, "-tr", STOCK, "-tr", LMS, "--val-fold",
                     "0", "--threads", "1", "--warmup", "0", "--json", out], trained["env"], timeout=TIMEOUT)
    assert "cases/min" in p.stdout
    res = json.loads(out.read_text())
    splits = json.loads((tiny_preprocessed_dataset() / "preprocessed" / TINY_NAME / "splits_final.json").read_text())
    val = sorted(splits[0]["val"])
    assert [Path(c).name for c in res["cases"]] == [f"{k}_0000.nii.gz" for k in val]
    assert {(r["mirroring"], r["model"]) for r in res["rows"]} == {(m, t) for m in ("on", "off") for t in (STOCK, LMS)}
    assert all(r["cases"] == len(val) and r["seconds_per_case"]["min"] > 0 for r in res["rows"])
    assert res["info"]["threads"] == 1
    # LightMedSeg's forwards get their thread count from cpu/threads.py, stock's from nnU-Net
    assert res["info"]["inference_threads"] == {STOCK: "the caller's thread count (nnU-Net's)",
                                                LMS: "1 (the caller allows one thread: nothing to choose)"}


def test_finetune_across_resolution_schedules_then_share_and_predict(trained, tmp_path):
    """An isotropic model (the blob dataset) fine-tuned on thick-slice data as planned: nnU-Net's loader refuses
    its weights, ``lightmedseg adapt-weights`` fits them, ``-pretrained_weights`` trains, and the fine-tuned model
    goes through nnU-Net's zip export/install into a fresh results folder and predicts there."""
    from nnunetv2_lightmedseg.data.synthetic import write_thick_slice_dataset

    base = tiny_preprocessed_dataset()
    env = env_for(tmp_path / "results")
    write_thick_slice_dataset(base / "raw", 995, "LMSThickFT", num_train=5, num_test=2)
    plan_and_preprocess({k: v for k, v in env.items() if k != "nnUNet_n_proc_DA"}, 995)
    plans = json.loads((base / "preprocessed" / "Dataset995_LMSThickFT" / "nnUNetPlans.json").read_text())
    strides = plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["strides"]
    assert any(s[0] == 1 and s[1] == 2 for s in strides[1:]), strides  # thick slices: z not pooled everywhere
    pretrained = model_dir(trained["results"], LMS) / "fold_0" / "checkpoint_final.pth"
    train = ["nnUNetv2_train", "995", "3d_fullres", "0", "-tr", LMS, "-device", "cpu"]
    refused = run_console([*train, "-pretrained_weights", pretrained], env, timeout=TIMEOUT, check=False)
    assert refused.returncode != 0 and "decoder" in (refused.stdout + refused.stderr)
    adapted = tmp_path / "adapted.pth"
    p = run_console(["lightmedseg", "adapt-weights", pretrained, "-d", "995", "-c", "3d_fullres", "-tr", LMS,
                     "-o", adapted], env)
    assert "resampled" in p.stdout and "-pretrained_weights" in p.stdout
    again = run_console(["lightmedseg", "adapt-weights", pretrained, "-d", "995", "-c", "3d_fullres", "-tr", LMS,
                         "-o", adapted], env, check=False)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    p = run_console([*train, "-pretrained_weights", adapted], env, timeout=TIMEOUT)
    assert "Loading pretrained weights" in p.stdout

    zip_file = tmp_path / "thick.zip"
    run_console(["nnUNetv2_export_model_to_zip", "-d", "995", "-o", zip_file, "-c", "3d_fullres", "-tr", LMS,
                 "-f", "0"], env, timeout=TIMEOUT)
    assert run_console(["lightmedseg", "check-model", zip_file], env).returncode == 0
    fresh = tmp_path / "fresh_results"
    fresh_env = env_for(fresh)
    run_console(["nnUNetv2_install_pretrained_model_from_zip", zip_file], fresh_env, timeout=TIMEOUT)
    images = base / "raw" / "Dataset995_LMSThickFT" / "imagesTs"
    run_console(["nnUNetv2_predict", "-i", images, "-o", tmp_path / "pred", "-d", "995", "-c", "3d_fullres", "-f",
                 "0", "-tr", LMS, "-device", "cpu", "-npp", "1", "-nps", "1", "--disable_tta",
                 "--disable_progress_bar"], fresh_env, timeout=TIMEOUT)
    written = seg_files(tmp_path / "pred")
    assert len(written) == 2
    import SimpleITK as sitk
    for f in written:
        ref = sitk.ReadImage(str(next(images.glob(f.replace(".nii.gz", "_0000.nii.gz")))))
        seg = sitk.ReadImage(str(tmp_path / "pred" / f))
        assert seg.GetSize() == ref.GetSize() and np.allclose(seg.GetSpacing(), ref.GetSpacing())
