"""``scripts/gpu_check.py`` on a machine without CUDA: the network part runs on the CPU, the CUDA parts are
skipped with their reason, and everything lands in one JSON file (the GPU run itself needs a lent GPU)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.py"


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the script runs the full GPU check (minutes)")
def test_gpu_check_without_cuda_runs_the_cpu_part_and_skips_the_rest(tmp_path):
    out = tmp_path / "gpu.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--cpu-shape", "16", "16", "16",
                        "--threads", "1"], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["machine"]["cuda"] is False
    rows = {r["kind"]: r for r in res["parts"]["network"]["rows"]}
    assert set(rows) == {"stock", "lightmedseg"} and rows["lightmedseg"]["params"] == 470_667
    assert rows["lightmedseg"]["input_shape"] == [1, 4, 16, 16, 16] and rows["lightmedseg"]["latency_s"] > 0
    assert {k: v.get("skipped") for k, v in res["parts"].items() if k != "network"} == {
        "compile": "no CUDA device", "train": "no CUDA device", "ddp": "no CUDA device"}


def test_gpu_check_refuses_an_output_in_a_missing_folder(tmp_path):
    p = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "no" / "gpu.json")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "does not exist" in p.stderr
