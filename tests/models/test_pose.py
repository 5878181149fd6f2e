"""models/pose.py: foreground, affine view direction, yaw search (against a naive loop), pose_match.

The pose tests use an oracle image: the geometry maps are the renderer's exact canonical xyz
and depth, so the yaw search must find the yaw the shape was turned by.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tango3d_core.data import render, shapes
from tango3d_core.models.features import ImageFeatures, ImageGeometry, ShapeFeatures
from tango3d_core.models.pose import (
    CHAMFER_TRUNCATION,
    FACING_COS,
    _view_direction,
    estimate_foreground,
    estimate_pose,
    pose_match,
)
from tango3d_core.models.tango3d import sample_mesh_surface

D = 8


def _rot(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def chair():
    return shapes.generate("chair", 3).mesh


@pytest.fixture(scope="module")
def oracle_view(chair):
    """A 96 px view of the canonical chair with the renderer's xyz / depth as 'predictions'."""
    cam = render.Camera.look_at((1.2, -1.5, 0.8), (0.0, 0.0, 0.0), fov_deg=40.0, width=96, height=96)
    v = render.render_view(chair, cam)
    xyz = np.nan_to_num(v.xyz, nan=0.0)
    geo = ImageGeometry(xyz=torch.as_tensor(xyz, dtype=torch.float32).permute(2, 0, 1),
                        depth=torch.as_tensor(v.depth, dtype=torch.float32),
                        foreground=torch.as_tensor(v.mask), foreground_source="border")
    # Every pixel and point gets the same feature: only geometry can decide.
    dense = torch.zeros(D, 96, 96)
    dense[0] = 1.0
    img = ImageFeatures(dense=dense, global_embedding=F.normalize(torch.ones(4), dim=0), image_size=(96, 96),
                        model_size=(96, 96), geometry=geo)
    return img, v


def _shape_features(mesh, n: int = 3000) -> ShapeFeatures:
    points, normals = sample_mesh_surface(mesh, n, seed=0)
    lo, hi = (torch.tensor(np.array(b), dtype=torch.float32) for b in mesh.bounds)
    dense = torch.zeros(n, D)
    dense[:, 0] = 1.0
    return ShapeFeatures(points=points, normals=normals, dense=dense, global_embedding=torch.ones(4) / 2,
                         center=(lo + hi) / 2, scale=1.0 / float((hi - lo).norm()), _query=lambda q: q)


def _turned(mesh, yaw: float):
    m = mesh.copy()
    t = np.eye(4)
    t[:3, :3] = _rot(yaw)
    m.apply_transform(t)
    return m


def _angle(a: float, b: float) -> float:
    return abs((a - b + math.pi) % (2 * math.pi) - math.pi)


# ------------------------------------------------------------------ foreground


def test_foreground_from_a_plain_border():
    rgb = np.full((40, 60, 3), 250, np.uint8)
    rgb[10:30, 20:45] = (200, 40, 40)
    mask, source = estimate_foreground(Image.fromarray(rgb), (60, 40))
    assert source == "border"
    assert mask[10:30, 20:45].all() and mask.sum() == 20 * 25


def test_foreground_from_alpha_wins_over_colour():
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = 255  # the colour says 'all background'
    rgba[8:16, 8:24, 3] = 255
    mask, source = estimate_foreground(Image.fromarray(rgba, "RGBA"), (32, 32))
    assert source == "alpha" and mask.sum() == 8 * 16 and mask[8:16, 8:24].all()


def test_foreground_gives_up_on_a_busy_background():
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask, source = estimate_foreground(Image.fromarray(rgb), (16, 16))
    assert source == "none" and mask.shape == (16, 16) and mask.all()


# ------------------------------------------------------------- view direction


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_view_direction_of_an_affine_camera(seed):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(200, 3, generator=g, dtype=torch.float64) - 0.5
    d = F.normalize(torch.randn(3, generator=g, dtype=torch.float64), dim=0)
    right = F.normalize(torch.linalg.cross(d, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)), dim=0)
    down = torch.linalg.cross(d, right)
    xy = torch.stack([xyz @ right * 80 + 48, xyz @ down * 80 + 48], dim=-1)
    depth = xyz @ d + 2.0
    got = _view_direction(xy.float(), xyz.float(), depth.float()).double()
    assert torch.allclose(got, d, atol=1e-4)
    # the depth decides the sign: flip it and the direction flips
    assert torch.allclose(_view_direction(xy.float(), xyz.float(), (-depth).float()).double(), -d, atol=1e-4)


# --------------------------------------------------------------- yaw search


@pytest.mark.parametrize("yaw_deg", [0.0, 37.0, 143.0, 250.0])
def test_estimate_pose_finds_the_turn_of_the_shape(chair, oracle_view, yaw_deg):
    img, _ = oracle_view
    yaw = math.radians(yaw_deg)
    pose = estimate_pose(img, _shape_features(_turned(chair, yaw)), feature_weight=0.0, max_points=1500)
    assert _angle(pose.yaw, yaw) <= math.radians(5.0 + 1e-3), (math.degrees(pose.yaw), yaw_deg)
    assert pose.margin > 0
    assert pose.score == float(pose.scores[torch.argmin(torch.abs(pose.yaws - pose.yaw))])
    assert pose.num_pixels > 100


def test_yaw_scores_match_a_naive_loop(chair, oracle_view):
    """The chunked, batched search scores every yaw like a per-yaw numpy loop does."""
    img, _ = oracle_view
    shp = _shape_features(_turned(chair, 1.0), n=600)
    pose = estimate_pose(img, shp, feature_weight=0.5, max_points=600, max_pixels=200, yaw_steps=24, seed=3)

    from tango3d_core.models.pose import _foreground_pixels

    xy = _foreground_pixels(img, None, 200, 3)
    pred = img.geometry.xyz_at(img.image_size, xy).double().numpy()
    view = _view_direction(xy, torch.as_tensor(pred).float(), img.geometry.depth_at(img.image_size, xy)).double().numpy()
    canonical = ((shp.points - shp.center) * shp.scale).double().numpy()
    sub = torch.randperm(len(canonical), generator=torch.Generator().manual_seed(3))[:600].numpy()
    cos = img.sample(xy).double().numpy() @ shp.dense[sub].double().numpy().T
    assert 8 < len(pose.yaws) < 24  # coarse grid of 8 plus the refined neighbours of the 3 best
    for t, score in zip(pose.yaws.tolist(), pose.scores.tolist()):
        turned_all = canonical @ _rot(-t).T
        c = (turned_all.min(0) + turned_all.max(0)) / 2
        s = 1.0 / np.linalg.norm(turned_all.max(0) - turned_all.min(0))
        q = (canonical[sub] @ _rot(-t).T - c) * s
        facing = (shp.normals[sub].double().numpy() @ _rot(-t).T) @ view < -FACING_COS
        d = np.linalg.norm(pred[:, None] - q[None, facing], axis=-1)
        a = np.minimum(d.min(1), CHAMFER_TRUNCATION).mean()
        b = np.minimum(d.min(0), CHAMFER_TRUNCATION).mean()
        fused = (cos[:, facing] / 0.1 - d**2 / (2 * 0.05**2)).max(1).mean()
        assert score == pytest.approx(-(a + b) + 0.5 * fused, rel=1e-4, abs=2e-4)
    assert pose.yaw == pytest.approx(float(pose.yaws[pose.scores.argmax()]))


def test_pose_match_points_at_the_seen_surface(chair, oracle_view):
    img, view = oracle_view
    yaw = 2.2
    shp = _shape_features(_turned(chair, yaw))
    rows, cols = np.nonzero(view.mask)
    pick = np.random.default_rng(0).choice(len(rows), 64, replace=False)
    xy = torch.as_tensor(np.stack([cols[pick], rows[pick]], -1), dtype=torch.float32)
    scores = pose_match(img, shp, xy)
    assert scores.shape == (64, shp.num_points) and scores.dtype == torch.float32
    truth = view.xyz[rows[pick], cols[pick]] @ _rot(yaw).T  # the seen points, in the turned mesh's frame
    err = np.linalg.norm(shp.points[scores.argmax(1)].numpy() - truth, axis=1)
    assert np.median(err) < 0.03  # units of the bbox diagonal (1)
    # a half-turned pose (the mirror-twin mistake) does much worse
    wrong = estimate_pose(img, _shape_features(_turned(chair, yaw + math.pi)), feature_weight=0.0)
    bad = pose_match(img, shp, xy, pose=wrong)
    assert np.median(np.linalg.norm(shp.points[bad.argmax(1)].numpy() - truth, axis=1)) > 0.2


def test_pose_match_at_given_points_equals_the_columns_of_the_shape_points(chair, oracle_view):
    from dataclasses import replace

    img, view = oracle_view
    shp = _shape_features(_turned(chair, 0.7), n=800)
    shp = replace(shp, _query=lambda q: F.one_hot(torch.zeros(len(q), dtype=torch.long), D).float())
    rows, cols = np.nonzero(view.mask)
    xy = torch.as_tensor(np.stack([cols[:40], rows[:40]], -1), dtype=torch.float32)
    pose = estimate_pose(img, shp, feature_weight=0.0, max_points=800)
    full = pose_match(img, shp, xy, pose=pose)
    some = pose_match(img, shp, xy, pose=pose, points=shp.points[100:150])
    assert some.shape == (40, 50)
    assert torch.allclose(some, full[:, 100:150], atol=1e-5)
    with pytest.raises(ValueError, match="points"):
        pose_match(img, shp, xy, pose=pose, points=shp.points[:5, :2])


def test_pose_heatmap_is_pose_match_on_the_dense_grid(chair, oracle_view):
    from dataclasses import replace

    from tango3d_core.models.pose import pose_heatmap

    img, view = oracle_view  # dense grid = the 96 x 96 pixels
    shp = replace(_shape_features(_turned(chair, 1.3), n=800),
                  _query=lambda q: F.one_hot(torch.zeros(len(q), dtype=torch.long), D).float())
    pose = estimate_pose(img, shp, feature_weight=0.0, max_points=800)
    p = shp.points[123]
    heat = pose_heatmap(img, shp, p, pose=pose)
    assert heat.shape == (96, 96)
    grid = torch.tensor([[x, y] for y in range(96) for x in range(96)], dtype=torch.float32)
    ref = pose_match(img, shp, grid, pose=pose, points=p[None])[:, 0].reshape(96, 96)
    assert torch.allclose(heat, ref, atol=1e-4)
    # a caller that already has the point's feature passes it instead of querying again
    assert torch.equal(pose_heatmap(img, shp, p, pose=pose, feature=shp.query(p[None])[0]), heat)
    # the point's own pixel is where the map peaks (oracle geometry, the right turn)
    y, x = divmod(int(heat.argmax()), 96)
    assert view.mask[y, x]
    for bad in ([1.0, 2.0], "xyz", [[0.0, 0.0, float("nan")]]):
        with pytest.raises((TypeError, ValueError)):
            pose_heatmap(img, shp, bad, pose=pose)


# ----------------------------------------------------------------- bad input


def test_pose_needs_geometry(chair, oracle_view):
    img, _ = oracle_view
    plain = ImageFeatures(dense=img.dense, global_embedding=img.global_embedding, image_size=img.image_size,
                          model_size=img.model_size)
    with pytest.raises(ValueError, match="geometry"):
        estimate_pose(plain, _shape_features(chair))
    with pytest.raises(ValueError, match="geometry"):
        pose_match(plain, _shape_features(chair), [[10.0, 10.0]])


def test_pose_rejects_bad_masks_and_options(chair, oracle_view):
    img, _ = oracle_view
    shp = _shape_features(chair, n=500)
    with pytest.raises(ValueError, match="no foreground"):
        estimate_pose(img, shp, mask=np.zeros((96, 96), bool))
    with pytest.raises(ValueError, match=r"mask must be \[H, W\]"):
        estimate_pose(img, shp, mask=np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="too few"):
        m = np.zeros((96, 96), bool)
        m[40, 40:43] = True
        estimate_pose(img, shp, mask=m)
    with pytest.raises(ValueError, match="temperature"):
        estimate_pose(img, shp, temperature=0.0)
    with pytest.raises(TypeError, match="ShapeFeatures"):
        estimate_pose(img, "not a shape")
    with pytest.raises(ValueError, match=r"\[M, 2\]"):
        pose_match(img, shp, [[1.0, 2.0, 3.0]])
