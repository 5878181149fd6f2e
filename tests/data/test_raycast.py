"""The two ray-casting engines: an analytic triangle, each other, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from tango3d_core.data import raycast, render, shapes
from tango3d_core.data.raycast import RayScene, resolve_backend

ENGINES = ["open3d", "torch"]

# One triangle in the z = 1 plane: vertex 0 at the origin's shadow, 1 on +x, 2 on +y.
TRI_V = np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [0.0, 2.0, 1.0]])
TRI_F = np.array([[0, 1, 2]])


@pytest.mark.parametrize("engine", ENGINES)
def test_one_triangle_matches_the_analytic_hit(engine: str) -> None:
    rays = np.array([
        [0.5, 0.25, 0.0, 0.0, 0.0, 1.0],   # hits at (0.5, 0.25, 1): u = 0.25, v = 0.125
        [0.5, 0.25, 0.0, 0.0, 0.0, 2.0],   # same point, direction twice as long: t halves
        [1.5, 1.5, 0.0, 0.0, 0.0, 1.0],    # beyond the hypotenuse: miss
        [0.5, 0.25, 2.0, 0.0, 0.0, 1.0],   # triangle behind the origin: miss
        [0.5, 0.25, 0.0, 1.0, 0.0, 0.0],   # parallel to the plane: miss
    ], dtype=np.float32)
    t, face, uv = RayScene(TRI_V, TRI_F, backend=engine).cast(rays)
    np.testing.assert_allclose(t[:2], [1.0, 0.5], atol=1e-6)
    assert np.isinf(t[2:]).all()
    np.testing.assert_array_equal(face, [0, 0, -1, -1, -1])
    np.testing.assert_allclose(uv[:2], [[0.25, 0.125], [0.25, 0.125]], atol=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_closest_of_stacked_triangles_wins(engine: str) -> None:
    # Three copies at z = 3, 1, 2: the ray from below must report the one at z = 1.
    v = np.concatenate([TRI_V + [0, 0, 2], TRI_V, TRI_V + [0, 0, 1]])
    f = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])
    t, face, _ = RayScene(v, f, backend=engine).cast(np.array([[0.2, 0.2, 0, 0, 0, 1]], np.float32))
    assert face[0] == 1 and abs(t[0] - 1.0) < 1e-6


def test_torch_engine_renders_what_open3d_renders() -> None:
    shape = shapes.generate("mug", 2)
    cam = render.Camera.orbit(azimuth_deg=35, elevation_deg=25, distance=1.6, width=40, height=40)
    a = render.Renderer(shape, backend="open3d").render(cam)
    b = render.Renderer(shape, backend="torch").render(cam)
    assert a.mask.sum() > 200, "the mug should fill part of the view"
    # Rays through a shared edge may pick either face: allow a handful of pixels.
    assert (a.mask != b.mask).sum() <= 2
    both = a.mask & b.mask
    assert (a.face_id[both] == b.face_id[both]).mean() > 0.99
    np.testing.assert_allclose(a.xyz[both], b.xyz[both], atol=1e-4)
    np.testing.assert_allclose(a.depth[both], b.depth[both], atol=1e-4)


def test_torch_parity_occupancy_of_a_sphere() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    q = np.random.default_rng(0).uniform(-0.7, 0.7, (3000, 3))
    r = np.linalg.norm(q, axis=1)
    far = np.abs(r - 0.5) > 0.02  # the icosphere's facets sit up to ~1% inside the sphere
    got = RayScene(sphere.vertices, sphere.faces, backend="torch").parity_occupancy(q, nsamples=3)
    np.testing.assert_array_equal(got[far], (r < 0.5)[far])
    ref = RayScene(sphere.vertices, sphere.faces, backend="open3d").parity_occupancy(q, nsamples=3)
    assert (got == ref).mean() > 0.999


def test_small_chunks_give_the_same_answer() -> None:
    box = trimesh.creation.box(extents=(1, 1, 1))
    rays = np.random.default_rng(1).normal(size=(257, 6)).astype(np.float32)
    rays[:, :3] *= 2
    whole = RayScene(box.vertices, box.faces, backend="torch")
    chunked = RayScene(box.vertices, box.faces, backend="torch")
    chunked._chunk = 7
    for x, y in zip(whole.cast(rays), chunked.cast(rays)):
        np.testing.assert_array_equal(x, y)


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TANGO3D_RAYCAST", "torch")
    assert resolve_backend() == "torch"
    assert resolve_backend("open3d") == "open3d"  # an explicit choice beats the variable
    monkeypatch.setenv("TANGO3D_RAYCAST", "embree")
    with pytest.raises(ValueError, match="TANGO3D_RAYCAST"):
        resolve_backend()
    monkeypatch.delenv("TANGO3D_RAYCAST")
    monkeypatch.setattr(raycast, "_open3d_available", lambda: False)
    assert resolve_backend() == "torch"
    with pytest.raises(ImportError, match="backend='torch'"):
        resolve_backend("open3d")
    with pytest.raises(ValueError, match="backend must be"):
        resolve_backend("optix")  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_meshes_and_options(engine: str) -> None:
    with pytest.raises(ValueError, match="at least one face"):
        RayScene(TRI_V, np.zeros((0, 3), int), backend=engine)
    with pytest.raises(ValueError, match="do not exist"):
        RayScene(TRI_V, [[0, 1, 3]], backend=engine)
    with pytest.raises(ValueError, match="odd"):
        RayScene(TRI_V, TRI_F, backend=engine).parity_occupancy(np.zeros((1, 3)), nsamples=2)


def test_culled_camera_bundles_match_brute_force() -> None:
    """Rays from one point go through cone-culled bundles; the answer must not change."""
    import torch

    mesh = shapes.generate("chair", 3).mesh
    scene = RayScene(mesh.vertices, mesh.faces, backend="torch", device="cpu")
    cam = render.Camera.orbit(azimuth_deg=20, elevation_deg=30, distance=1.5, width=48, height=48)
    rays = cam._rays_f32.reshape(-1, 6)
    t, face, uv = scene.cast(rays)
    assert np.isfinite(t).sum() > 300
    r = torch.from_numpy(rays)
    bt, bf, buv = scene._closest(r[:, :3], r[:, 3:], None)  # every ray against every face
    np.testing.assert_array_equal(face, bf.numpy())
    np.testing.assert_allclose(t, bt.numpy())
    np.testing.assert_allclose(uv, buv.numpy())


def test_torch_occupancy_of_a_procedural_shape_matches_open3d() -> None:
    mesh = shapes.generate("mug", 2).mesh
    q = np.random.default_rng(3).uniform(-0.5, 0.5, (1500, 3))
    a = RayScene(mesh.vertices, mesh.faces, backend="open3d").parity_occupancy(q)
    b = RayScene(mesh.vertices, mesh.faces, backend="torch").parity_occupancy(q)
    assert a.sum() > 20 and (a == b).mean() > 0.998
