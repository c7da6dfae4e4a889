"""nnU-Net trainers for LightMedSeg: :class:`nnUNetTrainer_LightMedSeg` and its variants (table in
:mod:`nnunetv2_lightmedseg.training.variants`). Importing this package imports nnU-Net."""
from .trainer import nnUNetTrainer_LightMedSeg
from .variants import *  # noqa: F401,F403 - every variant, so `from nnunetv2_lightmedseg.training import X` works
from .variants import ALL_TRAINERS

__all__ = ["nnUNetTrainer_LightMedSeg", "ALL_TRAINERS"] + [n for n in ALL_TRAINERS if n != "nnUNetTrainer_LightMedSeg"]
