"""Occupancy on a regular grid, for marching cubes: every point, or coarse to fine.

A reconstruction needs the occupancy logits on a ``R x R x R`` grid, but marching cubes only reads
their values next to the zero crossing; elsewhere it needs just their sign. :func:`grid_logits`
therefore evaluates every second grid point first, then only the cells whose corners change sign
or come within ``band`` of zero (and the cells around them); every other grid point takes the
trilinear interpolation of the coarse corners, which keeps their sign. Hierarchical volume
decoding in the same spirit is what Hunyuan3D-2's FlashVDM uses on GPUs. :func:`dense_grid_logits`
is the every-point reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import binary_dilation

__all__ = ["grid_box", "grid_axes", "dense_grid_logits", "grid_logits"]

Field = Callable[[torch.Tensor], torch.Tensor]  # positions [M, 3] float32 -> logits [M]


def grid_box(bounds: Any, center: Any, scale: float, *, pad: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` [3] of the reconstruction grid in canonical coordinates: a mesh's ``bounds``
    [2, 3] (its own units) moved by ``center`` [3] and scaled by ``scale``, grown on every side
    by ``pad`` times its longest extent."""
    lo, hi = (np.asarray(bounds, dtype=np.float64) - np.asarray(center, dtype=np.float64)) * scale
    margin = pad * (hi - lo).max()
    return lo - margin, hi + margin


def grid_axes(lo: Sequence[float], hi: Sequence[float], resolution: int) -> list[np.ndarray]:
    """The grid's coordinates along x, y, z: ``resolution`` points from ``lo`` to ``hi`` each."""
    return [np.linspace(a, b, resolution) for a, b in zip(lo, hi)]


def _evaluate(field: Field, points: np.ndarray) -> np.ndarray:
    if not len(points):
        return np.zeros(0)
    return field(torch.as_tensor(points, dtype=torch.float32)).detach().cpu().numpy().astype(np.float64)


def dense_grid_logits(field: Field, lo: Sequence[float], hi: Sequence[float], resolution: int) -> np.ndarray:
    """float64 [R, R, R] logits of ``field`` at every grid point (index order x, y, z)."""
    axes = grid_axes(lo, hi, resolution)
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return _evaluate(field, grid).reshape((resolution,) * 3)


def _cells_of(resolution: int, coarse: np.ndarray) -> np.ndarray:
    """bool [R, C-1]: fine index f lies in coarse cell c (between ``coarse[c]`` and ``coarse[c+1]``,
    ends included, so a fine point on a coarse plane belongs to the cells on both sides)."""
    f = np.arange(resolution)[:, None]
    return (f >= coarse[None, :-1]) & (f <= coarse[None, 1:])


def grid_logits(field: Field, lo: Sequence[float], hi: Sequence[float], resolution: int, *,
                band: float = 2.0) -> tuple[np.ndarray, int]:
    """float64 [R, R, R] logits on the grid of :func:`dense_grid_logits`, coarse to fine.

    Exact (equal to the dense grid, up to the float rounding of other query batches, ~1e-4)
    at every point it evaluates: every second point along each
    axis, and every point of a coarse cell whose eight corners differ in sign or include one
    with ``|logit| < band``, dilated by one cell. The rest are trilinear interpolations of their
    cell's corners (same sign as all of them, magnitude >= ``band``). A surface can only be missed
    where a part thinner than two grid steps passes between coarse points while every corner
    around it stays ``band`` or more from zero.

    Returns ``(logits, evaluated)``: ``evaluated`` is how many points ``field`` was called on.
    """
    if resolution < 9:  # too few coarse points to see anything by; and nothing to save
        return dense_grid_logits(field, lo, hi, resolution), resolution ** 3
    axes = grid_axes(lo, hi, resolution)
    coarse = np.unique(np.r_[np.arange(0, resolution, 2), resolution - 1])
    c_axes = [ax[coarse] for ax in axes]
    c_grid = np.stack(np.meshgrid(*c_axes, indexing="ij"), axis=-1).reshape(-1, 3)
    n = len(coarse)
    c_logits = _evaluate(field, c_grid).reshape(n, n, n)

    # Corners of each coarse cell: min and max over the 2 x 2 x 2 neighbourhood.
    corners = np.stack([c_logits[i:n - 1 + i, j:n - 1 + j, k:n - 1 + k]
                        for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    active = (corners.min(0) < 0) & (corners.max(0) > 0) | (np.abs(corners).min(0) < band)
    active = binary_dilation(active, structure=np.ones((3, 3, 3), dtype=bool))

    member = _cells_of(resolution, coarse).astype(np.float64)  # [R, C-1]
    # fine[a, b, c] = any cell (i, j, k) with active & member_x[a, i] & member_y[b, j] & member_z[c, k]
    hit = np.einsum("ai,ijk->ajk", member, active.astype(np.float64))
    hit = np.einsum("bj,ajk->abk", member, hit)
    hit = np.einsum("ck,abk->abc", member, hit) > 0

    fine = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)  # [R, R, R, 3]
    logits = RegularGridInterpolator(c_axes, c_logits)(fine.reshape(-1, 3)).reshape((resolution,) * 3)
    on_coarse = np.zeros((resolution,) * 3, dtype=bool)
    on_coarse[np.ix_(coarse, coarse, coarse)] = True
    logits[on_coarse] = c_logits.reshape(-1)
    todo = hit & ~on_coarse
    logits[todo] = _evaluate(field, fine[todo])
    return logits, int(len(c_grid) + todo.sum())
