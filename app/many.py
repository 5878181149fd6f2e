"""Pixel -> many shapes: one pixel's feature coloured onto several gallery shapes at once.

Each gallery shape is encoded once per provider and rendered once from a fixed three-quarter
view by the project's ray caster; the render keeps, for every pixel, the index of the nearest
feature point. A query is then one matrix-vector product per shape plus a table look-up, so
eight shapes cost a few milliseconds per click::

    card = ShapeCard.build(key, name, mesh, features)      # once (cached by the explorer)
    image, best_score = card.heat(f, settings)              # f: [D] query feature

No browser-side 3D is involved, so this view also works where a WebSocket cannot be proxied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .overlay import OverlaySettings, draw_marker, point_colors

__all__ = ["CARD_SIZE", "MANY_POINTS", "ShapeCard", "shaded_index_render"]

CARD_SIZE = 192
MANY_POINTS = 4096     # feature points per gallery shape (a card is small; the global shape is what matters)
BASE_GREY = 0.78
BEST_COLOR = (255, 0, 255)


def shaded_index_render(mesh: Any, points: np.ndarray, *, size: int = CARD_SIZE, azimuth: float = 35.0,
                        elevation: float = 20.0) -> tuple[np.ndarray, np.ndarray, Any]:
    """Render ``mesh`` once: (index int64 [H, W] of the nearest of ``points`` or -1 off the shape,
    Lambert shade float32 [H, W] in [0, 1], the camera)."""
    from scipy.spatial import cKDTree

    from tango3d_core.data import render

    lo, hi = np.asarray(mesh.bounds[0], np.float64), np.asarray(mesh.bounds[1], np.float64)
    diag = float(np.linalg.norm(hi - lo)) or 1.0
    cam = render.Camera.orbit(azimuth_deg=azimuth, elevation_deg=elevation, distance=1.75 * diag,
                              target=(lo + hi) / 2.0, width=size, height=size)
    view = render.renderer_for(mesh).render(cam)
    index = np.full(view.mask.shape, -1, np.int64)
    if view.mask.any():
        _, nearest = cKDTree(np.asarray(points, np.float64)).query(view.xyz[view.mask].astype(np.float64), k=1)
        index[view.mask] = nearest
    light = np.array([-0.4, -0.6, -0.7])  # camera frame: from the upper left, in front
    light = light / np.linalg.norm(light)
    n_cam = view.normal @ cam.R.T          # world -> camera frame
    shade = (0.35 + 0.65 * np.clip(n_cam @ light, 0.0, 1.0)).astype(np.float32)
    return index, np.where(view.mask, shade, 1.0).astype(np.float32), cam


@dataclass(frozen=True)
class ShapeCard:
    """One gallery shape ready for pixel -> many queries.

    dense  [N, D] the provider's point features (on its device);  points [N, 3] mesh coordinates
    index  int64 [H, W] nearest point per pixel (-1: background);  shade float32 [H, W]
    """

    key: str
    name: str
    dense: Tensor
    points: np.ndarray
    index: np.ndarray
    shade: np.ndarray
    camera: Any

    @classmethod
    def build(cls, key: str, name: str, mesh: Any, features: Any, *, size: int = CARD_SIZE) -> ShapeCard:
        points = features.points.detach().cpu().numpy()
        index, shade, cam = shaded_index_render(mesh, points, size=size)
        return cls(key=key, name=name, dense=features.dense, points=points, index=index, shade=shade, camera=cam)

    def heat(self, query: Tensor, settings: OverlaySettings) -> tuple[Image.Image, float, np.ndarray]:
        """(card image, best cosine similarity, similarities [N] on the CPU) for a query feature [D]."""
        sims = self.dense @ query.to(self.dense.device).to(self.dense.dtype)
        base = torch.full((sims.shape[0], 3), BASE_GREY, device=sims.device)
        colors, best = point_colors(sims, base, settings)
        rgb = np.where((self.index >= 0)[..., None], colors[np.maximum(self.index, 0)], 255).astype(np.float32)
        rgb = rgb * self.shade[..., None]
        img = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))
        xy = self.camera.project(self.points[best][None])[0]
        img = draw_marker(img, (float(xy[0]), float(xy[1])), color=BEST_COLOR)
        s = sims.float().cpu().numpy()
        return img, float(s[best]), s
