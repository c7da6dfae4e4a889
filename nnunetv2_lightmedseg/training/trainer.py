"""``nnUNetTrainer_LightMedSeg``: nnU-Net's trainer with LightMedSeg's network, loss and optimiser.

Only what the paper changes is overridden; nnU-Net keeps planning, preprocessing, augmentation (the kinds §4 lists:
its spatial transform with rotation within +-30 degrees, Gaussian noise, flips of its first axis), five-fold splits,
sliding-window validation/prediction, checkpointing and CUDA mixed precision.

=====================================  ====================================================================
nnU-Net hook                           LightMedSeg (paper section)
=====================================  ====================================================================
``build_network_architecture``         ``LightMedSeg(in, out, strides, kernel_sizes, **network_options)`` (§3),
                                       per-axis schedule from the plans; one output; for ``nnUNetv2_predict`` in
                                       a CPU-only process :func:`~nnunetv2_lightmedseg.cpu.setup_cpu_predictor`
``enable_deep_supervision``            False: the paper's network has one output (§3.6); True only for networks
                                       built with ``deep_supervision=True`` (variant)
``set_deep_supervision_enabled``       switches the network's auxiliary outputs (no-op without them)
``_get_deep_supervision_scales``       the network's own output scales (``LightMedSeg.deep_supervision_scales``)
``_build_loss``                        :class:`~nnunetv2_lightmedseg.loss.BoundaryCompoundLoss` (§3.7), with
                                       ``loss_options``; in ``DeepSupervisionWrapper`` when deep supervision is on
``configure_optimizers``               AdamW + per-iteration linear warm-up and cosine annealing (§4)
``train_step``                         stock step (grad-norm clipping at 12), then one scheduler step; on a
                                       CPU, timed for the thread tuner (:mod:`nnunetv2_lightmedseg.cpu.threads`)
``on_train_start``                     stock, then on a CPU the thread count from timed steps
                                       (``LIGHTMEDSEG_CPU_THREADS``: ``auto`` or a fixed count)
``initialize``                         stock, then channels_last_3d weights on CPU; the network record in the
                                       plans nnU-Net copies to the results folder (:mod:`nnunetv2_lightmedseg.network.record`)
``save_checkpoint``/``load_checkpoint``  stock, plus the network record; checkpoints are read without executing
                                       code (:mod:`nnunetv2_lightmedseg.checkpoints`)
``configure_rotation_dummyDA_...``    nnU-Net's, with the flipped axes of ``mirroring`` (training and test time)
                                       and rotation capped at ``max_rotation_degrees`` (§4 names neither), plus
                                       in-plane quarter turns with ``quarter_turn_probability`` (off by default)
``get_training_transforms``            nnU-Net's, only the kinds §4 lists (``augmentation = "nnunet"``: all)
progress bars, Ctrl-C                  :class:`~nnunetv2_lightmedseg.training.progress.ProgressMixin`
=====================================  ====================================================================

The hyper-parameters the paper lost, and why these values: see docs/decisions.md#learning-rate,
#optimiser-and-schedule and #epoch-length (peak learning rate 3e-3, weight decay 1e-2, betas (0.9, 0.999),
3 % linear warm-up, cosine to 1e-6, nnU-Net's gradient clipping at 12, nnU-Net's epoch of 250 iterations).

Variants change class attributes only: ``network_options`` (kwargs of :class:`LightMedSeg`),
``loss_options`` (kwargs of :class:`~nnunetv2_lightmedseg.loss.BoundaryCompoundLoss`) and
``training_options`` (trainer attributes set after nnU-Net's ``__init__``, e.g. ``num_epochs``); see
:mod:`.variants` for the table of all trainers.
"""
from __future__ import annotations

import contextlib
import functools
import glob
import os
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch
from torch import nn

from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunetv2_lightmedseg.checkpoints import load_checkpoint, safe_torch_load
from nnunetv2_lightmedseg.cpu import setup_cpu_predictor
from nnunetv2_lightmedseg.cpu.allocator import ENV_SWITCH, configure_cpu_allocator
from nnunetv2_lightmedseg.cpu.threads import ENV_SWITCH as THREADS_SWITCH, ThreadTuner, thread_setting
from nnunetv2_lightmedseg.deploy.input_check import attach_non_finite_warning
from nnunetv2_lightmedseg.loss.boundary_compound import BoundaryCompoundLoss
from nnunetv2_lightmedseg.network import LightMedSeg
from nnunetv2_lightmedseg.network.record import (KEY as NETWORK_KEY, build_from_record, check_matches, differences,
                                                 make_record, unwrap)
from nnunetv2_lightmedseg.network.schedule import describe, minimum_size_message, schedule_from_plans
from nnunetv2_lightmedseg.training.lr_schedule import WarmupCosineLRScheduler
from nnunetv2_lightmedseg.training.progress import ProgressMixin
from nnunetv2_lightmedseg.training.rotation import QuarterTurnRotation
from nnunetv2_lightmedseg.utils.files import atomic_path

#: True while a trainer builds its own network (initialize): the CPU predictor set-up is for nnU-Net's predictor only
_BUILDING_FOR_TRAINING = False


@contextlib.contextmanager
def _building_for_training() -> Iterator[None]:
    global _BUILDING_FOR_TRAINING
    previous, _BUILDING_FOR_TRAINING = _BUILDING_FOR_TRAINING, True
    try:
        yield
    finally:
        _BUILDING_FOR_TRAINING = previous


#: trainer ``augmentation`` values: nnU-Net's full set ("nnunet") or the paper's kinds only ("paper": nnU-Net's
#: spatial transform, Gaussian noise and flips, without blur, brightness, contrast, low-resolution and gamma)
AUGMENTATIONS = ("nnunet", "paper")
#: the transforms (inside nnU-Net's RandomTransform) that ``augmentation = "paper"`` leaves out
_NOT_IN_THE_PAPER = (GaussianBlurTransform, MultiplicativeBrightnessTransform, ContrastTransform,
                     SimulateLowResolutionTransform, GammaTransform)

#: trainer ``mirroring`` values: nnU-Net's random flips of every spatial axis ("all"), of its first axis only
#: ("first_axis", the default), or none ("none"); the same axes are mirrored at test time
MIRRORING = ("all", "first_axis", "none")


class nnUNetTrainer_LightMedSeg(ProgressMixin, nnUNetTrainer):
    """nnU-Net trainer for LightMedSeg (paper §3-§4). Constructor signature identical to ``nnUNetTrainer``."""

    #: keyword arguments of :class:`LightMedSeg` (variants override this; {} = the paper's default network)
    network_options: Dict[str, Any] = {}
    #: False: the paper's 3x3x3 kernels on every level, strides from the plans; True: nnU-Net's per-stage kernels
    #: too (``1x3x3`` where nnU-Net plans them; see build_network_architecture for the measurement)
    kernels_from_plans: bool = False
    #: keyword arguments of :class:`BoundaryCompoundLoss` (variants override: term weights, weight clamp)
    loss_options: Dict[str, Any] = {}
    #: trainer attributes applied after nnU-Net's __init__ (variants override: num_epochs, iterations, ...)
    training_options: Dict[str, Any] = {}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        # the paper's network has a single full-resolution output: no deep supervision, so nnU-Net's data
        # loader gives plain (non-list) targets and the loss is not wrapped in DeepSupervisionWrapper; only a
        # network built with auxiliary heads (network option deep_supervision=True) is deep-supervised
        self.enable_deep_supervision = bool(self.network_options.get("deep_supervision", False))
        self.num_epochs = 300
        self.initial_lr = 3e-3
        self.weight_decay = 1e-2
        self.min_lr = 1e-6
        self.warmup_fraction = 0.03
        self.adamw_betas = (0.9, 0.999)
        self.mirroring = "first_axis"  # the paper's random flipping: see MIRRORING and configure_rotation_...
        self.augmentation = "paper"  # see AUGMENTATIONS and get_training_transforms
        self.max_rotation_degrees = 30.0  # cap of nnU-Net's rotation range (None: nnU-Net's); configure_rotation_...
        self.quarter_turn_probability = 0.0  # in-plane quarter turns (pseudo-2D and 2D plans); configure_rotation_...
        self.cpu_threads = thread_setting()  # None: chosen from timed steps; read here so a typo fails at once
        for name, value in self.training_options.items():
            if not hasattr(self, name):
                raise AttributeError(f"{type(self).__name__}.training_options sets unknown attribute {name!r}")
            setattr(self, name, value)

    # ---------------------------------------------------------------------------------------------------- #
    # network
    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager,
                                   configuration_manager: ConfigurationManager,
                                   num_input_channels: int,
                                   num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """Build LightMedSeg for the plans (input channels, segmentation heads); nnunetv2 2.8 signature.

        A classmethod (nnU-Net's is a staticmethod; both are called as ``trainer_class.build_...(...)`` by the
        trainer and by ``nnUNetPredictor``) so that each variant's ``network_options`` is used.
        ``enable_deep_supervision`` switches the auxiliary outputs of a network built with
        ``deep_supervision=True`` (the heads exist either way, so the predictor, which passes False, builds
        exactly the trained network and loads its checkpoint strictly); the paper's network has none.

        Resolution schedule: the per-axis ``strides`` of LightMedSeg's four downsampling steps and its
        ``kernel_sizes`` per level come from the plans' U-Net (``network_arch_init_kwargs['strides']`` and
        ``['kernel_sizes']``, nnU-Net's ``pool_op_kernel_sizes`` / ``conv_kernel_sizes``) by the rule of
        :func:`~nnunetv2_lightmedseg.network.schedule.schedule_from_plans`: the first four non-trivial stage
        strides, completed by repeating the last. Thick-slice plans thus give in-plane steps (no padding of a
        10-slice patch to 16, no halving of z down to one slice), isotropic plans the paper's network.

        Kernels stay the paper's 3x3x3 on every level (``kernels_from_plans = False``); the variant
        ``nnUNetTrainer_LightMedSeg_PlannedKernels`` takes nnU-Net's per-stage kernels instead (``1x3x3`` where
        nnU-Net plans ``[1, 3, 3]``): see docs/decisions.md#planned-kernels.
        A variant's ``network_options`` may set ``strides``/``kernel_sizes`` itself (they then win). Plans
        without these entries (a custom architecture) give the paper's isotropic schedule. The plain U-Net's
        other entries (widths, convolutions per stage) do not apply to LightMedSeg.

        When the configuration holds a network record (``"lightmedseg_network"``, written by the trainer into the
        plans it copies to the results folder, see :mod:`nnunetv2_lightmedseg.network.record`), the network is built from that record
        instead of this class's options and the installed defaults: a trained model keeps its architecture.
        """
        patch = [int(p) for p in configuration_manager.patch_size]
        if len(patch) != 3:
            raise ValueError(f"LightMedSeg is a 3D network but this configuration has a {len(patch)}D patch "
                             f"{patch}. Train a 3D configuration, e.g. 3d_fullres.")
        record = configuration_manager.configuration.get(NETWORK_KEY)
        if record is not None:
            network = build_from_record(record, num_input_channels, num_output_channels,
                                        source=f"the plans' '{NETWORK_KEY}' entry (plans.json of the model folder)")
        else:
            network = LightMedSeg(num_input_channels, num_output_channels,
                                  **cls.options_for_configuration(configuration_manager))
        small = minimum_size_message(patch, network.divisor, network.strides, what="patch axis")
        if small:
            minimum = list(network.divisor)
            raise ValueError(f"LightMedSeg's resolution schedule ({describe(network.strides, network.kernel_sizes)}) "
                             f"needs a patch of at least {minimum} voxels, but the plans' patch size is {patch}: "
                             f"{small}. Use `lightmedseg plans -d ID --variant planned` (patch rounded up to a "
                             f"multiple of {minimum} per axis) and train with -c 3d_fullres_lightmedseg_planned.")
        network.deep_supervision = bool(enable_deep_supervision) and network.aux_heads is not None
        attach_non_finite_warning(network)  # a warning naming the case for NaN/Inf images (inference only)
        if not torch.cuda.is_available() and not _BUILDING_FOR_TRAINING:
            setup_cpu_predictor(network)  # nnUNetv2_predict on a CPU-only machine (the trainer times whole steps)
        return network

    @classmethod
    def options_for_configuration(cls, configuration_manager: ConfigurationManager) -> Dict[str, Any]:
        """The ``LightMedSeg`` keyword arguments this trainer builds for a configuration without a network record:
        the variant's ``network_options`` with the plans' strides (and kernels with ``kernels_from_plans``)."""
        options = dict(cls.network_options)
        strides, kernel_sizes = cls.schedule_from_configuration(configuration_manager)
        options.setdefault("strides", strides)
        if cls.kernels_from_plans:
            options.setdefault("kernel_sizes", kernel_sizes)
        return options

    @staticmethod
    def schedule_from_configuration(configuration_manager: ConfigurationManager):
        """``(strides, kernel_sizes)`` of LightMedSeg for a configuration of the plans (see
        :mod:`nnunetv2_lightmedseg.network.schedule` for the rule); the paper's schedule when the plans'
        architecture has no ``strides`` entry."""
        arch = configuration_manager.network_arch_init_kwargs or {}
        return schedule_from_plans(arch.get("strides"), arch.get("kernel_sizes"))

    def _plain_network(self) -> LightMedSeg:
        return unwrap(self.network)

    def set_deep_supervision_enabled(self, enabled: bool):
        """Switch the auxiliary outputs (nnU-Net calls this around validation); no-op without auxiliary heads."""
        net = self._plain_network()
        net.deep_supervision = bool(enabled) and net.aux_heads is not None

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return None
        return self._plain_network().deep_supervision_scales()

    def initialize(self):
        if NETWORK_KEY not in self.configuration_manager.configuration:
            folder_record = self._record_of_trained_folds()
            if folder_record is not None:
                self._use_record(folder_record)
        with _building_for_training():
            super().initialize()
        # the plans nnU-Net copies to the results folder (on_train_start) now describe the network built, so that
        # nnUNetPredictor rebuilds exactly this network whatever plugin version is installed then
        self._use_record(make_record(self._plain_network()))
        if self.device.type == "cpu":
            # oneDNN's 3D convolutions are much faster in channels_last_3d; the network converts its input on
            # CPU, converting the weights too avoids a reorder per convolution call. Module.to() keeps the
            # Parameter objects (only .data changes), so the optimiser built in super().initialize() still
            # holds them, and state_dict()/load_state_dict() are memory-format agnostic.
            self.network.to(memory_format=torch.channels_last_3d)
            # glibc keeps freed activations for reuse instead of page-faulting fresh memory in every op
            self.print_to_log_file(f"LightMedSeg: CPU allocator tuning {configure_cpu_allocator()} "
                                   f"(see nnunetv2_lightmedseg.cpu.allocator; {ENV_SWITCH}=0 switches it off)")
        net = self._plain_network()
        self.print_to_log_file(
            f"LightMedSeg: {sum(p.numel() for p in self.network.parameters()):,} parameters, configuration "
            f"{net.config}, resolution schedule {describe(net.strides, net.kernel_sizes)}; AdamW lr {self.initial_lr}, weight decay "
            f"{self.weight_decay}, warm-up {self.lr_scheduler.warmup_iterations} of "
            f"{self.lr_scheduler.total_iterations} iterations, cosine to {self.min_lr}")

    # ---------------------------------------------------------------------------------------------------- #
    # the network record (plans copy in the results folder, checkpoints); see network/record.py
    def _use_record(self, record: Dict[str, Any]) -> None:
        """Make ``record`` the network of this trainer's configuration, in the plans manager's plans (what
        on_train_start copies to the results folder) and in the configuration manager (what
        build_network_architecture reads)."""
        # copy on write: the plans dict the trainer was given may be shared (never change the caller's copy)
        plans = self.plans_manager.plans
        configurations = dict(plans["configurations"])
        configurations[self.configuration_name] = {**configurations[self.configuration_name], NETWORK_KEY: record}
        self.plans_manager.plans = {**plans, "configurations": configurations}
        self.configuration_manager.configuration[NETWORK_KEY] = record  # this trainer's own resolved copy
        if not self.was_initialized:  # the loss and data loader follow the network's outputs
            self.enable_deep_supervision = bool(record.get("config", {}).get("deep_supervision", False))

    def _record_of_trained_folds(self) -> Optional[Dict[str, Any]]:
        """The record in the results folder's plans.json when a fold there already has a checkpoint.

        nnU-Net's predictor builds one network for all folds of a folder, so a new fold must have the same
        network as the folds already trained, even when the installed plugin's defaults changed meanwhile."""
        plans_file = os.path.join(self.output_folder_base, "plans.json")
        if not os.path.isfile(plans_file) or not glob.glob(os.path.join(self.output_folder_base, "fold_*", "*.pth")):
            return None
        from batchgenerators.utilities.file_and_folder_operations import load_json
        record = load_json(plans_file).get("configurations", {}).get(self.configuration_name, {}).get(NETWORK_KEY)
        if isinstance(record, dict) and isinstance(record.get("config"), dict):
            # the network this trainer would build here now: its options with these plans' schedule (not the
            # isotropic default, which reported a spurious 'strides' difference on thick-slice plans)
            mine = LightMedSeg(int(record.get("input_channels", 1)), int(record.get("num_classes", 2)),
                               **self.options_for_configuration(self.configuration_manager)).config
            diff = differences(record.get("config", {}), mine)
            if diff:
                self.print_to_log_file(
                    f"LightMedSeg: {plans_file} holds the network of folds already trained here; this fold uses it "
                    f"too (differences to the installed defaults: {'; '.join(diff)})", also_print_to_console=True)
        return record

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint plus the network record under ``"lightmedseg_network"`` (outside the state dict:
        nnU-Net's -pretrained_weights loader expects tensors only there). Rewritten atomically."""
        super().save_checkpoint(filename)
        if self.local_rank != 0 or self.disable_checkpointing or not os.path.isfile(filename):
            return
        checkpoint = load_checkpoint(filename)
        checkpoint[NETWORK_KEY] = make_record(self._plain_network())
        with atomic_path(filename) as tmp:
            torch.save(checkpoint, tmp)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        """nnU-Net's load_checkpoint (``--c``, ``--val``, ``--val_best``), with the network built from the
        checkpoint's record; a checkpoint whose record differs from an already built network is refused with
        the differences."""
        if isinstance(filename_or_checkpoint, str):
            source = filename_or_checkpoint
            checkpoint = load_checkpoint(filename_or_checkpoint, self.device)  # never executes code from the file
        else:
            source, checkpoint = "the checkpoint", filename_or_checkpoint
        record = checkpoint.get(NETWORK_KEY)
        if record is not None:
            if self.was_initialized:
                check_matches(record, self.network, source)
            else:
                self._use_record(record)
        if isinstance(filename_or_checkpoint, str):
            with safe_torch_load():  # nnU-Net's loader reads the path again, unrestricted otherwise
                super().load_checkpoint(filename_or_checkpoint)
        else:
            super().load_checkpoint(filename_or_checkpoint)

    # ---------------------------------------------------------------------------------------------------- #
    # augmentation
    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """nnU-Net's rotation and pseudo-2D set-up, with the mirrored axes of ``mirroring`` (see :data:`MIRRORING`)
        in training and at test time (the checkpoint carries them to ``nnUNetv2_predict``) and the rotation range
        capped at ``max_rotation_degrees``.

        The paper's "random flipping" (§4) names no axes. The default flips nnU-Net's first spatial axis only (the
        slice axis of thick-slice data): in-plane flips put the right ventricle of a cine-MRI stack on the wrong
        side, a view no test image shows; see docs/decisions.md#mirroring.

        The paper's "rotation" (§4) gives no range. ``max_rotation_degrees`` (default 30, nnU-Net's own 3D range)
        caps nnU-Net's: thick-slice (pseudo-2D) patches are otherwise rotated in-plane by up to 180 degrees;
        isotropic plans are unchanged. See docs/decisions.md#rotation-range."""
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if self.mirroring not in MIRRORING:
            raise ValueError(f"{type(self).__name__}.mirroring is {self.mirroring!r}; use one of "
                             f"{', '.join(map(repr, MIRRORING))}")
        if self.mirroring == "first_axis":
            mirror_axes = (0,)
        elif self.mirroring == "none":
            mirror_axes = None
        self.inference_allowed_mirroring_axes = mirror_axes
        if self.max_rotation_degrees is not None:
            limit = float(self.max_rotation_degrees)
            if not 0 <= limit <= 180:
                raise ValueError(f"{type(self).__name__}.max_rotation_degrees is {self.max_rotation_degrees!r}; use a "
                                 f"number of degrees from 0 to 180, or None for nnU-Net's range")
            limit = np.deg2rad(limit)
            capped = (max(float(rotation[0]), -limit), min(float(rotation[1]), limit))
            if capped != (float(rotation[0]), float(rotation[1])):
                rotation = capped
                patch_size = [int(p) for p in self.configuration_manager.patch_size]
                # nnU-Net's own computation of the larger crop the rotation needs, for the capped range; pseudo-2D
                # augmentation rotates in-plane only, so the crop grows in-plane only
                rotated = patch_size[1:] if dummy_2d else patch_size
                grown = get_patch_size(rotated, rotation, rotation, rotation, (0.85, 1.25))
                initial_patch_size = patch_size[:1] * dummy_2d + [int(p) for p in grown]
                self.print_to_log_file(f"LightMedSeg: rotation capped at +-{self.max_rotation_degrees} degrees "
                                       f"(nnU-Net's range is wider for these plans), initial patch size "
                                       f"{initial_patch_size}")
        p_quarter = float(self.quarter_turn_probability)
        if not 0 <= p_quarter <= 1:
            raise ValueError(f"{type(self).__name__}.quarter_turn_probability is {self.quarter_turn_probability!r}; "
                             f"use a probability from 0 to 1")
        if p_quarter > 0:
            patch_size = [int(p) for p in self.configuration_manager.patch_size]
            if len(patch_size) == 3 and not dummy_2d:
                raise ValueError(f"{type(self).__name__}.quarter_turn_probability is {p_quarter:g}, but these plans "
                                 f"rotate in 3D (patch {patch_size}): quarter turns are in-plane, for thick-slice "
                                 f"(pseudo-2D) and 2D plans; set it to 0 for these plans")
            # p_small: nnU-Net's own probability, moved in by get_training_transforms
            rotation = QuarterTurnRotation(rotation, p_small=0.2, p_quarter=p_quarter)
            # a quarter turn plus the small rotation needs the small rotation's crop with the in-plane axes swapped
            # (nnU-Net's get_patch_size stops at 90 degrees)
            grown = [int(p) for p in initial_patch_size[-2:]]
            initial_patch_size = [int(p) for p in initial_patch_size[:-2]] + [max(grown)] * 2
            self.print_to_log_file(f"LightMedSeg: in-plane quarter turns with probability {p_quarter:g}, initial "
                                   f"patch size {initial_patch_size}")
        return rotation, dummy_2d, initial_patch_size, mirror_axes

    def get_training_transforms(self, *args, **kwargs):
        """nnU-Net's training transforms; with ``augmentation = "paper"`` (the default) only the kinds the paper
        lists (§4: "random flipping, rotation, and Gaussian noise"; nnU-Net's spatial transform, which also scales,
        is kept): blur, brightness, contrast, low-resolution simulation and gamma are left out."""
        composed = super().get_training_transforms(*args, **kwargs)
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"{type(self).__name__}.augmentation is {self.augmentation!r}; use one of "
                             f"{', '.join(map(repr, AUGMENTATIONS))}")
        if self.augmentation == "paper":
            composed.transforms = [t for t in composed.transforms
                                   if not isinstance(getattr(t, "transform", t), _NOT_IN_THE_PAPER)]
        for t in composed.transforms:  # quarter turns: every sample goes through the sampler, which applies
            if isinstance(t, SpatialTransform) and isinstance(t.rotation, QuarterTurnRotation):  # nnU-Net's
                t.rotation.p_small, t.p_rotation = t.p_rotation, 1.0  # probability to the small rotation itself
        return composed

    # ---------------------------------------------------------------------------------------------------- #
    # loss
    def _build_loss(self):
        lm = self.label_manager
        loss = BoundaryCompoundLoss(
            has_regions=lm.has_regions,
            ignore_label=None if lm.has_regions else lm.ignore_label,
            use_ignore_label=lm.has_regions and lm.ignore_label is not None,
            batch_dice=self.configuration_manager.batch_dice,
            ddp=self.is_ddp,
            **self.loss_options,
        )
        if self.enable_deep_supervision:
            # every auxiliary head is trained (unlike nnU-Net's U-Net, none sits at the bottleneck), weights
            # halve per scale as in nnU-Net and sum to 1
            weights = np.array([1 / 2 ** i for i in range(len(self._get_deep_supervision_scales()))])
            loss = DeepSupervisionWrapper(loss, weights / weights.sum())
        return loss

    # ---------------------------------------------------------------------------------------------------- #
    # optimiser and schedule
    def configure_optimizers(self):
        # fused AdamW on the CPU (one kernel for all parameters instead of ~20 foreach ops; same update rule)
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr,
                                      weight_decay=self.weight_decay, betas=self.adamw_betas,
                                      fused=True if self.device.type == "cpu" else None)
        total = self.num_epochs * self.num_iterations_per_epoch
        warmup = min(total, max(1, int(round(self.warmup_fraction * total))))
        scheduler = WarmupCosineLRScheduler(optimizer, self.initial_lr, self.min_lr, total, warmup,
                                            self.num_iterations_per_epoch)
        return optimizer, scheduler

    # ---------------------------------------------------------------------------------------------------- #
    # CPU threads: chosen from timed steps (see nnunetv2_lightmedseg.cpu.threads)
    _thread_tuner: Optional[ThreadTuner] = None

    def on_train_start(self):
        super().on_train_start()
        if self.device.type != "cpu" or self.is_ddp:
            return
        if self.cpu_threads is not None:
            torch.set_num_threads(self.cpu_threads)
            self.print_to_log_file(f"LightMedSeg: training on {self.cpu_threads} CPU thread(s) "
                                   f"({THREADS_SWITCH}={self.cpu_threads})")
        elif torch.get_num_threads() > 1:
            self._thread_tuner = ThreadTuner(torch.get_num_threads(), log=self.print_to_log_file)

    def train_step(self, batch: dict) -> dict:
        if self._thread_tuner is not None:
            out = self._thread_tuner.run(functools.partial(super().train_step, batch))
        else:
            out = super().train_step(batch)
        # per-iteration schedule; nnU-Net's on_train_epoch_start re-syncs it to epoch * iterations_per_epoch
        self.lr_scheduler.step()
        self.advance_progress(out)
        return out
