"""The LightMedSeg network and its building blocks (paper §3)."""
from .lightmedseg import LightMedSeg

__all__ = ["LightMedSeg"]
