"""Test-only trainer folder for ``nnUNet_extTrainer`` (test_end_to_end.py's kill-and-resume test).

nnU-Net writes ``checkpoint_latest.pth`` only every ``save_every`` (50) epochs, so the 2-epoch Smoke run never
writes one and ``--c`` would fall back to ``checkpoint_best.pth``. This variant checkpoints after every epoch,
which is what a resumed long training relies on. It lives in the tests (not the package) because users never
need it; it is found through a second ``nnUNet_extTrainer`` folder, the way ``lightmedseg env`` appends ours
to an existing value.
"""
from nnunetv2_lightmedseg.training import nnUNetTrainer_LightMedSeg_Smoke


class nnUNetTrainer_LightMedSeg_SmokeEveryEpoch(nnUNetTrainer_LightMedSeg_Smoke):
    training_options = dict(nnUNetTrainer_LightMedSeg_Smoke.training_options, save_every=1)
