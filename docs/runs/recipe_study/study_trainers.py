"""The trainers of the recipe study (issue 8), as run: ``nnUNetTrainer_LightMedSeg`` with one change each.

Every value is spelled out (not inherited from the current defaults) so that the runs stay reproducible when the
package's defaults move. Run one with (from the repository root, after ``eval "$(lightmedseg env)"``)::

    export nnUNet_extTrainer="$nnUNet_extTrainer:$PWD/docs/runs/recipe_study" nnUNet_n_proc_DA=1 STUDY_THREADS=1
    nnUNetv2_train 4 3d_fullres 0 -tr nnUNetTrainer_LMSExp_lr3e3_5ep -device cpu

The study ran three or four trainings at once on a 2-core CPU, one torch thread each (``STUDY_THREADS``; the
thread count changes speed, not what is learned). Round 1 (peak LR) ran at commit bae9a94, round 2 (one
candidate cause each, at round 1's best peak LR 3e-3) at commit c37577e.
"""
import os

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_lightmedseg.training.trainer import nnUNetTrainer_LightMedSeg


class _StudyThreads:
    """After nnU-Net's initialize: the CPU thread count of the study (``STUDY_THREADS``), written to the log."""

    def initialize(self):
        super().initialize()
        if self.device.type == "cpu":
            torch.set_num_threads(int(os.environ.get("STUDY_THREADS", os.environ.get("EXP_THREADS", "1"))))
            self.print_to_log_file(f"threads {torch.get_num_threads()}")


class _Study(_StudyThreads, nnUNetTrainer_LightMedSeg):
    # nnU-Net's signature spelled out: nnUNetTrainer.__init__ records its arguments by the names in self.__init__'s
    # signature (a *args/**kwargs signature stops it with KeyError: 'args')
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if hasattr(self, "mirroring") and "mirroring" not in self.training_options:
            self.mirroring = "all"  # every run here flipped every axis (nnU-Net's), the package default before 2026-12-04
        if "augmentation" not in self.training_options:
            self.augmentation = "nnunet"  # every run here before 2026-12-07 had nnU-Net's full augmentation set

    #: the head every run before the overlapping head had (kernel = stride); a trainer that sets its own
    #: network_options says its head there (see _BLOCKS below)
    network_options = {"head_upsampling": "blocks"}


_BLOCKS = {"head_upsampling": "blocks"}


# round 1: peak learning rate (everything else as the package had it at bae9a94)
class nnUNetTrainer_LMSExp_base_5ep(_Study):
    training_options = {"num_epochs": 5, "initial_lr": 1e-3}


class nnUNetTrainer_LMSExp_lr3e3_5ep(_Study):
    training_options = {"num_epochs": 5, "initial_lr": 3e-3}


class nnUNetTrainer_LMSExp_lr1e2_5ep(_Study):
    training_options = {"num_epochs": 5, "initial_lr": 1e-2}


# round 2: one candidate cause each, peak LR 3e-3 (compare each with nnUNetTrainer_LMSExp_lr3e3_5ep)
_R2 = {"num_epochs": 5, "initial_lr": 3e-3}


class nnUNetTrainer_LMSExp2_texmedian_5ep(_Study):
    training_options = _R2
    network_options = dict(_BLOCKS, texture_norm="median")


class nnUNetTrainer_LMSExp2_deepsup_5ep(_Study):
    training_options = _R2
    network_options = dict(_BLOCKS, deep_supervision=True)


class nnUNetTrainer_LMSExp2_fullres_5ep(_Study):
    training_options = _R2
    network_options = dict(_BLOCKS, full_resolution_decoder=True)


class nnUNetTrainer_LMSExp2_clamp3_5ep(_Study):
    training_options = _R2
    loss_options = {"max_class_weight": 3.0, "min_class_weight": 1 / 3}


# learning curves (issue 8, item 2): the final recipe (peak LR 3e-3, class-weight clamp [1/3, 3]) spelled out,
# for the long run of 30 x 250 iterations (checkpoint every epoch: it may span sessions, resumed with --c).
# Run alone, two threads (STUDY_THREADS=2), nnUNet_n_proc_DA=1.
class nnUNetTrainer_LMSLong_30ep(_Study):
    training_options = {"num_epochs": 30, "initial_lr": 3e-3, "save_every": 1}  # resumable with --c
    loss_options = {"max_class_weight": 3.0, "min_class_weight": 1 / 3}


# learning curves (issue 8, item 2): stock nnU-Net at 250 and 1,250 iterations, unchanged except the number of
# epochs (as nnU-Net's own nnUNetTrainer_1epoch / _5epochs), the thread count, and a checkpoint every epoch so
# that the two-hour 1,250-iteration run can be resumed with --c. Run alone, STUDY_THREADS=2, nnUNet_n_proc_DA=1.
class _StockStudy(_StudyThreads, nnUNetTrainer):
    num_epochs_override = 5

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.num_epochs_override
        self.save_every = 1


class nnUNetTrainer_StockCurve_1ep(_StockStudy):
    num_epochs_override = 1


class nnUNetTrainer_StockCurve_5ep(_StockStudy):
    num_epochs_override = 5


# the paper's ablation on real data (issue 8, item 3): the final recipe (peak LR 3e-3, clamp [1/3, 3]) spelled out,
# 5 x 250 iterations, one network change each (options from the package's variant registry, as
# nnUNetTrainer_LightMedSeg_<Variant> uses them), plus the default trained by the same code for the paired
# comparison. Two at a time, one thread each (STUDY_THREADS=1), nnUNet_n_proc_DA=1.
from nnunetv2_lightmedseg.network.variants import (ANCHORS16, ANCHORS32, FULL_RESOLUTION_DECODER,  # noqa: E402
                                                   NO_ANCHORS, NO_LSPM, NO_SKIP_ROUTER, STANDARD_CONV)

_FINAL = {"num_epochs": 5, "initial_lr": 3e-3, "save_every": 1}
_FINAL_LOSS = {"max_class_weight": 3.0, "min_class_weight": 1 / 3}


def _ablation(name: str, options) -> type:
    return type(name, (_Study,), {"__module__": __name__, "__qualname__": name, "training_options": _FINAL,
                                  "loss_options": _FINAL_LOSS, "network_options": dict(_BLOCKS, **options)})


nnUNetTrainer_LMSAbl_default_5ep = _ablation("nnUNetTrainer_LMSAbl_default_5ep", {})
nnUNetTrainer_LMSAbl_standard_5ep = _ablation("nnUNetTrainer_LMSAbl_standard_5ep", STANDARD_CONV.options)
nnUNetTrainer_LMSAbl_nolspm_5ep = _ablation("nnUNetTrainer_LMSAbl_nolspm_5ep", NO_LSPM.options)
nnUNetTrainer_LMSAbl_noanchors_5ep = _ablation("nnUNetTrainer_LMSAbl_noanchors_5ep", NO_ANCHORS.options)
nnUNetTrainer_LMSAbl_noskiprouter_5ep = _ablation("nnUNetTrainer_LMSAbl_noskiprouter_5ep", NO_SKIP_ROUTER.options)
nnUNetTrainer_LMSAbl_anchors16_5ep = _ablation("nnUNetTrainer_LMSAbl_anchors16_5ep", ANCHORS16.options)
nnUNetTrainer_LMSAbl_anchors32_5ep = _ablation("nnUNetTrainer_LMSAbl_anchors32_5ep", ANCHORS32.options)


# the long run of reading B (full-resolution last decoder stage), the lever for the 0.86 target: 30 x 250
# iterations, final recipe, checkpoint every epoch. Alone, STUDY_THREADS=2.
class nnUNetTrainer_LMSLongFullRes_30ep(_Study):
    training_options = {"num_epochs": 30, "initial_lr": 3e-3, "save_every": 1}
    loss_options = {"max_class_weight": 3.0, "min_class_weight": 1 / 3}
    network_options = dict(_BLOCKS, **FULL_RESOLUTION_DECODER.options)


# the head's upsampling (paper: "a transposed convolution with stride 2", kernel lost): overlapping kernel 4
# initialised as trilinear interpolation, against the default kernel 2 (= stride). Final recipe, 5 x 250
# iterations, two runs (the default's two runs of this recipe are the clamp run and the ablation's default).
# Alone, STUDY_THREADS=2.
nnUNetTrainer_LMSHead_overlap_5ep = _ablation("nnUNetTrainer_LMSHead_overlap_5ep", {"head_upsampling": "overlap"})
nnUNetTrainer_LMSHead_overlap_5ep_r2 = _ablation("nnUNetTrainer_LMSHead_overlap_5ep_r2", {"head_upsampling": "overlap"})


# the learning curve of the final recipe with the overlapping head (issue 8, item 2): 250, 2,500 and 7,500
# iterations, each with its own cosine schedule and final validation (1,250: the two runs above). Alone,
# STUDY_THREADS=2, checkpoint every epoch.
_OVERLAP = {"head_upsampling": "overlap"}


def _curve(name: str, epochs: int) -> type:
    return type(name, (_Study,), {"__module__": __name__, "__qualname__": name,
                                  "training_options": dict(_FINAL, num_epochs=epochs),
                                  "loss_options": _FINAL_LOSS, "network_options": dict(_OVERLAP)})


nnUNetTrainer_LMSOverlap_1ep = _curve("nnUNetTrainer_LMSOverlap_1ep", 1)
nnUNetTrainer_LMSOverlap_10ep = _curve("nnUNetTrainer_LMSOverlap_10ep", 10)
nnUNetTrainer_LMSOverlap_30ep = _curve("nnUNetTrainer_LMSOverlap_30ep", 30)


# the paper's ablation again with the final network, i.e. the kernel-4 head that became the default after the
# ablation above ran (issue 8, item 3: "with the final recipe"): same arms, same recipe, 5 x 250 iterations.
# The default arm is nnUNetTrainer_LMSHead_overlap_5ep and _r2 (two runs). Alone, STUDY_THREADS=2.
def _ablation_k4(name: str, options) -> type:
    return _ablation(name, dict(options, **_OVERLAP))


nnUNetTrainer_LMSAbl4_standard_5ep = _ablation_k4("nnUNetTrainer_LMSAbl4_standard_5ep", STANDARD_CONV.options)
nnUNetTrainer_LMSAbl4_nolspm_5ep = _ablation_k4("nnUNetTrainer_LMSAbl4_nolspm_5ep", NO_LSPM.options)
nnUNetTrainer_LMSAbl4_noanchors_5ep = _ablation_k4("nnUNetTrainer_LMSAbl4_noanchors_5ep", NO_ANCHORS.options)
nnUNetTrainer_LMSAbl4_noskiprouter_5ep = _ablation_k4("nnUNetTrainer_LMSAbl4_noskiprouter_5ep",
                                                      NO_SKIP_ROUTER.options)
nnUNetTrainer_LMSAbl4_anchors16_5ep = _ablation_k4("nnUNetTrainer_LMSAbl4_anchors16_5ep", ANCHORS16.options)
nnUNetTrainer_LMSAbl4_anchors32_5ep = _ablation_k4("nnUNetTrainer_LMSAbl4_anchors32_5ep", ANCHORS32.options)


class nnUNetTrainer_LMSH_nomirror_5ep(_Study):
    """Issue 21: the shipped recipe (kernel-4 head, lr 3e-3, clamp [1/3, 3]) without mirroring in training and
    inference, against the two default runs (LMSHead_overlap_5ep, _r2)."""
    network_options = dict(_OVERLAP)
    training_options = dict(_FINAL)
    loss_options = dict(_FINAL_LOSS)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch_size, None


class nnUNetTrainer_LMSH_flip0_5ep(_Study):
    """Issue 21: the shipped recipe with random flips along the first spatial axis only (training and test time)."""
    network_options = dict(_OVERLAP)
    training_options = dict(_FINAL)
    loss_options = dict(_FINAL_LOSS)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = (0,)
        return rotation, dummy_2d, initial_patch_size, (0,)


class nnUNetTrainer_LMSH_paperaug_5ep(_Study):
    """Issue 21: today's default (flips of the first axis) with the paper's kinds of augmentation only (nnU-Net's
    spatial transform, Gaussian noise, flips; no blur, brightness, contrast, low-resolution or gamma)."""
    network_options = dict(_OVERLAP)
    training_options = dict(_FINAL, mirroring="first_axis", augmentation="paper")
    loss_options = dict(_FINAL_LOSS)
