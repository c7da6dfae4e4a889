"""The named LightMedSeg variants: one registry, name -> keyword arguments of :class:`LightMedSeg`.

Every list of network variants reads this module: the nnU-Net trainers of
:mod:`nnunetv2_lightmedseg.training.variants` take their ``network_options`` from it, ``lightmedseg benchmark
network --variants`` and ``lightmedseg profile --variant`` accept the names of :data:`PAPER` (plus ``anchorsN``
for any N), and the tests import their variants from here.

A variant is a name (what the benchmark commands take), the keyword arguments of :class:`LightMedSeg` and the
name of the nnU-Net trainer class that trains it (what ``nnUNetv2_train -tr`` takes). To add one: a
:class:`Variant` below, added to :data:`PAPER` or :data:`OPTIONS`, and a trainer class of that name in
``training/variants.py`` with ``network_options = dict(<VARIANT>.options)``; the tests check that nnU-Net's class
finder finds the trainer and that it builds the variant's network, and pin the variant's parameter count.

This module imports nothing from ``training`` (the network package does not depend on nnU-Net's trainers).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional

from .schedule import DEFAULT_KERNEL_SIZES, DEFAULT_STRIDES


@dataclass(frozen=True, eq=False)
class Variant:
    """One named network: ``LightMedSeg(in, out, **options)``, trained by the nnU-Net trainer ``trainer``."""
    name: str
    trainer: Optional[str]  # nnU-Net trainer class name; None: no trainer of its own (anchorsN for other N)
    options: Mapping[str, Any]  # keyword arguments of LightMedSeg (read-only)
    description: str

    def __post_init__(self):
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))


# ------------------------------------------------------------------------- the paper's network and ablations
DEFAULT = Variant("lightmedseg", "nnUNetTrainer_LightMedSeg", {}, "the paper's network")
STANDARD_CONV = Variant("standard", "nnUNetTrainer_LightMedSeg_StandardConv", {"conv_type": "standard"},
                        "every GhostConv3D -> Conv3D")
NO_LSPM = Variant("no_lspm", "nnUNetTrainer_LightMedSeg_NoLSPM", {"use_lspm": False}, "ablation w/o LSPM")
NO_ANCHORS = Variant("no_anchors", "nnUNetTrainer_LightMedSeg_NoAnchors", {"use_anchors": False},
                     "no anchor detector / FiLM / position bias")
NO_SKIP_ROUTER = Variant("no_skip_router", "nnUNetTrainer_LightMedSeg_NoSkipRouter", {"use_skip_router": False},
                         "plain skips (w/o skip router)")
ANCHORS16 = Variant("anchors16", "nnUNetTrainer_LightMedSeg_16anchors", {"num_anchors": 16},
                    "anchor-count ablation, N = 16")
ANCHORS32 = Variant("anchors32", "nnUNetTrainer_LightMedSeg_32anchors", {"num_anchors": 32},
                    "anchor-count ablation, N = 32")

#: the paper's network and its ablations (the names ``lightmedseg benchmark``/``profile`` measure), in table order
PAPER = (DEFAULT, STANDARD_CONV, NO_LSPM, NO_ANCHORS, NO_SKIP_ROUTER, ANCHORS16, ANCHORS32)

# ------------------------------------------------------------------------ options outside the paper's default
FULL_RESOLUTION_DECODER = Variant("full_resolution_decoder", "nnUNetTrainer_LightMedSeg_FullResDecoder",
                                  {"full_resolution_decoder": True}, "reading B: last decoder stage at full res")
DEEP_SUPERVISION = Variant("deep_supervision", "nnUNetTrainer_LightMedSeg_DeepSupervision",
                           {"deep_supervision": True}, "auxiliary heads on decoder stages 2 and 3")
ISOTROPIC = Variant("isotropic", "nnUNetTrainer_LightMedSeg_Isotropic",
                    {"strides": [list(s) for s in DEFAULT_STRIDES],
                     "kernel_sizes": [list(k) for k in DEFAULT_KERNEL_SIZES]},
                    "the paper's isotropic resolution schedule on any plans")

BLOCK_HEAD = Variant("block_head", "nnUNetTrainer_LightMedSeg_BlockHead", {"head_upsampling": "blocks"},
                     "head transposed conv with kernel = stride (the default before the overlapping head)")

#: network options outside the paper's default (trainers only; the benchmark commands do not list them)
OPTIONS = (FULL_RESOLUTION_DECODER, DEEP_SUPERVISION, ISOTROPIC, BLOCK_HEAD)

#: every registered variant by name
NETWORK_VARIANTS: Mapping[str, Variant] = MappingProxyType({v.name: v for v in PAPER + OPTIONS})

#: ``anchorsN``: the default network with N anchors (any N >= 1; only 16 and 32 have a trainer)
ANCHORS_PREFIX = "anchors"


def variant(name: str, among: Mapping[str, Variant] = NETWORK_VARIANTS) -> Variant:
    """The variant called ``name`` in ``among``, or ``anchorsN`` (N anchors, no trainer of its own unless
    registered); ``ValueError`` naming the choices otherwise."""
    if name in among:
        return among[name]
    n = name[len(ANCHORS_PREFIX):]
    if name.startswith(ANCHORS_PREFIX) and n.isdigit() and int(n) > 0:
        return Variant(name, None, {"num_anchors": int(n)}, f"{int(n)} anchors")
    raise ValueError(f"unknown LightMedSeg variant {name!r}; choose from {', '.join(among)} "
                     f"(or {ANCHORS_PREFIX}N for N anchors)")
