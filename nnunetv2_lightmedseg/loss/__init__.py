"""Losses of LightMedSeg (paper §3.7)."""
from .boundary_compound import BoundaryCompoundLoss, boundary_band

__all__ = ["BoundaryCompoundLoss", "boundary_band"]
