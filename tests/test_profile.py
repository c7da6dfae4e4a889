"""``lightmedseg profile``: the model card on a small input (fast), with and without the stock comparison."""
from __future__ import annotations

import json

import pytest

from nnunetv2_lightmedseg import LightMedSeg
from nnunetv2_lightmedseg.benchmark import count_macs, count_parameters, stock_network_for_shape
from nnunetv2_lightmedseg.cli.main import main as cli
from nnunetv2_lightmedseg.network.variants import STANDARD_CONV


def test_profile_prints_per_module_table_and_writes_json(tmp_path, capsys):
    js = tmp_path / "card.json"
    # --no-memory: the peak-memory subprocesses are measured in test_benchmark's slow test
    assert cli(["profile", "--in-channels", "1", "--num-classes", "3", "--shape", "32", "32", "32", "--runs", "1",
                "--threads", "1", "--vs-nnunet", "--no-memory", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    net = LightMedSeg(1, 3)
    breakdown = net.parameter_breakdown()
    for name, n in breakdown.items():  # one table line per paper component with its parameter count
        assert any(line.split()[:2] == [name, f"{n:,}"] for line in out.splitlines()), name
    assert "FLOPs = 2 x MACs" in out and "speed ratio nnunet / lightmedseg" in out
    card = json.loads(js.read_text())
    mc = card["model_card"]
    assert mc["params"] == sum(breakdown.values()) == count_parameters(net)
    assert mc["params_per_module"] == breakdown
    assert mc["macs"] == count_macs(net, (1, 1, 32, 32, 32)) and mc["flops"] == 2 * mc["macs"]
    # per-module MACs are each module's own cost: counted alone on the input it sees inside the network (stem
    # and anchor detector: the 32^3 image; LSPM and head: the stem's 8 x 16^3 grid; bottleneck: 128 x 2^3)
    per = mc["macs_per_module"]
    assert per["stem"] == count_macs(net.stem, (1, 1, 32, 32, 32))
    assert per["anchor_detector"] == count_macs(net.anchor_detector, (1, 1, 32, 32, 32))
    assert per["lspm"] == count_macs(net.lspm, (1, 8, 16, 16, 16))
    assert per["head"] == count_macs(net.head, (1, 8, 16, 16, 16))
    assert per["bottleneck"] == count_macs(net.bottleneck, (1, 128, 2, 2, 2))
    assert all(per[f"encoder_stage{i}"] > 0 and per[f"decoder_stage{i}"] > 0 for i in range(1, 5))
    assert 0 <= per["(other)"] <= 0.01 * mc["macs"]  # functional ops in forward (pooling, resampling)
    rows = {r["name"]: r for r in card["rows"]}
    assert set(rows) == {"nnunet", "lightmedseg"}
    assert rows["nnunet"]["params"] == count_parameters(stock_network_for_shape(1, 3, (32, 32, 32)))
    for r in rows.values():
        assert r["latency_s"] > 0 and r["peak_mem_mb"] is None and r["threads"] == 1
    assert rows["lightmedseg"]["latency_speedup_vs_stock"] > 0  # its definition: test_benchmark's add_ratios test


def test_profile_prints_the_load_and_says_what_to_do_when_busy(monkeypatch, capsys):
    from nnunetv2_lightmedseg.cli import profile

    assert profile.busy_note([0.9, 0.5, 0.2], cores=2) is None and profile.busy_note([], cores=2) is None
    note = profile.busy_note([1.0, 0.5, 0.2], cores=2)
    assert "busy (load average 1.0 on 2 cores)" in note
    assert "--tune-threads" in note and "LIGHTMEDSEG_CPU_THREADS" in note
    args = ["profile", "--in-channels", "1", "--num-classes", "2", "--shape", "16", "16", "16", "--runs", "1",
            "--warmup", "0", "--threads", "1", "--no-memory"]
    for load, busy in (([7.5, 6.0, 5.0], True), ([0.0, 0.0, 0.0], False)):
        monkeypatch.setattr(profile, "load_average", lambda: load)
        monkeypatch.setattr(profile.os, "cpu_count", lambda: 2)
        assert cli(args) == 0
        out = capsys.readouterr().out
        assert f"load average (1/5/15 min) {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on 2 cores" in out
        assert ("note: the machine is busy (load average 7.5 on 2 cores)" in out) is busy


def test_profile_variant_any_shape_without_stock(tmp_path):
    js = tmp_path / "card.json"
    # 40x50x40 is no nnU-Net patch (stock cannot pool it) but LightMedSeg takes any size >= 16
    assert cli(["profile", "--in-channels", "2", "--num-classes", "2", "--shape", "40", "50", "40",
                "--variant", STANDARD_CONV.name, "--runs", "1", "--no-memory", "--json", str(js)]) == 0
    card = json.loads(js.read_text())
    assert card["model_card"]["params"] == count_parameters(LightMedSeg(2, 2, **STANDARD_CONV.options))
    assert [r["name"] for r in card["rows"]] == ["lightmedseg_" + STANDARD_CONV.name]


def test_profile_bad_arguments(capsys):
    assert cli(["profile", "--variant", "nope"]) == 2
    assert "unknown LightMedSeg variant" in capsys.readouterr().err
    assert cli(["profile", "--shape", "8", "32", "32"]) == 2
    assert ">= 16" in capsys.readouterr().err
    assert cli(["profile", "--shape", "40", "50", "40", "--vs-nnunet"]) == 2
    assert "40 56 40" in capsys.readouterr().err
