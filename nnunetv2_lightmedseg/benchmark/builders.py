"""The networks the benchmark compares, built as nnU-Net builds them from plans.

* stock nnU-Net: ``nnUNetTrainer.build_network_architecture`` (nnU-Net's ``get_network_from_plans`` with the
  configuration's ``architecture`` class name and kwargs), deep supervision on for training (as ``nnUNetTrainer``)
  and off for inference (as ``nnUNetPredictor``);
* LightMedSeg: ``build_network_architecture`` of the variant's trainer (named in
  :mod:`nnunetv2_lightmedseg.network.variants`, found by name as ``nnUNetv2_train -tr`` finds it); a variant
  without a trainer of its own (``anchorsN`` for N other than 16 and 32) is built by the :class:`LightMedSeg`
  constructor with the same channel counts, and labelled so in the output. The inference thread tuning the
  trainer's builder attaches in a CPU-only process is removed: the benchmark treats every network alike.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

from torch import nn

from ..network.variants import DEFAULT, variant as find_variant
from ..cpu import undo_cpu_predictor
from .default_plans import plans_for_shape
from .plans_setup import BenchmarkSetup


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


def lightmedseg_trainer_class(variant: str = DEFAULT.name) -> Optional[type]:
    """The nnU-Net trainer that trains ``variant`` (the trainer the registry names, found by nnU-Net's class
    finder); None for a variant without a trainer of its own. ``LookupError`` when the named trainer does not
    exist, ``ValueError`` for an unknown variant."""
    from ..training.lookup import trainer_class

    name = find_variant(variant).trainer
    return trainer_class(name) if name is not None else None


def build_lightmedseg_network(setup: BenchmarkSetup, variant: str = DEFAULT.name) -> Tuple[nn.Module, str]:
    """LightMedSeg as the variant's nnU-Net trainer builds it, else (no trainer of its own) the constructor with
    the same channels. Returns ``(network, how_it_was_built)``."""
    trainer = lightmedseg_trainer_class(variant)
    if trainer is not None:
        net = trainer.build_network_architecture(setup.plans_manager, setup.configuration_manager,
                                                 setup.num_input_channels, setup.num_outputs, False)
        # the benchmark runs every network at the same thread count, or tunes every one (--tune-threads)
        undo_cpu_predictor(net)
        return net, f"{trainer.__name__}.build_network_architecture"
    from ..network import LightMedSeg
    options = dict(find_variant(variant).options)
    return (LightMedSeg(setup.num_input_channels, setup.num_outputs, **options),
            "LightMedSeg(" + ", ".join([str(setup.num_input_channels), str(setup.num_outputs)] +
                                       [f"{k}={v!r}" for k, v in options.items()]) + ")")
