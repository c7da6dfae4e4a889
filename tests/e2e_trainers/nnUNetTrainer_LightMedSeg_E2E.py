"""Test-only trainer folder for ``nnUNet_extTrainer`` (used by test_end_to_end.py).

``nnUNetTrainer_LightMedSeg_E2E`` = ``nnUNetTrainer_LightMedSeg_Smoke`` (paper network, loss, AdamW, warm-up +
cosine; 2 epochs, 2 validation iterations) with two changes, both for the end-to-end tests only:

* ``initial_lr = 1e-2`` and 15 iterations per epoch: the tests require the trained Dice to beat untrained
  weights. Measured on the generated 10-case label dataset: Smoke (20 iterations, peak 1e-3) stayed at the
  untrained level (validation Dice 0.047 vs 0.044 untrained; loss 2.37 -> 2.36), while a peak of 1e-2 reached a
  pseudo Dice of 0.53 for 'outer' after 20 iterations (loss 2.34 -> 2.05). Twenty iterations at 1e-3 barely move
  the weights from their initialisation; the pipeline, not the paper's learning rate, is under test here.
* ``save_every = 1``: nnU-Net writes ``checkpoint_latest.pth`` only every ``save_every`` (50) epochs, so a
  2-epoch run never writes one and ``--c`` would fall back to ``checkpoint_best.pth``. The kill-and-resume test
  needs the checkpoint a resumed long training relies on.

With ``LMS_E2E_PROGRESS`` set to a file, every finished training iteration appends its epoch to it: the
kill-and-resume test waits for an iteration of epoch 1 there instead of sleeping.

It lives in the tests (not the package) because users never need it; nnU-Net finds it through a second
``nnUNet_extTrainer`` folder, the way ``lightmedseg env`` appends ours to an existing value.
"""
import os
import random

import numpy as np
import torch

from nnunetv2_lightmedseg.training import nnUNetTrainer_LightMedSeg_Smoke


class nnUNetTrainer_LightMedSeg_E2E(nnUNetTrainer_LightMedSeg_Smoke):
    training_options = dict(nnUNetTrainer_LightMedSeg_Smoke.training_options, num_iterations_per_epoch=15,
                            initial_lr=1e-2, save_every=1)

    def train_step(self, batch: dict) -> dict:
        out = super().train_step(batch)
        progress = os.environ.get("LMS_E2E_PROGRESS")
        if progress:
            with open(progress, "a") as f:
                f.write(f"{self.current_epoch}\n")
        return out


class nnUNetTrainer_LightMedSeg_E2E3x20(nnUNetTrainer_LightMedSeg_E2E):
    """The real-hippocampus end-to-end test: 3 epochs x 20 iterations. Real MRI is harder than the generated
    phantoms: at 2 x 15 iterations the anterior/posterior Dice (0.063) stayed within the margin of the
    untrained level (0.030)."""
    training_options = dict(nnUNetTrainer_LightMedSeg_E2E.training_options, num_epochs=3,
                            num_iterations_per_epoch=20)


class nnUNetTrainer_LightMedSeg_E2ESeeded(nnUNetTrainer_LightMedSeg_E2E):
    """The thick-slice end-to-end test (issue 9): E2E with every random generator seeded before the network is
    built, so that initial weights, patch sampling and augmentation (in the training process: the demo sets
    ``nnUNet_n_proc_DA=0``) are the same on every run and the "beats the untrained level" check cannot flake."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # nnU-Net records the constructor's named arguments (inspect.signature): keep its exact signature
        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)
        super().__init__(plans, configuration, fold, dataset_json, device)


class nnUNetTrainer_LightMedSeg_E2ESeeded3x20(nnUNetTrainer_LightMedSeg_E2ESeeded):
    """The 4-channel region end-to-end test: seeded, 3 epochs x 20 iterations. Unseeded at 2 x 15 iterations it
    failed the margin in CI rehearsals (trained Dice 0.049 and 0.067 vs the untrained level 0.041-0.046)."""
    training_options = dict(nnUNetTrainer_LightMedSeg_E2E.training_options, num_epochs=3,
                            num_iterations_per_epoch=20)


from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: E402


class nnUNetTrainer_E2EStock(nnUNetTrainer):
    """Stock nnU-Net (plain U-Net, DC+CE, SGD) for the after-training workflow tests (test_workflows.py): the
    length of nnUNetTrainer_LightMedSeg_Smoke (2 epochs x 10 iterations, 2 validation iterations), so that
    find_best_configuration / ensembling have a stock model to compare and combine with a LightMedSeg one."""

    def __init__(self, plans, configuration, fold, dataset_json, device=None):
        import torch
        super().__init__(plans, configuration, fold, dataset_json, device or torch.device("cuda"))
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 2, 10, 2
