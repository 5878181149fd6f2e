"""models/ops.py: FPS against a naive reference, rotation, pixel sampling conventions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tango3d_core.models.ops import (
    principal_yaw,
    farthest_point_sample,
    gather_points,
    rotate_z,
    sample_map_at_pixels,
    sample_masked_pixels,
)


def _naive_fps(points: np.ndarray, k: int, start: int) -> list[int]:
    """Textbook FPS: each new point maximises its distance to the nearest chosen point."""
    chosen = [start]
    for _ in range(k - 1):
        best, best_d = -1, -1.0
        for j in range(len(points)):
            d = min(float(np.sum((points[j] - points[c]) ** 2)) for c in chosen)
            if d > best_d:
                best, best_d = j, d
        chosen.append(best)
    return chosen


def test_fps_matches_naive_reference_batched() -> None:
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(3, 60, 3, generator=g, dtype=torch.float64)
    starts = torch.tensor([0, 17, 59])
    idx = farthest_point_sample(pts, 12, start_index=starts)
    assert idx.shape == (3, 12) and idx.dtype == torch.long
    for b in range(3):
        assert idx[b].tolist() == _naive_fps(pts[b].numpy(), 12, int(starts[b]))


def test_fps_full_permutation_and_spread() -> None:
    pts = torch.rand(2, 20, 3)
    idx = farthest_point_sample(pts, 20)
    assert all(sorted(row.tolist()) == list(range(20)) for row in idx)
    # Corners of a cube plus clutter near the centre: the first 8 picks are the corners.
    corners = torch.tensor([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=torch.float32)
    cloud = torch.cat([corners, 0.5 + 0.01 * torch.randn(30, 3)])[None]
    assert set(farthest_point_sample(cloud, 8).tolist()[0]) == set(range(8))


@pytest.mark.parametrize("k", [0, 11])
def test_fps_bad_k(k: int) -> None:
    with pytest.raises(ValueError, match="k must be"):
        farthest_point_sample(torch.rand(1, 10, 3), k)


def test_fps_bad_shape_and_start() -> None:
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        farthest_point_sample(torch.rand(10, 3), 2)
    with pytest.raises(ValueError, match="start_index"):
        farthest_point_sample(torch.rand(1, 10, 3), 2, start_index=10)


def test_gather_points() -> None:
    x = torch.arange(24.0).reshape(2, 4, 3)
    idx = torch.tensor([[3, 0], [1, 1]])
    assert torch.equal(gather_points(x, idx), torch.stack([x[0, [3, 0]], x[1, [1, 1]]]))


def test_rotate_z_matches_matrix() -> None:
    yaw = torch.tensor([math.pi / 2, 0.3])
    p = torch.randn(2, 5, 3)
    out = rotate_z(p, yaw)
    assert torch.allclose(rotate_z(torch.tensor([[[1.0, 0.0, 2.0]]]), yaw[:1]), torch.tensor([[[0.0, 1.0, 2.0]]]), atol=1e-6)
    for b in range(2):
        c, s = math.cos(float(yaw[b])), math.sin(float(yaw[b]))
        r = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        assert torch.allclose(out[b], p[b] @ r.T, atol=1e-6)


def _position_map(w_img: int, h_img: int, w: int, h: int) -> torch.Tensor:
    """[1, 2, h, w] map whose cells hold the (x, y) image pixel coordinate of their centre."""
    xs = (torch.arange(w) + 0.5) * w_img / w - 0.5
    ys = (torch.arange(h) + 0.5) * h_img / h - 0.5
    return torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)])[None]


def test_sample_map_recovers_pixel_positions() -> None:
    # Bilinear interpolation of a linear function is exact, so the map returns the query
    # position wherever the query lies between cell centres.
    w_img, h_img = 37, 91
    fmap = _position_map(w_img, h_img, 10, 23)
    margin_x, margin_y = w_img / 10 / 2, h_img / 23 / 2
    xy = torch.stack([torch.empty(50).uniform_(margin_x, w_img - 1 - margin_x),
                      torch.empty(50).uniform_(margin_y, h_img - 1 - margin_y)], dim=-1)
    out = sample_map_at_pixels(fmap, xy[None], (w_img, h_img))[0]
    assert torch.allclose(out, xy, atol=1e-4)


def test_sample_map_full_resolution_is_exact_lookup() -> None:
    fmap = torch.randn(1, 4, 5, 7)  # H=5 rows, W=7 columns
    xy = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 4.0], [3.0, 2.0]])
    out = sample_map_at_pixels(fmap, xy[None], (7, 5))[0]
    for (x, y), row in zip(xy.long().tolist(), out):
        assert torch.allclose(row, fmap[0, :, y, x], atol=1e-6)
    # Past the outermost pixel centres the border value is used.
    edge = sample_map_at_pixels(fmap, torch.tensor([[[-0.5, -0.5]]]), (7, 5))[0, 0]
    assert torch.allclose(edge, fmap[0, :, 0, 0], atol=1e-6)


def test_sample_masked_pixels() -> None:
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(2, 6, 5, dtype=torch.bool)
    mask[0, 1:5, 1:4] = True  # 12 pixels
    mask[1, 0, :3] = True  # 3 pixels
    rc, valid = sample_masked_pixels(mask, 8, generator=g)
    assert rc.shape == (2, 8, 2) and valid.shape == (2, 8)
    assert valid[0].all() and int(valid[1].sum()) == 3
    for b in range(2):
        hits = mask[b, rc[b, :, 0], rc[b, :, 1]]
        assert torch.equal(hits, valid[b])
        assert len({tuple(p) for p in rc[b].tolist()}) == 8  # distinct
    with pytest.raises(ValueError):
        sample_masked_pixels(mask, 31)
    with pytest.raises(ValueError):
        sample_masked_pixels(mask[0], 3)


def _naive_principal_yaw(points: np.ndarray) -> float:
    """One cloud, float64 numpy, written from the definition: the yaw of the signed principal x axis."""
    c = points[:, :2] - points[:, :2].mean(axis=0)
    evals, evecs = np.linalg.eigh(c.T @ c / len(c))
    skews = [np.mean((c @ evecs[:, i]) ** 3) / evals[i] ** 1.5 for i in (0, 1)]  # minor, major
    if abs(skews[1]) >= abs(skews[0]):
        x = evecs[:, 1] * (1.0 if skews[1] >= 0 else -1.0)
    else:
        y = evecs[:, 0] * (1.0 if skews[0] >= 0 else -1.0)
        x = np.array([y[1], -y[0]])  # x = y turned by -90 degrees, so that x, y, +Z is right-handed
    return math.atan2(x[1], x[0])


def _skewed_cloud(b: int, n: int = 3000, seed: int = 0) -> torch.Tensor:
    """Clouds with a clear long axis and a heavy tail along it (so the frame is well defined)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(b, n, 3, generator=g) * torch.tensor([2.0, 0.7, 0.5])
    p[..., 0] = p[..., 0] + 0.4 * p[..., 0].square()
    return p


def _angle_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi


def test_principal_yaw_matches_naive_reference() -> None:
    pts = _skewed_cloud(3)
    pts[1, :, 1] = pts[1, :, 1] + 0.5 * pts[1, :, 1].square()  # skewed along both axes
    # the long axis symmetric, the short one skewed: the sign comes from the short axis
    pts[2, :, 0] = torch.randn(pts.shape[1], generator=torch.Generator().manual_seed(5)) * 2.0
    pts[2, :, 1] = pts[2, :, 1] + 0.5 * pts[2, :, 1].square()
    got = principal_yaw(pts)
    for b in range(3):
        assert abs(float(_angle_diff(got[b], torch.tensor(_naive_principal_yaw(pts[b].double().numpy()))))) < 1e-5


def test_principal_yaw_follows_a_turn_about_z_and_canonicalises() -> None:
    pts = _skewed_cloud(4, seed=1)
    yaw = torch.tensor([0.0, 1.0, -2.5, 3.0])
    base = principal_yaw(pts)
    turned = principal_yaw(rotate_z(pts, yaw))
    assert torch.allclose(_angle_diff(turned, base + yaw), torch.zeros(4), atol=1e-4)
    # In its own frame the cloud's long axis is x, with the heavy tail towards +x.
    own = rotate_z(rotate_z(pts, yaw), -turned)
    assert torch.allclose(own, rotate_z(pts, -base), atol=1e-4)
    assert bool((own[..., 0].var(dim=1) > own[..., 1].var(dim=1)).all())
    assert bool((own[..., 0].pow(3).mean(dim=1) > 0).all())


def test_principal_yaw_ignores_height_and_translation_and_is_a_proper_turn() -> None:
    pts = _skewed_cloud(2, seed=2)
    moved = pts + torch.tensor([5.0, -3.0, 0.0])
    moved[..., 2] = moved[..., 2] * 10.0
    assert torch.allclose(principal_yaw(moved), principal_yaw(pts), atol=1e-5)
    # A mirror image is not a turn: a cloud skewed along both axes and its mirror (y -> -y) land
    # in frames that are mirror images of each other, not in the same frame.
    chiral = pts.clone()
    chiral[..., 1] = chiral[..., 1] + 0.5 * chiral[..., 1].square()
    mirrored = chiral * torch.tensor([1.0, -1.0, 1.0])
    own, own_m = rotate_z(chiral, -principal_yaw(chiral)), rotate_z(mirrored, -principal_yaw(mirrored))
    assert torch.allclose(own_m, own * torch.tensor([1.0, -1.0, 1.0]), atol=1e-4)
    assert not torch.allclose(own_m, own, atol=1e-1)


def test_principal_yaw_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        principal_yaw(torch.rand(10, 3))
