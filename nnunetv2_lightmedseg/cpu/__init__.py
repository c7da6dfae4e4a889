"""CPU runtime tuning shared by the trainer, the predictor set-up, the benchmarks and export.

* :mod:`.allocator` -- glibc keeps freed activations for reuse (one call per process);
* :mod:`.threads` -- the CPU thread count chosen from timed training steps / inference forwards (shared cores).

:func:`setup_cpu_predictor` is the one call that prepares a network for CPU inference in a CPU-only process (what
``nnUNetv2_predict`` builds there); :func:`undo_cpu_predictor` the one that removes it (export and benchmarks time
PyTorch at a fixed thread count).
"""
from __future__ import annotations

from torch import nn


def setup_cpu_predictor(network: nn.Module) -> nn.Module:
    """Allocator tuning for this process and the inference thread count chosen from timed forwards; returns
    ``network``."""
    from .allocator import configure_cpu_allocator
    from .threads import attach_inference_threads

    configure_cpu_allocator()
    attach_inference_threads(network)
    return network


def undo_cpu_predictor(network: nn.Module) -> nn.Module:
    """Remove :func:`setup_cpu_predictor`'s thread hooks from ``network`` (the allocator setting is per process and
    stays); returns ``network``."""
    from .threads import detach_inference_threads

    detach_inference_threads(network)
    return network
