"""Tests of the measurement tools (``nnunetv2_lightmedseg.benchmark``, ``lightmedseg benchmark``).

Fast: tiny shapes (1x32^3, 4-stage stock U-Net), one run each. Timings are only checked for being measured
(positive, finite): their values depend on the machine's load.
"""
from __future__ import annotations

import json
import math
import os
import re

import numpy as np
import pytest
import torch
from torch import nn

from nnunetv2_lightmedseg.benchmark import (count_macs, count_parameters, plans_for_shape, setup_from_dataset,
                                            stock_network_for_shape)
from nnunetv2_lightmedseg.benchmark import results as R
from nnunetv2_lightmedseg.benchmark.measure import component_flops
from nnunetv2_lightmedseg.utils.timing import interleaved_timings, summarize
from nnunetv2_lightmedseg.cli.main import main as cli
from nnunetv2_lightmedseg.network.variants import ANCHORS16, NO_LSPM

ROW_FIELDS = ("name", "params", "macs", "flops", "latency_s", "train_step_s", "peak_mem_mb", "latency_spread")


# ---------------------------------------------------------------------------------------------- counting
def test_conv3d_macs_equal_analytic_count():
    conv = nn.Conv3d(3, 5, kernel_size=3, padding=1)
    # every output voxel of every output channel: in_channels * k^3 multiply-accumulates (bias not counted)
    assert count_macs(conv, (2, 3, 8, 10, 12)) == 2 * 5 * 8 * 10 * 12 * 3 * 27
    tconv = nn.ConvTranspose3d(4, 2, kernel_size=2, stride=2)
    # transposed conv k2 s2: each input voxel scatters into 2^3 outputs for each (in, out) channel pair
    assert count_macs(tconv, (1, 4, 4, 4, 4)) == 4 * 2 * 64 * 8


def test_lightmedseg_macs_at_128_match_documented_budget():
    from nnunetv2_lightmedseg import LightMedSeg
    # documented in the network module: 7.77 GMACs = 15.55 GFLOPs at 1x4x128^3 (meta-device count)
    assert count_macs(LightMedSeg(4, 4), (1, 4, 128, 128, 128)) == pytest.approx(7.774e9, rel=1e-3)


def test_component_flops_sums_outermost_descendants():
    counts = {"Net": 100, "Net.a": 30, "Net.b.x": 20, "Net.b.x.y": 20, "Net.b.z": 10}
    comp = component_flops(counts, "Net", {"a": ["a"], "b": ["b"]})
    assert comp == {"a": 30, "b": 30, "(other)": 40}


def test_stock_network_for_128_is_nnunets_default_plain_conv_unet():
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    setup = plans_for_shape(4, 4, (128, 128, 128))
    arch = setup.plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert arch["n_stages"] == 6
    assert arch["features_per_stage"] == [32, 64, 128, 256, 320, 320]
    assert arch["strides"] == [[1, 1, 1]] + [[2, 2, 2]] * 5
    assert arch["kernel_sizes"] == [[3, 3, 3]] * 6
    net = stock_network_for_shape(4, 4, (128, 128, 128), deep_supervision=True)
    ref = PlainConvUNet(4, 6, (32, 64, 128, 256, 320, 320), nn.Conv3d, 3, (1, 2, 2, 2, 2, 2), (2,) * 6, 4, (2,) * 5,
                        True, nn.InstanceNorm3d, {"eps": 1e-5, "affine": True}, None, None, nn.LeakyReLU,
                        {"inplace": True}, deep_supervision=True)
    assert isinstance(net, PlainConvUNet)
    assert count_parameters(net) == count_parameters(ref)
    assert [type(m).__name__ for m in net.modules()] == [type(m).__name__ for m in ref.modules()]


def test_plans_for_shape_rejects_a_patch_nnunet_cannot_pool():
    with pytest.raises(ValueError, match="40 56 40"):
        plans_for_shape(1, 2, (40, 50, 40))
    with pytest.raises(ValueError, match="2 classes"):
        plans_for_shape(1, 1, (32, 32, 32))


def test_summarize_and_interleaving_order():
    s = summarize([3.0, 1.0, 2.0, 4.0])
    assert s["median"] == 2.5 and s["min"] == 1.0 and s["max"] == 4.0 and s["n"] == 4
    assert s["q25"] == pytest.approx(1.75) and s["q75"] == pytest.approx(3.25)
    order = []
    interleaved_timings({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, runs=2, warmup=1)
    assert order == ["a", "b", "a", "b", "a", "b"]


# ---------------------------------------------------------------------------------------------- benchmark network
NO_LSPM_ROW = "lightmedseg_" + NO_LSPM.name  # the benchmark's row of a variant


def test_variants_are_built_by_their_trainer_or_by_the_constructor_when_they_have_none():
    from nnunetv2_lightmedseg.benchmark import build_lightmedseg_network
    setup = plans_for_shape(1, 3, (32, 32, 32))
    net, built_by = build_lightmedseg_network(setup, ANCHORS16.name)
    assert built_by == f"{ANCHORS16.trainer}.build_network_architecture" and net.config["num_anchors"] == 16
    net, built_by = build_lightmedseg_network(setup, "anchors12")  # anchorsN: no trainer of its own, labelled
    assert built_by == "LightMedSeg(1, 3, num_anchors=12)" and net.config["num_anchors"] == 12
    with pytest.raises(ValueError, match="unknown LightMedSeg variant 'anchors'"):
        build_lightmedseg_network(setup, "anchors")


@pytest.fixture(scope="module")
def network_rows(tmp_path_factory):
    """One CLI run on a tiny shape: forward and training-step timings (the peak-memory subprocesses are measured
    in a slow test)."""
    out = tmp_path_factory.mktemp("bench")
    js, png = out / "rows.json", out / "rows.png"
    rc = cli(["benchmark", "network", "--in-channels", "1", "--shape", "32", "32", "32", "--num-classes", "3", "--batch", "2",
              "--variants", NO_LSPM.name, "--runs", "1", "--train-runs", "1", "--threads", "1", "--no-memory",
              "--json", str(js), "--plot", str(png)])
    assert rc == 0
    return json.loads(js.read_text()), png


def test_network_rows_have_positive_measurements(network_rows):
    rows, png = network_rows
    assert [r["name"] for r in rows] == ["nnunet", "lightmedseg", NO_LSPM_ROW]
    for r in rows:
        for f in ROW_FIELDS:
            assert f in r, f"{r['name']} lacks {f}"
        for f in ("params", "macs", "latency_s", "train_step_s"):
            assert r[f] > 0 and math.isfinite(r[f]), (r["name"], f, r[f])
        assert r["peak_mem_mb"] is None  # --no-memory
        assert r["flops"] == 2 * r["macs"]
        assert r["train_batch"] == 2 and r["input_shape"] == [1, 1, 32, 32, 32]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_network_rows_counts_match_direct_builds(network_rows):
    from nnunetv2_lightmedseg import LightMedSeg
    rows, _ = network_rows
    by = {r["name"]: r for r in rows}
    assert by["nnunet"]["params"] == count_parameters(stock_network_for_shape(1, 3, (32, 32, 32)))
    assert by["nnunet"]["macs"] == count_macs(stock_network_for_shape(1, 3, (32, 32, 32)), (1, 1, 32, 32, 32))
    lms = LightMedSeg(1, 3)
    assert by["lightmedseg"]["params"] == sum(lms.parameter_breakdown().values())
    assert by[NO_LSPM_ROW]["params"] == sum(LightMedSeg(1, 3, **NO_LSPM.options).parameter_breakdown().values())
    # LightMedSeg is the smaller network: the ratio is model / stock, below 1 (its definition: test_add_ratios)
    assert 0 < by["lightmedseg"]["params_vs_stock"] < 1 and by["lightmedseg"]["latency_speedup_vs_stock"] > 0


def test_add_ratios_model_over_stock_and_speedup_stock_over_model():
    from nnunetv2_lightmedseg.benchmark.network import add_ratios

    rows = [{"name": "nnunet", "params": 200, "macs": 1000, "latency_s": 3.0, "train_step_s": 6.0, "peak_mem_mb": 400.0},
            {"name": "lightmedseg", "params": 50, "macs": 100, "latency_s": 0.5, "train_step_s": 4.0, "peak_mem_mb": None}]
    add_ratios(rows)
    lms = rows[1]
    assert lms["params_vs_stock"] == 0.25 and lms["macs_vs_stock"] == 0.1
    assert lms["latency_speedup_vs_stock"] == 6.0 and lms["train_step_speedup_vs_stock"] == 1.5
    assert "peak_mem_mb_vs_stock" not in lms  # not measured: no ratio
    assert rows[0]["params_vs_stock"] == 1.0 and rows[0]["latency_speedup_vs_stock"] == 1.0
    without_stock = [{"name": "lightmedseg", "params": 50}]
    add_ratios(without_stock)
    assert without_stock == [{"name": "lightmedseg", "params": 50}]


def test_tune_threads_times_each_network_at_its_chosen_thread_count(tmp_path, capsys):
    """--tune-threads: every network's forwards and training steps under their own thread tuners
    (cpu/threads.py), the first choice made in untimed calls at every candidate count, recorded in the
    rows and the table."""
    import torch
    js = tmp_path / "rows.json"
    assert cli(["benchmark", "network", "--in-channels", "1", "--shape", "32", "32", "32", "--num-classes", "3",
                "--batch", "2", "--runs", "1", "--train-runs", "2", "--threads", "2", "--tune-threads",
                "--no-memory", "--json", str(js)]) == 0
    rows = json.loads(js.read_text())
    for r in rows:
        assert len(r["train_step_runs_s"]) == 2 and len(r["latency_runs_s"]) == 1
        for what in ("forward", "train"):
            assert r[f"{what}_threads"] in (1, 2)
            first = r[f"{what}_thread_choices"][0]
            assert first["reason"] == "first choice" and set(first["mean_s"]) == {"2", "1"}
            assert first["threads"] == r[f"{what}_threads"] or len(r[f"{what}_thread_choices"]) > 1
    out = capsys.readouterr().out
    assert "threads chosen from timed calls (--tune-threads" in out
    assert torch.get_num_threads() == 2  # the benchmark's own count again after the training steps


@pytest.mark.slow
def test_peak_memory_subprocesses_measure_forward_and_training_step(tmp_path):
    js = tmp_path / "rows.json"
    assert cli(["benchmark", "network", "--in-channels", "1", "--shape", "32", "32", "32", "--num-classes", "3",
                "--batch", "2", "--runs", "1", "--train-runs", "1", "--threads", "1", "--json", str(js)]) == 0
    for r in json.loads(js.read_text()):
        for f in ("peak_mem_mb", "train_peak_mem_mb"):
            assert r[f] > 0 and math.isfinite(r[f]), (r["name"], f, r[f])
        assert r["peak_mem_method"]


def test_network_rows_use_each_trainers_loss(network_rows):
    rows, _ = network_rows
    by = {r["name"]: r for r in rows}
    # stock: nnUNetTrainer's DC_and_CE_loss wrapped for deep supervision, SGD; LightMedSeg: its trainer's loss
    assert by["nnunet"]["loss"].startswith("DeepSupervisionWrapper(DC_and_CE_loss)")
    assert by["nnunet"]["optimizer"] == "SGD"
    assert "BoundaryCompoundLoss" in by["lightmedseg"]["loss"]
    assert NO_LSPM.trainer in by[NO_LSPM_ROW]["built_by"]
    assert by["lightmedseg"]["memory_format"] == "channels_last_3d"
    assert by["nnunet"]["memory_format"].startswith("contiguous")


def test_benchmark_network_from_preprocessed_plans(tmp_path, monkeypatch, capsys):
    setup = plans_for_shape(1, 2, (32, 32, 32), batch_size=3)
    folder = tmp_path / "Dataset997_BenchTest"
    folder.mkdir()
    plans = dict(setup.plans, dataset_name=folder.name)
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(setup.dataset_json))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    loaded = setup_from_dataset("997", "3d_fullres")
    assert loaded.patch_size == (32, 32, 32) and loaded.batch_size == 3 and loaded.num_outputs == 2
    js = tmp_path / "rows.json"
    assert cli(["benchmark", "network", "-d", "997", "-c", "3d_fullres", "--runs", "1", "--no-train",
                "--no-memory", "--threads", "1", "--json", str(js)]) == 0
    rows = json.loads(js.read_text())
    assert rows[0]["params"] == count_parameters(stock_network_for_shape(1, 2, (32, 32, 32)))
    with pytest.raises(ValueError, match="not in"):
        setup_from_dataset("997", "2d")


def test_training_step_batch_is_real_patches_of_the_preprocessed_cases(monkeypatch):
    """With a preprocessed dataset the training-step benchmark trains both networks on the same real patches
    (LightMedSeg's boundary band costs what it costs in training); with a shape alone, on random labels."""
    from helpers import TINY_ID, TINY_NAME, tiny_preprocessed_dataset
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    from nnunetv2_lightmedseg.benchmark.entries import default_entries
    from nnunetv2_lightmedseg.benchmark.train_step import TrainStep, _centre

    base = tiny_preprocessed_dataset()
    monkeypatch.setenv("nnUNet_preprocessed", str(base / "preprocessed"))
    setup = setup_from_dataset(str(TINY_ID), "3d_fullres")
    assert setup.data_folder == str(base / "preprocessed" / TINY_NAME / "nnUNetPlans_3d_fullres")
    batches = {}
    for e in default_entries([], include_stock=True):
        step = TrainStep(setup, e, e.build(setup, train=True), torch.device("cpu"))
        batches[e.name] = step.make_batch(3)
        assert "real patches of 3 preprocessed cases" in step.batch_source
    a, b = batches.values()
    seg = a["target"][0] if isinstance(a["target"], list) else a["target"]
    seg_b = b["target"][0] if isinstance(b["target"], list) else b["target"]
    torch.testing.assert_close(a["data"], b["data"], rtol=0, atol=0)
    torch.testing.assert_close(seg, seg_b, rtol=0, atol=0)
    assert seg.shape == (3, 1, *setup.patch_size) and set(seg.unique().tolist()) <= {0.0, 1.0, 2.0}
    # each label patch is the centre of one of the cases (not noise: random labels would match none)
    ds = infer_dataset_class(setup.data_folder)(setup.data_folder)
    centres = [_centre(np.asarray(ds.load_case(k)[1]).astype(np.float32).clip(min=0), setup.patch_size)
               for k in ds.identifiers]
    for i in range(3):
        assert any(np.array_equal(seg[i].numpy(), c) for c in centres)
    # no preprocessed data: random labels, and the step says so
    shape_setup = plans_for_shape(1, 3, (32, 32, 32), batch_size=2)
    e = default_entries([], include_stock=False)[0]
    step = TrainStep(shape_setup, e, e.build(shape_setup, train=True), torch.device("cpu"))
    step.make_batch(2)
    assert step.batch_source.startswith("random")


def test_centre_crops_and_pads_per_axis():
    from nnunetv2_lightmedseg.benchmark.train_step import _centre
    a = np.arange(2 * 5 * 3 * 4, dtype=np.float32).reshape(2, 5, 3, 4)
    out = _centre(a, (3, 5, 4))
    assert out.shape == (2, 3, 5, 4)
    np.testing.assert_array_equal(out[:, :, 1:4], a[:, 1:4])  # crop 5 -> 3 (centre), pad 3 -> 5 (one each side)
    assert (out[:, :, 0] == 0).all() and (out[:, :, 4] == 0).all()


def test_benchmark_network_bad_input_is_a_clear_error(capsys):
    assert cli(["benchmark", "network", "--in-channels", "1", "--shape", "32", "32", "32", "--variants", "bogus"]) == 2
    assert "unknown LightMedSeg variant 'bogus'" in capsys.readouterr().err
    assert cli(["benchmark", "network", "--in-channels", "1", "--shape", "40", "50", "40"]) == 2
    assert "40 56 40" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- benchmark results
def _write_summary(path, dice: dict):
    """An nnU-Net summary.json (compute_metrics_on_folder's format) from ``{case: {label: Dice}}``."""
    labels = sorted({lab for d in dice.values() for lab in d})
    per_case = [{"reference_file": f"/ref/{c}.nii.gz", "prediction_file": f"/pred/{c}.nii.gz",
                 "metrics": {lab: {"Dice": v, "IoU": v / (2 - v) if v == v else v} for lab, v in d.items()}}
                for c, d in dice.items()]
    mean = {lab: {"Dice": float(np.nanmean([d[lab] for d in dice.values()]))} for lab in labels}
    fg = {"Dice": float(np.mean([mean[lab]["Dice"] for lab in labels]))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"metric_per_case": per_case, "mean": mean, "foreground_mean": fg}))


@pytest.fixture
def two_trainers(tmp_path):
    """Trainer folders A and B, folds 0 and 1, 12 cases each; B = A + 0.03 + N(0, 0.01) on label 1 and
    A + 0.01 + noise on label 2; case 3 of fold 0 has label 2 absent (NaN) in both."""
    rng = np.random.default_rng(1)
    truth = {}
    for t in ("A", "B"):
        (tmp_path / t).mkdir()
    for fold in (0, 1):
        da, db = {}, {}
        for i in range(12):
            c = f"case_{fold}_{i:02d}"
            a1, a2 = rng.uniform(0.6, 0.85, 2)
            da[c] = {"1": a1, "2": a2}
            db[c] = {"1": a1 + 0.03 + rng.normal(0, 0.01), "2": a2 + 0.01 + rng.normal(0, 0.01)}
        if fold == 0:
            da["case_0_03"]["2"] = db["case_0_03"]["2"] = float("nan")
        for t, d in (("A", da), ("B", db)):
            _write_summary(tmp_path / t / f"fold_{fold}" / "validation" / "summary.json", d)
        truth[fold] = (da, db)
    for t, secs in (("A", [100.0, 102.5, 98.0]), ("B", [20.0, 21.5, 19.0])):
        log = tmp_path / t / "fold_0" / "training_log_2026_11_27_10_00_00.txt"
        log.write_text("".join(f"2026-11-27 10:0{i}:00.000000: Epoch {i}\n"
                               f"2026-11-27 10:0{i}:00.000000: Current learning rate: 0.01\n"
                               f"2026-11-27 10:0{i}:00.000000: Epoch time: {s} s\n" for i, s in enumerate(secs)))
    return tmp_path, truth


def test_results_comparison_means_differences_and_ci(two_trainers):
    root, truth = two_trainers
    folds = R.fold_names(str(root / "A"), None)
    assert folds == ["fold_0", "fold_1"]
    sa, ta = R.load_trainer_folder(str(root / "A"), folds)
    sb, tb = R.load_trainer_folder(str(root / "B"), folds)
    cmp = R.compare_summaries(sa, sb)
    da0, db0 = truth[0]
    assert cmp["folds"]["fold_0"]["a"]["1"] == pytest.approx(np.mean([d["1"] for d in da0.values()]))
    assert cmp["folds"]["fold_0"]["b"]["2"] == pytest.approx(np.nanmean([d["2"] for d in db0.values()]))
    pairs = [(truth[f][0][c], truth[f][1][c]) for f in (0, 1) for c in truth[f][0]]
    d1 = np.array([b["1"] - a["1"] for a, b in pairs])
    o1 = cmp["overall"]["1"]
    assert o1["n"] == 24 and o1["mean_diff"] == pytest.approx(d1.mean())
    assert o1["ci95"][0] < 0.03 < o1["ci95"][1]  # the true shift lies in the bootstrap interval
    assert o1["ci95"][0] > 0  # and the interval excludes "no difference"
    assert o1["b_better"] == 24 and o1["sign_test_p"] == pytest.approx(2 * 0.5 ** 24)
    assert o1["wilcoxon_p"] < 1e-4
    o2 = cmp["overall"]["2"]
    assert o2["n"] == 23  # NaN pair (label absent) dropped
    assert o2["ci95"][0] < 0.01 < o2["ci95"][1]
    fg = [np.nanmean([b["1"], b["2"]]) - np.nanmean([a["1"], a["2"]]) for a, b in pairs]
    assert cmp["overall"]["fg_mean"]["mean_diff"] == pytest.approx(np.mean(fg))
    assert R.compare_summaries(sa, sb)["overall"]["1"]["ci95"] == o1["ci95"]  # seeded: repeatable
    assert ta["fold_0"] == [100.0, 102.5, 98.0] and tb["fold_1"] == []
    assert R.epoch_time_stats(tb)["median_s"] == 20.0


def test_bootstrap_ci_covers_true_mean_of_known_distribution():
    rng = np.random.default_rng(0)
    hits = sum(lo < 0.02 < hi for lo, hi in
               (R.paired_bootstrap_ci(rng.normal(0.02, 0.05, 60), n_boot=2000, seed=s) for s in range(40)))
    assert hits >= 33  # nominal 95%: 38 of 40 expected; a broken interval would miss far more often


def test_sign_test_is_exact_binomial():
    assert R.sign_test([1, 1, 1, -1, 0]) == pytest.approx(0.625)  # 3 of 4 nonzero positive: 2 * 5/16
    assert R.sign_test([0, 0]) == 1.0


def test_benchmark_results_cli_json_plot_and_dataset_resolution(two_trainers, tmp_path, monkeypatch, capsys):
    root, _ = two_trainers
    js, png = tmp_path / "cmp.json", tmp_path / "cmp.png"
    assert cli(["benchmark", "results", "--a", str(root / "A"), "--b", str(root / "B"), "--folds", "0", "1",
                "--json", str(js), "--plot", str(png)]) == 0
    out = json.loads(js.read_text())
    assert out["folds"] == ["fold_0", "fold_1"]
    assert out["validation"]["overall"]["1"]["mean_diff"] > 0
    assert out["a"]["epoch_time"]["n_epochs"] == 3
    assert png.read_bytes()[:4] == b"\x89PNG"
    text = capsys.readouterr().out
    assert "B/A median epoch time: 0.200" in text
    assert "do not contain training randomness" in text and "training randomness" in out["method"]["scope"]
    # -d/-c/-tr resolve nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIG
    res = tmp_path / "results"
    ds = res / "Dataset996_Cmp"
    ds.mkdir(parents=True)
    os.symlink(root / "A", ds / "TrA__nnUNetPlans__3d_fullres")
    os.symlink(root / "B", ds / "TrB__nnUNetPlans__3d_fullres")
    monkeypatch.setenv("nnUNet_results", str(res))
    assert cli(["benchmark", "results", "-d", "Dataset996_Cmp", "-c", "3d_fullres", "-tr", "TrA", "-tr", "TrB",
                "--folds", "0"]) == 0
    assert "fold_0" in capsys.readouterr().out
    assert cli(["benchmark", "results", "--a", str(root / "A")]) == 2
    assert "--b" in capsys.readouterr().err
    assert cli(["benchmark", "results", "--a", str(root / "A"), "--b", str(root / "B"), "--folds", "7"]) == 2
    assert "summary.json" in capsys.readouterr().err


def test_benchmark_results_with_region_keys(tmp_path, capsys):
    """Region-based models (BraTS-like): nnU-Net keys the regions "(1, 2, 3)", "(2, 3)", "(3,)" in summary.json."""
    regions = ("(1, 2, 3)", "(2, 3)", "(3,)")
    for t, shift in (("A", 0.0), ("B", 0.05)):
        _write_summary(tmp_path / t / "fold_0" / "validation" / "summary.json",
                       {f"case_{i}": {r: 0.5 + 0.1 * k + 0.01 * i + shift for k, r in enumerate(regions)}
                        for i in range(6)})
    js = tmp_path / "cmp.json"
    assert cli(["benchmark", "results", "--a", str(tmp_path / "A"), "--b", str(tmp_path / "B"), "--json", str(js),
                "--plot", str(tmp_path / "cmp.png")]) == 0
    out = capsys.readouterr().out
    for r in regions:
        assert re.search(rf"^  fold_0\s+{re.escape(r)}\s+0\.\d{{4}}\s+0\.\d{{4}}\s+\+0\.0500", out, re.M), out
        assert re.search(rf"^  {re.escape(r)}\s+6\s", out, re.M), out
    overall = json.loads(js.read_text())["validation"]["overall"]
    assert set(overall) == {*regions, "fg_mean"}
    assert overall["(2, 3)"]["mean_a"] == pytest.approx(np.mean([0.6 + 0.01 * i for i in range(6)]))
    assert overall["fg_mean"]["mean_diff"] == pytest.approx(0.05)


@pytest.mark.slow
def test_benchmark_results_predicts_and_evaluates_a_test_folder(tmp_path, two_trainers):
    """--test-images/--test-labels: nnU-Net's predictor and evaluation on a (tiny, synthetic) labelled folder,
    with two 'trained' folders whose checkpoints are stock networks with different random weights."""
    import SimpleITK as sitk

    root, _ = two_trainers
    setup = plans_for_shape(1, 3, (32, 32, 32))
    imgs, labs = tmp_path / "imagesTs", tmp_path / "labelsTs"
    imgs.mkdir()
    labs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        seg = np.zeros((32, 32, 32), np.uint8)  # one 32^3 tile per case
        seg[8:20, 8:20, 8:20] = 1
        seg[20:30, 10:24, 12:28] = 2
        img = (seg * 1.0 + rng.normal(0, 0.3, seg.shape)).astype(np.float32)
        sitk.WriteImage(sitk.GetImageFromArray(img), str(imgs / f"case_{i:03d}_0000.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(seg), str(labs / f"case_{i:03d}.nii.gz"))
    # the plans of a trained model carry the dataset's intensity statistics (ZScoreNormalization ignores them,
    # but nnU-Net's preprocessor looks them up per channel)
    plans = dict(setup.plans, foreground_intensity_properties_per_channel={"0": {
        "max": 3.0, "mean": 1.0, "median": 1.0, "min": -1.0, "percentile_00_5": -0.5, "percentile_99_5": 2.5,
        "std": 0.5}})
    for t, seed in (("A", 0), ("B", 1)):
        folder = root / t
        (folder / "plans.json").write_text(json.dumps(plans))
        (folder / "dataset.json").write_text(json.dumps(setup.dataset_json))
        torch.manual_seed(seed)
        net = stock_network_for_shape(1, 3, (32, 32, 32), deep_supervision=False)
        torch.save({"network_weights": net.state_dict(), "trainer_name": "nnUNetTrainer",
                    "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": None},
                   folder / "fold_0" / "checkpoint_final.pth")
    js = tmp_path / "cmp.json"
    assert cli(["benchmark", "results", "--a", str(root / "A"), "--b", str(root / "B"), "--folds", "0",
                "--test-images", str(imgs), "--test-labels", str(labs), "--test-output", str(tmp_path / "pred"),
                "--disable-tta", "--json", str(js)]) == 0
    test = json.loads(js.read_text())["test"]
    assert test["overall"]["1"]["n"] == 2
    assert (tmp_path / "pred" / "A" / "case_000.nii.gz").is_file()
    assert (tmp_path / "pred" / "B" / "summary.json").is_file()
