"""Training objectives. Each function returns a dict of named scalar terms (``loss`` = total)."""

from .dense import pixel_point_infonce
from .geometry import geometry_loss
from .global_ import contrastive_loss, global_alignment_loss
from .vae import kl_divergence, vae_loss

__all__ = [
    "contrastive_loss",
    "geometry_loss",
    "global_alignment_loss",
    "kl_divergence",
    "pixel_point_infonce",
    "vae_loss",
]
