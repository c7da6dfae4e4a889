"""The synthetic CPU load of ``lightmedseg benchmark network/predict --load N``."""
import os
import time

import pytest

from nnunetv2_lightmedseg.benchmark.load import background_load, load_average
from nnunetv2_lightmedseg.cli.main import main


def test_background_load_runs_busy_processes_and_ends_them():
    with background_load(2) as procs:
        assert len(procs) == 2
        time.sleep(0.3)
        assert all(p.poll() is None for p in procs)  # still running inside the block
        cpu = [float(open(f"/proc/{p.pid}/stat").read().split()[13]) for p in procs] if os.path.isdir("/proc") else []
    assert all(p.poll() is not None for p in procs)  # ended after it
    if cpu:
        assert all(c > 0 for c in cpu)  # they burned CPU time (user ticks)


def test_background_load_ends_processes_on_errors():
    with pytest.raises(RuntimeError):
        with background_load(1) as procs:
            raise RuntimeError("boom")
    assert procs[0].poll() is not None


def test_negative_load_is_refused_with_a_message(capsys):
    with pytest.raises(ValueError, match="--load must be >= 0"):
        with background_load(-1):
            pass
    assert main(["benchmark", "network", "--shape", "16", "16", "16", "--load", "-1"]) == 2
    assert "--load must be >= 0" in capsys.readouterr().err


def test_load_average_has_three_values_where_the_os_has_them():
    v = load_average()
    assert v == [] or len(v) == 3
