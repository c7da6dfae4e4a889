"""Plans for a patch shape without a dataset: what nnU-Net's default ``ExperimentPlanner`` writes for a 3D patch
at isotropic spacing (``lightmedseg benchmark network --shape`` and ``lightmedseg profile``), so that measuring a
shape and measuring a dataset go through the same plans -> network code path.

nnU-Net computes the topology (:func:`get_pool_and_conv_props`, used here); the planner's other settings are
instance attributes set in ``ExperimentPlanner.__init__``, which needs a raw dataset and its fingerprint, so they
cannot be read without one. They are copied below, in one place, from nnunetv2 2.8
``experiment_planning/experiment_planners/default_experiment_planner.py`` (``ExperimentPlanner.__init__``:
``UNet_base_num_features``, ``UNet_max_features_3d``, ``UNet_featuremap_min_edge_length``,
``UNet_blocks_per_stage_encoder``/``_decoder``, ``UNet_class``; the norm/nonlinearity kwargs from
``get_plans_for_configuration``). ``tests/test_benchmark.py`` checks the network these plans give for 128^3
against nnU-Net's PlainConvUNet for that patch.
"""
from __future__ import annotations

from typing import Sequence

from .plans_setup import BenchmarkSetup

# nnU-Net's default ExperimentPlanner settings (nnunetv2 2.8, ExperimentPlanner.__init__; see the module docstring)
UNET_BASE_NUM_FEATURES = 32
UNET_MAX_FEATURES_3D = 320
UNET_FEATUREMAP_MIN_EDGE_LENGTH = 4
UNET_BLOCKS_PER_STAGE = 2
PLAIN_CONV_UNET = "dynamic_network_architectures.architectures.unet.PlainConvUNet"


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
