"""The shared helpers of :mod:`nnunetv2_lightmedseg.utils` (fast: small subprocesses, small files)."""
from __future__ import annotations

import sys
import time

import pytest

from nnunetv2_lightmedseg.utils.process import CommandError, last_exception_line, run_command, run_step


# ---------------------------------------------------------------------------------------------- process
def test_run_command_tees_streams_and_reports(tmp_path):
    log = tmp_path / "out.log"
    seen = []
    code = "import sys; print('one'); print('two', file=sys.stderr); print('a\\rb'); sys.exit(3)"
    res = run_command([sys.executable, "-c", code], log_file=log, on_line=seen.append)
    assert res.returncode == 3 and not res.timed_out and res.seconds > 0
    assert log.read_text() == res.stdout and {"one", "two"} <= set(seen)
    split = run_command([sys.executable, "-c", code], merge_stderr=False)
    assert "two" not in split.stdout and split.stderr == "two\n"


def test_run_command_timeout_kills_the_process_group(tmp_path):
    # the command starts a worker that would outlive it; with own_group the whole group goes on the timeout
    marker = tmp_path / "worker_alive"
    worker = tmp_path / "worker.py"
    worker.write_text(f"import time\ntime.sleep(3)\nopen({str(marker)!r}, 'w').close()\n")
    main = tmp_path / "main.py"
    main.write_text(f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, {str(worker)!r}])\n"
                    f"time.sleep(60)\n")
    start = time.perf_counter()
    res = run_command([sys.executable, str(main)], timeout=1.5, own_group=True)
    assert res.timed_out and res.returncode != 0 and time.perf_counter() - start < 30
    time.sleep(3)
    assert not marker.exists()


def test_run_step_failure_names_the_exception_and_the_log(tmp_path, capsys):
    log = tmp_path / "logs" / "step.log"
    script = tmp_path / "step.py"
    script.write_text("print('Epoch 1')\nprint('noise')\nraise ValueError('LightMedSeg was built for 4')\n")
    cpu = {}
    with pytest.raises(CommandError, match=r"failed: ValueError: LightMedSeg was built for 4(.|\n)*full log: "):
        run_step([sys.executable, str(script)], None, log, cpu_seconds=cpu, name="train")
    out = capsys.readouterr().out
    assert "    Epoch 1" in out and "noise" not in out and "train" in cpu  # key lines echoed, the rest logged
    assert "noise" in log.read_text()
    script.write_text("print('noise')\n")
    assert run_step([sys.executable, str(script)], None, log, verbose=True) > 0
    assert "    noise" in capsys.readouterr().out


def test_last_exception_line():
    lines = ["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: LightMedSeg was built for 4"]
    assert last_exception_line(lines) == "ValueError: LightMedSeg was built for 4"
    assert last_exception_line(["all fine"]) is None


# ---------------------------------------------------------------------------------------------- names
def test_case_names_and_dataset_names():
    from nnunetv2_lightmedseg.utils.names import case_name, dataset_folder_name, parse_dataset_name

    assert case_name("/pred/hippocampus_001.nii.gz") == "hippocampus_001"
    assert case_name("/img/BRATS_001_0003.nii.gz", channel_suffix=True) == "BRATS_001"
    assert case_name("/img/case_0000.nii.gz") == "case_0000"  # a label/prediction file has no channel suffix
    assert case_name("a_0001.tiff", channel_suffix=True) == "a" and case_name("x.nrrd") == "x"
    assert case_name("c_0000.b2nd", channel_suffix=True) == "c"  # unknown ending: the last extension goes
    assert case_name("c.seg.gz", file_ending=".seg.gz") == "c"
    assert parse_dataset_name("Dataset004_Hippocampus") == (4, "Hippocampus")
    assert parse_dataset_name("Dataset4_Hippocampus") is None and parse_dataset_name("MyData") is None
    assert dataset_folder_name(7, "My-Data_2") == "Dataset007_My-Data_2"
    with pytest.raises(ValueError, match="three digits"):
        dataset_folder_name(1000, "X")
    with pytest.raises(ValueError, match="letters"):
        dataset_folder_name(1, "with space")
