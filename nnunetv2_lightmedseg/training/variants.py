"""Trainer variants: small subclasses of :class:`nnUNetTrainer_LightMedSeg` named after what they change.

Each is a plain class that overrides class attributes only (like nnU-Net's ``nnUNetTrainer_Xepochs``):
``network_options`` (keyword arguments of :class:`LightMedSeg`, from the registry
:mod:`nnunetv2_lightmedseg.network.variants`), ``kernels_from_plans`` or ``training_options`` (trainer attributes
set after nnU-Net's ``__init__``). Use any of them with ``nnUNetv2_train ... -tr <name>`` after
``lightmedseg install-trainers``.

:data:`TRAINER_TABLE` is the one list of shipped trainers with a line each on what they change: the README's
trainer table and the tests are checked against it. To add a trainer: a class below and its row in the table.
"""
from __future__ import annotations

from typing import Dict

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_lightmedseg.network.variants import (ANCHORS16, ANCHORS32, BLOCK_HEAD, DEEP_SUPERVISION,
                                                   FULL_RESOLUTION_DECODER, ISOTROPIC, NO_ANCHORS, NO_LSPM,
                                                   NO_SKIP_ROUTER, STANDARD_CONV)
from nnunetv2_lightmedseg.training.trainer import nnUNetTrainer_LightMedSeg

#: every shipped trainer, in the README's order: name -> what it changes (one line)
TRAINER_TABLE: Dict[str, str] = {
    "nnUNetTrainer_LightMedSeg": "the paper's network, boundary-augmented loss, AdamW with warm-up + cosine, "
                                 "300 epochs",
    "nnUNetTrainer_LightMedSeg_StandardConv": "dense Conv3D instead of every GhostConv3D (paper: \"Standard Conv\")",
    "nnUNetTrainer_LightMedSeg_NoLSPM": "ablation: without LSPM",
    "nnUNetTrainer_LightMedSeg_NoAnchors": "ablation: without the anchor detector (no FiLM, no position bias)",
    "nnUNetTrainer_LightMedSeg_NoSkipRouter": "ablation: plain U-Net skips instead of the skip router",
    "nnUNetTrainer_LightMedSeg_16anchors": "anchor-count ablation: 16 anchors (default 8)",
    "nnUNetTrainer_LightMedSeg_32anchors": "anchor-count ablation: 32 anchors (default 8)",
    "nnUNetTrainer_LightMedSeg_FullResDecoder": "the paper's other resolution reading: last decoder stage at full "
                                                "resolution",
    "nnUNetTrainer_LightMedSeg_BlockHead": "head transposed conv with kernel 2 = stride (the earlier default)",
    "nnUNetTrainer_LightMedSeg_DeepSupervision": "auxiliary heads at 1/2 and 1/4 resolution (not in the paper)",
    "nnUNetTrainer_LightMedSeg_Isotropic": "the paper's isotropic schedule on any plans (thick slices: padded patch)",
    "nnUNetTrainer_LightMedSeg_PlannedKernels": "nnU-Net's planned kernels (e.g. 1x3x3) as well as its strides",
    "nnUNetTrainer_LightMedSeg_NoMirroring": "no mirroring in training or at test time (anatomy of one handedness)",
    "nnUNetTrainer_LightMedSeg_nnUNetAugmentation": "nnU-Net's full augmentation (adds blur, brightness, contrast, "
                                                    "low-res, gamma)",
    "nnUNetTrainer_LightMedSeg_1epoch": "1 epoch, as stock `nnUNetTrainer_1epoch`",
    "nnUNetTrainer_LightMedSeg_5epochs": "5 epochs, as stock `nnUNetTrainer_5epochs`",
    "nnUNetTrainer_LightMedSeg_10epochs": "10 epochs, as stock `nnUNetTrainer_10epochs`",
    "nnUNetTrainer_LightMedSeg_20epochs": "20 epochs, as stock `nnUNetTrainer_20epochs`",
    "nnUNetTrainer_LightMedSeg_50epochs": "50 epochs, as stock `nnUNetTrainer_50epochs`",
    "nnUNetTrainer_LightMedSeg_100epochs": "100 epochs, as stock `nnUNetTrainer_100epochs`",
    "nnUNetTrainer_CPUBench_4x50": "stock nnU-Net, 4 epochs x 50 iterations (CPU benchmark baseline)",
    "nnUNetTrainer_LightMedSeg_CPUBench_4x50": "LightMedSeg, 4 x 50 iterations (equal iterations to the above)",
    "nnUNetTrainer_LightMedSeg_CPUBench_16x50": "LightMedSeg, 16 x 50 iterations (CPU benchmark)",
    "nnUNetTrainer_LightMedSeg_CPUBench_32x50": "LightMedSeg, 32 x 50 iterations (CPU benchmark)",
    "nnUNetTrainer_LightMedSeg_IsoBench_4x50": "the isotropic network, 4 x 50 iterations (thick-slice benchmark)",
    "nnUNetTrainer_LightMedSeg_Demo": "`lightmedseg demo`: 8 x 20 iterations, peak learning rate 1e-2",
    "nnUNetTrainer_LightMedSeg_Smoke": "the tests' shortest run: 2 x 10 iterations",
}


# ------------------------------------------------------------------------- ablations (the paper's Table 4)
class nnUNetTrainer_LightMedSeg_StandardConv(nnUNetTrainer_LightMedSeg):
    """Table 4 "Standard Conv": every GhostConv3D is a dense Conv3D."""
    network_options = dict(STANDARD_CONV.options)


class nnUNetTrainer_LightMedSeg_NoLSPM(nnUNetTrainer_LightMedSeg):
    """Table 4 "w/o LSPM": no texture map; the stem output feeds encoder stage 1."""
    network_options = dict(NO_LSPM.options)


class nnUNetTrainer_LightMedSeg_NoAnchors(nnUNetTrainer_LightMedSeg):
    """Table 4 "w/o Global Anchor Detector": no anchors, so no FiLM and no position bias."""
    network_options = dict(NO_ANCHORS.options)


class nnUNetTrainer_LightMedSeg_NoSkipRouter(nnUNetTrainer_LightMedSeg):
    """Table 4 "w/o skip router": plain same-resolution U-Net skips."""
    network_options = dict(NO_SKIP_ROUTER.options)


class nnUNetTrainer_LightMedSeg_16anchors(nnUNetTrainer_LightMedSeg):
    """Anchor-count ablation: N = 16 instead of the default 8."""
    network_options = dict(ANCHORS16.options)


class nnUNetTrainer_LightMedSeg_32anchors(nnUNetTrainer_LightMedSeg):
    """Anchor-count ablation: N = 32 instead of the default 8."""
    network_options = dict(ANCHORS32.options)


# --------------------------------------------------------------------- options outside the paper's default
class nnUNetTrainer_LightMedSeg_FullResDecoder(nnUNetTrainer_LightMedSeg):
    """Reading B of the paper's resolution schedule: the last decoder stage works at the input grid. Not the
    default because it leaves the paper's FLOP budget; see docs/decisions.md#resolution-reading."""
    network_options = dict(FULL_RESOLUTION_DECODER.options)


class nnUNetTrainer_LightMedSeg_BlockHead(nnUNetTrainer_LightMedSeg):
    """The head's stride-2 transposed convolution with kernel = stride (the earlier default), kept to reproduce
    the figures measured with it; its checkpoints also load into the default network. See
    docs/decisions.md#head-upsampling."""
    network_options = dict(BLOCK_HEAD.options)


class nnUNetTrainer_LightMedSeg_DeepSupervision(nnUNetTrainer_LightMedSeg):
    """Auxiliary 1x1x1 heads on decoder stages 2 and 3, trained with nnU-Net's DeepSupervisionWrapper
    (weights 4/7, 2/7, 1/7 for the outputs at 1, 1/2, 1/4 of the patch); validation and prediction use the
    full-resolution output only. The paper has no deep supervision."""
    network_options = dict(DEEP_SUPERVISION.options)


class nnUNetTrainer_LightMedSeg_Isotropic(nnUNetTrainer_LightMedSeg):
    """The paper's isotropic ``[2, 2, 2]`` x 4 schedule and 3x3x3 kernels on any plans (needs a patch of at least
    16 voxels per axis): the baseline of the thick-slice comparison (``scripts/thick_slice_benchmark.sh``). See
    docs/decisions.md#resolution-schedule."""
    network_options = dict(ISOTROPIC.options)


class nnUNetTrainer_LightMedSeg_PlannedKernels(nnUNetTrainer_LightMedSeg):
    """nnU-Net's per-stage kernels as well as its strides (``1x3x3`` where nnU-Net plans ``[1, 3, 3]``) instead
    of the paper's 3x3x3; isotropic plans give the default network. See docs/decisions.md#planned-kernels."""
    kernels_from_plans = True


# --------------------------------------------------------------------------------------- augmentation
class nnUNetTrainer_LightMedSeg_NoMirroring(nnUNetTrainer_LightMedSeg):
    """No random flips in training and no test-time mirroring (as stock ``nnUNetTrainerNoMirroring``; the default
    flips the first axis), for anatomy never imaged mirrored; half the work per 3D prediction. See
    docs/decisions.md#mirroring."""
    training_options = {"mirroring": "none"}


class nnUNetTrainer_LightMedSeg_nnUNetAugmentation(nnUNetTrainer_LightMedSeg):
    """nnU-Net's full set of augmentations: the default keeps only the kinds the paper lists (§4) and leaves out
    blur, brightness, contrast, low-resolution simulation and gamma. See docs/decisions.md#augmentation."""
    training_options = {"augmentation": "nnunet"}


# ---------------------------------------------------------------- training lengths (mirror stock nnU-Net's)
class nnUNetTrainer_LightMedSeg_1epoch(nnUNetTrainer_LightMedSeg):
    training_options = {"num_epochs": 1}


class nnUNetTrainer_LightMedSeg_5epochs(nnUNetTrainer_LightMedSeg):
    training_options = {"num_epochs": 5}


class nnUNetTrainer_LightMedSeg_10epochs(nnUNetTrainer_LightMedSeg):
    training_options = {"num_epochs": 10}


class nnUNetTrainer_LightMedSeg_20epochs(nnUNetTrainer_LightMedSeg):
    training_options = {"num_epochs": 20}


class nnUNetTrainer_LightMedSeg_50epochs(nnUNetTrainer_LightMedSeg):
    training_options = {"num_epochs": 50}


class nnUNetTrainer_LightMedSeg_100epochs(nnUNetTrainer_LightMedSeg):
    training_options = {"num_epochs": 100}


# ------------------------------------------------------------------------- CPU benchmarks (2-core budget)
CPU_BENCH_4x50 = {"num_epochs": 4, "num_iterations_per_epoch": 50, "num_val_iterations_per_epoch": 10}


class nnUNetTrainer_CPUBench_4x50(nnUNetTrainer):
    """Stock nnU-Net (plain U-Net, DC+CE, SGD/poly) for 4 epochs x 50 iterations, 10 validation iterations: the
    pairs below differ from it only in network, loss and optimiser."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        for name, value in CPU_BENCH_4x50.items():
            setattr(self, name, value)


class nnUNetTrainer_LightMedSeg_CPUBench_4x50(nnUNetTrainer_LightMedSeg):
    training_options = dict(CPU_BENCH_4x50)


class nnUNetTrainer_LightMedSeg_CPUBench_16x50(nnUNetTrainer_LightMedSeg):
    training_options = dict(CPU_BENCH_4x50, num_epochs=16)


class nnUNetTrainer_LightMedSeg_CPUBench_32x50(nnUNetTrainer_LightMedSeg):
    training_options = dict(CPU_BENCH_4x50, num_epochs=32)


class nnUNetTrainer_LightMedSeg_IsoBench_4x50(nnUNetTrainer_LightMedSeg_Isotropic):
    training_options = dict(CPU_BENCH_4x50)


# ------------------------------------------------------------------------------------ demo and tests
class nnUNetTrainer_LightMedSeg_Demo(nnUNetTrainer_LightMedSeg):
    """``lightmedseg demo``: a few minutes on a 2-core CPU (8 x 20 iterations), with a checkpoint every epoch so
    that an interrupted demo resumes with ``--c`` from its last epoch. Peak learning rate 1e-2 instead of 3e-3,
    so that 160 iterations visibly learn; see docs/decisions.md#demo-learning-rate."""
    training_options = {"num_epochs": 8, "num_iterations_per_epoch": 20, "num_val_iterations_per_epoch": 5,
                        "initial_lr": 1e-2, "save_every": 1}


class nnUNetTrainer_LightMedSeg_Smoke(nnUNetTrainer_LightMedSeg):
    """Tests: the shortest run that exercises every hook (2 epochs so resuming with --c can be tested)."""
    training_options = {"num_epochs": 2, "num_iterations_per_epoch": 10, "num_val_iterations_per_epoch": 2}


#: every trainer class of this module (and the base trainer) by name: what nnU-Net's class finder can find here
ALL_TRAINERS = {name: obj for name, obj in dict(globals()).items()
                if isinstance(obj, type) and issubclass(obj, nnUNetTrainer) and name.startswith("nnUNetTrainer_")}
