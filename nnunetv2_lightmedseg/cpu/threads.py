"""The CPU thread count of training steps and inference forwards, chosen from their times and re-chosen when
they change (speed on cores shared with other work).

Why. ``nnUNetv2_train -device cpu`` and ``nnUNetv2_predict -device cpu`` set ``torch.set_num_threads(cpu_count)``.
That is the fastest choice on idle cores and a slow one on cores shared with other work (another training, any
busy process): LightMedSeg's step is ~300 short operations, most of them one OpenMP parallel region each, and
every region ends in a barrier where a thread waits for the others. When the kernel has handed one thread's core
to another process, the barrier waits out that process's time slice; libgomp's waiting threads first spin
(300,000 times by default), which on Linux's EEVDF scheduler costs them their own next slice too. One thread has
no barrier to wait at. ``GOMP_SPINCOUNT=0`` also helps, but must be set before PyTorch loads (before nnU-Net
imports this plugin) and costs ~30 % on idle cores.

With two busy processes beside a real ``nnUNetv2_train`` the chosen count (one thread) made its epochs 2.3-3.4x
shorter than nnU-Net's 2 threads, and idle it keeps all cores; the measurements and their commands:
docs/decisions.md#cpu-thread-count.

What. :class:`ThreadTuner` times the steps and picks the thread count: it tries the candidates
(:func:`candidate_counts`: all cores, halves of them, one) interleaved, ``rounds`` steps each, keeps the one with
the lowest mean step time (the mean, not the median: on shared cores a few very slow steps are where the time
goes), and then watches the mean of every ``window`` steps. When that mean moves by more than ``tolerance`` from
what the chosen count gave at first (load came or went), or after ``recheck_every`` steps, it tries the
candidates again. A check that keeps the choice doubles the steps per watched mean (up to 8 windows), so that a
load that keeps fluctuating does not make it try the slower counts again and again. Trying costs a few steps at
a slower count: on the idle 2-core machine ~0.4 s per check, against ~90 s per nnU-Net epoch. The first step at
a thread count it has not run yet is not scored (oneDNN creates its kernels for that count then). Only the thread
count changes: the same operations run on the same numbers, so what is learned and predicted does not depend on
it.

Where. :class:`~nnunetv2_lightmedseg.training.trainer.nnUNetTrainer_LightMedSeg` on a CPU device (not with DDP)
times whole training steps; the network its ``build_network_architecture`` builds in a CPU-only process (what
``nnUNetv2_predict`` loads there) times its inference forwards (:class:`InferenceThreads`);
``lightmedseg benchmark network --tune-threads`` does the same for every network it times, stock included.
``LIGHTMEDSEG_CPU_THREADS`` = ``auto`` (default) chooses; a positive integer fixes the count instead.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Dict, List, Optional, TypeVar

import torch

T = TypeVar("T")

#: environment variable: "auto" (default) or a positive integer (a fixed thread count, no tuning)
ENV_SWITCH = "LIGHTMEDSEG_CPU_THREADS"


def thread_setting(value: Optional[str] = None) -> Optional[int]:
    """``LIGHTMEDSEG_CPU_THREADS`` (or ``value``): None for ``auto``/unset, else the fixed positive count;
    ``ValueError`` saying what is allowed for anything else."""
    raw = os.environ.get(ENV_SWITCH, "") if value is None else value
    text = raw.strip().lower()
    if text in ("", "auto"):
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{ENV_SWITCH} must be 'auto' (choose the CPU thread count from timed training steps) or "
                         f"a positive integer (that many threads), got {raw!r}")
    return n


def candidate_counts(max_threads: int) -> List[int]:
    """The thread counts tried: ``max_threads``, its halves and quarters, and 1 (at most four, largest first)."""
    if max_threads < 1:
        raise ValueError(f"max_threads must be >= 1, got {max_threads}")
    return sorted({max_threads, max(1, max_threads // 2), max(1, max_threads // 4), 1}, reverse=True)


class ThreadTuner:
    """Chooses ``torch``'s intra-op thread count from the times of the steps it is told about.

    :meth:`run` runs and times one step; or call :meth:`before_step` before each step (it sets the thread count
    the step runs with) and :meth:`after_step` with the step's seconds. ``history`` lists every choice: the step
    it was made at, why, the mean seconds per candidate and the count chosen. ``log`` (e.g. the trainer's
    ``print_to_log_file``) receives one line per choice.
    """

    def __init__(self, max_threads: int, rounds: int = 3, window: int = 8, tolerance: float = 0.3,
                 recheck_every: int = 250, log: Optional[Callable[[str], None]] = None):
        if rounds < 1 or window < 1 or recheck_every < 1:
            raise ValueError(f"rounds, window and recheck_every must be >= 1, got {rounds}, {window}, {recheck_every}")
        if not 0 < tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")
        self.candidates = candidate_counts(int(max_threads))
        self.rounds, self.window, self.tolerance, self.recheck_every = rounds, window, tolerance, recheck_every
        self.log = log
        self.threads = self.candidates[0]
        self.history: List[dict] = []
        self._steps = 0
        self._seen: set = set()
        self._plan: List[int] = []
        self._probe: Dict[int, List[float]] = {}
        self._reason = ""
        self._recent: List[float] = []
        self._watch = window  # steps per watched mean; doubles after a check that kept the choice
        self._reference: Optional[float] = None
        self._since_choice = 0
        self._current: Optional[int] = None  # the count of the step in flight
        if len(self.candidates) > 1:
            self._start_probe("first choice")

    @property
    def probing(self) -> bool:
        """True while candidates are being tried (no choice yet, or a re-check)."""
        return bool(self._plan)

    @property
    def next_count(self) -> int:
        """The thread count the next step runs with (a candidate being tried, or the choice)."""
        return self._plan[0] if self._plan else self.threads

    def before_step(self) -> int:
        """Set and return the thread count of the next step."""
        self._current = self.next_count
        if torch.get_num_threads() != self._current:
            torch.set_num_threads(self._current)
        return self._current

    def after_step(self, seconds: float) -> None:
        """Record the seconds of the step started by the last :meth:`before_step`."""
        count = self._current if self._current is not None else self.threads
        self._current = None
        self._steps += 1
        if self._plan:
            self._plan.pop(0)
            if count not in self._seen:  # warm-up at a new count: run it again, scored
                self._seen.add(count)
                self._plan.append(count)
            else:
                self._probe[count].append(float(seconds))
            if not self._plan:
                self._choose()
            return
        self._since_choice += 1
        self._recent.append(float(seconds))
        if len(self._recent) >= self._watch:
            mean = statistics.fmean(self._recent)
            self._recent = []
            if self._reference is None:
                self._reference = mean  # what the chosen count gives when run step after step
            elif abs(mean - self._reference) > self.tolerance * self._reference:
                self._start_probe(f"step time moved from {self._reference:.3f} to {mean:.3f} s")
                return
        if self._since_choice >= self.recheck_every:
            self._start_probe(f"{self.recheck_every} steps since the last check")

    def run(self, step: Callable[[], T]) -> T:
        """Run ``step()`` at the chosen (or tried) thread count, timed; returns what it returns."""
        self.before_step()
        start = time.perf_counter()
        out = step()
        self.after_step(time.perf_counter() - start)
        return out

    def _start_probe(self, reason: str) -> None:
        self._reason = reason
        self._probe = {c: [] for c in self.candidates}
        self._plan = [c for _ in range(self.rounds) for c in self.candidates]

    def _choose(self) -> None:
        means = {c: statistics.fmean(t) for c, t in self._probe.items()}
        previous = self.threads if self.history else None
        self.threads = min(means, key=lambda c: (means[c], -c))
        self.history.append({"step": self._steps, "reason": self._reason, "mean_s": means,
                             "threads": self.threads})
        self._recent, self._reference, self._since_choice = [], None, 0
        # a check that kept the choice (a periodic one, or a false alarm: noise, a short burst of load): watch
        # longer means before the next one, up to 8 windows; a new choice starts again from one window
        self._watch = min(2 * self._watch, 8 * self.window) if self.threads == previous else self.window
        if self.log is not None:
            timed = ", ".join(f"{c} thread{'s' if c > 1 else ''} {m:.3f} s" for c, m in means.items())
            self.log(f"LightMedSeg: training on {self.threads} CPU thread{'s' if self.threads > 1 else ''} "
                     f"({self._reason}; mean step time {timed}; see nnunetv2_lightmedseg.cpu.threads, "
                     f"{ENV_SWITCH}=N fixes the count)")


class InferenceThreads:
    """The thread count of a module's inference forwards (eval mode, gradients off): chosen by a
    :class:`ThreadTuner` over timed forwards, or fixed by ``LIGHTMEDSEG_CPU_THREADS=N``.

    nnU-Net's predictor runs one forward per sliding-window tile and mirror, and sets ``torch``'s thread count
    itself at the start of every case; forward hooks set the chosen count before each forward and time it.
    Forwards that are traced, exported or compiled, and training forwards, are left alone. Attach with
    :func:`attach_inference_threads` (once per module); :func:`detach_inference_threads` removes the hooks.
    """

    def __init__(self, module: torch.nn.Module, fixed: Optional[int] = None, **tuner_options):
        self.fixed = fixed
        self.tuner: Optional[ThreadTuner] = None  # made at the first forward, from the thread count set then
        self._tuner_options = tuner_options
        self._start: Optional[float] = None
        self._handles = [module.register_forward_pre_hook(self._before), module.register_forward_hook(self._after)]

    @staticmethod
    def _applies(module: torch.nn.Module) -> bool:
        return not (module.training or torch.is_grad_enabled() or torch.jit.is_tracing() or torch.jit.is_scripting()
                    or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())

    def _before(self, module, args) -> None:
        self._start = None
        if not self._applies(module):
            return
        if self.fixed is not None:
            if torch.get_num_threads() != self.fixed:
                torch.set_num_threads(self.fixed)
            return
        if self.tuner is None:
            self.tuner = ThreadTuner(torch.get_num_threads(), **self._tuner_options)
        self.tuner.before_step()
        self._start = time.perf_counter()

    def _after(self, module, args, output) -> None:
        if self._start is not None:
            self.tuner.after_step(time.perf_counter() - self._start)
            self._start = None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


#: the attribute of a module that holds its InferenceThreads
_ATTRIBUTE = "_lightmedseg_inference_threads"


def attach_inference_threads(module: torch.nn.Module, **tuner_options) -> InferenceThreads:
    """Give ``module``'s inference forwards their thread count (:class:`InferenceThreads`; the
    ``LIGHTMEDSEG_CPU_THREADS`` setting decides between tuned and fixed). Attaching twice keeps the first."""
    existing = getattr(module, _ATTRIBUTE, None)
    if existing is None:
        existing = InferenceThreads(module, fixed=thread_setting(), **tuner_options)
        setattr(module, _ATTRIBUTE, existing)
    return existing


def inference_threads_report(module: torch.nn.Module) -> str:
    """One phrase for reports: how ``module``'s inference forwards get their thread count."""
    existing = getattr(module, _ATTRIBUTE, None)
    if existing is None:
        return "the caller's thread count (nnU-Net's)"
    if existing.fixed is not None:
        return f"{existing.fixed} (fixed by {ENV_SWITCH})"
    tuner = existing.tuner
    if tuner is None:
        return "chosen from timed forwards (none run yet)"
    if len(tuner.candidates) == 1:
        return f"{tuner.threads} (the caller allows one thread: nothing to choose)"
    if not tuner.history:
        return "chosen from timed forwards (no choice made yet)"
    return (f"chosen from timed forwards: {tuner.threads} (choices: "
            + ", ".join(f"{h['threads']} at forward {h['step']}" for h in tuner.history) + ")")


def detach_inference_threads(module: torch.nn.Module) -> None:
    """Remove what :func:`attach_inference_threads` attached (nothing if it was not)."""
    existing = getattr(module, _ATTRIBUTE, None)
    if existing is not None:
        existing.remove()
        delattr(module, _ATTRIBUTE)
