"""In-plane rotation angles with quarter turns, for nnU-Net's ``SpatialTransform`` (the paper's "rotation", §4).

Cine-MRI and other thick-slice series reach a dataset stored in whichever in-plane orientation their conversion
chose, often a quarter turn apart (in the shared ACDC volumes 12 of 70 patients are turned ~90 degrees from the
rest: docs/runs/acdc/orientation_groups.txt). nnU-Net's small rotation (within +-30 degrees here) never shows a
model that view; a quarter turn does, without the upside-down anatomy of nnU-Net's +-180 degrees.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class QuarterTurnRotation:
    """Angle sampler (radians) for batchgeneratorsv2's ``SpatialTransform.rotation``: nnU-Net's small rotation
    (uniform in ``small``) with probability ``p_small``, plus a quarter turn (+90 or -90 degrees, equally likely)
    with probability ``p_quarter``; 0 otherwise.

    The transform must rotate every sample (``p_rotation = 1``) and leave the choice to this sampler:
    :meth:`nnUNetTrainer_LightMedSeg.get_training_transforms` does that and moves nnU-Net's own ``p_rotation`` into
    ``p_small``. A module-level class, so that nnU-Net's augmentation workers can pickle it.

    Args:
        small: (low, high) range of the small rotation, radians (low <= 0 <= high).
        p_small: probability of the small rotation (nnU-Net: 0.2).
        p_quarter: probability of the quarter turn.
    """

    def __init__(self, small: Sequence[float], p_small: float, p_quarter: float):
        low, high = (float(v) for v in small)
        if not low <= 0 <= high:
            raise ValueError(f"QuarterTurnRotation: the small range must contain 0, got ({low}, {high})")
        for name, p in (("p_small", p_small), ("p_quarter", p_quarter)):
            if not 0 <= p <= 1:
                raise ValueError(f"QuarterTurnRotation: {name} must be a probability in [0, 1], got {p!r}")
        self.small = (low, high)
        self.p_small = float(p_small)
        self.p_quarter = float(p_quarter)

    def __call__(self, *args, **kwargs) -> float:
        angle = np.random.uniform(*self.small) if np.random.uniform() < self.p_small else 0.0
        if np.random.uniform() < self.p_quarter:
            angle += np.pi / 2 if np.random.uniform() < 0.5 else -np.pi / 2
        return float(angle)

    def __repr__(self) -> str:
        return (f"QuarterTurnRotation(small=({np.rad2deg(self.small[0]):g}, {np.rad2deg(self.small[1]):g}) deg, "
                f"p_small={self.p_small:g}, p_quarter={self.p_quarter:g})")
