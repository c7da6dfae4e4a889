"""Building the networks that ``lightmedseg profile`` and ``lightmedseg benchmark`` compare.

Both commands measure networks *as nnU-Net builds them*:

* stock nnU-Net: ``nnUNetTrainer.build_network_architecture`` (i.e. nnU-Net's ``get_network_from_plans`` with
  the configuration's ``architecture`` class name and kwargs), deep supervision on for training (as
  ``nnUNetTrainer``) and off for inference (as ``nnUNetPredictor``);
* LightMedSeg: ``nnUNetTrainer_LightMedSeg.build_network_architecture`` (variants: their ablation trainer's, from
  :mod:`nnunetv2_lightmedseg.training.variants`) when importable, else the :class:`~nnunetv2_lightmedseg.LightMedSeg`
  constructor with the same channel counts (labelled in the output).

Without a dataset (``--shape``) we write the plans nnU-Net's default ``ExperimentPlanner`` would produce for that
patch (:func:`plans_for_shape`), so that both modes go through the same plans -> network code path.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

# The settings of nnU-Net's default ExperimentPlanner (experiment_planners/default_experiment_planner.py,
# ExperimentPlanner.__init__: they are instance attributes there, so we cannot read them without a dataset).
UNET_BASE_NUM_FEATURES = 32
UNET_MAX_FEATURES_3D = 320
UNET_FEATUREMAP_MIN_EDGE_LENGTH = 4
UNET_BLOCKS_PER_STAGE = 2
PLAIN_CONV_UNET = "dynamic_network_architectures.architectures.unet.PlainConvUNet"

# LightMedSeg variants measurable by name: constructor options (paper Table ablations).
VARIANTS: Dict[str, dict] = {
    "lightmedseg": {},
    "standard": {"conv_type": "standard"},
    "no_lspm": {"use_lspm": False},
    "no_anchors": {"use_anchors": False},
    "no_skip_router": {"use_skip_router": False},
    "anchors16": {"num_anchors": 16},
    "anchors32": {"num_anchors": 32},
}
STOCK = "nnunet"


def parse_variants(text: Optional[str]) -> List[str]:
    """``"standard,no_lspm"`` -> ``["standard", "no_lspm"]`` (``anchorsN`` for any N); clear error otherwise."""
    if not text:
        return []
    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        if n not in VARIANTS and not (n.startswith("anchors") and n[7:].isdigit() and int(n[7:]) > 0):
            raise ValueError(f"unknown LightMedSeg variant {n!r}; choose from {', '.join(VARIANTS)} "
                             f"(or anchorsN for N anchors)")
    return names


def variant_options(name: str) -> dict:
    if name in VARIANTS:
        return dict(VARIANTS[name])
    return {"num_anchors": int(name[7:])}


# ---------------------------------------------------------------------------------------------- set-up
@dataclass
class BenchmarkSetup:
    """What both networks are built from: nnU-Net plans, a configuration and a dataset.json."""
    plans: dict
    configuration: str
    dataset_json: dict
    source: str  # human-readable: where the plans came from

    @property
    def configuration_manager(self):
        return self.plans_manager.get_configuration(self.configuration)

    @property
    def plans_manager(self):
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
        return PlansManager(copy.deepcopy(self.plans))

    @property
    def patch_size(self) -> Tuple[int, ...]:
        return tuple(int(s) for s in self.configuration_manager.patch_size)

    @property
    def batch_size(self) -> int:
        return int(self.configuration_manager.batch_size)

    @property
    def num_input_channels(self) -> int:
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        return int(determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json))

    @property
    def num_outputs(self) -> int:
        return int(self.plans_manager.get_label_manager(self.dataset_json).num_segmentation_heads)

    def save(self, folder: str) -> str:
        """Write plans/dataset.json/configuration to ``folder`` (for the memory probe subprocess)."""
        path = os.path.join(folder, "setup.json")
        with open(path, "w") as f:
            json.dump({"plans": self.plans, "configuration": self.configuration,
                       "dataset_json": self.dataset_json, "source": self.source}, f)
        return path

    @classmethod
    def load(cls, path: str) -> "BenchmarkSetup":
        with open(path) as f:
            d = json.load(f)
        return cls(d["plans"], d["configuration"], d["dataset_json"], d["source"])


def plans_for_shape(in_channels: int, num_classes: int, spatial: Sequence[int], batch_size: int = 2,
                    configuration: str = "3d_fullres", strict: bool = True) -> BenchmarkSetup:
    """Plans as nnU-Net's default ExperimentPlanner writes them for a 3D patch ``spatial`` at isotropic
    spacing: topology from nnU-Net's own ``get_pool_and_conv_props`` (pool until the feature map edge is 4),
    features ``min(32 * 2**i, 320)``, two convs per stage, InstanceNorm3d(eps=1e-5, affine), LeakyReLU(inplace).
    For 128^3 that is 6 stages, features 32-64-128-256-320-320, strides [1,2,2,2,2,2], kernel 3 everywhere.

    The patch must already be divisible as nnU-Net requires (the planner would otherwise change it): we raise
    with the shape nnU-Net would use instead of silently measuring another input. ``strict=False`` keeps the
    patch anyway (for measuring LightMedSeg alone, which takes any size >= 16 per axis; the stock network in
    these plans then cannot run on it).
    """
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    spatial = tuple(int(s) for s in spatial)
    if len(spatial) != 3 or any(s <= 0 for s in spatial):
        raise ValueError(f"--shape needs three positive spatial sizes after the channels, got {spatial}")
    if in_channels <= 0 or num_classes <= 1:
        raise ValueError(f"need at least 1 input channel and 2 classes (background + 1), got "
                         f"{in_channels} channel(s) and {num_classes} class(es)")
    _, pool_sizes, conv_sizes, patch, _ = get_pool_and_conv_props(
        [1.0, 1.0, 1.0], spatial, UNET_FEATUREMAP_MIN_EDGE_LENGTH, 999999)
    patch = tuple(int(p) for p in patch)
    if patch != spatial and strict:
        raise ValueError(f"nnU-Net cannot plan a 3D U-Net for spatial size {spatial}: its pooling needs a patch "
                         f"of {patch}. Use --shape with spatial size {' '.join(map(str, patch))}")
    n_stages = len(pool_sizes)
    arch = {
        "network_class_name": PLAIN_CONV_UNET,
        "arch_kwargs": {
            "n_stages": n_stages,
            "features_per_stage": [min(UNET_MAX_FEATURES_3D, UNET_BASE_NUM_FEATURES * 2 ** i)
                                   for i in range(n_stages)],
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [list(k) for k in conv_sizes],
            "strides": [list(s) for s in pool_sizes],
            "n_conv_per_stage": [UNET_BLOCKS_PER_STAGE] * n_stages,
            "n_conv_per_stage_decoder": [UNET_BLOCKS_PER_STAGE] * (n_stages - 1),
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }
    plans = {
        "dataset_name": "Dataset000_Shape",
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": list(spatial),
        "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {configuration: {
            "data_identifier": f"nnUNetPlans_{configuration}",
            "preprocessor_name": "DefaultPreprocessor",
            "batch_size": int(batch_size),
            "patch_size": list(spatial),
            "median_image_size_in_voxels": list(spatial),
            "spacing": [1.0, 1.0, 1.0],
            "normalization_schemes": ["ZScoreNormalization"] * in_channels,
            "use_mask_for_norm": [False] * in_channels,
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": arch,
            "batch_dice": False,
        }},
        "experiment_planner_used": "ExperimentPlanner (topology reproduced by lightmedseg.benchmark)",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {},
    }
    dataset_json = {
        "channel_names": {str(i): f"channel{i}" for i in range(in_channels)},
        "labels": {"background": 0, **{f"class{i}": i for i in range(1, num_classes)}},
        "numTraining": 0,
        "file_ending": ".nii.gz",
    }
    shape_txt = "x".join(map(str, spatial))
    return BenchmarkSetup(plans, configuration, dataset_json,
                          f"nnU-Net default topology for a {shape_txt} patch, {in_channels} channel(s), "
                          f"{num_classes} classes, batch {batch_size}")


def setup_from_dataset(dataset: str, configuration: str, plans_identifier: str = "nnUNetPlans") -> BenchmarkSetup:
    """Plans and dataset.json of a preprocessed dataset (``nnUNet_preprocessed/DatasetXXX``)."""
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if not nnUNet_preprocessed.is_set():
        raise ValueError("nnUNet_preprocessed is not set: export nnUNet_preprocessed=/path/to/preprocessed "
                         "(or measure an explicit shape with --shape C X Y Z)")
    try:
        name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError as e:
        raise ValueError(f"dataset {dataset!r} not found: {e}") from None
    folder = os.path.join(str(nnUNet_preprocessed), name)
    plans_file = os.path.join(folder, plans_identifier + ".json")
    ds_file = os.path.join(folder, "dataset.json")
    for f in (plans_file, ds_file):
        if not os.path.isfile(f):
            raise ValueError(f"{f} does not exist: run nnUNetv2_plan_and_preprocess -d {dataset} first "
                             f"(or pass -p with the plans identifier you used)")
    with open(plans_file) as f:
        plans = json.load(f)
    with open(ds_file) as f:
        dataset_json = json.load(f)
    if configuration not in plans.get("configurations", {}):
        raise ValueError(f"configuration {configuration!r} is not in {plans_file}; available: "
                         f"{', '.join(plans.get('configurations', {}))}")
    return BenchmarkSetup(plans, configuration, dataset_json, f"{plans_file} [{configuration}]")


# ---------------------------------------------------------------------------------------------- networks
def build_stock_network(setup: BenchmarkSetup, deep_supervision: bool) -> nn.Module:
    """Stock nnU-Net network exactly as ``nnUNetTrainer.build_network_architecture`` builds it."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    return nnUNetTrainer.build_network_architecture(
        setup.plans_manager, setup.configuration_manager, setup.num_input_channels, setup.num_outputs,
        deep_supervision)


def stock_network_for_shape(in_ch: int, num_classes: int, spatial: Sequence[int],
                            deep_supervision: bool = False) -> nn.Module:
    """The PlainConvUNet nnU-Net plans for a patch ``spatial`` (see :func:`plans_for_shape`), built by
    ``nnUNetTrainer.build_network_architecture``. ``deep_supervision``: True as in training, False as the
    predictor runs it."""
    return build_stock_network(plans_for_shape(in_ch, num_classes, spatial), deep_supervision)


def lightmedseg_trainer_class(variant: str = "lightmedseg"):
    """The nnU-Net trainer that trains ``variant``: ``nnUNetTrainer_LightMedSeg`` or the ablation trainer of
    :mod:`nnunetv2_lightmedseg.training.variants` whose ``network_options`` equal the variant's options (and that
    changes nothing else). None when no such trainer is importable (the benchmark then labels its fallback)."""
    try:
        from nnunetv2_lightmedseg.training import variants as _variants  # noqa: F401 (registers the subclasses)
        from nnunetv2_lightmedseg.training.trainer import nnUNetTrainer_LightMedSeg
    except ImportError:
        return None
    opts = variant_options(variant)
    todo, found = [nnUNetTrainer_LightMedSeg], []
    while todo:
        cls = todo.pop(0)
        if getattr(cls, "network_options", None) == opts and not getattr(cls, "training_options", {}):
            found.append(cls)
        todo += cls.__subclasses__()
    return found[0] if found else None


def build_lightmedseg_network(setup: BenchmarkSetup, variant: str = "lightmedseg") -> Tuple[nn.Module, str]:
    """LightMedSeg as its nnU-Net trainer (``nnUNetTrainer_LightMedSeg`` or the variant's ablation trainer) builds
    it, else the constructor with the same channels. Returns ``(network, how_it_was_built)``."""
    trainer = lightmedseg_trainer_class(variant)
    if trainer is not None:
        net = trainer.build_network_architecture(setup.plans_manager, setup.configuration_manager,
                                                 setup.num_input_channels, setup.num_outputs, False)
        return net, f"{trainer.__name__}.build_network_architecture"
    from nnunetv2_lightmedseg import LightMedSeg
    return (LightMedSeg(setup.num_input_channels, setup.num_outputs, **variant_options(variant)),
            "LightMedSeg(" + ", ".join([str(setup.num_input_channels), str(setup.num_outputs)] +
                                       [f"{k}={v!r}" for k, v in variant_options(variant).items()]) + ")")


@dataclass
class ModelEntry:
    """One row of the benchmark: how to build it for inference and for training."""
    name: str
    kind: str  # "stock" or "lightmedseg"
    variant: str = "lightmedseg"
    channels_last: bool = False
    built_by: str = ""
    extra: dict = field(default_factory=dict)

    def build(self, setup: BenchmarkSetup, train: bool) -> nn.Module:
        if self.kind == "stock":
            net = build_stock_network(setup, deep_supervision=train)
            self.built_by = "nnUNetTrainer.build_network_architecture (get_network_from_plans)"
        else:
            net, self.built_by = build_lightmedseg_network(setup, self.variant)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last_3d)
        return net

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "variant": self.variant, "channels_last": self.channels_last}

    @classmethod
    def from_json(cls, d: dict) -> "ModelEntry":
        return cls(d["name"], d["kind"], d["variant"], d["channels_last"])


def default_entries(variants: Sequence[str], stock_channels_last: bool = False,
                    include_stock: bool = True) -> List[ModelEntry]:
    """Stock as nnU-Net runs it (default memory format: nnU-Net never converts to channels_last), LightMedSeg in
    channels_last_3d (it converts its input itself on CPU) and the variants asked for."""
    entries = []
    if include_stock:
        entries.append(ModelEntry(STOCK, "stock"))
        if stock_channels_last:
            entries.append(ModelEntry(STOCK + "_channels_last", "stock", channels_last=True))
    names = ["lightmedseg"] + [v for v in variants if v != "lightmedseg"]
    for v in names:
        entries.append(ModelEntry(v if v == "lightmedseg" else f"lightmedseg_{v}", "lightmedseg", v,
                                  channels_last=True))
    return entries


# ---------------------------------------------------------------------------------------------- training
@contextlib.contextmanager
def _quiet_trainer_env():
    """nnU-Net trainers write a log file into nnUNet_results and print a citation on construction: send both
    to a throw-away folder, and keep torch.compile off (as nnU-Net does on CPU)."""
    saved = {k: os.environ.get(k) for k in ("nnUNet_results", "nnUNet_compile")}
    with tempfile.TemporaryDirectory(prefix="lightmedseg_bench_") as tmp:
        os.environ["nnUNet_results"] = tmp
        os.environ["nnUNet_compile"] = "f"
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class TrainStep:
    """One nnU-Net training iteration of ``network``: the trainer's own ``train_step`` (forward, loss,
    backward, grad-norm clipping at 12, optimiser step; AMP + GradScaler on CUDA) with the loss from the
    trainer's ``_build_loss`` and the optimiser from its ``configure_optimizers``.

    stock -> ``nnUNetTrainer`` (DC_and_CE_loss with deep supervision, SGD nesterov 0.99).
    LightMedSeg -> its trainer (``nnUNetTrainer_LightMedSeg`` or the variant's ablation trainer; BoundaryCompoundLoss,
    AdamW) when importable; otherwise (stated in ``self.loss_name``)
    ``nnUNetTrainer`` with deep supervision off, i.e. nnU-Net's DC_and_CE_loss on the single output.
    """

    def __init__(self, setup: BenchmarkSetup, entry: ModelEntry, network: nn.Module, device: torch.device):
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        cls = nnUNetTrainer
        fallback = False
        if entry.kind == "lightmedseg":
            # the variant's own trainer, else the default LightMedSeg trainer's loss/optimiser on this network
            cls = lightmedseg_trainer_class(entry.variant) or lightmedseg_trainer_class()
            if cls is None:
                cls, fallback = nnUNetTrainer, True
        plans = copy.deepcopy(setup.plans)
        plans["continue_training"] = False
        with _quiet_trainer_env():
            trainer = cls(plans, setup.configuration, 0, copy.deepcopy(setup.dataset_json), device)
            if fallback:
                trainer.enable_deep_supervision = False
            trainer.network = network.to(device)
            trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
            trainer.loss = trainer._build_loss()
        self.trainer = trainer
        self.device = device
        self.loss_name = type(trainer.loss).__name__
        inner = getattr(trainer.loss, "loss", None)
        if inner is not None:
            self.loss_name += f"({type(inner).__name__})"
        self.loss_name += f" [{cls.__name__}" + (", deep supervision off: fallback, "
                                                 "nnUNetTrainer_LightMedSeg not importable]" if fallback else "]")
        self.optimizer_name = type(trainer.optimizer).__name__
        self.deep_supervision = bool(trainer.enable_deep_supervision)

    def make_batch(self, batch_size: int, seed: int = 0) -> dict:
        """Random image and random label map (B,1,X,Y,Z) as nnU-Net's data loader delivers them; for deep
        supervision the targets at the trainer's ``_get_deep_supervision_scales`` (nearest downsampling, as
        nnU-Net's DownsampleSegForDSTransform does for labels)."""
        setup_patch = self.trainer.configuration_manager.patch_size
        g = torch.Generator().manual_seed(seed)
        lm = self.trainer.label_manager
        n_in = _num_in(self.trainer)
        data = torch.randn((batch_size, n_in, *setup_patch), generator=g)
        n_labels = max(lm.all_labels) + 1
        seg = torch.randint(0, n_labels, (batch_size, 1, *setup_patch), generator=g).float()
        if self.deep_supervision:
            scales = self.trainer._get_deep_supervision_scales()
            target = [torch.nn.functional.interpolate(
                seg, size=[max(1, round(s * f)) for s, f in zip(setup_patch, sc)], mode="nearest")
                for sc in scales]
        else:
            target = seg
        return {"data": data, "target": target}

    def __call__(self, batch: dict) -> float:
        out = self.trainer.train_step(batch)
        return float(out["loss"])


def _num_in(trainer) -> int:
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    return int(determine_num_input_channels(trainer.plans_manager, trainer.configuration_manager,
                                            trainer.dataset_json))
