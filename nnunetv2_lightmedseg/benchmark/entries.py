"""The rows of ``lightmedseg benchmark network`` and ``lightmedseg profile``: stock nnU-Net and the LightMedSeg
variants asked for by name (the paper's, :data:`~nnunetv2_lightmedseg.network.variants.PAPER`, plus ``anchorsN``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn

from ..network.variants import DEFAULT, PAPER, Variant, variant as find_variant
from .builders import build_lightmedseg_network, build_stock_network
from .plans_setup import BenchmarkSetup

#: the LightMedSeg variants measurable by name, in the paper's table order
MEASURABLE_VARIANTS: Dict[str, Variant] = {v.name: v for v in PAPER}
#: the row of stock nnU-Net
STOCK = "nnunet"


def parse_variants(text: Optional[str]) -> List[str]:
    """``"standard,no_lspm"`` -> ``["standard", "no_lspm"]`` (``anchorsN`` for any N); clear error otherwise."""
    if not text:
        return []
    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        find_variant(n, MEASURABLE_VARIANTS)
    return names


def row_name(variant: str) -> str:
    """The row of a LightMedSeg variant: ``lightmedseg`` for the default network, ``lightmedseg_<variant>``."""
    return DEFAULT.name if variant == DEFAULT.name else f"{DEFAULT.name}_{variant}"


@dataclass
class ModelEntry:
    """One row of the benchmark: how to build it for inference and for training."""
    name: str
    kind: str  # "stock" or "lightmedseg"
    variant: str = DEFAULT.name
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


def lightmedseg_entry(variant: str) -> ModelEntry:
    """The row of a LightMedSeg variant, in channels_last_3d (it converts its input itself on CPU)."""
    return ModelEntry(row_name(variant), "lightmedseg", variant, channels_last=True)


def default_entries(variants: Sequence[str], stock_channels_last: bool = False,
                    include_stock: bool = True) -> List[ModelEntry]:
    """Stock as nnU-Net runs it (default memory format: nnU-Net never converts to channels_last), LightMedSeg in
    channels_last_3d (it converts its input itself on CPU) and the variants asked for."""
    entries = []
    if include_stock:
        entries.append(ModelEntry(STOCK, "stock"))
        if stock_channels_last:
            entries.append(ModelEntry(STOCK + "_channels_last", "stock", channels_last=True))
    names = [DEFAULT.name] + [v for v in variants if v != DEFAULT.name]
    entries += [lightmedseg_entry(v) for v in names]
    return entries
