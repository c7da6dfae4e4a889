"""A synthetic CPU load for the benchmarks (``--load N``): N busy processes beside the measurement.

A CPU user's machine is rarely idle: nnU-Net's own data-augmentation workers share the cores with training, and
often another job does too. ``benchmark network --load N`` and ``benchmark predict --load N`` start N processes
that each keep one core busy (a pure-Python loop, like an augmentation worker's Python work, with no memory
traffic to speak of) for the whole run, so that both networks are measured, interleaved, under the same
oversubscription; the processes are ended when the measurement ends, also on errors and Ctrl-C. ``--load 2``
on a 2-core machine is what one other single-process training, or nnU-Net's augmentation workers, do.
The load average before and after is printed with the results.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from typing import Iterator, List

#: the busy loop each load process runs (no imports: starts in milliseconds, holds ~10 MiB)
BUSY_LOOP = "while True:\n    pass\n"


@contextlib.contextmanager
def background_load(processes: int) -> Iterator[List[subprocess.Popen]]:
    """Run ``processes`` busy-looping Python processes while the ``with`` block runs (none for 0)."""
    if processes < 0:
        raise ValueError(f"--load must be >= 0 (number of busy processes), got {processes}")
    procs: List[subprocess.Popen] = []
    try:
        for _ in range(processes):
            procs.append(subprocess.Popen([sys.executable, "-c", BUSY_LOOP], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def load_average() -> List[float]:
    """1-, 5- and 15-minute load averages (empty where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []
