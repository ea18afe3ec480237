"""clsa: Cross-Layer Sparse Attention (YOCO + one shared top-k index) in PyTorch."""

from clsa.config import PRESETS, VARIANTS, CLSAConfig

__version__ = "0.1.0"
__all__ = ["CLSAConfig", "PRESETS", "VARIANTS", "__version__"]
