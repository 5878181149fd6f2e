"""Tango3D models: 2D encoder, 3D shape VAE, heads, text encoder, composition, checkpoints.

Importing this package loads torch but no weights and no optional dependency
(transformers / sentence-transformers are imported on first use).
"""

from .checkpoint import CheckpointError, load_model, save_checkpoint
from .features import ImageFeatures, ShapeFeatures
from .tango3d import LOSS_NAMES, Tango3D, build_model

__all__ = [
    "CheckpointError",
    "ImageFeatures",
    "LOSS_NAMES",
    "ShapeFeatures",
    "Tango3D",
    "build_model",
    "load_model",
    "save_checkpoint",
]
