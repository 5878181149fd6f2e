"""Masks on the image, and transferring a masked region to the shapes.

* :func:`mask_from_editor` reads the brush strokes of a ``gr.ImageEditor`` value;
  :func:`read_mask_file` validates and reads an uploaded mask image (bounded like every upload).
* :func:`foreground_mask` guesses the object's pixels from the border colour (renders and
  product shots have a plain background); the feature view fits its PCA on these.
* :func:`mask_prototypes` + :func:`region_scores` do the transfer: the mean pixel feature inside
  the mask (``inside``) against the mean feature of the rest of the object (``outside``); a
  point belongs to the region when it is closer to ``inside`` than to ``outside`` by at least
  the threshold::

      score[n] = cos(f_n, inside) - cos(f_n, outside)        (f_n: the point's dense feature)

  Contrasting with the rest of the object, rather than thresholding ``cos(f_n, inside)`` alone,
  makes 0 a meaningful default whatever the model's similarity range.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter
from torch import Tensor

__all__ = ["MaskError", "draw_mask", "foreground_mask", "mask_from_editor", "mask_prototypes", "mask_to_layer",
           "read_mask_file", "region_scores"]

MASK_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_PROTOTYPE_PIXELS = 4096   # pixels sampled per prototype (strided): plenty for a mean
ASPECT_TOLERANCE = 0.02


class MaskError(ValueError):
    """A mask that cannot be used; the message is meant for the user."""


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    im = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)
    return np.asarray(im) > 127


def _check_aspect(w: int, h: int, size: tuple[int, int], what: str) -> None:
    a, b = w / h, size[0] / size[1]
    if abs(a - b) / b > ASPECT_TOLERANCE:
        raise MaskError(f"The {what} is {w} x {h} pixels but the image is {size[0]} x {size[1]}; "
                        "a mask must have the image's shape (the same size, or scaled).")


def mask_from_editor(value: Any, size: tuple[int, int], *, max_pixels: int = 40_000_000) -> np.ndarray | None:
    """Brush strokes of an ImageEditor value -> bool [H, W] at ``size`` = (W, H), or None if empty.

    value  the editor's value with ``type="numpy"``: {"background", "layers", "composite"},
           images as uint8 [h, w, C] arrays. A stroke is any pixel of any layer with alpha > 0
           (the eraser makes pixels transparent again). Layers over ``max_pixels`` are refused.
    """
    if not value:
        return None
    layers = value.get("layers") if isinstance(value, dict) else None
    mask = None
    for layer in layers or []:
        if layer is None:
            continue
        arr = np.asarray(layer)
        if arr.ndim != 3 or arr.shape[2] < 4:
            continue
        if arr.shape[0] * arr.shape[1] > max_pixels:
            raise MaskError(f"The drawing is {arr.shape[1]} x {arr.shape[0]} pixels; the limit is "
                            f"{max_pixels / 1e6:.0f} megapixels.")
        hit = arr[..., 3] > 0
        if mask is None:
            mask = hit
        elif mask.shape == hit.shape:
            mask |= hit
        else:
            mask |= _resize_mask(hit, (mask.shape[1], mask.shape[0]))
    if mask is None or not mask.any():
        return None
    _check_aspect(mask.shape[1], mask.shape[0], size, "drawing")
    return _resize_mask(mask, size)


def read_mask_file(path: str | Path, size: tuple[int, int], *, max_bytes: int, max_pixels: int) -> np.ndarray:
    """An uploaded mask image -> bool [H, W] at ``size`` = (W, H).

    White (luminance > 127) is inside; with an alpha channel that is not fully opaque, opaque
    pixels are inside (a cut-out). Bounded by ``max_bytes`` and ``max_pixels`` before decoding.
    """
    path = Path(path)
    try:
        nbytes = path.stat().st_size
    except OSError:
        raise MaskError("The mask file could not be read; please upload it again.") from None
    if nbytes > max_bytes:
        raise MaskError(f"The mask file is {nbytes / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB.")
    try:
        with Image.open(path) as im:
            if im.format not in MASK_FORMATS:
                raise MaskError(f"Unsupported mask format ({im.format or 'unknown'}); upload a PNG, JPG or WebP.")
            if im.width * im.height > max_pixels:
                raise MaskError(f"The mask is {im.width} x {im.height} pixels; the limit is "
                                f"{max_pixels / 1e6:.0f} megapixels.")
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                alpha = np.asarray(im.convert("RGBA"))[..., 3]
                mask = alpha > 127 if alpha.min() < 255 else np.asarray(im.convert("L")) > 127
            else:
                mask = np.asarray(im.convert("L")) > 127
    except MaskError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise MaskError(f"The mask is not a readable PNG, JPG or WebP image ({type(e).__name__}).") from None
    _check_aspect(mask.shape[1], mask.shape[0], size, "mask")
    mask = _resize_mask(mask, size)
    if not mask.any():
        raise MaskError("The mask is empty: paint the region white (or opaque) on a black (or transparent) "
                        "background.")
    return mask


def foreground_mask(image: Image.Image, *, tolerance: int = 24) -> np.ndarray:
    """bool [H, W]: pixels that differ from the image's border colour (the median of its outermost
    pixels) by more than ``tolerance`` in some channel. Falls back to all True when that leaves
    under 1% or over 99% of the image (no plain background)."""
    arr = np.asarray(image.convert("RGB"), dtype=np.int16)
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    bg = np.median(border, axis=0)
    fg = (np.abs(arr - bg).max(axis=2) > tolerance)
    frac = fg.mean()
    if not 0.01 <= frac <= 0.99:
        return np.ones(fg.shape, bool)
    return fg


def _pixels(mask: np.ndarray, limit: int) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    if len(xs) > limit:
        keep = np.linspace(0, len(xs) - 1, limit).round().astype(np.int64)
        ys, xs = ys[keep], xs[keep]
    return np.stack([xs, ys], axis=1).astype(np.float32)


def mask_prototypes(image_features: Any, mask: np.ndarray, foreground: np.ndarray | None = None, *,
                    max_pixels: int = MAX_PROTOTYPE_PIXELS) -> tuple[Tensor, Tensor | None]:
    """(inside [D], outside [D] or None), unit length, on the features' device.

    image_features  ``ImageFeatures`` of the working image (``sample(xy)`` in its pixels)
    mask            bool [H, W], the region
    foreground      bool [H, W]; ``outside`` averages the foreground pixels outside the mask
                    (all pixels outside it when that is empty); None when the mask covers all
    """
    if not mask.any():
        raise MaskError("The mask is empty; paint a region first.")
    inside = F.normalize(image_features.sample(_pixels(mask, max_pixels)).mean(0), dim=0, eps=1e-6)
    rest = ~mask
    if foreground is not None and (rest & foreground).any():
        rest = rest & foreground
    if not rest.any():
        return inside, None
    outside = F.normalize(image_features.sample(_pixels(rest, max_pixels)).mean(0), dim=0, eps=1e-6)
    return inside, outside


def region_scores(dense: Tensor, inside: Tensor, outside: Tensor | None) -> Tensor:
    """[N] score of every point (see the module docstring); ``dense`` [N, D] unit rows."""
    d = dense.float()
    score = d @ inside.to(d.device).float()
    if outside is not None:
        score = score - d @ outside.to(d.device).float()
    return score


def draw_mask(image: Image.Image, mask: np.ndarray, *, color: tuple[int, int, int] = (255, 140, 0),
              alpha: float = 0.45) -> Image.Image:
    """``image`` with ``mask`` tinted and outlined (the transferred region's source)."""
    base = image.convert("RGB")
    m = Image.fromarray(mask.astype(np.uint8) * 255)
    tint = Image.new("RGB", base.size, color)
    out = Image.composite(Image.blend(base, tint, alpha), base, m)
    edge = m.filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(3))
    ImageDraw.Draw(out).bitmap((0, 0), edge, fill=color)
    return out


def mask_to_layer(mask: np.ndarray, *, color: tuple[int, int, int] = (255, 140, 0), alpha: int = 160) -> np.ndarray:
    """uint8 [H, W, 4]: an editor layer that shows ``mask`` (transparent elsewhere)."""
    layer = np.zeros((*mask.shape, 4), np.uint8)
    layer[mask] = (*color, alpha)
    return layer

