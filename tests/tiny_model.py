"""A tiny nnU-Net "trained model" for the export and explain tests (built once per test process).

Reuses :func:`helpers.tiny_preprocessed_dataset` (5-case blob dataset, planned and preprocessed by nnU-Net's own
planning API), then does what ``nnUNetv2_train`` does before its first epoch:
``get_trainer_from_args`` (trainer re-found by name through ``nnUNet_extTrainer``), ``initialize()``, the
plans.json/dataset.json copies of ``on_train_start``, and a checkpoint written by the trainer's own
``save_checkpoint`` (weights as initialised). Export and explain depend on the checkpoint format and the
network, not on training quality, and even one epoch would cost far more than the rest of the tests.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict

from helpers import TINY_ID, TINY_NAME, nnunet_env, tiny_preprocessed_dataset

TRAINER = "nnUNetTrainer_LightMedSeg"
CONFIG = "3d_fullres"
FOLD = 0
_CACHE: Dict[str, Path] = {}


def trained_model_results() -> Path:
    """Build (once) the fold-0 checkpoint; set nnUNet_* variables in ``os.environ``; return nnUNet_results."""
    base = tiny_preprocessed_dataset()
    os.environ.update({k: v for k, v in nnunet_env(base).items() if k.startswith("nnUNet_")})
    if "results" not in _CACHE:
        import torch
        from batchgenerators.utilities.file_and_folder_operations import save_json
        from nnunetv2.run.run_training import get_trainer_from_args

        trainer = get_trainer_from_args(str(TINY_ID), CONFIG, FOLD, TRAINER, "nnUNetPlans",
                                        device=torch.device("cpu"))
        trainer.initialize()
        Path(trainer.output_folder).mkdir(parents=True, exist_ok=True)
        save_json(trainer.plans_manager.plans, os.path.join(trainer.output_folder_base, "plans.json"),
                  sort_keys=False)
        save_json(trainer.dataset_json, os.path.join(trainer.output_folder_base, "dataset.json"), sort_keys=False)
        trainer.save_checkpoint(os.path.join(trainer.output_folder, "checkpoint_final.pth"))
        _CACHE["results"] = base / "results"
    return _CACHE["results"]


def tiny_case_image() -> Path:
    """A raw image of the tiny dataset (``case000_0000.nii.gz``)."""
    return tiny_preprocessed_dataset() / "raw" / TINY_NAME / "imagesTr" / "case000_0000.nii.gz"
