"""Safety with files a user did not make, and one-line errors: checkpoints never execute code, check-model,
nothing replaced without --overwrite, label and dtype checks."""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunetv2_lightmedseg import LightMedSeg
from nnunetv2_lightmedseg.checkpoints import (CheckpointError, UnsafeCheckpointError, load_checkpoint,
                                              safe_torch_load)
from nnunetv2_lightmedseg.cli.main import main
from nnunetv2_lightmedseg.deploy.check_model import check_model, pickle_globals
from nnunetv2_lightmedseg.loss.boundary_compound import BoundaryCompoundLoss, check_labels


class _Evil:
    """Unpickling it runs a shell command that creates a marker file (what a malicious checkpoint does)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _nnunet_like_checkpoint() -> dict:
    """The structure nnU-Net's save_checkpoint writes after some training (numpy scalars in the log, a device)."""
    net = torch.nn.Conv3d(1, 2, 3)
    opt = torch.optim.AdamW(net.parameters())
    net(torch.zeros(1, 1, 3, 3, 3)).sum().backward()
    opt.step()
    return {"network_weights": net.state_dict(), "optimizer_state": opt.state_dict(), "grad_scaler_state": None,
            "logging": {"mean_fg_dice": [np.float64(0.5), np.float32(0.25)], "ema_fg_dice": [np.float64(0.5)],
                        "dice_per_class_or_region": [[np.float64(0.1), np.float64(0.2)]], "lrs": [0.01],
                        "epoch_start_timestamps": [1.0]},
            "_best_ema": np.float64(0.5), "current_epoch": 3,
            "init_args": {"plans": {"configurations": {}}, "configuration": "3d_fullres", "fold": 0,
                          "dataset_json": {"labels": {"background": 0, "a": 1}}, "device": torch.device("cpu")},
            "trainer_name": "nnUNetTrainer_LightMedSeg", "inference_allowed_mirroring_axes": (0, 1, 2)}


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    ck = _nnunet_like_checkpoint()
    ck["logging"]["payload"] = _Evil(marker)
    torch.save(ck, path)
    return path, marker


def test_an_nnunet_checkpoint_loads_and_a_malicious_one_is_refused_without_running(tmp_path, evil):
    good = tmp_path / "good.pth"
    torch.save(_nnunet_like_checkpoint(), good)
    ck = load_checkpoint(good)
    assert ck["_best_ema"] == 0.5 and ck["init_args"]["device"] == torch.device("cpu")
    path, marker = evil
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        load_checkpoint(path)
    assert not marker.exists()
    # the legacy (non-zip) format too
    legacy = tmp_path / "evil_legacy.pth"
    torch.save({"network_weights": {}, "x": _Evil(marker)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeCheckpointError, match="posix.system"):
        load_checkpoint(legacy)
    assert not marker.exists()


def test_truncated_random_and_missing_checkpoints_are_clear_errors(tmp_path):
    good = tmp_path / "good.pth"
    torch.save(_nnunet_like_checkpoint(), good)
    (tmp_path / "trunc.pth").write_bytes(good.read_bytes()[:300])
    (tmp_path / "random.pth").write_bytes(np.random.default_rng(0).bytes(4000))
    for name in ("trunc.pth", "random.pth"):
        with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint") as e:
            load_checkpoint(tmp_path / name)
        assert not isinstance(e.value, UnsafeCheckpointError)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)


def test_safe_torch_load_guards_nnunets_own_loaders(evil):
    path, marker = evil
    with safe_torch_load():
        with pytest.raises(UnsafeCheckpointError):
            torch.load(path, map_location="cpu", weights_only=False)  # what nnU-Net calls
    assert not marker.exists()
    assert torch.load is not None and getattr(torch.load, "original_torch_load", None) is None  # restored


def test_check_model_on_files_zips_and_pickles(tmp_path, evil, capsys):
    path, marker = evil
    good = tmp_path / "model" / "fold_0" / "checkpoint_final.pth"
    good.parent.mkdir(parents=True)
    torch.save(_nnunet_like_checkpoint(), good)
    from nnunetv2.postprocessing.remove_connected_components import \
        remove_all_but_largest_component_from_segmentation
    (tmp_path / "model" / "postprocessing.pkl").write_bytes(
        pickle.dumps(([remove_all_but_largest_component_from_segmentation], [{"labels_or_regions": [1]}])))
    assert main(["check-model", str(tmp_path / "model")]) == 0
    out = capsys.readouterr().out
    assert "fold_0/checkpoint_final.pth" in out and "postprocessing.pkl" in out and "safe:" in out

    assert main(["check-model", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "NOT safe" in err and "posix.system" in err and len(err.splitlines()) == 1 and not marker.exists()

    # an nnU-Net model zip with a malicious postprocessing.pkl and a path-traversal member
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(good, "Dataset001_X/T__P__3d_fullres/fold_0/checkpoint_final.pth")
        z.writestr("Dataset001_X/T__P__3d_fullres/postprocessing.pkl", pickle.dumps(_Evil(marker)))
        z.writestr("../outside.json", "{}")
    report = check_model(str(archive))
    assert len(report["ok"]) == 1
    assert any("postprocessing.pkl" in u and "system" in u for u in report["unsafe"])
    assert any("path traversal" in u for u in report["unsafe"])
    assert main(["check-model", str(archive)]) == 2 and not marker.exists()
    assert not (tmp_path / "outside.json").exists()


def test_pickle_globals_reads_opcodes_without_executing(tmp_path):
    marker = tmp_path / "x"
    for protocol in (0, 2, 4, 5):
        assert any("system" in g for g in pickle_globals(pickle.dumps(_Evil(marker), protocol=protocol)))
    assert not marker.exists()


def test_trainer_refuses_a_malicious_checkpoint_for_resuming(evil):
    from nnunetv2_lightmedseg.training.trainer import nnUNetTrainer_LightMedSeg

    path, marker = evil
    trainer = object.__new__(nnUNetTrainer_LightMedSeg)  # load_checkpoint reads the file before touching state
    trainer.device = torch.device("cpu")
    with pytest.raises(UnsafeCheckpointError):
        trainer.load_checkpoint(str(path))
    assert not marker.exists()


# ------------------------------------------------------------------------------------------- labels, dtypes
def test_loss_names_labels_it_cannot_use():
    check_labels(torch.tensor([0, 1, 2]), 3)
    check_labels(torch.tensor([0.0, 1.0, 2.0]), 3)
    with pytest.raises(ValueError, match=r"non-integer label values \(1.5\)"):
        check_labels(torch.tensor([0.0, 1.5]), 3)
    with pytest.raises(ValueError, match=r"label value\(s\) 3, 7 outside 0..2"):
        check_labels(torch.tensor([0, 3, 7]), 3)
    with pytest.raises(ValueError, match=r"label value\(s\) -1 outside"):
        check_labels(torch.tensor([0, -1]), 3)
    check_labels(torch.tensor([0, 1, 5]), 3, ignore_label=5)  # nnU-Net's ignore label is allowed
    loss = BoundaryCompoundLoss()
    logits = torch.randn(1, 3, 8, 8, 8)
    target = torch.zeros(1, 1, 8, 8, 8)
    target[0, 0, 0, 0, 0] = 4
    with pytest.raises(ValueError, match="outside 0..2"):
        loss(logits, target)


def test_network_dtype_errors_say_what_to_do():
    net = LightMedSeg(1, 2).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        with pytest.raises(TypeError, match="takes float32 input, got torch.float64"):
            net(x.double())
        with pytest.raises(TypeError, match="takes float32 input, got torch.float16"):
            net(x.half())
        with pytest.raises(TypeError, match="weights are torch.bfloat16.*torch.autocast"):
            LightMedSeg(1, 2).to(torch.bfloat16)(x.bfloat16())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert net(x.bfloat16()).shape == (1, 2, 16, 16, 16)  # mixed precision stays allowed


# ----------------------------------------------------------------------- nothing replaced without --overwrite
def test_explain_refuses_to_replace_figures_and_files_as_output(tmp_path, capsys):
    out = tmp_path / "figs"
    args = ["explain", "-o", str(out), "--num-classes", "2"]
    assert main(args) == 0
    pngs = {p: p.read_bytes() for p in out.glob("*.png")}
    assert pngs
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "already exist" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert {p: p.read_bytes() for p in out.glob("*.png")} == pngs
    assert main(args + ["--overwrite"]) == 0
    afile = tmp_path / "a_file"
    afile.write_text("keep")
    assert main(["explain", "-o", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "keep"
    assert not list(tmp_path.rglob("*.tmp"))


def test_export_benchmark_json_is_not_replaced(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    target = tmp_path / "bench.json"
    target.write_text("mine")
    rc = main(["export", "--benchmark", "--shape", "16", "16", "16", "--in-channels", "1", "--num-classes", "2",
               "--repeats", "1", "--threads", "1", "--json", str(target)])
    assert rc == 2 and target.read_text() == "mine" and "--overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_export_and_explain_with_a_malicious_checkpoint_create_nothing(tmp_path, capsys):
    from tiny_model import CONFIG, FOLD, TINY_ID, TRAINER, tiny_case_image, trained_model_results

    results = trained_model_results()
    capsys.readouterr()  # the tiny dataset's planning output
    fold = next(results.rglob(f"{TRAINER}__nnUNetPlans__{CONFIG}")) / f"fold_{FOLD}"
    marker = tmp_path / "PWNED"
    ck = load_checkpoint(fold / "checkpoint_final.pth")
    ck["payload"] = _Evil(marker)
    evil_name = "evil_for_test.pth"
    torch.save(ck, fold / evil_name)
    try:
        out = tmp_path / "out"
        out.mkdir()
        base = ["-d", str(TINY_ID), "-c", CONFIG, "-f", str(FOLD), "-tr", TRAINER, "-chk", evil_name]
        assert main(["export", *base, "-o", str(out / "m.onnx")]) == 2
        err = capsys.readouterr().err.strip()
        assert "refused" in err and "posix.system" in err and len(err.splitlines()) == 1
        assert main(["explain", *base, "-i", str(tiny_case_image()), "-o", str(out / "figs")]) == 2
        assert "refused" in capsys.readouterr().err
        assert list(out.iterdir()) == [] and not marker.exists()
        # a real checkpoint passes check-model; an existing export target is kept without --overwrite
        assert main(["check-model", str(fold / "checkpoint_final.pth")]) == 0
        (out / "m.onnx").write_text("mine")
        capsys.readouterr()
        assert main(["export", "-d", str(TINY_ID), "-c", CONFIG, "-f", str(FOLD), "-tr", TRAINER,
                     "-o", str(out / "m.onnx")]) == 2
        assert "already exists" in capsys.readouterr().err and (out / "m.onnx").read_text() == "mine"
        assert not (out / "m.json").exists()
        assert main(["export", "-d", str(TINY_ID), "-c", CONFIG, "-f", str(FOLD), "-tr", TRAINER,
                     "-o", str(out)]) == 2
        assert "is a folder" in capsys.readouterr().err
    finally:
        (fold / evil_name).unlink()


def test_non_finite_image_gets_a_warning_naming_the_case():
    from nnunetv2_lightmedseg.deploy.input_check import attach_non_finite_warning

    net = attach_non_finite_warning(LightMedSeg(1, 2).eval())
    x = torch.randn(1, 1, 16, 16, 16)

    def predict_from_data_iterator(ofile, data):  # the frame nnU-Net's predictor runs the network in
        with torch.no_grad():
            return net(data)

    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict_from_data_iterator("/out/case_007", x)
        assert not caught  # a finite image: nothing
        bad = x.clone()
        bad[0, 0, 3, 3, 3] = float("nan")
        out = predict_from_data_iterator("/out/case_007", bad)
        predict_from_data_iterator("/out/case_007", bad)  # the next patch of the same case: no second warning
    assert len(caught) == 1 and "case_007" in str(caught[0].message) and "NaN" in str(caught[0].message)
    assert torch.isnan(out).any()  # the warning is the only change: the network's output is untouched
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net.train()
        net(bad)  # training: no check
    assert not [w for w in caught if "NaN/Inf" in str(w.message)]


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_ctrl_c_in_the_first_second_prints_one_line_not_a_traceback(delay):
    """SIGINT while the command is still importing PyTorch/nnU-Net (its first second): exit 130, one line."""
    import signal
    import subprocess
    import sys
    import time

    lms = Path(sys.executable).with_name("lightmedseg")
    p = subprocess.Popen([str(lms), "profile", "--shape", "32", "32", "32", "--runs", "50", "--no-memory"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert p.returncode == 130 and "interrupted (Ctrl-C)" in err
