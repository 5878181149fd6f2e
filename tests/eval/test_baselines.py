"""Back-projection checked with a toy encoder whose dense map IS the rendered xyz (decoded from
vertex colours), against a naive per-point ray-cast visibility reference; random provider."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from tango3d_core.eval.baselines import (
    BackprojectionFeatures,
    BackprojectionBaseline,
    RandomBaseline,
    _visible_pixels,
    orbit_cameras,
)
from tango3d_core.eval.suites import EvalShape, EvalView
from tango3d_core.models import build_model

RES = 96
# Colours are exact albedo (no shading) so the encoder can read xyz back from them.
FLAT = {"ambient": 1.0, "diffuse": 0.0, "light_color": (1.0, 1.0, 1.0)}



def occluding_scene() -> trimesh.Trimesh:
    """A slab with a box standing in front of it: plenty of occlusion for some views."""
    slab = trimesh.creation.box(extents=(1.0, 0.1, 0.6))
    block = trimesh.creation.box(extents=(0.3, 0.3, 0.3))
    block.apply_translation((0.1, -0.35, -0.1))
    mesh = trimesh.util.concatenate([slab, block])
    mesh = trimesh.Trimesh(mesh.vertices - mesh.bounds.mean(0), mesh.faces, process=False)
    return mesh


def with_xyz_colours(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, np.ndarray, np.ndarray]:
    lo, hi = mesh.bounds
    rgb = np.round((mesh.vertices - lo) / (hi - lo) * 255).astype(np.uint8)
    coloured = trimesh.Trimesh(mesh.vertices, mesh.faces, vertex_colors=np.c_[rgb, np.full(len(rgb), 255)],
                               process=False)
    return coloured, lo, hi


def xyz_encoder(lo: np.ndarray, hi: np.ndarray):
    """image -> [3, H, W] map of the surface point each pixel shows (from its colour)."""

    def encode(image: Image.Image) -> torch.Tensor:
        rgb = np.asarray(image, dtype=np.float64) / 255.0
        return torch.from_numpy((rgb * (hi - lo) + lo).astype(np.float32)).permute(2, 0, 1)

    return encode


def test_backprojected_toy_features_are_the_points_own_xyz():
    mesh, lo, hi = with_xyz_colours(occluding_scene())
    bp = BackprojectionFeatures(xyz_encoder(lo, hi), num_views=8, resolution=192, render_options=FLAT,
                                normalize=False)
    out = bp(mesh, num_points=3000, seed=1)
    err = np.linalg.norm(out.dense.numpy() - out.points.numpy(), axis=1)
    seen = out.weight.numpy() > 0
    assert seen.mean() > 0.9
    # Error sources: colour quantisation (1/255 of the extent, ~4e-3) and reading the nearest pixel
    # centre instead of the point (~1 pixel footprint, 7e-3 here, more on grazing faces); an
    # occluder leaking into the average would be >= 0.05 off.
    assert np.median(err[seen]) < 0.004 and np.quantile(err[seen], 0.95) < 0.016
    assert np.quantile(err[seen], 0.99) < 0.025
    # unseen points (the bottoms) copy the feature of the nearest seen point
    from scipy.spatial import cKDTree

    P = out.points.numpy()
    nearest = np.flatnonzero(seen)[cKDTree(P[seen]).query(P[~seen])[1]]
    assert (~seen).sum() > 10
    np.testing.assert_array_equal(out.dense.numpy()[~seen], out.dense.numpy()[nearest])
    assert (out.num_views_seen.numpy()[seen] >= 1).all() and out.global_embedding is None
    assert set(out.timing) == {"render_s", "encode_s", "project_s"}
    # query() back-projects arbitrary positions the same way
    q = out.points[:200]
    np.testing.assert_allclose(out.query(q).numpy(), out.dense[:200].numpy(), atol=1e-5)


def test_visibility_matches_naive_ray_casting():
    mesh, lo, hi = with_xyz_colours(occluding_scene())
    bp = BackprojectionFeatures(xyz_encoder(lo, hi), num_views=4, resolution=RES, render_options=FLAT)
    out = bp(mesh, num_points=600, seed=2)
    pts = out.points.numpy().astype(np.float64)
    seen_any = np.zeros(len(pts), dtype=bool)
    for view in out._views:
        vis, px = _visible_pixels(view, out._rays, pts, tolerance=0.01 * np.linalg.norm(hi - lo))
        # naive reference: trimesh's numpy ray-triangle test, one ray per point, all hits
        eye = view.camera.eye
        d = pts - eye
        dist = np.linalg.norm(d, axis=1)
        loc, ray_id, _ = trimesh.ray.ray_triangle.RayMeshIntersector(mesh).intersects_location(
            np.broadcast_to(eye, pts.shape), d / dist[:, None], multiple_hits=True)
        first = np.full(len(pts), np.inf)
        np.minimum.at(first, ray_id, np.linalg.norm(loc - eye, axis=1))
        xy = view.camera.project(pts)
        in_frame = (xy >= -0.5).all(1) & (xy <= RES - 0.5).all(1)
        ref = in_frame & (first >= dist - 0.01 * np.linalg.norm(hi - lo))
        assert ref.sum() > 50 and (~ref).sum() > 50
        assert np.mean(vis == ref) > 0.99
        # the chosen pixel is next to the projection
        assert np.abs(px[vis] - xy[vis]).max() <= 1.5
        seen_any |= vis
    assert seen_any.mean() > 0.9


def test_sample_objects_and_maps_give_the_same_features():
    mesh, lo, hi = with_xyz_colours(occluding_scene())
    enc = xyz_encoder(lo, hi)

    class Wrapped:
        def __init__(self, image):
            from tango3d_core.models.ops import sample_map_at_pixels

            self.fmap, self.size = enc(image), image.size
            self._s = sample_map_at_pixels
            self.global_embedding = torch.tensor([1.0, 0.0])

        def sample(self, xy):
            return self._s(self.fmap[None], torch.as_tensor(xy)[None], self.size)[0]

    a = BackprojectionFeatures(enc, num_views=3, resolution=64, render_options=FLAT)(mesh, num_points=500)
    b = BackprojectionFeatures(Wrapped, num_views=3, resolution=64, render_options=FLAT)(mesh, num_points=500)
    np.testing.assert_allclose(a.dense.numpy(), b.dense.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(a.dense.numpy(), axis=1), 1.0, atol=1e-5)
    assert b.global_embedding.tolist() == [1.0, 0.0]


def test_cosine_weighting_and_given_points():
    mesh, lo, hi = with_xyz_colours(occluding_scene())
    pts = trimesh.sample.sample_surface(mesh, 1500, seed=3)[0]
    errs = {}
    for weighting in ("visibility", "cosine"):
        bp = BackprojectionFeatures(xyz_encoder(lo, hi), num_views=6, resolution=RES, render_options=FLAT,
                                    weighting=weighting, normalize=False)
        out = bp(mesh, points=pts)
        seen = out.weight.numpy() > 0
        np.testing.assert_array_equal(out.points.numpy(), pts.astype(np.float32))
        errs[weighting] = np.linalg.norm(out.dense.numpy() - pts, axis=1)[seen]
        assert (out.weight.numpy()[seen] <= out.num_views_seen.numpy()[seen] + 1e-6).all()
    # grazing views read a stretched pixel; the cosine weighting trusts them less
    assert np.quantile(errs["cosine"], 0.9) < np.quantile(errs["visibility"], 0.9)
    assert np.median(errs["cosine"]) < 0.006


def test_orbit_cameras_frame_the_mesh():
    mesh = occluding_scene()
    cams = orbit_cameras(mesh, num_views=6, elevations_deg=(30.0, -10.0), resolution=80, fill=0.8)
    assert len(cams) == 6
    for cam in cams:
        xy = cam.project(mesh.vertices)
        assert (np.abs(xy - 39.5) <= 0.8 * 40 + 1e-6).all()


def test_bad_inputs():
    with pytest.raises(TypeError, match="callable"):
        BackprojectionFeatures(42)
    with pytest.raises(ValueError, match="weighting"):
        BackprojectionFeatures(lambda im: None, weighting="max")
    with pytest.raises(ValueError, match="dense map"):
        BackprojectionFeatures(lambda im: np.zeros((4, 4)), num_views=1, resolution=32)(occluding_scene(), num_points=10)
    with pytest.raises(TypeError, match="trimesh"):
        BackprojectionFeatures(lambda im: None)("not a mesh")
    with pytest.raises(ValueError, match="num_views"):
        orbit_cameras(occluding_scene(), num_views=0)


def _view(key: str) -> EvalView:
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    return EvalView(image=Image.new("RGB", (8, 8)), mask=mask, xyz=np.zeros((8, 8, 3), np.float32),
                    depth=np.zeros((8, 8), np.float32), part_id=np.zeros((8, 8), np.int64), camera=None, key=key)


def _shape(key: str) -> EvalShape:
    return EvalShape(key=key, category="box", seed=0, caption="", mesh=trimesh.creation.box(), yaw=0.0, diameter=1.0,
                     points=np.zeros((1, 3), np.float32), point_parts=np.zeros(1, np.int64), part_names=[])


def test_random_provider_is_deterministic_unit_and_keyed():
    r = RandomBaseline(dim=16, global_dim=8, seed=0)
    xy = torch.tensor([[2.0, 3.0], [5.0, 5.0]])
    a, b, c = (r.image_features(_view(k)).sample(xy) for k in ("a", "a", "b"))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(2))
    s = r.shape_features(_shape("x"), num_points=64, seed=0)
    assert s.points.shape == (64, 3) and s.dense.shape == (64, 16) and s.global_embedding.shape == (8,)
    assert torch.equal(s.query(s.points[:5]), s.query(s.points[:5]))
    t = r.text_features(["a box", "a box", "a cup"])
    assert torch.equal(t[0], t[1]) and not torch.allclose(t[0], t[2])


def test_backprojection_provider_from_model():
    torch.manual_seed(0)
    model = build_model("tiny").eval()
    prov = BackprojectionBaseline.from_model(model, num_views=2, resolution=48)
    out = prov.shape_features(_shape("box"), num_points=256, seed=0)
    assert out.dense.shape == (256, model.dense_dim) and out.global_embedding.shape == (model.global_dim,)
    torch.testing.assert_close(out.dense.norm(dim=1), torch.ones(256), atol=1e-4, rtol=0)
    # the points are those the model's own encode_shape samples
    torch.testing.assert_close(out.points, model.encode_shape(_shape("box").mesh, num_points=256, seed=0).points)
    with pytest.raises(NotImplementedError):
        BackprojectionBaseline(model.encode_image).text_features(["a box"])


def test_query_of_a_single_point_uses_the_mesh_scale():
    mesh, lo, hi = with_xyz_colours(occluding_scene())
    out = BackprojectionFeatures(xyz_encoder(lo, hi), num_views=4, resolution=RES, render_options=FLAT,
                                 normalize=False)(mesh, num_points=400, seed=4)
    i = int(np.argmax(out.num_views_seen.numpy()))
    one = out.query(out.points[i:i + 1])
    np.testing.assert_allclose(one.numpy()[0], out.dense.numpy()[i], atol=1e-6)
