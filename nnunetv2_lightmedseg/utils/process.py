"""Running a console command (nnU-Net's ``nnUNetv2_*``, ``lightmedseg``, a probe interpreter): one runner for
the demo, the benchmark's memory probe and the tests.

:func:`run_command` streams the output line by line into an optional log file and callback, can give the command
its own process group (killed as a whole on a timeout or Ctrl-C: nnU-Net starts worker processes that would
otherwise outlive it), and returns a :class:`CommandResult` with the output, wall and CPU seconds.
:func:`run_step` is the demo's way of running one nnU-Net step: the command line printed, the output teed to a
log file, nnU-Net's key lines echoed, and a failure reported with its last exception line and output tail.
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from ..errors import LightMedSegError

#: lines of nnU-Net's output worth echoing when not verbose (the rest goes to the step's log file)
NNUNET_KEY_LINES = re.compile(r"(^Epoch \d+|train_loss|val_loss|Pseudo dice|Epoch time|Mean Validation Dice|"
                              r"LightMedSeg:|Using trainer|Error|error:|Traceback|WARNING)")
EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception)|AssertionError|KeyboardInterrupt)\b.*")


class CommandError(LightMedSegError):
    """A command is missing or failed; the message says which, why and where its full output is."""


@dataclass
class CommandResult:
    """What :func:`run_command` returns (the attributes of ``subprocess.CompletedProcess`` and more)."""
    args: List[str]
    returncode: int
    stdout: str
    stderr: str  # "" when stderr was merged into stdout
    seconds: float  # wall-clock
    cpu_seconds: float  # user + system of the command and its reaped worker processes
    timed_out: bool = False

    def lines(self) -> List[str]:
        """The output's lines, each ``\\r``-updated progress bar (tqdm) reduced to its last state."""
        return [line.split("\r")[-1] for line in self.stdout.splitlines()]


def console_script(name: str) -> str:
    """Absolute path of a console script (``nnUNetv2_train``, ``lightmedseg`` ...) of THIS Python environment.

    Looked up next to ``sys.executable`` first, so that the nnU-Net installed with this package runs even when
    the venv is not activated; then on PATH.
    """
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise CommandError(f"{name} not found next to {sys.executable} nor on PATH. Is nnunetv2 installed in this "
                           f"environment? (pip install nnunetv2)")
    return found


def display(cmd: Sequence[str]) -> str:
    """A command line as printed: absolute paths of nnU-Net's console scripts shortened to their names."""
    return " ".join(Path(a).name if Path(a).is_absolute() and Path(a).name.startswith("nnUNetv2_") else a
                    for a in cmd)


def last_exception_line(lines: Sequence[str]) -> Optional[str]:
    """The final ``SomeError: message`` line of a Python traceback in a command's output, if any."""
    for line in reversed(lines):
        if EXCEPTION_LINE.match(line.strip()):
            return line.strip()
    return None


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_command(cmd: Sequence[str], env: Optional[Mapping[str, str]] = None, *, log_file: Optional[Path] = None,
                on_line: Optional[Callable[[str], None]] = None, merge_stderr: bool = True,
                timeout: Optional[float] = None, own_group: bool = False) -> CommandResult:
    """Run ``cmd`` to its end; never raises for its exit status (see :attr:`CommandResult.returncode`).

    Output is read line by line as it comes: written (and flushed) to ``log_file``, and passed to ``on_line``
    without its newline and reduced to the last state of a ``\\r``-updated progress bar. With ``merge_stderr``
    stderr goes into the same stream; otherwise it is collected separately. ``own_group`` starts the command in
    a new session: a timeout, Ctrl-C or any exception here then kills its whole process group (workers too);
    without it, the command shares the terminal's Ctrl-C and only the command itself is killed.
    """
    cmd = [str(c) for c in cmd]
    start, cpu_start = time.perf_counter(), _children_cpu_seconds()
    proc = subprocess.Popen(cmd, env=None if env is None else dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE, text=True, bufsize=1,
                            errors="replace", start_new_session=own_group)

    def kill() -> None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL) if own_group else proc.kill()
            except ProcessLookupError:
                pass

    timed_out = threading.Event()
    timer = None
    if timeout is not None:
        timer = threading.Timer(timeout, lambda: (timed_out.set(), kill()))
        timer.daemon = True
        timer.start()
    err: List[str] = []
    reader = None
    if not merge_stderr:
        reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
        reader.start()
    out: List[str] = []
    log = open(log_file, "w") if log_file is not None else None
    try:
        for line in proc.stdout:
            out.append(line)
            if log is not None:
                log.write(line)
                log.flush()
            if on_line is not None:
                on_line(line.rstrip("\n").split("\r")[-1])
        proc.wait()
        if reader is not None:
            reader.join()
    except BaseException:
        kill()  # Ctrl-C: do not leave the command (and with own_group its workers) running in the background
        proc.wait()
        raise
    finally:
        if timer is not None:
            timer.cancel()
        if log is not None:
            log.close()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    return CommandResult(cmd, proc.returncode, "".join(out), "".join(err), time.perf_counter() - start,
                         _children_cpu_seconds() - cpu_start, timed_out.is_set())


def run_step(cmd: List[str], env: Dict[str, str], log_file: Path, verbose: bool = False, echo: bool = True,
             cpu_seconds: Optional[Dict[str, float]] = None, name: Optional[str] = None) -> float:
    """Run one nnU-Net command, tee its output to ``log_file``; return wall seconds. CommandError on failure.

    The command line is printed first; of the output, :data:`NNUNET_KEY_LINES` are echoed (everything with
    ``verbose``, nothing without ``echo``). With ``cpu_seconds`` the command's CPU time (user + system, its
    worker processes included) is stored under ``name``: on a shared machine, wall time depends on the load,
    CPU time much less.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    print("$ " + display(cmd), flush=True)

    def show(line: str) -> None:
        if echo and (verbose or NNUNET_KEY_LINES.search(line)):
            print("    " + line, flush=True)

    res = run_command(cmd, env, log_file=log_file, on_line=show)
    if cpu_seconds is not None:
        cpu_seconds[name or Path(cmd[0]).name] = res.cpu_seconds
    if res.returncode != 0:
        tail = deque(res.lines(), maxlen=40)
        reason = last_exception_line(list(tail)) or f"exit status {res.returncode}"
        shown = "\n".join("    | " + t for t in list(tail)[-25:])
        raise CommandError(f"{Path(cmd[0]).name} failed: {reason}\n  last output lines:\n{shown}\n"
                           f"  full log: {log_file}")
    return res.seconds
