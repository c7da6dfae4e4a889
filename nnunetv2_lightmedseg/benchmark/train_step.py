"""One nnU-Net training iteration of a benchmarked network, run by the network's own nnU-Net trainer."""
from __future__ import annotations

import contextlib
import copy
import io
import os
import tempfile
from unittest import mock

import torch
from torch import nn

from ..network.variants import DEFAULT
from .builders import lightmedseg_trainer_class
from .entries import ModelEntry
from .plans_setup import BenchmarkSetup


@contextlib.contextmanager
def _quiet_trainer_env():
    """nnU-Net trainers write a log file into nnUNet_results and print a citation on construction: send both
    to a throw-away folder, and keep torch.compile off (as nnU-Net does on CPU). The environment is restored on
    exit (``mock.patch.dict``)."""
    with tempfile.TemporaryDirectory(prefix="lightmedseg_bench_") as tmp, \
            mock.patch.dict(os.environ, {"nnUNet_results": tmp, "nnUNet_compile": "f"}), \
            contextlib.redirect_stdout(io.StringIO()):
        yield


class TrainStep:
    """One nnU-Net training iteration of ``network``: the trainer's own ``train_step`` (forward, loss,
    backward, grad-norm clipping at 12, optimiser step; AMP + GradScaler on CUDA) with the loss from the
    trainer's ``_build_loss`` and the optimiser from its ``configure_optimizers``.

    stock -> ``nnUNetTrainer`` (DC_and_CE_loss with deep supervision, SGD nesterov 0.99).
    LightMedSeg -> the variant's trainer (BoundaryCompoundLoss, AdamW); a variant without a trainer of its own
    (``anchorsN``) -> ``nnUNetTrainer_LightMedSeg``'s loss and optimiser on its network. The trainer is named
    in ``self.loss_name``.
    """

    def __init__(self, setup: BenchmarkSetup, entry: ModelEntry, network: nn.Module, device: torch.device):
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        cls = nnUNetTrainer
        if entry.kind == "lightmedseg":
            cls = lightmedseg_trainer_class(entry.variant) or lightmedseg_trainer_class(DEFAULT.name)
        plans = copy.deepcopy(setup.plans)
        plans["continue_training"] = False
        with _quiet_trainer_env():
            trainer = cls(plans, setup.configuration, 0, copy.deepcopy(setup.dataset_json), device)
            trainer.network = network.to(device)
            trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
            trainer.loss = trainer._build_loss()
        self.trainer = trainer
        self.device = device
        self.num_input_channels = setup.num_input_channels
        self.loss_name = type(trainer.loss).__name__
        inner = getattr(trainer.loss, "loss", None)
        if inner is not None:
            self.loss_name += f"({type(inner).__name__})"
        self.loss_name += f" [{cls.__name__}]"
        self.optimizer_name = type(trainer.optimizer).__name__
        self.deep_supervision = bool(trainer.enable_deep_supervision)
        self.data_folder = setup.data_folder
        self.batch_source = None  # set by make_batch

    def make_batch(self, batch_size: int, seed: int = 0) -> dict:
        """A batch (B,C,X,Y,Z) image and (B,1,X,Y,Z) label map as nnU-Net's data loader delivers them; for deep
        supervision the targets at the trainer's ``_get_deep_supervision_scales`` (nearest downsampling, as
        nnU-Net's DownsampleSegForDSTransform does for labels).

        With a preprocessed dataset (``setup.data_folder``): real patches, the centre of ``batch_size`` cases
        (drawn with ``seed``) cropped or zero-padded to the patch size (image and labels as nnU-Net's loader
        pads them, its -1 border label mapped to background as its transforms do; no augmentation). The
        training cost of a network whose loss depends on the labels (LightMedSeg's boundary band) is then the
        cost it has in training: with random labels every voxel is on a class boundary, the worst case.
        Without one (``--shape``): a random image and uniformly random labels. ``self.batch_source`` says which."""
        setup_patch = self.trainer.configuration_manager.patch_size
        g = torch.Generator().manual_seed(seed)
        lm = self.trainer.label_manager
        if self.data_folder is not None:
            data, seg = real_patches(self.data_folder, batch_size, setup_patch, seed)
            self.batch_source = f"real patches of {batch_size} preprocessed cases"
        else:
            data = torch.randn((batch_size, self.num_input_channels, *setup_patch), generator=g)
            n_labels = max(lm.all_labels) + 1
            seg = torch.randint(0, n_labels, (batch_size, 1, *setup_patch), generator=g).float()
            self.batch_source = "random image, uniformly random labels"
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


def real_patches(data_folder: str, batch_size: int, patch_size, seed: int = 0):
    """``batch_size`` preprocessed cases of ``data_folder`` (nnU-Net's dataset class for its file format), drawn
    with ``seed`` (with replacement if there are fewer cases), each centre-cropped or zero-padded to
    ``patch_size``: float image ``(B, C, *patch)`` and float labels ``(B, 1, *patch)``; ``ValueError`` if the
    folder holds no cases."""
    import numpy as np
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    dataset = infer_dataset_class(data_folder)(data_folder)
    ids = sorted(dataset.identifiers)
    if not ids:
        raise ValueError(f"{data_folder} holds no preprocessed cases: run nnUNetv2_plan_and_preprocess again, "
                         f"or benchmark an explicit shape with --shape")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(ids), batch_size, replace=len(ids) < batch_size)
    images, labels = [], []
    for i in picks:
        data, seg, _, _ = dataset.load_case(ids[i])
        data, seg = np.asarray(data, dtype=np.float32), np.asarray(seg).astype(np.float32)
        seg[seg < 0] = 0  # nnU-Net's loader marks outside-the-image with -1; its transforms make it background
        images.append(_centre(data, patch_size))
        labels.append(_centre(seg, patch_size))
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


def _centre(a, patch_size):
    """``a`` (C, *spatial) centre-cropped / zero-padded to ``patch_size`` per spatial axis."""
    import numpy as np
    out = np.zeros((a.shape[0], *patch_size), dtype=a.dtype)
    src, dst = [slice(None)], [slice(None)]
    for n, p in zip(a.shape[1:], patch_size):
        if n >= p:
            start = (n - p) // 2
            src.append(slice(start, start + p)); dst.append(slice(None))
        else:
            start = (p - n) // 2
            src.append(slice(None)); dst.append(slice(start, start + n))
    out[tuple(dst)] = a[tuple(src)]
    return out
