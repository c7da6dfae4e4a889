"""CPU latency of the exported ONNX model (onnxruntime) vs PyTorch, for a freshly built LightMedSeg.

    python -m nnunetv2_lightmedseg.deploy.bench_export --channels 4 --classes 4 --size 128 --threads 2

Latency does not depend on the weights, so no trained model is needed (``lightmedseg export --benchmark``
times a trained model's export the same way). Both run single-batch inference with ``--threads`` intra-op
threads: PyTorch in eval/no_grad with channels_last_3d input (the network's CPU format), onnxruntime with
the CPU execution provider. The ONNX model is exported at a smaller size (64^3) on purpose: it is size-agnostic
(see :mod:`.export`), and timing it at 128^3 shows that too. Reported: median of ``--repeats`` runs after one
warm-up, and the parity at the timed size.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import torch

from ..network import LightMedSeg
from .export import ExportedRunner, benchmark_latency, check_parity, export_onnx


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    net = LightMedSeg(a.channels, a.classes).eval()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "lightmedseg.onnx"
        export_onnx(net, torch.randn(1, a.channels, 64, 64, 64), path)
        runner = ExportedRunner(path, "onnx", threads=a.threads)
        shape = (1, a.channels, a.size, a.size, a.size)
        parity = check_parity(net, runner, a.channels, [shape[2:]], batch_sizes=(1,))[0]
        res = benchmark_latency(net, runner, shape, threads=a.threads, repeats=a.repeats)
    import onnxruntime
    out = {"shape": list(shape), "threads": a.threads, "repeats": a.repeats, "pytorch_ms": res["pytorch_s"] * 1e3,
           "onnxruntime_ms": res["exported_s"] * 1e3, "max_abs_diff": parity["max_abs_diff"],
           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "cpu": platform.processor() or
           platform.machine()}
    print(f"LightMedSeg({a.channels}, {a.classes}) {tuple(shape)}, {a.threads} threads, median of {a.repeats}: "
          f"PyTorch {out['pytorch_ms']:.0f} ms | onnxruntime {out['onnxruntime_ms']:.0f} ms | "
          f"max |diff| {out['max_abs_diff']:.2g}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
