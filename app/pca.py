"""Feature view: dense features -> RGB by one PCA projection shared by the image and the shapes.

Fitting one projection on the union of the image's (foreground) pixel features and the shapes'
point features puts every input into the same colour space, so a part that looks alike to the
model gets the same colour in the image and on each mesh; that is what makes the two
comparable by eye.

    proj = fit_pca([pixel_feats [M1, D], point_feats [M2, D], ...])     # 3 components
    rgb = proj.to_rgb(feats [M, D])                                      # float [M, 3] in [0, 1]

Colours: each principal component is mapped to one channel, scaled by a robust range (the
``low`` / ``high`` percentiles of the fitted rows) and clipped, so a few outliers cannot wash
out the rest. Component signs are fixed (largest-magnitude loading positive), so refitting the
same data gives the same colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

__all__ = ["MAX_FIT_ROWS", "PcaProjection", "fit_pca", "image_pca_rgb"]

MAX_FIT_ROWS = 40_000  # rows used for the fit (strided subsample beyond this): D x D covariance stays cheap


@dataclass(frozen=True)
class PcaProjection:
    """``rgb = clip((x - mean) @ components.T - lo) / (hi - lo), 0, 1)``.

    mean        [D]     mean of the fitted rows
    components  [3, D]  unit principal directions, largest variance first
    lo, hi      [3]     robust per-channel range of the fitted rows' projections
    explained   [3]     fraction of the total variance each component explains
    """

    mean: Tensor
    components: Tensor
    lo: Tensor
    hi: Tensor
    explained: Tensor

    def project(self, x: Tensor) -> Tensor:
        """[M, D] -> [M, 3] coordinates along the principal directions."""
        x = x.float()
        return (x - self.mean.to(x.device)) @ self.components.to(x.device).T

    def to_rgb(self, x: Tensor) -> Tensor:
        """[M, D] -> float [M, 3] in [0, 1] (same device as ``x``)."""
        y = self.project(x)
        lo, hi = self.lo.to(y.device), self.hi.to(y.device)
        return ((y - lo) / (hi - lo).clamp_min(1e-6)).clamp(0.0, 1.0)

    def to_u8(self, x: Tensor) -> np.ndarray:
        """[M, D] -> uint8 [M, 3] on the CPU."""
        return (self.to_rgb(x) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()


def _subsample(x: Tensor, limit: int) -> Tensor:
    if x.shape[0] <= limit:
        return x
    idx = torch.linspace(0, x.shape[0] - 1, limit, device=x.device).round().long()
    return x[idx]


def fit_pca(parts: Sequence[Tensor], *, components: int = 3, low: float = 0.01, high: float = 0.99,
            max_rows: int = MAX_FIT_ROWS) -> PcaProjection:
    """Fit one projection on the union of ``parts`` (each [M_i, D], any device; rows are features).

    Each part contributes at most ``max_rows / len(parts)`` rows (strided), so a large image
    cannot drown a shape's points out of the fit. ``low`` / ``high`` are the percentiles that
    map to 0 and 1 of each channel.
    """
    parts = [p for p in parts if p is not None and p.numel() > 0]
    if not parts:
        raise ValueError("fit_pca needs at least one non-empty [M, D] feature block")
    widths = {int(p.shape[-1]) for p in parts}
    if len(widths) != 1 or any(p.dim() != 2 for p in parts):
        raise ValueError(f"every block must be [M, D] with one D, got {[tuple(p.shape) for p in parts]}")
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(f"need 0 <= low < high <= 1, got {low}, {high}")
    per = max(1, max_rows // len(parts))
    x = torch.cat([_subsample(p.detach().float().cpu(), per) for p in parts]).double()
    d = x.shape[1]
    k = min(components, d)
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / max(1, x.shape[0] - 1)
    evals, evecs = torch.linalg.eigh(cov)                   # ascending
    order = torch.argsort(evals, descending=True)[:k]
    comps = evecs[:, order].T.contiguous()                  # [k, D]
    # Deterministic signs: the largest-magnitude loading of each component is positive.
    pivot = comps.abs().argmax(dim=1)
    signs = torch.sign(comps[torch.arange(k), pivot])
    comps = comps * signs[:, None]
    if k < components:  # fewer feature dims than channels: pad with zero directions
        comps = torch.cat([comps, comps.new_zeros(components - k, d)])
    y = xc @ comps.T
    lo = torch.quantile(y, low, dim=0)
    hi = torch.quantile(y, high, dim=0)
    total = evals.clamp_min(0).sum().clamp_min(1e-12)
    explained = torch.zeros(components, dtype=torch.float64)
    explained[:k] = evals[order].clamp_min(0) / total
    return PcaProjection(mean=mean.float(), components=comps.float(), lo=lo.float(), hi=hi.float(),
                         explained=explained.float())


def image_pca_rgb(proj: PcaProjection, dense: Tensor, size: tuple[int, int], *,
                  dim_mask: np.ndarray | None = None) -> Image.Image:
    """The PCA colours of a dense map ``dense`` [D, h, w] as an RGB image of ``size`` = (W, H).

    Colours are computed at feature resolution and upsampled bilinearly (pixel-centre
    convention, like ``ImageFeatures.sample``). ``dim_mask`` bool [H, W]: where False (the
    background) the colours are faded towards white so that the object stands out.
    """
    d, h, w = dense.shape
    rgb = proj.to_rgb(dense.reshape(d, h * w).T.float()).T.reshape(1, 3, h, w)
    up = F.interpolate(rgb, size=(size[1], size[0]), mode="bilinear", align_corners=False)[0]
    arr = up.permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    if dim_mask is not None:
        fade = np.where(dim_mask[..., None], 1.0, 0.35)
        arr = arr * fade + (1.0 - fade)
    return Image.fromarray((arr * 255.0 + 0.5).astype(np.uint8))
