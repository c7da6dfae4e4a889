"""``lightmedseg adapt-weights``: make a LightMedSeg checkpoint fit a network with another resolution schedule.

LightMedSeg's kernels are 3x3x3 on every level whatever the plans, so a model pretrained on isotropic data
(hippocampus) and the network nnU-Net's plans give for thick slices (ACDC: strides ``[1,2,2]`` where the source had
``[2,2,2]``) share every weight's shape except the decoder's transposed convolutions, whose kernel is their stride.
nnU-Net's ``-pretrained_weights`` loader requires equal shapes, so it stops there. This writes a checkpoint whose
weights all fit the target network: each transposed-convolution kernel is resampled along the axes whose stride
changed (linear interpolation of the taps, rescaled so that every output voxel keeps the gain it had, i.e. the sum of
taps over the stride); everything else is copied. The output layers (``*.seg_layers.*``) are left as they are:
nnU-Net's loader skips them and initialises the target's (label sets may differ).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..checkpoints import load_checkpoint
from ..errors import LightMedSegError
from ..utils.files import atomic_path, refuse_existing

#: the part of a key nnU-Net's -pretrained_weights loader skips (output layers)
SKIPPED = ".seg_layers."


class AdaptWeightsError(LightMedSegError):
    """The checkpoint cannot be made to fit the target network; the message says why."""


def resample_taps(weight: torch.Tensor, target_shape: Tuple[int, ...], source_stride: Tuple[int, ...],
                  target_stride: Tuple[int, ...]) -> torch.Tensor:
    """A transposed-convolution weight ``(in, out, *k)`` resampled to ``target_shape`` along each spatial axis whose
    kernel differs: taps linearly interpolated over the kernel's extent, then scaled so that the per-output gain
    ``sum(taps) / stride`` is what it was (kernel 2 -> 1 at stride 2 -> 1: the mean of the two taps; 1 -> 2: the tap
    repeated)."""
    w = weight.detach().double().cpu().numpy()
    for axis in range(2, w.ndim):
        k_src, k_dst = w.shape[axis], target_shape[axis]
        if k_src == k_dst:
            continue
        s_src, s_dst = source_stride[axis - 2], target_stride[axis - 2]
        x_src = (np.arange(k_src) + 0.5) / k_src
        x_dst = (np.arange(k_dst) + 0.5) / k_dst
        moved = np.moveaxis(w, axis, -1)
        flat = moved.reshape(-1, k_src)
        out = np.stack([np.interp(x_dst, x_src, row) for row in flat]) if k_src > 1 else np.repeat(flat, k_dst, 1)
        src_gain = flat.sum(1) / s_src
        dst_sum = out.sum(1)
        scale = np.divide(src_gain * s_dst, dst_sum, out=np.ones_like(dst_sum), where=np.abs(dst_sum) > 1e-12)
        out = out * scale[:, None]
        w = np.moveaxis(out.reshape(*moved.shape[:-1], k_dst), -1, axis)
    return torch.from_numpy(np.ascontiguousarray(w)).to(weight.dtype)


def target_network(dataset: str, configuration: str, plans: str = "nnUNetPlans",
                   trainer: str = "nnUNetTrainer_LightMedSeg") -> torch.nn.Module:
    """The network ``nnUNetv2_train DATASET CONFIGURATION F -tr TRAINER -p PLANS`` builds (from the preprocessed
    plans and dataset.json, as the trainer's ``initialize`` does)."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from ..training.lookup import trainer_class

    try:
        name = maybe_convert_to_dataset_name(str(dataset))
    except RuntimeError as e:
        raise AdaptWeightsError(f"-d {dataset}: {' '.join(str(e).split())}") from None
    folder = Path(os.environ.get("nnUNet_preprocessed", "")) / name
    plans_file = folder / f"{plans}.json"
    if not plans_file.is_file():
        raise AdaptWeightsError(f"{plans_file} does not exist: run nnUNetv2_plan_and_preprocess -d {dataset} -c "
                                f"{configuration} first (or give the plans identifier with -p)")
    manager = PlansManager(load_json(str(plans_file)))
    if configuration not in manager.available_configurations:
        raise AdaptWeightsError(f"-c {configuration}: the plans have {manager.available_configurations}")
    cm = manager.get_configuration(configuration)
    dataset_json = load_json(str(folder / "dataset.json"))
    try:
        cls = trainer_class(trainer)
    except LookupError as e:
        raise AdaptWeightsError(str(e)) from None
    network = cls.build_network_architecture(manager, cm, determine_num_input_channels(manager, cm, dataset_json),
                                             manager.get_label_manager(dataset_json).num_segmentation_heads, False)
    from ..deploy.loading import find_lightmedseg
    from ..cpu import undo_cpu_predictor
    undo_cpu_predictor(network)
    if find_lightmedseg(network) is None:
        raise AdaptWeightsError(f"{trainer} does not build a LightMedSeg network")
    return network


def _strides_of(module: torch.nn.Module, key: str) -> Tuple[int, ...]:
    sub = module.get_submodule(key.rsplit(".", 1)[0])
    stride = getattr(sub, "stride", None)
    return tuple(int(s) for s in stride) if stride is not None else ()


def adapt_state_dict(source: Dict[str, torch.Tensor], network: torch.nn.Module,
                     source_strides: Optional[Dict[str, Tuple[int, ...]]] = None) -> Tuple[Dict[str, torch.Tensor],
                                                                                           List[str]]:
    """``(state dict fitting network, the keys that were resampled)``. Transposed-convolution weights whose kernel
    differs only because the stride differs are resampled (:func:`resample_taps`); output layers are copied as they
    are (nnU-Net skips them); any other missing or different weight is an :class:`AdaptWeightsError` that names it."""
    target = network.state_dict()
    out, resampled, problems = {}, [], []
    for key, value in target.items():
        if SKIPPED in key:
            if key in source:
                out[key] = source[key]
            continue
        if key not in source:
            problems.append(f"{key} is not in the checkpoint")
            continue
        src = source[key]
        if tuple(src.shape) == tuple(value.shape):
            out[key] = src
            continue
        sub = network.get_submodule(key.rsplit(".", 1)[0])
        is_transposed = isinstance(sub, torch.nn.ConvTranspose3d) and key.endswith(".weight")
        if is_transposed and src.shape[:2] == value.shape[:2] and src.ndim == value.ndim:
            dst_stride = _strides_of(network, key)
            src_stride = (source_strides or {}).get(key) or tuple(int(k) for k in src.shape[2:])  # kernel = stride
            out[key] = resample_taps(src, tuple(value.shape), src_stride, dst_stride)
            resampled.append(f"{key} {tuple(src.shape)} -> {tuple(value.shape)}")
        else:
            problems.append(f"{key}: {tuple(src.shape)} in the checkpoint vs {tuple(value.shape)} in the target")
    if problems:
        raise AdaptWeightsError("the checkpoint's network differs from the target's in more than the resolution "
                                "schedule (" + "; ".join(problems[:4]) + (f"; {len(problems) - 4} more" if
                                                                          len(problems) > 4 else "")
                                + "): pretrain and fine-tune with the same trainer variant (-tr)")
    return out, resampled


def adapt_weights(checkpoint: str, dataset: str, configuration: str, output: str, plans: str = "nnUNetPlans",
                  trainer: str = "nnUNetTrainer_LightMedSeg", overwrite: bool = False) -> Dict:
    """Write ``output``: ``checkpoint``'s weights fitted to the target network (see the module docstring), as a
    checkpoint for ``nnUNetv2_train ... -pretrained_weights``. Returns ``{"output", "resampled", "copied"}``."""
    out_path = Path(output)
    if out_path.is_dir():
        raise AdaptWeightsError(f"-o {output} is a folder: give the checkpoint file to write, e.g. "
                                f"{out_path / 'pretrained_adapted.pth'}")
    refuse_existing([out_path], overwrite)
    source = load_checkpoint(checkpoint)
    weights = source.get("network_weights")
    if not isinstance(weights, dict):
        raise AdaptWeightsError(f"{checkpoint} has no 'network_weights': not an nnU-Net checkpoint")
    weights = {k[7:] if k.startswith("module.") else k: v for k, v in weights.items()}
    network = target_network(dataset, configuration, plans, trainer)
    adapted, resampled = adapt_state_dict(weights, network)
    network.load_state_dict({**network.state_dict(), **{k: v for k, v in adapted.items() if SKIPPED not in k}})
    result = {"network_weights": adapted, "trainer_name": source.get("trainer_name"),
              "lightmedseg_adapted": {"source": str(checkpoint), "target": f"{dataset} {configuration} {plans}",
                                      "trainer": trainer, "resampled": resampled}}
    with atomic_path(str(out_path), suffix=".pth") as tmp:
        torch.save(result, tmp)
    return {"output": str(out_path), "resampled": resampled,
            "copied": sum(1 for k in adapted if SKIPPED not in k) - len(resampled)}
