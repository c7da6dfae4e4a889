"""Training feedback for nnU-Net trainers: a progress bar inside each epoch and one line on Ctrl-C.

:class:`ProgressMixin` goes before ``nnUNetTrainer`` in a trainer's bases. Bars appear only on an interactive
terminal of the first worker (never in log files or pipes); Ctrl-C ends ``run_training`` with one line saying which
checkpoints were kept and the exact ``nnUNetv2_train ... --c`` command, exit code 130, no traceback.
"""
from __future__ import annotations

import os
import sys
from typing import List


class ProgressMixin:
    """Progress bars and the Ctrl-C line for an ``nnUNetTrainer`` subclass (calls ``advance_progress`` from its
    ``train_step``; this mixin does so for ``validation_step``)."""

    _progress = None

    def show_progress(self) -> bool:
        """Progress bars only on an interactive terminal (never in log files or pipes), on the first worker."""
        return self.local_rank == 0 and sys.stdout.isatty() and sys.stderr.isatty()

    def _open_progress(self, total: int, what: str) -> None:
        self._close_progress()
        if self.show_progress():
            from tqdm import tqdm
            self._progress = tqdm(total=total, desc=f"epoch {self.current_epoch} {what}", unit="it", leave=False,
                                  dynamic_ncols=True, bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| "
                                                                 "{rate_fmt}, {remaining} left{postfix}")

    def advance_progress(self, out: dict) -> None:
        """One step done (``out``: the step's outputs; its loss is shown)."""
        if self._progress is not None:
            if "loss" in out:
                self._progress.set_postfix_str(f"loss {float(out['loss']):.4f}", refresh=False)
            self._progress.update(1)

    def _close_progress(self) -> None:
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self._open_progress(self.num_iterations_per_epoch, "training")

    def on_train_epoch_end(self, train_outputs: List[dict]):
        self._close_progress()
        super().on_train_epoch_end(train_outputs)

    def on_validation_epoch_start(self):
        super().on_validation_epoch_start()
        self._open_progress(self.num_val_iterations_per_epoch, "validation")

    def validation_step(self, batch: dict) -> dict:
        out = super().validation_step(batch)
        self.advance_progress(out)
        return out

    def on_validation_epoch_end(self, val_outputs: List[dict]):
        self._close_progress()
        super().on_validation_epoch_end(val_outputs)

    def interrupted_message(self) -> str:
        """The one line printed when training is interrupted: what is kept and the command that resumes."""
        kept = [name for name in ("checkpoint_latest.pth", "checkpoint_best.pth")
                if os.path.isfile(os.path.join(self.output_folder, name))]
        plans = "" if self.plans_manager.plans_name == "nnUNetPlans" else f" -p {self.plans_manager.plans_name}"
        resume = (f"nnUNetv2_train {self.plans_manager.dataset_name} {self.configuration_name} {self.fold} "
                  f"-tr {type(self).__name__}{plans} -device {self.device.type} --c")
        if kept:
            return (f"training interrupted in epoch {self.current_epoch}; kept {' and '.join(kept)} in "
                    f"{self.output_folder} (checkpoint_latest.pth is written every {self.save_every} epochs); resume "
                    f"with: {resume}")
        return (f"training interrupted in epoch {self.current_epoch} before a checkpoint was written (nnU-Net writes "
                f"checkpoint_latest.pth every {self.save_every} epochs), so `{resume}` starts over")

    def run_training(self):
        """nnU-Net's training loop; Ctrl-C ends it with one line (what was kept, how to resume), no traceback."""
        try:
            super().run_training()
        except KeyboardInterrupt:
            self._close_progress()
            if self.local_rank == 0:
                print(f"\n{self.interrupted_message()}", file=sys.stderr, flush=True)
            raise SystemExit(130) from None
