"""Peak-memory probe: ``python -m nnunetv2_lightmedseg.benchmark.memprobe SPEC.json``.

Runs in a fresh interpreter (started by :func:`.measure.measure_peak_memory`) so that one model's activations
and allocator caches never inflate another's figure. Builds the model exactly as the benchmark does, allocates
the input (and for ``train`` the trainer, optimiser state after one step, batch), then measures the RSS peak of
one forward (``forward``) or one training step (``train``) above the RSS just before it. For ``train`` a first
untimed step creates the optimiser's momentum buffers, so the figure is a steady-state step, as in training.
Prints one JSON line: ``{"peak_mem_mb": float, "method": str}``.
"""
from __future__ import annotations

import json
import sys

import torch

from ..utils.timing import forward_callable
from .entries import ModelEntry
from .measure import peak_rss_delta_mb
from .plans_setup import BenchmarkSetup
from .train_step import TrainStep


def main(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    torch.set_num_threads(int(spec["threads"]))
    setup = BenchmarkSetup.load(spec["setup"])
    entry = ModelEntry.from_json(spec["entry"])
    batch = int(spec["batch"] or setup.batch_size)
    if spec["mode"] == "forward":
        model = entry.build(setup, train=False)
        x = torch.randn(batch, setup.num_input_channels, *setup.patch_size)
        fn = forward_callable(model, x)
    elif spec["mode"] == "train":
        model = entry.build(setup, train=True).train()
        step = TrainStep(setup, entry, model, torch.device("cpu"))
        data = step.make_batch(batch)
        step(data)  # optimiser state exists from here on, as in any but the first iteration

        def fn():
            step(data)
    else:
        raise ValueError(f"unknown mode {spec['mode']!r}")
    mb, method = peak_rss_delta_mb(fn)
    print(json.dumps({"peak_mem_mb": mb, "method": method}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
