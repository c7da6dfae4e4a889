"""Discovery module for nnU-Net's ``nnUNet_extTrainer`` (nnunetv2 >= 2.8).

nnU-Net imports every module of the folders listed in ``nnUNet_extTrainer`` as a top-level module and looks
for the requested class name. This folder therefore holds only this module, which re-exports the trainers
with absolute imports from the installed package, so that the class nnU-Net finds IS
``nnunetv2_lightmedseg.training.trainer.nnUNetTrainer_LightMedSeg`` (same object in the main process and in
spawned ``-num_gpus`` workers). Set the variable with ``eval "$(lightmedseg env)"``.
"""
from nnunetv2_lightmedseg.training import ALL_TRAINERS

globals().update(ALL_TRAINERS)
__all__ = list(ALL_TRAINERS)
