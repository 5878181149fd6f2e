"""Tensor operations without parameters: farthest-point sampling, rotations, pixel sampling.

Pixel convention (CONTRACT.md): ``(x, y)`` = (column, row), and ``(0, 0)`` is the centre of the
top-left pixel. A map of any resolution that covers the same image extent is sampled at the
normalised coordinate ``u = (x + 0.5) / W * 2 - 1`` with ``align_corners=False``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "farthest_point_sample",
    "gather_points",
    "principal_yaw",
    "rotate_z",
    "sample_map_at_pixels",
    "sample_masked_pixels",
]


def farthest_point_sample(points: Tensor, k: int, *, start_index: int | Tensor = 0) -> Tensor:
    """Batched iterative farthest-point sampling.

    points       [B, N, 3] (any float dtype; distances are computed in that dtype)
    k            number of samples, 1 <= k <= N
    start_index  first selected index: an int for every batch element, or an int64 tensor [B]
    returns      int64 [B, k] indices into N. The i-th index is the point farthest (Euclidean)
                 from the i-1 already chosen; ties go to the lowest index (``argmax``).
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be [B, N, 3], got {tuple(points.shape)}")
    b, n, _ = points.shape
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, N={n}], got {k}")
    idx = torch.empty(b, k, dtype=torch.long, device=points.device)
    if isinstance(start_index, Tensor):
        current = start_index.to(device=points.device, dtype=torch.long).reshape(b)
    else:
        current = torch.full((b,), int(start_index), dtype=torch.long, device=points.device)
    if ((current < 0) | (current >= n)).any():
        raise ValueError(f"start_index out of range [0, {n})")
    batch = torch.arange(b, device=points.device)
    min_dist = torch.full((b, n), float("inf"), dtype=points.dtype, device=points.device)
    for i in range(k):
        idx[:, i] = current
        centre = points[batch, current]  # [B, 3]
        d = (points - centre[:, None, :]).square().sum(-1)
        min_dist = torch.minimum(min_dist, d)
        current = min_dist.argmax(dim=1)
    return idx


def gather_points(x: Tensor, idx: Tensor) -> Tensor:
    """x [B, N, C], idx int64 [B, K] -> [B, K, C]."""
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1]))


def rotate_z(xyz: Tensor, yaw: Tensor) -> Tensor:
    """Rotate points about +Z by ``yaw`` radians (counter-clockwise seen from +Z).

    xyz [B, ..., 3], yaw [B] -> [B, ..., 3]; i.e. R_z(yaw) @ p for each point p.
    """
    c, s = yaw.cos(), yaw.sin()
    shape = (yaw.shape[0],) + (1,) * (xyz.dim() - 2)
    c, s = c.reshape(shape).to(xyz.dtype), s.reshape(shape).to(xyz.dtype)
    x, y, z = xyz.unbind(-1)
    return torch.stack([c * x - s * y, s * x + c * y, z], dim=-1)


def principal_yaw(points: Tensor) -> Tensor:
    """The yaw of a point cloud's own horizontal x axis, for undoing an unknown rotation about +Z.

    points   [B, N, 3], Z up
    returns  [B] radians (same dtype as ``points``). ``rotate_z(points, -yaw)`` puts the cloud in
             its principal frame: the horizontal principal axes become x and y, each axis's sign
             is fixed by the skewness (third moment) of the points along it, and the frame stays
             right-handed (y = Z x x). The axis with the larger normalised skewness is signed
             first; the other follows from handedness, so one asymmetric direction is enough.

    Rotating the input about +Z rotates the result with it (``principal_yaw(R_z(a) p) =
    principal_yaw(p) + a``), except for clouds whose horizontal spread is nearly isotropic
    or whose both axes are nearly skew-free (round vases, square tables): their frame is
    still deterministic but may jump between samples of the same surface.
    """
    if points.dim() != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be [B, N, 3], got {tuple(points.shape)}")
    # float64: the covariance and third moments lose sign information in half precision.
    xy = points[..., :2].double()
    c = xy - xy.mean(dim=1, keepdim=True)
    cov = c.transpose(1, 2) @ c / max(1, c.shape[1])  # [B, 2, 2]
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    major, minor = evecs[..., 1], evecs[..., 0]  # [B, 2]

    def skew(axis: Tensor, var: Tensor) -> Tensor:
        proj = (c * axis[:, None, :]).sum(-1)
        return proj.pow(3).mean(dim=1) / var.clamp_min(1e-12).pow(1.5)

    s_major, s_minor = skew(major, evals[:, 1]), skew(minor, evals[:, 0])
    sign = lambda s: torch.where(s < 0, -1.0, 1.0).to(s.dtype)[:, None]  # noqa: E731
    x_from_major = major * sign(s_major)
    y_from_minor = minor * sign(s_minor)
    x_from_minor = torch.stack([y_from_minor[:, 1], -y_from_minor[:, 0]], dim=-1)  # y rotated by -90 deg
    x = torch.where((s_major.abs() >= s_minor.abs())[:, None], x_from_major, x_from_minor)
    return torch.atan2(x[:, 1], x[:, 0]).to(points.dtype)


def sample_map_at_pixels(feature_map: Tensor, xy: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Bilinearly sample a feature map at pixel positions of the image it covers.

    feature_map  [B, C, h, w], covering an image of ``image_size = (W, H)`` pixels
    xy           [B, M, 2] float (x, y) pixels; (0, 0) is the top-left pixel centre
    returns      [B, M, C]; outside the map the border value is used.
    """
    w_img, h_img = image_size
    u = (xy[..., 0] + 0.5) / w_img * 2.0 - 1.0
    v = (xy[..., 1] + 0.5) / h_img * 2.0 - 1.0
    grid = torch.stack([u, v], dim=-1).to(feature_map.dtype)[:, :, None, :]  # [B, M, 1, 2]
    out = F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].transpose(1, 2)  # [B, M, C]


def sample_masked_pixels(mask: Tensor, num: int, *, generator: torch.Generator | None = None
                         ) -> tuple[Tensor, Tensor]:
    """Pick ``num`` distinct masked pixels per image, uniformly at random.

    mask     bool [B, H, W]
    returns  (rows_cols int64 [B, num, 2] as (row, col), valid bool [B, num]). An image with
             fewer than ``num`` masked pixels fills the remainder with unmasked pixels marked
             ``valid=False``.
    """
    if mask.dim() != 3:
        raise ValueError(f"mask must be [B, H, W], got {tuple(mask.shape)}")
    b, h, w = mask.shape
    if not 1 <= num <= h * w:
        raise ValueError(f"num must be in [1, H*W={h * w}], got {num}")
    flat = mask.reshape(b, h * w)
    # Random keys in [0, 1) for masked pixels and [-1, 0) for the rest: top-k then takes masked
    # pixels first, without replacement, in random order.
    # Draw on the generator's device (a CPU generator may drive a GPU model), then move.
    noise_device = generator.device if generator is not None else mask.device
    keys = torch.rand(b, h * w, generator=generator, device=noise_device).to(mask.device) - (~flat).float()
    chosen = keys.topk(num, dim=1).indices
    valid = torch.gather(flat, 1, chosen)
    rc = torch.stack([chosen // w, chosen % w], dim=-1)
    return rc, valid
