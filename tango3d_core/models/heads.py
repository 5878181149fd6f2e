"""Swappable heads. Each is an ``nn.Module`` whose ``forward`` returns a dict of named outputs.

Head                 input                                         output keys
GeometryHead         dense_features [B, Cd, h, w]                  depth, normal, xyz
DenseProjectionHead  dense_features [B, Cd, h, w]                  dense [B, D, h, w]
ImageGlobalHead      global_token [B, C], patch_map [B, C, h, w]   global [B, G]
PointFeatureHead     tokens [B, L, W], xyz [B, M, 3], anchors      point_features [B, M, D]
ShapeGlobalHead      tokens [B, L, W]                              global [B, G]
TextProjection       text [B, 384]                                 global [B, G]

Every embedding output (dense, point_features, global) is L2-normalised along its last
channel axis (dim 1 for maps). ``LogitScale`` holds a learnable, clamped contrastive scale.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ShapeVAEConfig
from .layers import FourierEmbedder, Mlp
from .shape_vae import DEFAULT_QUERY_CHUNK, LocalQueryDecoder, QueryDecoder, make_query_decoder

__all__ = [
    "GeometryHead",
    "DenseProjectionHead",
    "ForegroundHead",
    "ImageGlobalHead",
    "PointFeatureHead",
    "ShapeGlobalHead",
    "TextProjection",
    "LogitScale",
]


class GeometryHead(nn.Module):
    """Per-pixel depth, normal and object-centred xyz from the dense features (stage 0)."""

    def __init__(self, in_dim: int, *, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or in_dim
        self.conv = nn.Conv2d(in_dim, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, 7, 1)

    def forward(self, dense_features: Tensor, *, out_size: tuple[int, int] | None = None) -> dict[str, Tensor]:
        """dense_features [B, Cd, h, w]; ``out_size = (H, W)`` bilinearly upsamples the outputs.

        Returns (at h x w, or ``out_size``):
            depth   [B, H, W]     camera-space z in canonical units (diag 1); only relative depth
                                  is meaningful with the shift-invariant loss
            normal  [B, H, W, 3]  unit normal in the frame it was trained in (``--normal-frame``:
                                  the camera's by default, or the canonical mesh frame)
            xyz     [B, H, W, 3]  canonical surface position
        """
        y = self.out(F.gelu(self.conv(dense_features)))
        if out_size is not None and tuple(y.shape[-2:]) != tuple(out_size):
            y = F.interpolate(y, size=out_size, mode="bilinear", align_corners=False)
        y = y.permute(0, 2, 3, 1)
        return {
            "depth": y[..., 0],
            "normal": F.normalize(y[..., 1:4], dim=-1, eps=1e-6),
            "xyz": y[..., 4:7],
        }


class ForegroundHead(nn.Module):
    """Per-pixel object / background logit from the dense features (stage 4)."""

    def __init__(self, in_dim: int, *, hidden: int = 32) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, 1, 1)

    def forward(self, dense_features: Tensor) -> dict[str, Tensor]:
        """dense_features [B, Cd, h, w] -> ``foreground`` [B, h, w] logits (> 0: the object)."""
        return {"foreground": self.out(F.gelu(self.conv(dense_features)))[:, 0]}


class DenseProjectionHead(nn.Module):
    """Dense features -> the shared D-dim space, per pixel (1x1 conv MLP)."""

    def __init__(self, in_dim: int, out_dim: int, *, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(in_dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, out_dim, 1)

    def forward(self, dense_features: Tensor) -> dict[str, Tensor]:
        """dense_features [B, Cd, h, w] -> {"dense": [B, D, h, w]}, unit length along D."""
        y = self.fc2(F.gelu(self.fc1(dense_features)))
        return {"dense": F.normalize(y, dim=1, eps=1e-6)}


class ImageGlobalHead(nn.Module):
    """CLS token and mean patch token -> the global (text) space."""

    def __init__(self, in_dim: int, out_dim: int, *, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(2 * in_dim)
        self.mlp = Mlp(2 * in_dim, hidden, out_dim)

    def forward(self, global_token: Tensor, patch_map: Tensor) -> dict[str, Tensor]:
        """global_token [B, C], patch_map [B, C, h, w] -> {"global": [B, G]}, unit length."""
        pooled = torch.cat([global_token, patch_map.mean(dim=(2, 3))], dim=-1)
        return {"global": F.normalize(self.mlp(self.norm(pooled)), dim=-1, eps=1e-6)}


class PointFeatureHead(nn.Module):
    """Per-point features for any xyz: a second query decoder into the VAE's decoded tokens.

    It has its own query decoder (so the alignment stage can train it while the occupancy
    decoder stays fixed); :meth:`init_from` copies the occupancy decoder as a warm start.

    With the "local" decoder a zero-initialised linear map of the query's Fourier-embedded
    position is added to the decoder's output: the local decoder sees only offsets from nearby
    anchors, while matching a pixel needs to know where on the whole shape the point lies (the
    attention decoder has that position in its residual stream).
    """

    def __init__(self, shape: ShapeVAEConfig, out_dim: int, *, hidden: int) -> None:
        super().__init__()
        self.query = make_query_decoder(shape)
        self.position: nn.Linear | None = None
        if shape.query_decoder == "local":
            self.position_fourier = FourierEmbedder(shape.num_freqs, include_pi=shape.include_pi)
            self.position = nn.Linear(self.position_fourier.out_dim, shape.width)
            # Zero: at the start the head is exactly the copied occupancy decoder plus the MLP.
            nn.init.zeros_(self.position.weight)
            nn.init.zeros_(self.position.bias)
        self.mlp = Mlp(shape.width, hidden, out_dim)

    def init_from(self, decoder: QueryDecoder | LocalQueryDecoder) -> None:
        """Copy the weights of a query decoder of the same kind (e.g. the VAE's occupancy decoder)."""
        if type(decoder) is not type(self.query):
            raise TypeError(f"cannot initialise a {type(self.query).__name__} from a {type(decoder).__name__}")
        self.query.load_state_dict(decoder.state_dict())

    def forward(self, tokens: Tensor, xyz: Tensor, *, anchors: Tensor | None = None,
                chunk_size: int = DEFAULT_QUERY_CHUNK) -> dict[str, Tensor]:
        """tokens [B, L, W], xyz [B, M, 3] canonical, anchors [B, L, 3] (needed by the "local"
        decoder) -> {"point_features": [B, M, D]}, unit length."""
        feats = self.query(xyz, tokens, anchors=anchors, chunk_size=chunk_size)
        if self.position is not None:
            feats = feats + self.position(self.position_fourier(xyz))
        feats = self.mlp(feats)
        return {"point_features": F.normalize(feats, dim=-1, eps=1e-6)}


class ShapeGlobalHead(nn.Module):
    """Mean-pooled decoded latent tokens -> the global (text) space."""

    def __init__(self, in_dim: int, out_dim: int, *, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.mlp = Mlp(in_dim, hidden, out_dim)

    def forward(self, tokens: Tensor) -> dict[str, Tensor]:
        """tokens [B, L, W] -> {"global": [B, G]}, unit length."""
        return {"global": F.normalize(self.mlp(self.norm(tokens.mean(dim=1))), dim=-1, eps=1e-6)}


class TextProjection(nn.Module):
    """Trainable linear map on top of the frozen text embedding; identity-initialised when square."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        with torch.no_grad():
            self.linear.bias.zero_()
            if in_dim == out_dim:
                self.linear.weight.copy_(torch.eye(in_dim))

    def forward(self, text: Tensor) -> dict[str, Tensor]:
        """text [B, 384] -> {"global": [B, G]}, unit length."""
        return {"global": F.normalize(self.linear(text), dim=-1, eps=1e-6)}


class LogitScale(nn.Module):
    """Learnable contrastive logit scale (1 / temperature), stored as a log.

    ``forward()`` returns ``exp(clamp(log_scale, 0, max_log))``: the scale stays within
    [1, exp(max_log)] (CLIP clamps at 100) and receives no gradient while clamped.
    """

    def __init__(self, init_log: float = math.log(1 / 0.07), *, max_log: float = math.log(100.0)) -> None:
        super().__init__()
        if not 0.0 <= init_log <= max_log:
            raise ValueError(f"need 0 <= init_log ({init_log}) <= max_log ({max_log})")
        self.max_log = float(max_log)
        self.log_scale = nn.Parameter(torch.tensor(float(init_log)))

    def forward(self) -> Tensor:
        """Scalar tensor, the current scale."""
        return self.log_scale.clamp(0.0, self.max_log).exp()

    def extra_repr(self) -> str:
        return f"max_log={self.max_log:.4f}"
