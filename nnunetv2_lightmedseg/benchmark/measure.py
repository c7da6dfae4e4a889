"""Measurement primitives shared by ``lightmedseg profile`` and ``lightmedseg benchmark network``.

Conventions (printed with every table):

* MACs/FLOPs: ``torch.utils.flop_counter.FlopCounterMode``, which counts convolutions (incl. transposed),
  matmuls and linear layers as ``2 x multiply-accumulates`` and ignores element-wise ops, norms, pooling and
  activations. We report ``MACs = counted FLOPs / 2`` and ``FLOPs = 2 x MACs``. Counting runs on the ``meta``
  device (shapes only, no arithmetic), falling back to a real forward when a model cannot run on ``meta``.
* CPU latency: eval mode, ``torch.no_grad()``, fp32, ``torch.set_num_threads(T)``, warm-up runs first, then
  ``runs`` timed forwards per model, *interleaved* across models (A, B, A, B, ...) so that noise from other
  processes on a shared machine hits every model alike. Median and spread (IQR, min, max); the timing itself is
  :mod:`nnunetv2_lightmedseg.utils.timing` (shared with ``lightmedseg export --benchmark``).
* CUDA latency: fp16 autocast (nnU-Net's predictor and trainer use AMP on CUDA), ``torch.cuda.synchronize()``
  around each run, median.
* Peak memory: CPU -- a fresh subprocess per model (:mod:`.memprobe`) reports the resident-set high-water mark
  during the measured call minus the RSS just before it (model and input already resident); CUDA --
  ``torch.cuda.max_memory_allocated`` minus the allocation before the call.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..utils.process import run_command

FLOP_CONVENTION = ("MACs/FLOPs counted by torch.utils.flop_counter.FlopCounterMode (convolutions, transposed "
                   "convolutions, matmuls; element-wise ops, norms and pooling are not counted); FLOPs = 2 x MACs")


# ---------------------------------------------------------------------------------------------- counts
def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_flops(model: nn.Module, input_shape: Sequence[int], per_module: bool = False
                ) -> Tuple[int, Dict[str, int]]:
    """FLOPs of one forward of ``model`` on an input of ``input_shape`` (FlopCounterMode convention).

    Returns ``(total_flops, {module_fqn: inclusive flops})``. Runs on ``meta`` tensors (no arithmetic, no memory);
    the model passed in is not modified.
    """
    from torch.utils.flop_counter import FlopCounterMode

    def run(device: str) -> Tuple[int, Dict[str, int]]:
        m = copy.deepcopy(model).to(device).eval()
        x = torch.zeros(tuple(input_shape), device=device)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            m(x)
        counts = {k: int(sum(v.values())) for k, v in fc.get_flop_counts().items()}
        return int(fc.get_total_flops()), counts

    try:
        return run("meta")
    except (NotImplementedError, RuntimeError):  # a data-dependent op that meta tensors cannot run
        return run("cpu")


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward: counted FLOPs / 2 (see :data:`FLOP_CONVENTION`)."""
    return count_flops(model, input_shape)[0] // 2


def component_flops(counts: Dict[str, int], root: str, components: Dict[str, Sequence[str]]) -> Dict[str, int]:
    """Sum FlopCounterMode's inclusive per-module counts into named components.

    ``components`` maps a display name to module paths relative to the model (e.g. ``"encoder_stage1":
    ["encoder.0"]``). A module whose ``forward`` is not called (e.g. a container whose children are called from the
    parent's forward) has no entry of its own: then its outermost recorded descendants are summed, never a module
    and its descendant together. What no component claims is returned as ``"(other)"``.
    """
    out: Dict[str, int] = {}
    for name, paths in components.items():
        total = 0
        for p in paths:
            full = f"{root}.{p}"
            if full in counts:
                total += counts[full]
                continue
            desc = [k for k in counts if k.startswith(full + ".")]
            outer = [k for k in desc if not any(k != c and k.startswith(c + ".") for c in desc)]
            total += sum(counts[k] for k in outer)
        out[name] = total
    grand = counts.get(root, counts.get("Global", 0))
    out["(other)"] = grand - sum(out.values())
    return out


def lightmedseg_components(model: nn.Module) -> Dict[str, List[str]]:
    """Module paths of each entry of ``LightMedSeg.parameter_breakdown()`` (same names, same order)."""
    comp: Dict[str, List[str]] = {}
    for key in model.parameter_breakdown():
        if key.startswith("encoder_stage"):
            comp[key] = [f"encoder.{int(key[13:]) - 1}"]
        elif key.startswith("decoder_stage"):
            comp[key] = [f"decoder.{int(key[13:]) - 1}"]
        else:
            comp[key] = [key]
    return comp


def cuda_available() -> bool:
    return torch.cuda.is_available()


# ---------------------------------------------------------------------------------------------- memory
def _read_status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (Linux >= 4.0: ``echo 5 > /proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_delta_mb(fn: Callable[[], object]) -> Tuple[float, str]:
    """Peak resident memory of ``fn()`` above the RSS before it, in MiB, measured in *this* process.

    With a resettable high-water mark (Linux) the peak is that of ``fn`` alone; otherwise ``ru_maxrss`` is the
    process's lifetime peak, which is why callers run this in a fresh subprocess (:func:`measure_peak_memory`).
    """
    import gc
    import resource
    gc.collect()
    before = _read_status_kb("VmRSS")
    if before is not None and _reset_peak_rss():
        fn()
        peak = _read_status_kb("VmHWM")
        return (peak - before) / 1024.0, "VmHWM-VmRSS (reset high-water mark)"
    before_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    before = before if before is not None else before_max
    fn()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(0.0, (peak - before) / 1024.0), "ru_maxrss-RSS (process lifetime peak)"


def measure_peak_memory(setup_path: str, entry_json: dict, mode: str, threads: int,
                        batch_size: Optional[int] = None, timeout: float = 1800) -> dict:
    """Run :mod:`nnunetv2_lightmedseg.benchmark.memprobe` in a fresh interpreter for one model and one mode
    (``forward``: eval/no_grad fp32 forward of batch ``batch_size``; ``train``: one nnU-Net train step) and return
    ``{"peak_mem_mb": ..., "method": ...}``. A fresh process per model keeps allocator caches of the other
    models out of the figure."""
    spec = {"setup": setup_path, "entry": entry_json, "mode": mode, "threads": threads, "batch": batch_size}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        spec_path = f.name
    try:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        proc = run_command([sys.executable, "-m", "nnunetv2_lightmedseg.benchmark.memprobe", spec_path], env,
                           merge_stderr=False, timeout=timeout)
    finally:
        os.unlink(spec_path)
    if proc.returncode != 0:
        why = f"timed out after {timeout:g} s" if proc.timed_out else "failed"
        raise RuntimeError(f"memory probe for {entry_json['name']} ({mode}) {why}:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
