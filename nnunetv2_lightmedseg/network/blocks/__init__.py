"""Building blocks of LightMedSeg, one per file (paper §3.1-3.6)."""
from .adaptive_paths import AdaptiveThreePath
from .anchor_detector import GlobalAnchorDetector
from .film import AnchorFiLM
from .ghost_conv import GhostConv3D
from .lspm import LocalStructuralPrior
from .position_bias import AnchorPositionBias
from .skip_router import MultiScaleSkipRouter
from .squeeze_excite import SqueezeExcite3D
from .texture_routing import TextureRoutedBlock

__all__ = ["AdaptiveThreePath", "GlobalAnchorDetector", "AnchorFiLM", "GhostConv3D", "LocalStructuralPrior",
           "AnchorPositionBias", "MultiScaleSkipRouter", "SqueezeExcite3D", "TextureRoutedBlock"]
