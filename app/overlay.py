"""Similarity -> colours: colormaps, point colours for the 3D overlay, heat maps over images.

All tensor work runs on the device the features live on (the provider's device), so a click's
similarity and colours are computed on the GPU when there is one; only the final uint8 colours
come back to the CPU.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import Tensor

__all__ = [
    "COLORMAPS",
    "ColormapName",
    "MatchingMode",
    "OverlaySettings",
    "colormap_lut",
    "draw_marker",
    "heat_image",
    "point_colors",
]

ColormapName = Literal["turbo", "viridis", "magma", "coolwarm", "gray"]
SelectionMode = Literal["all", "top-k", "threshold"]
ScaleMode = Literal["relative", "absolute"]
MatchingMode = Literal["pose", "features"]

# Anchor colours (evenly spaced in [0, 1]) of well-known perceptual maps; interpolated
# linearly to 256 entries. Hard-coded so the app needs no plotting library.
COLORMAPS: dict[str, tuple[str, ...]] = {
    "turbo": ("#30123b", "#4662d7", "#36aaf9", "#1ae4b6", "#72fe5e", "#c8ef34", "#faba39", "#f66b19",
              "#ca2a04", "#7a0403"),
    "viridis": ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58",
                "#b5de2b", "#fde725"),
    "magma": ("#000004", "#1c1044", "#4f127b", "#812581", "#b5367a", "#e55064", "#fb8761", "#fec287",
              "#fcfdbf"),
    "coolwarm": ("#3b4cc0", "#6f92f3", "#aac7fd", "#dddddd", "#f7b89c", "#e7745b", "#b40426"),
    "gray": ("#000000", "#ffffff"),
}
assert set(COLORMAPS) == set(get_args(ColormapName))


@dataclass(frozen=True)
class OverlaySettings:
    """How similarities are shown.

    colormap   one of ``COLORMAPS``
    mode       "all": every point coloured; "top-k": the k most similar points; "threshold":
               points with cosine similarity >= threshold (others keep the surface colour)
    k          number of points for "top-k" (>= 1)
    threshold  cosine similarity in [-1, 1] for "threshold"
    opacity    weight of the heat colour over the surface / image colour, in [0, 1]
    scale      "relative": the colour scale spans this query's min..max similarity;
               "absolute": it spans cosine -1..1, so colours compare across queries
    matching   how an image click scores the first shape's points: "pose" (pose-verified,
               ``tango3d_core.models.pose``: cosine minus a penalty for lying far from where the
               image's predicted surface puts the pixel; needs a provider with a geometry head
               and an image with a plain background or alpha, else falls back) or "features"
               (cosine similarity only)
    """

    colormap: ColormapName = "turbo"
    mode: SelectionMode = "all"
    k: int = 400
    threshold: float = 0.5
    opacity: float = 0.85
    scale: ScaleMode = "relative"
    matching: MatchingMode = "pose"

    def __post_init__(self) -> None:
        if self.matching not in get_args(MatchingMode):
            raise ValueError(f"matching must be one of {get_args(MatchingMode)}, got {self.matching!r}")
        if self.colormap not in COLORMAPS:
            raise ValueError(f"unknown colormap {self.colormap!r}; choose one of {sorted(COLORMAPS)}")
        if self.mode not in get_args(SelectionMode):
            raise ValueError(f"mode must be one of {get_args(SelectionMode)}, got {self.mode!r}")
        if self.scale not in get_args(ScaleMode):
            raise ValueError(f"scale must be one of {get_args(ScaleMode)}, got {self.scale!r}")
        if int(self.k) < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not -1.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be in [-1, 1], got {self.threshold}")
        if not 0.0 <= float(self.opacity) <= 1.0:
            raise ValueError(f"opacity must be in [0, 1], got {self.opacity}")

    def updated(self, **changes: object) -> OverlaySettings:
        return replace(self, **changes)  # type: ignore[arg-type]


@functools.lru_cache(maxsize=32)
def colormap_lut(name: str, device: str = "cpu") -> Tensor:
    """float32 [256, 3] in [0, 1] on ``device``."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {sorted(COLORMAPS)}")
    anchors = np.array([[int(h[i:i + 2], 16) for i in (1, 3, 5)] for h in COLORMAPS[name]], np.float64) / 255.0
    x = np.linspace(0.0, 1.0, len(anchors))
    t = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(t, x, anchors[:, c]) for c in range(3)], axis=1)
    return torch.tensor(lut, dtype=torch.float32, device=device)


def _unit_scale(sims: Tensor, scale: ScaleMode) -> Tensor:
    if scale == "absolute":
        return ((sims + 1.0) * 0.5).clamp(0.0, 1.0)
    lo, hi = sims.min(), sims.max()
    return ((sims - lo) / (hi - lo).clamp_min(1e-6)).clamp(0.0, 1.0)


def _lookup(t: Tensor, colormap: str) -> Tensor:
    lut = colormap_lut(colormap, str(t.device))
    return lut[(t * 255.0 + 0.5).long().clamp(0, 255)]


def point_colors(sims: Tensor, base: Tensor, settings: OverlaySettings) -> tuple[np.ndarray, int]:
    """Colours of the overlay points for one query.

    sims      [N] cosine similarities (any float dtype, any device)
    base      [N, 3] surface colours, float in [0, 1], on the same device
    returns   (uint8 [N, 3] on the CPU, index of the most similar point)
    """
    if sims.dim() != 1 or base.shape != (sims.shape[0], 3):
        raise ValueError(f"need sims [N] and base [N, 3], got {tuple(sims.shape)} and {tuple(base.shape)}")
    sims = sims.float()
    best = int(sims.argmax())
    heat = _lookup(_unit_scale(sims, settings.scale), settings.colormap)
    if settings.mode == "all":
        weight = torch.ones_like(sims)
    elif settings.mode == "top-k":
        weight = torch.zeros_like(sims)
        weight[sims.topk(min(int(settings.k), sims.shape[0])).indices] = 1.0
    else:
        weight = (sims >= float(settings.threshold)).float()
    a = (float(settings.opacity) * weight)[:, None]
    rgb = base.float() * (1.0 - a) + heat * a
    return (rgb * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy(), best


def heat_image(image: Image.Image, dense: Tensor, query: Tensor, settings: OverlaySettings,
               ) -> tuple[Image.Image, tuple[int, int]]:
    """A heat map of ``query``'s similarity to every pixel, blended over ``image``.

    image   the RGB image the dense map covers (W x H)
    dense   [D, h, w] unit-length features covering the whole image
    query   [D] unit-length feature
    returns (RGB image W x H, best pixel (x, y)). The map is upsampled bilinearly with the
    pixel-centre convention of ``ImageFeatures.sample`` (align_corners=False). "threshold" mode
    shows the heat only where the similarity reaches the threshold; "top-k" applies to 3D
    points only and shows the whole map here.
    """
    return score_image(image, torch.einsum("dhw,d->hw", dense.float(), query.to(dense.device).float()), settings)


def score_image(image: Image.Image, scores: Tensor, settings: OverlaySettings) -> tuple[Image.Image, tuple[int, int]]:
    """:func:`heat_image` for any score map ``scores`` [h, w] covering the whole image (cosine
    units: the pose-verified map of ``models.pose.pose_heatmap`` too)."""
    w, h = image.size
    sims = F.interpolate(scores.float()[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    flat = int(sims.argmax())
    best = (flat % w, flat // w)
    heat = _lookup(_unit_scale(sims, settings.scale), settings.colormap)  # [H, W, 3]
    weight = torch.full_like(sims, float(settings.opacity))
    if settings.mode == "threshold":
        weight = weight * (sims >= float(settings.threshold)).float()
    base = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).to(heat.device)
    rgb = base * (1.0 - weight[..., None]) + heat * weight[..., None]
    out = Image.fromarray((rgb * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy())
    return out, best


def draw_marker(image: Image.Image, xy: tuple[float, float], *, color: tuple[int, int, int] = (255, 40, 40),
                ) -> Image.Image:
    """A copy of ``image`` with a ring and cross-hair centred on pixel ``xy`` = (x, y)."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    x, y = float(xy[0]), float(xy[1])
    r = max(5.0, 0.018 * max(out.size))
    width = max(2, int(round(r / 4)))
    for rr, col, wd in ((r + 1, (0, 0, 0), width + 2), (r, color, width)):
        draw.ellipse((x - rr, y - rr, x + rr, y + rr), outline=col, width=wd)
    draw.line((x - 2 * r, y, x - r * 0.5, y), fill=color, width=width)
    draw.line((x + r * 0.5, y, x + 2 * r, y), fill=color, width=width)
    draw.line((x, y - 2 * r, x, y - r * 0.5), fill=color, width=width)
    draw.line((x, y + r * 0.5, x, y + 2 * r), fill=color, width=width)
    return out
