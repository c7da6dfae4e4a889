"""Linear warm-up then cosine annealing, stepped per training iteration (paper §4: AdamW, "a cosine annealing
scheduler [...] with a minimum learning rate [...] following a short warmup").

Why per iteration: nnU-Net steps its scheduler once per epoch (``on_train_epoch_start`` calls
``lr_scheduler.step(current_epoch)``). With the paper's 300 epochs that is fine, but the short schedules used on
CPU (1-10 epochs) would get no warm-up at all and a cosine of a handful of steps. This scheduler therefore
counts iterations: nnU-Net's epoch call ``step(epoch)`` sets the learning rate of the epoch's FIRST iteration
(``epoch * iterations_per_epoch``; this also re-synchronises the schedule after resuming from a checkpoint,
which stores the epoch but not the scheduler), and ``step()`` without argument, called by the trainer after each
optimiser step, advances by one iteration. The values (3 % warm-up, cosine to 1e-6): see
docs/decisions.md#optimiser-and-schedule.
"""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import _LRScheduler


def warmup_cosine_lr(iteration: int, initial_lr: float, min_lr: float, total_iterations: int,
                     warmup_iterations: int) -> float:
    """Learning rate for ``iteration`` (0-based; the optimiser step with this index uses it).

    Warm-up: ``initial_lr * (iteration + 1) / warmup_iterations`` for ``iteration < warmup_iterations`` (the
    first step already moves, the last warm-up step reaches ``initial_lr``). Then cosine from ``initial_lr``
    (at ``iteration == warmup_iterations``) to ``min_lr`` (at ``iteration == total_iterations``); clamped beyond.
    """
    if iteration < warmup_iterations:
        return initial_lr * (iteration + 1) / warmup_iterations
    span = max(1, total_iterations - warmup_iterations)
    t = min(1.0, (iteration - warmup_iterations) / span)
    return min_lr + 0.5 * (initial_lr - min_lr) * (1.0 + math.cos(math.pi * t))


class WarmupCosineLRScheduler(_LRScheduler):
    """Per-iteration linear warm-up + cosine annealing, compatible with nnU-Net's per-epoch ``step(epoch)``.

    Args:
        optimizer: the optimiser whose param groups get the learning rate.
        initial_lr: peak learning rate (reached at the end of the warm-up).
        min_lr: learning rate at the end of training.
        total_iterations: ``num_epochs * num_iterations_per_epoch``.
        warmup_iterations: length of the linear warm-up (>= 0).
        iterations_per_epoch: to convert nnU-Net's ``step(epoch)`` into an iteration.
    """

    def __init__(self, optimizer: Optimizer, initial_lr: float, min_lr: float, total_iterations: int,
                 warmup_iterations: int, iterations_per_epoch: int):
        if total_iterations < 1 or iterations_per_epoch < 1:
            raise ValueError("WarmupCosineLRScheduler: total_iterations and iterations_per_epoch must be >= 1")
        if not 0 <= warmup_iterations <= total_iterations:
            raise ValueError("WarmupCosineLRScheduler: need 0 <= warmup_iterations <= total_iterations")
        if not 0 <= min_lr <= initial_lr:
            raise ValueError("WarmupCosineLRScheduler: need 0 <= min_lr <= initial_lr")
        self.initial_lr = initial_lr
        self.min_lr = min_lr
        self.total_iterations = total_iterations
        self.warmup_iterations = warmup_iterations
        self.iterations_per_epoch = iterations_per_epoch
        self.iteration = -1  # _LRScheduler.__init__ calls step() once, which brings us to iteration 0
        super().__init__(optimizer, -1)

    def lr_at(self, iteration: int) -> float:
        return warmup_cosine_lr(iteration, self.initial_lr, self.min_lr, self.total_iterations,
                                self.warmup_iterations)

    def step(self, epoch: int | None = None) -> None:  # noqa: D401 - torch's API name
        """``step()``: advance one iteration. ``step(epoch)``: jump to the first iteration of ``epoch``."""
        if epoch is None or epoch == -1:
            self.iteration += 1
        else:
            self.iteration = int(epoch) * self.iterations_per_epoch
        lr = self.lr_at(self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        return self._last_lr
