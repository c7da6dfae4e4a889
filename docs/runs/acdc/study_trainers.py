"""The trainers of the ACDC study (issue 21), as run: the shipped recipe with a checkpoint every epoch.

Every LightMedSeg trainer here is ``nnUNetTrainer_LightMedSeg`` with the shipped defaults and nnU-Net's epoch of
250 iterations; ``save_every = 1`` only makes an interrupted run resume with ``--c`` from its last epoch (it does not
change what is learned). Run one with (from the repository root, trainers registered)::

    export nnUNet_extTrainer="$PWD/docs/runs/acdc" nnUNet_n_proc_DA=1
    lightmedseg splits -d 27 --group-by '^(patient\\d+)_frame\\d+$'      # patients grouped, once
    nnUNetv2_train 27 3d_fullres 0 -tr nnUNetTrainer_LMSAcdc_5ep -device cpu
"""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_lightmedseg.training.trainer import nnUNetTrainer_LightMedSeg


class nnUNetTrainer_LMSAcdc_5ep(nnUNetTrainer_LightMedSeg):
    """``nnUNetTrainer_LightMedSeg_5epochs`` (1,250 iterations) with a checkpoint every epoch."""
    training_options = {"num_epochs": 5, "save_every": 1, "mirroring": "all", "max_rotation_degrees": None,
                        "augmentation": "nnunet"}


class nnUNetTrainer_LMSAcdc_1ep(nnUNetTrainer_LightMedSeg):
    """``nnUNetTrainer_LightMedSeg_1epoch`` (250 iterations) with a checkpoint every epoch."""
    training_options = {"num_epochs": 1, "save_every": 1, "mirroring": "all", "max_rotation_degrees": None,
                        "augmentation": "nnunet"}


class nnUNetTrainer_LMSAcdc_30ep(nnUNetTrainer_LightMedSeg):
    """7,500 iterations of the shipped recipe, a checkpoint every epoch (the long run)."""
    training_options = {"num_epochs": 30, "save_every": 1, "mirroring": "all", "max_rotation_degrees": None,
                        "augmentation": "nnunet"}


class _StockAcdc(nnUNetTrainer):
    """Stock nnU-Net's recipe (network, loss, SGD, poly schedule) in epochs of 50 iterations with a checkpoint
    every epoch: a stock step on these plans took ~90 s on the 2-core CPU (docs/runs/acdc/speed), so nnU-Net's
    250-iteration epoch (~6 h) would not fit in one session; 50 iterations (~75 min) do, and ``--c`` resumes. The
    poly schedule is stepped per epoch, so it has 5x as many (smaller) steps as with 250-iteration epochs over the
    same iterations; 10 validation iterations per epoch (the online pseudo Dice only; the final validation is
    nnU-Net's full one). Said next to every figure measured with it."""
    epochs = 1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_iterations_per_epoch = 50
        self.num_val_iterations_per_epoch = 10
        self.num_epochs = self.epochs
        self.save_every = 1


class nnUNetTrainer_StockAcdc_1ep(_StockAcdc):
    """250 iterations of stock nnU-Net (5 x 50; see _StockAcdc)."""
    epochs = 5


class nnUNetTrainer_StockAcdc_5ep(_StockAcdc):
    """1,250 iterations of stock nnU-Net (25 x 50; see _StockAcdc)."""
    epochs = 25


# ------------------------------------------------------------------ recipe candidates (250 iterations each)
# Each changes one thing against nnUNetTrainer_LMSAcdc_1ep; 10 online validation iterations per epoch instead of
# 50 (the online pseudo Dice only: nnU-Net's final validation of all 28 held-out volumes is what is compared).
_SHORT = {"num_epochs": 1, "save_every": 1, "num_val_iterations_per_epoch": 10, "mirroring": "all",
          "max_rotation_degrees": None, "augmentation": "nnunet"}  # as run (nnU-Net's rotation range: the default before 2026-12-07)


class nnUNetTrainer_LMSAcdc_1ep_lr1e2(nnUNetTrainer_LightMedSeg):
    """Peak learning rate 1e-2 instead of 3e-3 (the early gap: does a faster rate learn more in 250 iterations?)."""
    training_options = dict(_SHORT, initial_lr=1e-2)


class nnUNetTrainer_LMSAcdc_1ep_fullres(nnUNetTrainer_LightMedSeg):
    """Reading B: the last decoder stage on the input grid (thin myocardium and RV at 1.56 mm in-plane)."""
    network_options = {"full_resolution_decoder": True}
    training_options = dict(_SHORT)


class nnUNetTrainer_LMSAcdc_1ep_kernels(nnUNetTrainer_LightMedSeg):
    """nnU-Net's planned 1x3x3 kernels on the fine levels (slices 10 mm apart)."""
    kernels_from_plans = True
    training_options = dict(_SHORT)


class nnUNetTrainer_LMSAcdc_1ep_dicece(nnUNetTrainer_LightMedSeg):
    """nnU-Net's own loss balance: Dice + unweighted CE, no boundary term (class weights clamped to 1)."""
    loss_options = {"weight_boundary": 0.0, "min_class_weight": 1.0, "max_class_weight": 1.0}
    training_options = dict(_SHORT)


class _NoMirror:
    """No mirroring in training or inference (as stock ``nnUNetTrainerNoMirroring``): cine-MRI short-axis stacks
    share one orientation, so a flipped heart (RV on the other side) is a view the test data never shows."""

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, None


class nnUNetTrainer_LMSAcdc_1ep_nomirror(_NoMirror, nnUNetTrainer_LightMedSeg):
    """The shipped recipe without mirroring."""
    training_options = dict(_SHORT)


# round 2: one change each on top of no mirroring (round 1's winner)
class nnUNetTrainer_LMSAcdc_1ep_nm_lr1e2(_NoMirror, nnUNetTrainer_LightMedSeg):
    training_options = dict(_SHORT, initial_lr=1e-2)


class nnUNetTrainer_LMSAcdc_1ep_nm_dicece(_NoMirror, nnUNetTrainer_LightMedSeg):
    loss_options = {"weight_boundary": 0.0, "min_class_weight": 1.0, "max_class_weight": 1.0}
    training_options = dict(_SHORT)


class nnUNetTrainer_LMSAcdc_1ep_nm_kernels(_NoMirror, nnUNetTrainer_LightMedSeg):
    kernels_from_plans = True
    training_options = dict(_SHORT)


class nnUNetTrainer_LMSAcdc_1ep_flip0(nnUNetTrainer_LightMedSeg):
    """Random flips along nnU-Net's first spatial axis only (here the slice axis, base <-> apex), in training and at
    test time: the paper's "random flipping" without the in-plane flips that move the RV to the other side."""
    training_options = dict(_SHORT)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = (0,)
        return rotation, dummy_2d, initial_patch_size, (0,)


class nnUNetTrainer_LMSAcdc_5ep_nomirror(_NoMirror, nnUNetTrainer_LightMedSeg):
    """``nnUNetTrainer_LightMedSeg_NoMirroring`` at 1,250 iterations, a checkpoint every epoch (not run)."""
    training_options = {"num_epochs": 5, "save_every": 1}


# round 3 (2026-12-07), on top of today's default (flips of the first axis only): nnU-Net rotates thick-slice
# (dummy-2D) patches by up to +-180 degrees in-plane (its own comment: "why do we rotate 180 deg here all the time?
# We should also restrict it"); (the shared volumes' in-plane angles span ~140 degrees:
# orientation.py, measured after round 3). Capped at nnU-Net's 3D +-30.
class nnUNetTrainer_LMSAcdc_1ep_rot30(nnUNetTrainer_LightMedSeg):
    training_options = dict(_SHORT, mirroring="first_axis", max_rotation_degrees=30)


class nnUNetTrainer_LMSAcdc_1ep_rot30_ds(nnUNetTrainer_LightMedSeg):
    """+ deep supervision (auxiliary heads at 1/2 and 1/4 resolution, nnU-Net's DeepSupervisionWrapper)."""
    network_options = {"deep_supervision": True}
    training_options = dict(_SHORT, mirroring="first_axis", max_rotation_degrees=30)


class nnUNetTrainer_LMSAcdc_5ep_rot30(nnUNetTrainer_LightMedSeg):
    """1,250 iterations with flips of the first axis and rotation capped at +-30 degrees (the default since
    2026-12-07), a checkpoint every epoch, nnU-Net's 50 online validation iterations (as ``_5ep``)."""
    training_options = {"num_epochs": 5, "save_every": 1, "mirroring": "first_axis", "max_rotation_degrees": 30,
                        "augmentation": "nnunet"}


class nnUNetTrainer_LMSAcdc_1ep_rot30_paperaug(nnUNetTrainer_LightMedSeg):
    """+ the paper's kinds of augmentation only (§4: flipping, rotation, Gaussian noise; nnU-Net's spatial transform
    kept, no blur, brightness, contrast, low-resolution or gamma)."""
    training_options = dict(_SHORT, mirroring="first_axis", max_rotation_degrees=30, augmentation="paper")


class nnUNetTrainer_LMSAcdc_5ep_rot30_paperaug(nnUNetTrainer_LightMedSeg):
    """``_5ep_rot30`` with the paper's kinds of augmentation only (see ``_1ep_rot30_paperaug``)."""
    training_options = {"num_epochs": 5, "save_every": 1, "mirroring": "first_axis", "max_rotation_degrees": 30,
                        "augmentation": "paper"}


# round 4 (2026-12-07, results in README.md): one change each on top of _1ep_rot30_paperaug
_RPA = dict(_SHORT, mirroring="first_axis", max_rotation_degrees=30, augmentation="paper")


class nnUNetTrainer_LMSAcdc_1ep_rpa_ds(nnUNetTrainer_LightMedSeg):
    """+ deep supervision (auxiliary heads at 1/2 and 1/4 resolution, nnU-Net's DeepSupervisionWrapper)."""
    network_options = {"deep_supervision": True}
    training_options = dict(_RPA)


class nnUNetTrainer_LMSAcdc_1ep_rpa_nomirror(nnUNetTrainer_LightMedSeg):
    """+ no flips at all (training and test time)."""
    training_options = dict(_RPA, mirroring="none")


class nnUNetTrainer_LMSAcdc_1ep_rpa_clamp2(nnUNetTrainer_LightMedSeg):
    """+ class weights clamped to [1/2, 2] instead of [1/3, 3] (4:1 instead of 9:1 foreground to background on ACDC,
    where every class is rare: the 250-iteration models predict RV at ~2x its volume)."""
    loss_options = {"min_class_weight": 0.5, "max_class_weight": 2.0}
    training_options = dict(_RPA)


class nnUNetTrainer_LMSAcdc_1ep_rpa_pk(nnUNetTrainer_LightMedSeg):
    """+ nnU-Net's planned kernels (``kernels_from_plans``: 1x3x3 on the stem grid, where nnU-Net plans 1x3x3 because
    slices 10 mm apart are > 2x the 3.1 mm in-plane spacing there); never measured on real thick-slice data before."""
    kernels_from_plans = True
    training_options = dict(_RPA)


class nnUNetTrainer_LMSAcdc_5ep_rpa_rot90(nnUNetTrainer_LightMedSeg):
    """``_5ep_rot30_paperaug`` with rotation up to +-90 degrees: the shared volumes' hearts lie within ~140 degrees of
    each other in-plane (``orientation.py``: 13 of 70 patients turned ~75-90 degrees from the rest, where the +-30
    degree models fail most), so +-30 does not reach from one group to the other; +-90 does, without the upside-down
    hearts of nnU-Net's +-180. nnU-Net rotates 20 % of the samples (``p_rotation``), unchanged."""
    training_options = {"num_epochs": 5, "save_every": 1, "mirroring": "first_axis", "max_rotation_degrees": 90,
                        "augmentation": "paper"}


class nnUNetTrainer_LMSAcdc_1ep_rot30_paperaug_rep2(nnUNetTrainer_LightMedSeg):
    """``_1ep_rot30_paperaug`` again (nnU-Net draws new initial weights and patches each run): the spread between two
    runs of one recipe, against which the 250-iteration screens are read."""
    training_options = dict(_RPA)


# ---------------------------------------------------------------- round 5: the paper's ablation on ACDC (item 4)
# Each is the shipped ablation trainer of training/variants.py (the default recipe: first-axis flips, rotation
# +-30 degrees, the paper's kinds of augmentation) at 5 x 250 iterations with a checkpoint every epoch, paired
# against ``_5ep_rot30_paperaug`` (the same recipe with the default network).
from nnunetv2_lightmedseg.training.variants import (nnUNetTrainer_LightMedSeg_16anchors,  # noqa: E402
                                                    nnUNetTrainer_LightMedSeg_NoAnchors,
                                                    nnUNetTrainer_LightMedSeg_NoLSPM,
                                                    nnUNetTrainer_LightMedSeg_NoSkipRouter,
                                                    nnUNetTrainer_LightMedSeg_StandardConv)

_5EP = {"num_epochs": 5, "save_every": 1}


class nnUNetTrainer_LMSAcdc_5ep_noanchors(nnUNetTrainer_LightMedSeg_NoAnchors):
    """w/o the anchor detector (no FiLM, no position bias), 1,250 iterations, today's defaults."""
    training_options = dict(_5EP)


class nnUNetTrainer_LMSAcdc_5ep_nolspm(nnUNetTrainer_LightMedSeg_NoLSPM):
    """w/o LSPM, 1,250 iterations, today's defaults."""
    training_options = dict(_5EP)


class nnUNetTrainer_LMSAcdc_5ep_noskiprouter(nnUNetTrainer_LightMedSeg_NoSkipRouter):
    """plain U-Net skips instead of the skip router, 1,250 iterations, today's defaults."""
    training_options = dict(_5EP)


class nnUNetTrainer_LMSAcdc_5ep_standard(nnUNetTrainer_LightMedSeg_StandardConv):
    """dense Conv3D instead of GhostConv3D, 1,250 iterations, today's defaults."""
    training_options = dict(_5EP)


class nnUNetTrainer_LMSAcdc_5ep_anchors16(nnUNetTrainer_LightMedSeg_16anchors):
    """16 anchors, 1,250 iterations, today's defaults."""
    training_options = dict(_5EP)


class nnUNetTrainer_LMSAcdc_30ep_default(nnUNetTrainer_LightMedSeg):
    """The long run (>= 7,500 iterations, issue 21): the shipped defaults at 30 x 250 iterations, one cosine over all
    of them, a checkpoint every epoch so that it resumes with ``--c`` across sessions."""
    training_options = {"num_epochs": 30, "save_every": 1}


class nnUNetTrainer_LMSAcdc_5ep_qt50(nnUNetTrainer_LightMedSeg):
    """Today's defaults + in-plane quarter turns (+-90 degrees) on half the training patches: 12 of the 70 shared
    patients are stored a quarter turn from the rest (their images wider than tall; ``orientation_groups.txt``) and
    every model so far fails on them (0.50 against 0.80)."""
    training_options = {"num_epochs": 5, "save_every": 1, "quarter_turn_probability": 0.5}
