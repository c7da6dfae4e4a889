"""glibc's ``malloc`` set up for PyTorch on the CPU: freed tensor memory is kept for the next allocation.

PyTorch's CPU tensors come from the C library's ``malloc``. With glibc's defaults a block above the *mmap
threshold* gets its own ``mmap`` and goes back to the OS on ``free``, and free memory at the top of the heap is
returned (``trim``) once it exceeds the *trim threshold*. glibc raises both thresholds dynamically, but only up to
32 MiB / 64 MiB and only after such a block has been freed, so a network whose forward pass allocates and frees
hundreds of tensors of 1-30 MiB (LightMedSeg's activations at 64^3 are 8-25 MiB each) gets fresh pages from the
kernel again and again: every first touch of a page is a page fault, paid in every elementwise op, ``cat``
and convolution output. That is where a large part of LightMedSeg's CPU time went, and why its speed changed
over a day with the allocator's history.

:func:`configure_cpu_allocator` sets, once per process, a static mmap threshold of 32 MiB (glibc's own largest
dynamic value on 64-bit) and a trim threshold of 1 GiB, so blocks up to 32 MiB are reused from the heap instead
of being mapped and faulted in anew. Nothing else changes: the same operations run on the same numbers. The
memory a process keeps is at most what it already held at its peak (like PyTorch's CUDA caching allocator);
blocks above 32 MiB (stock nnU-Net's activations at 128^3, LightMedSeg's 4 x 128^3 logits) are mapped as before.

The measurement (about 1.3x faster at 1 x 4 x 128^3) and its command: docs/decisions.md#cpu-allocator.

Where it is applied: :class:`~nnunetv2_lightmedseg.training.trainer.nnUNetTrainer_LightMedSeg` on a CPU device
(``initialize``), its ``build_network_architecture`` when the process has no CUDA device (``nnUNetv2_predict`` on
a CPU-only machine), and the benchmarks (for every network they measure, stock included, which keeps their
comparisons fair). ``LIGHTMEDSEG_CPU_ALLOCATOR=0`` switches it off. It needs glibc (Linux); elsewhere
(macOS, Windows, musl) it does nothing.
"""
from __future__ import annotations

import ctypes
import os
import platform
from typing import Optional

#: environment variable; "0", "off", "false" or "no" leave glibc's defaults
ENV_SWITCH = "LIGHTMEDSEG_CPU_ALLOCATOR"
#: glibc's mallopt parameters (malloc.h) and the values set
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # = glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024

_state: Optional[str] = None  # None: not tried yet; else what configure_cpu_allocator() found


def switched_off() -> bool:
    """True when ``LIGHTMEDSEG_CPU_ALLOCATOR`` asks for glibc's defaults."""
    return os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "off", "false", "no")


def configure_cpu_allocator() -> str:
    """Apply the settings once per process; returns what happened: ``"applied"`` (now or earlier),
    ``"switched off"`` (the environment variable), ``"not glibc"`` or ``"mallopt failed"``.

    Later calls return the first call's outcome (a setting of glibc cannot be undone to its dynamic mode)."""
    global _state
    if _state is not None:
        return _state
    if switched_off():
        _state = "switched off"
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _state = "not glibc"
    else:
        try:
            mallopt = ctypes.CDLL(None).mallopt
            mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
            ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
            _state = "applied" if ok else "mallopt failed"
        except (OSError, AttributeError):
            _state = "mallopt failed"
    return _state


def cpu_allocator_state() -> str:
    """What :func:`configure_cpu_allocator` did in this process (``"not configured"`` before any call)."""
    return _state or "not configured"
