"""glibc allocator tuning (:mod:`nnunetv2_lightmedseg.cpu.allocator`): what it changes, its switch, and
where the trainer applies it. Each setting runs in its own interpreter (a glibc setting lasts for the process)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from nnunetv2_lightmedseg.cpu import allocator as cpu_allocator

glibc_only = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the allocator tuning uses glibc's mallopt (Linux); elsewhere it does nothing")

PROBE = """
import torch
from nnunetv2_lightmedseg.cpu.allocator import configure_cpu_allocator, cpu_allocator_state
def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
before = cpu_allocator_state()
state = configure_cpu_allocator()
again = configure_cpu_allocator()
blocks = [torch.ones(5 * 1024 * 1024) for _ in range(20)]  # 20 tensors of 20 MiB, below the 32 MiB threshold
held = rss_mib()
del blocks
print(before, "|", state, "|", again, "|", held, rss_mib())
"""


def _probe(switch: str):
    env = {**os.environ, cpu_allocator.ENV_SWITCH: switch}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    before, state, again, sizes = [s.strip() for s in out.stdout.strip().splitlines()[-1].split("|")]
    held, after = (int(v) for v in sizes.split())
    return before, state, again, held, after


@glibc_only
def test_tuning_keeps_freed_tensors_for_reuse_and_the_switch_restores_glibc_defaults():
    before, state, again, held, after = _probe("1")
    assert (before, state, again) == ("not configured", "applied", "applied")
    # tuned: the 400 MiB freed stay in the heap for the next allocations (no fresh pages, no page faults)
    assert held - after < 50, (held, after)
    before, state, again, held, after = _probe("0")
    assert (state, again) == ("switched off", "switched off")
    # glibc's defaults: each 20 MiB block was its own mmap and goes back to the OS on free
    assert held - after > 300, (held, after)


def test_switch_values(monkeypatch):
    for value in ("0", "off", "False", " no "):
        monkeypatch.setenv(cpu_allocator.ENV_SWITCH, value)
        assert cpu_allocator.switched_off()
    for value in ("1", "", "on"):
        monkeypatch.setenv(cpu_allocator.ENV_SWITCH, value)
        assert not cpu_allocator.switched_off()
