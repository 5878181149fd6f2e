"""models/volume.py: coarse-to-fine grid decoding against the every-point reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.measure import marching_cubes

from tango3d_core.models.volume import dense_grid_logits, grid_axes, grid_box, grid_logits

LO, HI = (-0.5, -0.4, -0.3), (0.5, 0.4, 0.3)


class Counting:
    """A field that counts its queries: two balls (inside positive), logits in units of 10 x distance."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, xyz: torch.Tensor) -> torch.Tensor:
        self.calls += len(xyz)
        a = 0.2 - (xyz - torch.tensor([-0.2, 0.0, 0.0])).norm(dim=-1)
        b = 0.12 - (xyz - torch.tensor([0.25, 0.1, 0.05])).norm(dim=-1)
        return 10 * torch.maximum(a, b)


@pytest.mark.parametrize("resolution", [4, 16, 33, 48])
def test_matches_the_dense_grid(resolution: int) -> None:
    field = Counting()
    dense = dense_grid_logits(field, LO, HI, resolution)
    assert field.calls == resolution ** 3
    field.calls = 0
    fast, evaluated = grid_logits(field, LO, HI, resolution, band=0.5)
    assert field.calls == evaluated
    assert np.array_equal(np.sign(fast), np.sign(dense))  # the sign everywhere
    exact = np.isclose(fast, dense, atol=1e-5)
    near = np.abs(dense) < 0.5
    assert exact[near].all()  # every value marching cubes interpolates with
    if resolution >= 33:
        assert evaluated < 0.65 * resolution ** 3  # two large balls: a wide band around them
        sp = tuple((np.array(HI) - np.array(LO)) / (resolution - 1))
        v1, f1, *_ = marching_cubes(dense, level=0.0, spacing=sp)
        v2, f2, *_ = marching_cubes(fast, level=0.0, spacing=sp)
        assert np.array_equal(f1, f2) and np.allclose(v1, v2, atol=1e-6)


def test_far_from_any_surface_only_the_coarse_points_are_queried() -> None:
    field = Counting()
    _, evaluated = grid_logits(lambda x: -5 * torch.ones(len(x)) + 0 * field(x), LO, HI, 17, band=1.0)
    assert evaluated == 9 ** 3  # every second point of 17 along each axis


def test_axes_span_the_box() -> None:
    axes = grid_axes(LO, HI, 5)
    assert [len(a) for a in axes] == [5, 5, 5]
    assert [a[0] for a in axes] == list(LO) and [a[-1] for a in axes] == list(HI)


def test_grid_box_is_the_canonical_bounds_grown_by_the_pad() -> None:
    lo, hi = grid_box([[1.0, 2.0, 3.0], [5.0, 4.0, 4.0]], [3.0, 3.0, 3.5], 0.5, pad=0.1)
    # canonical bounds [-1, -0.5, -0.25] .. [1, 0.5, 0.25], longest extent 2: grown by 0.2
    assert np.allclose(lo, [-1.2, -0.7, -0.45]) and np.allclose(hi, [1.2, 0.7, 0.45])
