"""nnunetv2-lightmedseg: the LightMedSeg network as an nnU-Net v2 plugin.

Everything is loaded on first access: ``from nnunetv2_lightmedseg import LightMedSeg`` imports torch only,
the trainer and the loss import nnU-Net, and ``lightmedseg env`` (which imports this package) stays instant.
"""
__version__ = "0.1.0"

_LAZY = {
    "LightMedSeg": "nnunetv2_lightmedseg.network.lightmedseg",
    "nnUNetTrainer_LightMedSeg": "nnunetv2_lightmedseg.training.trainer",
    "BoundaryCompoundLoss": "nnunetv2_lightmedseg.loss.boundary_compound",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnunetv2_lightmedseg' has no attribute {name!r}")


__all__ = ["LightMedSeg", "nnUNetTrainer_LightMedSeg", "BoundaryCompoundLoss", "__version__"]
