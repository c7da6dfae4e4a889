"""Timing: callables run interleaved (A, B, A, B, ...) and summarised by median and spread.

Used by ``lightmedseg profile`` / ``benchmark network`` (:mod:`nnunetv2_lightmedseg.benchmark.network`) and by
``lightmedseg export --benchmark`` (:func:`nnunetv2_lightmedseg.deploy.export.benchmark_latency`).
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence


def summarize(times: Sequence[float]) -> dict:
    """Median, IQR (25th-75th percentile), min, max and n of a list of seconds."""
    import numpy as np

    a = np.asarray(times, dtype=float)
    if a.size == 0:
        return {"median": None, "q25": None, "q75": None, "min": None, "max": None, "n": 0}
    return {"median": float(np.median(a)), "q25": float(np.percentile(a, 25)),
            "q75": float(np.percentile(a, 75)), "min": float(a.min()), "max": float(a.max()), "n": int(a.size)}


def interleaved_timings(calls: Dict[str, Callable[[], object]], runs: int, warmup: int = 1,
                        sync: Optional[Callable[[], None]] = None,
                        progress: Optional[Callable[[str], None]] = None) -> Dict[str, List[float]]:
    """Time each callable ``runs`` times after ``warmup`` untimed calls, in the order A, B, C, A, B, C, ...

    Interleaving spreads background load over all models; ``sync`` (e.g. ``torch.cuda.synchronize``) is called
    before starting and before stopping each clock.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    for _ in range(warmup):
        for name, fn in calls.items():
            if progress:
                progress(f"warm-up {name}")
            fn()
    times: Dict[str, List[float]] = {k: [] for k in calls}
    for r in range(runs):
        for name, fn in calls.items():
            if sync:
                sync()
            t0 = time.perf_counter()
            fn()
            if sync:
                sync()
            times[name].append(time.perf_counter() - t0)
            if progress:
                progress(f"run {r + 1}/{runs} {name}: {times[name][-1]:.3f} s")
    return times


def forward_callable(model, x, amp: bool = False) -> Callable[[], object]:
    """Inference forward as nnU-Net's predictor runs it: eval, no_grad (fp16 autocast on CUDA when ``amp``)."""
    import torch

    model.eval()

    def fn():
        with torch.no_grad():
            if amp:
                with torch.autocast(x.device.type, dtype=torch.float16):
                    return model(x)
            return model(x)
    return fn
