"""Typed results of the inference API: ``ImageFeatures`` and ``ShapeFeatures``.

Everything they hold or return is float32 and L2-normalised along the feature axis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .ops import sample_map_at_pixels

__all__ = ["ImageFeatures", "ImageGeometry", "ShapeFeatures", "as_coords"]

# Half a pixel past the outermost pixel centres is still inside the image.
_EDGE_TOLERANCE = 0.5 + 1e-4


def as_coords(values: Any, *, dim: int, name: str) -> Tensor:
    """Coerce a tensor / array / nested sequence to float32 [M, dim]; clear errors otherwise."""
    if isinstance(values, Tensor):
        t = values.detach()
    elif isinstance(values, (np.ndarray, list, tuple)):
        try:
            t = torch.as_tensor(np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name} must be numeric, got {values!r:.80}") from e
    else:
        raise TypeError(f"{name} must be a tensor or array of shape [M, {dim}], got {type(values).__name__}")
    if t.dim() != 2 or t.shape[1] != dim:
        raise ValueError(f"{name} must have shape [M, {dim}], got {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} is empty; give at least one row of {dim} coordinates")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.int16, torch.uint8)):
        raise TypeError(f"{name} must be a real-valued tensor, got dtype {t.dtype}")
    t = t.to(torch.float32)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


@dataclass(frozen=True, eq=False)
class ImageGeometry:
    """What the 2D encoder's geometry head predicts for an image (Tango3D models only).

    xyz                [3, h, w]  object-centred surface point each pixel sees: canonical units
                                  (bounding-box centre at 0, diagonal 1), in the object's own
                                  frame up to an unknown turn about +Z
    depth              [h, w]     camera depth in the same units; only differences mean anything
    foreground         bool [H', W'] at the model resolution: pixels that show the object
    foreground_source  "alpha" (the image's alpha channel), "predicted" (the model's foreground
                       head), "border" (differs from a plain border colour) or "none" (busy
                       background and no foreground head: everything counts)
    """

    xyz: Tensor
    depth: Tensor
    foreground: Tensor
    foreground_source: str

    def xyz_at(self, image_size: tuple[int, int], xy: Tensor) -> Tensor:
        """[M, 3] predicted xyz at input-image pixels ``xy`` [M, 2] of an image of ``image_size``."""
        with torch.inference_mode():
            return sample_map_at_pixels(self.xyz[None].float(), xy[None].to(self.xyz.device).float(), image_size)[0]

    def depth_at(self, image_size: tuple[int, int], xy: Tensor) -> Tensor:
        """[M] predicted depth at input-image pixels ``xy`` [M, 2]."""
        with torch.inference_mode():
            return sample_map_at_pixels(self.depth[None, None].float(), xy[None].to(self.depth.device).float(),
                                        image_size)[0, :, 0]


@dataclass(frozen=True, eq=False)
class ImageFeatures:
    """Features of one image.

    dense             [D, h, w]  feature map covering the whole input image (unit length along D)
    global_embedding  [G]        unit length
    image_size        (width, height) of the input image in pixels
    model_size        (width, height) the network saw after the keep-aspect resize
    geometry          predicted xyz / depth / foreground (:class:`ImageGeometry`), or None for
                      encoders without a geometry head; used by ``models.pose``
    """

    dense: Tensor
    global_embedding: Tensor
    image_size: tuple[int, int]
    model_size: tuple[int, int]
    geometry: ImageGeometry | None = None

    @property
    def width(self) -> int:
        return self.image_size[0]

    @property
    def height(self) -> int:
        return self.image_size[1]

    @property
    def dim(self) -> int:
        return int(self.dense.shape[0])

    def sample(self, xy: Any) -> Tensor:
        """Features at pixel positions of the INPUT image.

        xy  [M, 2] (x, y) = (column, row) floats; (0, 0) is the top-left pixel centre, so valid
            positions lie in [-0.5, width - 0.5] x [-0.5, height - 0.5].
        returns [M, D] float32, unit length, bilinearly interpolated, on ``dense``'s device.
        """
        pts = as_coords(xy, dim=2, name="xy")
        w, h = self.image_size
        x, y = pts[:, 0], pts[:, 1]
        outside = (x < -_EDGE_TOLERANCE) | (x > w - 1 + _EDGE_TOLERANCE) | (y < -_EDGE_TOLERANCE) | (y > h - 1 + _EDGE_TOLERANCE)
        if outside.any():
            i = int(outside.nonzero()[0, 0])
            raise ValueError(
                f"xy[{i}] = ({float(x[i]):g}, {float(y[i]):g}) lies outside the {w}x{h} image "
                f"(valid x in [-0.5, {w - 0.5}], y in [-0.5, {h - 0.5}])"
            )
        with torch.inference_mode():
            feats = sample_map_at_pixels(self.dense[None].float(), pts[None].to(self.dense.device), self.image_size)[0]
            return F.normalize(feats, dim=-1, eps=1e-6)


@dataclass(frozen=True, eq=False)
class ShapeFeatures:
    """Features of one shape, sampled on its surface.

    points            [N, 3]  surface samples, in the mesh's own coordinates
    normals           [N, 3]  unit face normals at those samples
    dense             [N, D]  per-point features (unit length)
    global_embedding  [G]     unit length
    center, scale     the canonical frame the network saw: ``(p - center) * scale``
                      (bounding-box centre, 1 / bounding-box diagonal)
    """

    points: Tensor
    normals: Tensor
    dense: Tensor
    global_embedding: Tensor
    center: Tensor
    scale: float
    _query: Callable[[Tensor], Tensor] = field(repr=False)

    @property
    def num_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def dim(self) -> int:
        return int(self.dense.shape[1])

    def query(self, xyz: Any) -> Tensor:
        """Features at arbitrary positions ``xyz`` [M, 3] in the mesh's own coordinates -> [M, D]."""
        pts = as_coords(xyz, dim=3, name="xyz")
        canonical = (pts - self.center.to(pts)) * self.scale
        return self._query(canonical).to(self.dense.device)
