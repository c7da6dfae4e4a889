"""Tests of ``lightmedseg benchmark curves`` (``nnunetv2_lightmedseg.benchmark.curves``).

Fast: fake nnU-Net fold folders written in tmp_path in nnU-Net's formats (debug.json with string values, time-stamped
training logs, compute_metrics_on_folder's summary.json); no nnU-Net run.
"""
from __future__ import annotations

import json
import os
import re

import pytest

from nnunetv2_lightmedseg.benchmark import curves as C
from nnunetv2_lightmedseg.benchmark import results as R
from nnunetv2_lightmedseg.cli.main import main as cli

LMS = "nnUNetTrainer_LightMedSeg_CPUBench_16x50__nnUNetPlans__3d_fullres"
STOCK = "nnUNetTrainer_CPUBench_4x50__nnUNetPlans__3d_fullres"
NOVAL = "nnUNetTrainer_LightMedSeg_CPUBench_4x50__nnUNetPlans__3d_fullres"
HEADER = ("\n#######################################################################\nPlease cite the following paper "
          "when using nnU-Net:\n#######################################################################\n \n")


def _debug(num_epochs, ipe, network, batch=7, lr=0.001):
    """What nnU-Net's _save_debug_information writes: str() of every attribute, the network's class name."""
    return {"batch_size": str(batch), "configuration_name": "3d_fullres", "current_epoch": "0", "fold": "0",
            "initial_lr": str(lr), "num_epochs": str(num_epochs), "num_iterations_per_epoch": str(ipe),
            "num_val_iterations_per_epoch": "50", "network": network, "device": "cpu", "_best_ema": "None",
            "loss": "DC_and_CE_loss(...)", "oversample_foreground_percent": "0.33"}


def _epoch_lines(epoch, dice_txt, secs, t="2026-11-27 10:00:00.000000"):
    return (f"{t}:  \n{t}: Epoch {epoch} \n{t}: Current learning rate: 0.001 \n{t}: train_loss -0.5 \n"
            f"{t}: val_loss -0.6 \n{t}: Pseudo dice {dice_txt} \n{t}: Epoch time: {secs} s \n"
            f"{t}: Yayy! New best EMA pseudo Dice: 0.5 \n")


def _write_summary(path, cases: dict):
    """Minimal nnU-Net summary.json from ``{case: {label: Dice}}``."""
    labels = ["1", "2"]
    per_case = [{"prediction_file": f"/pred/{c}.nii.gz", "reference_file": f"/ref/{c}.nii.gz",
                 "metrics": {lab: {"Dice": d[lab]} for lab in labels}} for c, d in cases.items()]
    mean = {lab: {"Dice": sum(d[lab] for d in cases.values()) / len(cases)} for lab in labels}
    fg = {"Dice": sum(mean[lab]["Dice"] for lab in labels) / len(labels)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metric_per_case": per_case, "mean": mean, "foreground_mean": fg}))


@pytest.fixture
def results_root(tmp_path):
    """nnUNet_results/Dataset004_Hippocampus with three fold_0 runs:

    * LightMedSeg 16x50 planned, interrupted after 2 epochs and resumed (two logs: NumPy-2 ``np.float32(...)``
      pseudo Dice, then plain floats incl. a NaN), 4 epochs done, final validation present, plus the big files
      nnU-Net leaves (checkpoints, predictions) that --archive must not copy;
    * stock 4x50, one log, final validation present;
    * LightMedSeg 4x50 without validation/summary.json.
    """
    ds = tmp_path / "nnUNet_results" / "Dataset004_Hippocampus"
    lms = ds / LMS / "fold_0"
    lms.mkdir(parents=True)
    (lms / "debug.json").write_text(json.dumps(_debug(16, 50, "LightMedSeg")))
    # the later log written first: order must come from the time-stamped names, not from the file system
    (lms / "training_log_2026_11_28_09_00_00.txt").write_text(
        HEADER + _epoch_lines(2, "[0.7, 0.8]", 612.5) + _epoch_lines(3, "[0.75, nan]", 587.5))
    (lms / "training_log_2026_11_27_10_00_00.txt").write_text(
        HEADER + _epoch_lines(0, "[np.float32(0.4148), np.float32(0.711)]", 600.0)
        + _epoch_lines(1, "[np.float32(0.6), np.float32(0.7)]", 540.0)
        + "2026-11-27 10:30:00.000000: Epoch 2 \n2026-11-27 10:30:00.000000: Current learning rate: 0.001 \n")
    _write_summary(lms / "validation" / "summary.json",
                   {"hippocampus_001": {"1": 0.85, "2": 0.80}, "hippocampus_002": {"1": 0.87, "2": 0.82}})
    for big in ("checkpoint_final.pth", "checkpoint_best.pth", "progress.png", "validation/hippocampus_001.nii.gz",
                "validation/hippocampus_001.npz", "validation/hippocampus_001.pkl"):
        (lms / big).write_bytes(b"\0" * 64)
    (ds / LMS / "plans.json").write_text("{}")
    (ds / LMS / "dataset.json").write_text("{}")

    st = ds / STOCK / "fold_0"
    st.mkdir(parents=True)
    (st / "debug.json").write_text(json.dumps(_debug(4, 50, "PlainConvUNet", batch=9, lr=0.01)))
    (st / "training_log_2026_11_26_08_00_00.txt").write_text(
        HEADER + "".join(_epoch_lines(i, f"[{0.1 * (i + 1)}, {0.2 * (i + 1)}]", s)
                         for i, s in enumerate([1800.0, 1700.0, 1750.0, 1750.0])))
    _write_summary(st / "validation" / "summary.json",
                   {"hippocampus_001": {"1": 0.80, "2": 0.70}, "hippocampus_002": {"1": 0.84, "2": 0.74}})
    (st / "checkpoint_final.pth").write_bytes(b"\0" * 64)

    nv = ds / NOVAL / "fold_0"
    nv.mkdir(parents=True)
    (nv / "debug.json").write_text(json.dumps(_debug(4, 50, "LightMedSeg")))
    (nv / "training_log_2026_11_29_08_00_00.txt").write_text(
        HEADER + _epoch_lines(0, "[0.3, 0.5]", 150.0) + _epoch_lines(1, "[0.5, 0.7]", 210.0))
    return tmp_path / "nnUNet_results"


def _by_trainer(runs):
    return {r["trainer"]: r for r in runs}


# ---------------------------------------------------------------------------------------------- parsing
def test_runs_parsed_numbers_including_the_resumed_log(results_root):
    runs = C.load_runs([str(results_root)])
    assert len(runs) == 3
    r = _by_trainer(runs)
    lms, st, nv = (r[n.split("__")[0]] for n in (LMS, STOCK, NOVAL))

    assert (lms["family"], st["family"], nv["family"]) == ("LightMedSeg", "stock nnU-Net", "LightMedSeg")
    assert (lms["plans"], lms["configuration"], lms["fold"]) == ("nnUNetPlans", "3d_fullres", "0")
    assert (lms["batch_size"], lms["initial_lr"], st["batch_size"], st["initial_lr"]) == (7, 0.001, 9, 0.01)
    assert lms["iterations_planned"] == 800 and st["iterations_planned"] == 200
    # both logs, in time order: epochs 0-1 from the first, 2-3 from the resumed one; the unfinished epoch 2 of
    # the first log (no 'Epoch time') does not count
    assert [e["epoch"] for e in lms["epochs"]] == [0, 1, 2, 3]
    assert lms["training_logs"] == ["training_log_2026_11_27_10_00_00.txt", "training_log_2026_11_28_09_00_00.txt"]
    assert lms["epochs_completed"] == 4 and lms["iterations"] == 200
    assert [e["iterations"] for e in lms["epochs"]] == [50, 100, 150, 200]
    cum = [600.0, 1140.0, 1752.5, 2340.0]
    assert [e["hours"] for e in lms["epochs"]] == pytest.approx([c / 3600 for c in cum])
    assert lms["hours"] == pytest.approx(2340.0 / 3600)
    assert lms["hours"] == pytest.approx(sum(R.epoch_times(lms["folder"])) / 3600)  # same as benchmark results
    # np.float32(...) and plain floats; NaN ignored in the mean (as nnU-Net's EMA does)
    assert lms["epochs"][0]["pseudo_dice"] == pytest.approx([0.4148, 0.711])
    assert [e["mean_pseudo_dice"] for e in lms["epochs"]] == pytest.approx([0.5629, 0.65, 0.75, 0.75])

    assert st["hours"] == pytest.approx(7000.0 / 3600) and st["iterations"] == 200
    assert [e["mean_pseudo_dice"] for e in st["epochs"]] == pytest.approx([0.15, 0.3, 0.45, 0.6])

    assert lms["final_validation"]["foreground_mean"] == pytest.approx(0.835)
    assert lms["final_validation"]["per_label"] == pytest.approx({"1": 0.86, "2": 0.81})
    assert st["final_validation"]["foreground_mean"] == pytest.approx(0.77)
    assert st["final_validation"]["per_label"] == pytest.approx({"1": 0.82, "2": 0.72})
    assert nv["final_validation"] is None and nv["epochs_completed"] == 2 and nv["iterations"] == 100


def test_resumed_run_that_reruns_epochs_keeps_all_in_time_order(tmp_path):
    """--c restarts from the last checkpoint: epoch 1 appears in both logs. Hours count both (time spent),
    iterations follow the epoch number (the model's updates), the plot's iteration panel uses the re-run."""
    f = tmp_path / "Tr_LightMedSeg__P__C" / "fold_1"
    f.mkdir(parents=True)
    (f / "debug.json").write_text(json.dumps(_debug(10, 20, "LightMedSeg")))
    (f / "training_log_2026_01_01_00_00_00.txt").write_text(
        _epoch_lines(0, "[0.2]", 100.0) + _epoch_lines(1, "[0.3]", 100.0))
    (f / "training_log_2026_01_02_00_00_00.txt").write_text(
        _epoch_lines(1, "[0.35]", 120.0) + _epoch_lines(2, "[0.5]", 110.0)
        # an epoch that logged no pseudo Dice has none (not the previous epoch's)
        + "2026-01-02 01:00:00.000000: Epoch 3 \n2026-01-02 01:00:00.000000: Epoch time: 70.0 s \n")
    run = C.load_run(str(f))
    assert [e["epoch"] for e in run["epochs"]] == [0, 1, 1, 2, 3]
    assert [e["iterations"] for e in run["epochs"]] == [20, 40, 40, 60, 80]
    assert run["hours"] == pytest.approx(500.0 / 3600)
    assert run["epochs_completed"] == 4 and run["iterations"] == 80 and run["fold"] == "1"
    assert [e["mean_pseudo_dice"] for e in C._latest_per_epoch(run["epochs"])][:3] == pytest.approx([0.2, 0.35, 0.5])
    assert run["epochs"][-1]["pseudo_dice"] == [] and run["epochs"][-1]["mean_pseudo_dice"] is None


def test_family_from_trainer_name_or_network_class():
    assert C.network_family("nnUNetTrainer_LightMedSeg_NoLSPM") == "LightMedSeg"
    assert C.network_family("nnUNetTrainer_LMSExp_base", "LightMedSeg") == "LightMedSeg"
    assert C.network_family("nnUNetTrainer", "PlainConvUNet") == "stock nnU-Net"
    assert C.network_family("nnUNetTrainer_100epochs") == "stock nnU-Net"


# ---------------------------------------------------------------------------------------------- CLI outputs
def _row(text, trainer):
    lines = [ln for ln in text.splitlines() if re.search(rf"\s{re.escape(trainer)}\s", ln)]
    assert len(lines) == 1, text
    return re.split(r"\s{2,}", lines[0].strip())


def test_cli_table_json_and_plot(results_root, tmp_path, capsys):
    js, png = tmp_path / "curves.json", tmp_path / "curves.png"
    assert cli(["benchmark", "curves", str(results_root), "--json", str(js), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    head = re.split(r"\s{2,}", next(ln for ln in out.splitlines() if ln.strip().startswith("family")).strip())
    assert head == ["family", "trainer", "fold", "epochs", "iterations", "hours", "last pseudo Dice",
                    "val Dice mean", "Dice 1", "Dice 2"]
    assert _row(out, "nnUNetTrainer_LightMedSeg_CPUBench_16x50") == [
        "LightMedSeg", "nnUNetTrainer_LightMedSeg_CPUBench_16x50", "0", "4/16", "200/800", "0.65", "0.7500",
        "0.8350", "0.8600", "0.8100"]
    assert _row(out, "nnUNetTrainer_CPUBench_4x50") == [
        "stock nnU-Net", "nnUNetTrainer_CPUBench_4x50", "0", "4/4", "200/200", "1.94", "0.6000", "0.7700",
        "0.8200", "0.7200"]
    assert _row(out, "nnUNetTrainer_LightMedSeg_CPUBench_4x50") == [
        "LightMedSeg", "nnUNetTrainer_LightMedSeg_CPUBench_4x50", "0", "2/4", "100/200", "0.10", "0.6000",
        "no final validation", "-", "-"]

    data = json.loads(js.read_text())
    assert data["reference"] == {"dice": 0.89, "label": "nnU-Net converged, MSD Hippocampus (Isensee et al. 2021)"}
    runs = _by_trainer(data["runs"])
    lms = runs["nnUNetTrainer_LightMedSeg_CPUBench_16x50"]
    assert [e["iterations"] for e in lms["epochs"]] == [50, 100, 150, 200]
    assert lms["epochs"][3]["pseudo_dice"][0] == 0.75 and lms["epochs"][3]["pseudo_dice"][1] is None  # NaN->null
    assert lms["final_validation"]["per_label"] == pytest.approx({"1": 0.86, "2": 0.81})
    assert runs["nnUNetTrainer_LightMedSeg_CPUBench_4x50"]["final_validation"] is None
    assert runs["nnUNetTrainer_CPUBench_4x50"]["hours"] == pytest.approx(7000 / 3600)
    assert set(data["method"]) >= {"iterations", "hours", "pseudo_dice", "final_validation", "family"}

    raw = png.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 10_000


def test_plot_panels_markers_and_reference(results_root, tmp_path):
    runs = C.load_runs([str(results_root)])
    fig = C.plot_curves(runs, str(tmp_path / "a.png"), title="my title")
    ax_it, ax_h = fig.axes[:2]
    assert ax_it.get_xscale() == "log" and ax_h.get_xscale() == "linear"
    assert ax_h.get_xlabel() == "training wall-clock hours (as logged)"
    assert fig._suptitle.get_text() == "my title"

    def lines(ax):
        return [(list(map(float, ln.get_xdata())), list(map(float, ln.get_ydata())), ln.get_color(),
                 ln.get_linestyle(), ln.get_markersize(), ln.get_marker()) for ln in ax.get_lines()]

    blue, orange = C.FAMILY_COLOURS["LightMedSeg"], C.FAMILY_COLOURS["stock nnU-Net"]
    # final-validation markers: one joined line per family, sorted by iterations (the run without validation absent)
    big_it = [ln for ln in lines(ax_it) if ln[5] == "o"]
    assert sorted((ln[2], ln[0], ln[1]) for ln in big_it) == [
        (blue, [200.0], pytest.approx([0.835])), (orange, [200.0], pytest.approx([0.77]))]
    big_h = [ln for ln in lines(ax_h) if ln[5] == "o"]
    assert sorted((ln[2], ln[0]) for ln in big_h) == [(blue, pytest.approx([2340 / 3600])),
                                                      (orange, pytest.approx([7000 / 3600]))]
    # per-epoch curves: one thin line per run in each panel, including the run without final validation
    thin_it = [ln for ln in lines(ax_it) if ln[5] != "o" and ln[3] == "-"]
    assert sorted(ln[0] for ln in thin_it) == [[50.0, 100.0], [50.0, 100.0, 150.0, 200.0],
                                               [50.0, 100.0, 150.0, 200.0]]
    thin_h = [ln for ln in lines(ax_h) if ln[5] != "o" and ln[3] == "-"]
    lms_h = next(ln for ln in thin_h if ln[0][-1] == pytest.approx(2340 / 3600))
    assert lms_h[1] == pytest.approx([0.5629, 0.65, 0.75, 0.75])
    # dashed reference in both panels, in the legend with its label
    for ax in (ax_it, ax_h):
        dashed = [ln for ln in lines(ax) if ln[3] == "--"]
        assert len(dashed) == 1 and dashed[0][1] == [0.89, 0.89]
    legend = [t.get_text() for t in ax_it.get_legend().get_texts()]
    assert "0.89: nnU-Net converged, MSD Hippocampus (Isensee et al. 2021)" in legend

    fig = C.plot_curves(runs, str(tmp_path / "b.png"), reference=None)
    assert not [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert not any("Isensee" in t.get_text() for t in fig.axes[0].get_legend().get_texts())


def test_cli_no_reference_and_title_options(results_root, tmp_path, capsys):
    png = tmp_path / "c.png"
    assert cli(["benchmark", "curves", str(results_root / "Dataset004_Hippocampus" / STOCK / "fold_0"),
                "--plot", str(png), "--no-reference", "--title", "T", "--json", str(tmp_path / "c.json")]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["reference"] is None and len(data["runs"]) == 1
    # a fold folder given directly and again through its parent is one run
    assert cli(["benchmark", "curves", str(results_root), str(results_root / "Dataset004_Hippocampus" / LMS /
                                                             "fold_0"), "--json", str(tmp_path / "d.json")]) == 0
    assert len(json.loads((tmp_path / "d.json").read_text())["runs"]) == 3


# ---------------------------------------------------------------------------------------------- archive
def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_archive_copies_only_small_artifacts_and_refuses_to_overwrite(results_root, tmp_path, capsys):
    arc = tmp_path / "archive"
    assert cli(["benchmark", "curves", str(results_root), "--archive", str(arc)]) == 0
    out = capsys.readouterr().out
    assert _files(arc) == sorted([
        f"{LMS}/fold_0/debug.json", f"{LMS}/fold_0/training_log_2026_11_27_10_00_00.txt",
        f"{LMS}/fold_0/training_log_2026_11_28_09_00_00.txt", f"{LMS}/fold_0/validation/summary.json",
        f"{NOVAL}/fold_0/debug.json", f"{NOVAL}/fold_0/training_log_2026_11_29_08_00_00.txt",
        f"{STOCK}/fold_0/debug.json", f"{STOCK}/fold_0/training_log_2026_11_26_08_00_00.txt",
        f"{STOCK}/fold_0/validation/summary.json"])
    assert out.count("copied") == 9
    src_log = results_root / "Dataset004_Hippocampus" / LMS / "fold_0" / "training_log_2026_11_27_10_00_00.txt"
    assert (arc / LMS / "fold_0" / src_log.name).read_text() == src_log.read_text()

    # the archive is a valid input for both this command and `benchmark results`
    js = tmp_path / "arc.json"
    assert cli(["benchmark", "curves", str(arc), "--json", str(js)]) == 0
    assert _by_trainer(json.loads(js.read_text())["runs"])["nnUNetTrainer_LightMedSeg_CPUBench_16x50"]["hours"] \
        == pytest.approx(2340 / 3600)
    capsys.readouterr()
    assert cli(["benchmark", "results", "--a", str(arc / STOCK), "--b", str(arc / LMS), "--bootstrap", "100"]) == 0
    assert "B-A" in capsys.readouterr().out

    # identical files: nothing to do
    assert cli(["benchmark", "curves", str(results_root), "--archive", str(arc)]) == 0
    out = capsys.readouterr().out
    assert out.count("unchanged") == 9 and "copied" not in out

    # a different file is refused (named, with the flag), and nothing else is copied either
    changed = arc / STOCK / "fold_0" / "validation" / "summary.json"
    changed.write_text("{}")
    (arc / NOVAL / "fold_0" / "debug.json").unlink()
    assert cli(["benchmark", "curves", str(results_root), "--archive", str(arc)]) == 2
    err = capsys.readouterr().err
    assert str(changed) in err and "--overwrite" in err
    assert changed.read_text() == "{}" and not (arc / NOVAL / "fold_0" / "debug.json").exists()

    assert cli(["benchmark", "curves", str(results_root), "--archive", str(arc), "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert out.count("overwritten") == 1 and out.count("copied") == 1
    assert json.loads(changed.read_text())["foreground_mean"]["Dice"] == pytest.approx(0.77)


# ---------------------------------------------------------------------------------------------- errors
def test_bad_paths_and_inputs_are_clear_errors(results_root, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert cli(["benchmark", "curves", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "does not exist" in err

    empty = tmp_path / "empty" / "fold_0"  # a fold_* folder without debug.json is not a run
    empty.mkdir(parents=True)
    (empty / "training_log_2026_01_01_00_00_00.txt").write_text(_epoch_lines(0, "[0.1]", 1.0))
    assert cli(["benchmark", "curves", str(results_root), str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'empty'} is not an nnU-Net fold folder and contains none" in err

    bad = tmp_path / "bad" / "Tr__P__C" / "fold_0"
    bad.mkdir(parents=True)
    (bad / "debug.json").write_text(json.dumps({"num_epochs": "5"}))
    assert cli(["benchmark", "curves", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad / "debug.json") in err and "num_iterations_per_epoch" in err

    existing = tmp_path / "mine.json"
    existing.write_text("keep")  # an existing --json/--plot file is kept without --overwrite
    assert cli(["benchmark", "curves", str(results_root), "--json", str(existing)]) == 2
    assert "--overwrite" in capsys.readouterr().err and existing.read_text() == "keep"
    assert cli(["benchmark", "curves", str(results_root), "--json", str(existing), "--overwrite"]) == 0
    assert json.loads(existing.read_text()) and not list(tmp_path.glob(".mine.json.*"))
    capsys.readouterr()
    assert cli(["benchmark", "curves", str(results_root), "--plot", str(tmp_path / "no" / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_several_named_reference_lines(results_root, tmp_path, capsys):
    """ACDC's figure carries two references (the paper's 91.24 and nnU-Net's 91.54), each with its source."""
    png, js = tmp_path / "acdc.png", tmp_path / "acdc.json"
    assert cli(["benchmark", "curves", str(results_root), "--plot", str(png), "--json", str(js),
                "--reference", "0.9124", "--reference-label", "LightMedSeg paper, ACDC",
                "--reference", "0.9154", "--reference-label", "nnU-Net 3d_fullres, ACDC 5-fold"]) == 0
    data = json.loads(js.read_text())
    assert data["references"] == [{"dice": 0.9124, "label": "LightMedSeg paper, ACDC"},
                                  {"dice": 0.9154, "label": "nnU-Net 3d_fullres, ACDC 5-fold"}]
    fig = C.plot_curves(C.load_runs([str(results_root)]), str(tmp_path / "b.png"),
                        references=[(0.9124, "paper"), (0.9154, "nnU-Net")])
    styles = sorted({(str(ln.get_linestyle()), float(ln.get_ydata()[0])) for ln in fig.axes[0].get_lines()
                     if ln.get_linestyle() in ("--", ":")})
    assert styles == [("--", 0.9124), (":", 0.9154)]
    capsys.readouterr()
    assert cli(["benchmark", "curves", str(results_root), "--reference", "0.9", "--reference", "0.8",
                "--reference-label", "only one"]) == 2
    assert "one --reference-label per --reference" in capsys.readouterr().err
