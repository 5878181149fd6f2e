"""Tests for tango3d_core.data.render: exact ray casting, camera conventions, colours."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import trimesh
from PIL import Image

from tango3d_core.data import render
from tango3d_core.data.render import Camera, Renderer, render_view, render_views

# ---------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------


def box_and_sphere() -> tuple[trimesh.Trimesh, np.ndarray]:
    """An asymmetric scene: a box at +X (part 0) and a sphere at +Z (part 1)."""
    box = trimesh.creation.box(extents=(0.3, 0.3, 0.3))
    box.apply_translation((0.6, 0.0, 0.0))
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.2)
    sphere.apply_translation((0.0, 0.0, 0.6))
    mesh = trimesh.util.concatenate([box, sphere])
    parts = np.r_[np.zeros(len(box.faces), int), np.ones(len(sphere.faces), int)]
    return mesh, parts


def moller_trumbore(origins: np.ndarray, dirs: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Naive reference: nearest hit of every ray against every triangle.

    Args:
        origins, dirs: float64 [R, 3]; tri: float64 [F, 3, 3].

    Returns:
        (t [R] with inf on a miss, face [R] with -1 on a miss).
    """
    v0, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    p = np.cross(dirs[:, None, :], e2[None])  # [R, F, 3]
    det = np.einsum("rfc,fc->rf", p, e1)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origins[:, None, :] - v0[None]
    u = np.einsum("rfc,rfc->rf", s, p) * inv
    q = np.cross(s, e1[None])
    v = np.einsum("rc,rfc->rf", dirs, q) * inv
    t = np.einsum("fc,rfc->rf", e2, q) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
    t = np.where(hit, t, np.inf)
    face = np.argmin(t, axis=1)
    tmin = t[np.arange(len(t)), face]
    return tmin, np.where(np.isfinite(tmin), face, -1)


def flat(**kw):
    """Shading that returns the albedo unchanged (ambient 1, no diffuse)."""
    return dict(ambient=1.0, diffuse=0.0, **kw)


@pytest.fixture(scope="module")
def scene() -> tuple[trimesh.Trimesh, np.ndarray, Camera, render.View]:
    mesh, parts = box_and_sphere()
    mesh.metadata["face_parts"] = parts
    cam = Camera.look_at((0.9, -2.2, 1.1), (0.2, 0.0, 0.2), fov_deg=45.0, width=96, height=80)
    return mesh, parts, cam, render_view(mesh, cam)


# ---------------------------------------------------------------------------------
# exactness
# ---------------------------------------------------------------------------------


def test_view_shapes_and_dtypes(scene):
    _, _, cam, v = scene
    H, W = cam.height, cam.width
    assert v.rgb.shape == (H, W, 3) and v.rgb.dtype == np.uint8
    assert v.mask.shape == (H, W) and v.mask.dtype == bool
    assert v.xyz.shape == (H, W, 3) and v.xyz.dtype == np.float32
    assert v.depth.shape == (H, W) and v.depth.dtype == np.float32
    assert v.normal.shape == (H, W, 3) and v.normal.dtype == np.float32
    assert v.bary.shape == (H, W, 3) and v.bary.dtype == np.float32
    assert v.face_id.shape == (H, W) and np.issubdtype(v.face_id.dtype, np.integer)
    assert v.part_id.shape == (H, W) and np.issubdtype(v.part_id.dtype, np.integer)
    assert 0.05 < v.mask.mean() < 0.9  # the scene is framed, neither empty nor full


def test_xyz_lies_on_mesh(scene):
    mesh, _, _, v = scene
    pts = v.xyz[v.mask].astype(np.float64)
    sample = pts[np.random.default_rng(0).choice(len(pts), size=min(300, len(pts)), replace=False)]
    _, dist, _ = trimesh.proximity.closest_point(mesh, sample)
    diag = np.linalg.norm(mesh.extents)
    assert dist.max() < 1e-5 * diag


def test_project_gives_back_the_pixel(scene):
    _, _, cam, v = scene
    xy = cam.project(v.xyz[v.mask])
    assert np.abs(xy - v.pixels).max() < 0.5
    # float32 storage of xyz is the only error source: far below a pixel.
    assert np.abs(xy - v.pixels).max() < 1e-2


def test_depth_is_camera_z_of_xyz(scene):
    _, _, cam, v = scene
    cam_pts = (v.xyz[v.mask].astype(np.float64) - cam.eye) @ cam.R.T
    np.testing.assert_allclose(v.depth[v.mask], cam_pts[:, 2], rtol=1e-5, atol=1e-6)
    _, z = cam.project_with_depth(v.xyz[v.mask])
    np.testing.assert_allclose(v.depth[v.mask], z, rtol=1e-5, atol=1e-6)
    assert np.all(v.depth[v.mask] > 0) and np.all(v.depth[~v.mask] == 0)


def test_face_id_bary_and_parts_consistent(scene):
    mesh, parts, _, v = scene
    m = v.mask
    fid, b = v.face_id[m], v.bary[m].astype(np.float64)
    assert fid.min() >= 0 and fid.max() < len(mesh.faces)
    np.testing.assert_allclose(b.sum(1), 1.0, atol=1e-5)
    assert b.min() > -1e-5
    rebuilt = np.einsum("nk,nkc->nc", b, mesh.vertices[mesh.faces[fid]])
    np.testing.assert_allclose(rebuilt, v.xyz[m], atol=1e-5)
    np.testing.assert_array_equal(v.part_id[m], parts[fid])
    assert set(np.unique(v.part_id[m])) == {0, 1}


def test_off_mask_values(scene):
    _, _, _, v = scene
    off = ~v.mask
    assert off.any()
    assert np.isnan(v.xyz[off]).all()
    assert (v.face_id[off] == -1).all() and (v.part_id[off] == -1).all()
    assert (v.bary[off] == 0).all() and (v.normal[off] == 0).all() and (v.depth[off] == 0).all()
    assert (v.rgb[off] == 255).all()  # default white background
    assert not np.isnan(v.xyz[v.mask]).any()


def test_normals_unit_and_facing_camera(scene):
    mesh, _, cam, v = scene
    n = v.normal[v.mask].astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    to_surface = v.xyz[v.mask] - cam.eye
    assert np.all(np.einsum("nc,nc->n", n, to_surface) < 0)
    # Closed outward-wound meshes: the visible face normal is the mesh's own.
    np.testing.assert_allclose(n, mesh.face_normals[v.face_id[v.mask]], atol=1e-5)
    smooth = render_view(mesh, cam, normals="smooth").normal[v.mask]
    np.testing.assert_allclose(np.linalg.norm(smooth, axis=1), 1.0, atol=1e-5)
    assert np.abs(smooth - n).max() > 1e-3  # the sphere's normals differ from flat


def test_matches_naive_reference_raycast():
    mesh, _ = box_and_sphere()
    cam = Camera.look_at((0.7, -2.0, 0.9), (0.3, 0.0, 0.3), fov_deg=25.0, width=40, height=32)
    v = render_view(mesh, cam)
    origins, dirs = cam.rays()
    t_ref, f_ref = moller_trumbore(
        origins.reshape(-1, 3), dirs.reshape(-1, 3), mesh.vertices[mesh.faces].astype(np.float64)
    )
    hit_ref = f_ref >= 0
    mask = v.mask.reshape(-1)
    # Float32 (Embree) versus float64 may only disagree for rays grazing an edge.
    assert (mask != hit_ref).sum() <= 2
    assert hit_ref.sum() > 100 and (~hit_ref).sum() > 100
    both = mask & hit_ref
    ref_pts = origins.reshape(-1, 3)[both] + dirs.reshape(-1, 3)[both] * t_ref[both, None]
    err = np.linalg.norm(ref_pts - v.xyz.reshape(-1, 3)[both], axis=1)
    assert np.median(err) < 1e-6 and err.max() < 1e-4
    assert (v.face_id.reshape(-1)[both] == f_ref[both]).mean() > 0.98


def test_matches_trimesh_ray_query():
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    cam = Camera.orbit(azimuth_deg=25.0, elevation_deg=15.0, distance=2.0, width=24, height=24)
    v = render_view(mesh, cam)
    origins, dirs = cam.rays()
    first = mesh.ray.intersects_first(origins.reshape(-1, 3), dirs.reshape(-1, 3))
    agree = (first >= 0) == v.mask.reshape(-1)
    assert agree.mean() > 0.99
    sel = (first >= 0) & v.mask.reshape(-1)
    assert (first[sel] == v.face_id.reshape(-1)[sel]).mean() > 0.98


# ---------------------------------------------------------------------------------
# orientation: world up is image up, no mirroring
# ---------------------------------------------------------------------------------


def test_front_view_orientation():
    mesh, parts = box_and_sphere()
    cam = Camera.look_at((0.0, -3.0, 0.0), (0.0, 0.0, 0.0), width=64, height=64)
    v = render_view(mesh, cam, face_parts=parts)
    rows, cols = np.nonzero(v.mask)
    is_box = v.part_id[rows, cols] == 0
    # The box sits at +X: right half, vertically centred.
    assert cols[is_box].min() > 32 and abs(rows[is_box].mean() - 31.5) < 1.0
    # The sphere sits at +Z: top half, horizontally centred.
    assert rows[~is_box].max() < 32 and abs(cols[~is_box].mean() - 31.5) < 1.0
    # Projection agrees: higher z -> smaller row, larger x -> larger column.
    xy = cam.project(np.array([[0, 0, 0], [0, 0, 0.5], [0.5, 0, 0]], float))
    assert xy[1, 1] < xy[0, 1] and xy[2, 0] > xy[0, 0]
    np.testing.assert_allclose(xy[0], [31.5, 31.5])


def test_orbit_conventions():
    front = Camera.orbit(azimuth_deg=0.0, elevation_deg=0.0, distance=3.0, width=32, height=32)
    ref = Camera.look_at((0.0, -3.0, 0.0), (0.0, 0.0, 0.0), width=32, height=32)
    np.testing.assert_allclose(front.eye, ref.eye, atol=1e-12)
    np.testing.assert_allclose(front.R, ref.R, atol=1e-12)
    # Counter-clockwise seen from above: azimuth 90 puts the camera on +X.
    side = Camera.orbit(azimuth_deg=90.0, elevation_deg=0.0, distance=3.0)
    np.testing.assert_allclose(side.eye, [3.0, 0.0, 0.0], atol=1e-12)
    high = Camera.orbit(azimuth_deg=30.0, elevation_deg=40.0, distance=2.0, target=(0.1, 0.2, 0.3))
    np.testing.assert_allclose(np.linalg.norm(high.eye - [0.1, 0.2, 0.3]), 2.0)
    assert high.eye[2] > 0.3
    np.testing.assert_allclose(high.project([(0.1, 0.2, 0.3)])[0], [127.5, 127.5], atol=1e-9)
    # Straight down is allowed and keeps the image up continuous with 89.9 degrees.
    top = Camera.orbit(azimuth_deg=30.0, elevation_deg=90.0, distance=2.0)
    near = Camera.orbit(azimuth_deg=30.0, elevation_deg=89.9, distance=2.0)
    np.testing.assert_allclose(top.R, near.R, atol=1e-2)
    for cam in (front, side, high, top):
        np.testing.assert_allclose(np.linalg.det(cam.R), 1.0)
        up_pt, centre = cam.project([(0, 0, 0.01), (0, 0, 0)]) if cam is not top else (None, None)
        if up_pt is not None:
            assert up_pt[1] < centre[1]  # world up projects upwards


def test_camera_matrices_and_rays():
    cam = Camera.look_at((1.0, -2.0, 0.5), (0.0, 0.1, 0.0), fov_deg=30.0, width=33, height=21)
    np.testing.assert_allclose(cam.world_to_camera @ cam.camera_to_world, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(cam.K[0, 2], 16.0)
    np.testing.assert_allclose(cam.K[1, 2], 10.0)
    np.testing.assert_allclose(cam.fov_deg, 30.0)
    origins, dirs = cam.rays()
    assert origins.shape == dirs.shape == (21, 33, 3)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=-1), 1.0)
    np.testing.assert_allclose(origins, np.broadcast_to(cam.eye, origins.shape))
    # A point along each ray projects back onto its pixel.
    xy = cam.project((origins + 2.0 * dirs).reshape(-1, 3))
    ys, xs = np.mgrid[0:21, 0:33]
    np.testing.assert_allclose(xy, np.stack([xs.ravel(), ys.ravel()], 1), atol=1e-9)
    # The centre pixel looks at the target.
    fwd = (np.array([0.0, 0.1, 0.0]) - cam.eye) / np.linalg.norm(np.array([0.0, 0.1, 0.0]) - cam.eye)
    np.testing.assert_allclose(dirs[10, 16], fwd, atol=1e-12)
    # Points behind the camera have no pixel.
    assert np.isnan(cam.project([cam.eye - 3 * fwd])).all()
    # Homogeneous form agrees with project().
    p = np.array([[0.2, 0.3, 0.1]])
    h = cam.K @ (cam.world_to_camera @ np.r_[p[0], 1.0])[:3]
    np.testing.assert_allclose(cam.project(p)[0], h[:2] / h[2])


# ---------------------------------------------------------------------------------
# colours
# ---------------------------------------------------------------------------------


def textured_quad(material_factory) -> trimesh.Trimesh:
    """Unit quad in the XZ plane facing -Y; uv (0, 0) at its bottom-left (x=-1, z=-1)."""
    verts = np.array([[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)
    # Image row 0 is the top: red | green over blue | yellow.
    img = Image.fromarray(np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 0]]], np.uint8))
    visual = trimesh.visual.TextureVisuals(uv=uv, material=material_factory(img))
    return trimesh.Trimesh(verts, faces, visual=visual, process=False)


@pytest.mark.parametrize(
    "factory",
    [
        lambda img: trimesh.visual.material.SimpleMaterial(image=img),
        lambda img: trimesh.visual.material.PBRMaterial(baseColorTexture=img),
    ],
    ids=["simple", "pbr"],
)
def test_texture_checker_no_flip(factory):
    mesh = textured_quad(factory)
    cam = Camera.look_at((0, -3, 0), (0, 0, 0), fov_deg=50.0, width=64, height=64)
    v = render_view(mesh, cam, **flat())
    # Quadrant centres of the quad: uv 0.25 / 0.75 hit texel centres exactly.
    xy = cam.project(np.array([[-0.5, 0, 0.5], [0.5, 0, 0.5], [-0.5, 0, -0.5], [0.5, 0, -0.5]]))
    px = np.round(xy).astype(int)
    got = [tuple(v.rgb[y, x]) for x, y in px]
    expected = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    for g, e in zip(got, expected):
        assert np.abs(np.array(g, int) - e).max() <= 12, (got, expected)
    # Near the quad's corners the texel is unmixed (no wrap-around bleeding).
    corner = cam.project([[-0.97, 0, 0.97]])[0].round().astype(int)
    assert tuple(v.rgb[corner[1], corner[0]]) == (255, 0, 0)


def test_pbr_base_color_factor_multiplies_texture():
    mesh = textured_quad(
        lambda img: trimesh.visual.material.PBRMaterial(baseColorTexture=img, baseColorFactor=[255, 0, 255, 255])
    )
    cam = Camera.look_at((0, -3, 0), (0, 0, 0), fov_deg=50.0, width=32, height=32)
    v = render_view(mesh, cam, **flat())
    assert v.rgb[v.mask][:, 1].max() == 0  # green channel removed everywhere
    x, y = cam.project([[0.5, 0, -0.5]])[0].round().astype(int)  # yellow quadrant -> red
    r, g, b = v.rgb[y, x].astype(int)
    assert r >= 240 and g == 0 and b <= 15  # a little blue from the bilinear neighbour


def test_vertex_colours_interpolate():
    tri = trimesh.Trimesh([[-1, 0, -1], [1, 0, -1], [0, 0, 1]], [[0, 1, 2]], process=False)
    tri.visual.vertex_colors = np.array([[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255]], np.uint8)
    cam = Camera.look_at((0, -3, 0), (0, 0, 0), fov_deg=50.0, width=48, height=48)
    v = render_view(tri, cam, **flat())
    assert v.mask.sum() > 200
    expected = v.bary[v.mask] * 255.0  # weights of red, green, blue vertices
    assert np.abs(v.rgb[v.mask].astype(float) - expected).max() <= 1.0
    # Near vertex 0 (bottom-left) red dominates; near vertex 2 (top) blue does.
    x0, y0 = cam.project([[-0.8, 0, -0.9]])[0].round().astype(int)
    x2, y2 = cam.project([[0, 0, 0.8]])[0].round().astype(int)
    assert v.rgb[y0, x0, 0] > 200 and v.rgb[y2, x2, 2] > 200


def test_face_colours_and_default_grey():
    box = trimesh.creation.box()
    colours = np.random.default_rng(1).integers(0, 256, (len(box.faces), 3)).astype(np.uint8)
    box.visual.face_colors = np.c_[colours, np.full(len(colours), 255, np.uint8)]
    cam = Camera.orbit(azimuth_deg=35.0, elevation_deg=25.0, distance=3.0, width=48, height=48)
    v = render_view(box, cam, **flat())
    np.testing.assert_array_equal(v.rgb[v.mask], colours[v.face_id[v.mask]])
    plain = trimesh.creation.box()
    grey = render_view(plain, cam, **flat()).rgb[v.mask]
    assert (grey == grey[0]).all() and 150 < grey[0, 0] < 230 and (grey[0] == grey[0, 0]).all()


def test_lambert_lighting_and_background():
    box = trimesh.creation.box()
    cam = Camera.orbit(azimuth_deg=35.0, elevation_deg=25.0, distance=3.0, width=48, height=48)
    lit = render_view(box, cam, light_dir=(0, 0, 1), light_frame="world", ambient=0.2, diffuse=0.8)
    n = lit.normal[lit.mask]
    lum = lit.rgb[lit.mask].astype(float).mean(1)
    top, side = n[:, 2] > 0.99, n[:, 2] < 0.01
    assert top.any() and side.any() and lum[top].min() > lum[side].max()
    # Side faces get only the ambient term: 0.2 * default albedo.
    np.testing.assert_allclose(lum[side], 0.2 * render.DEFAULT_ALBEDO[0] * 255, atol=1)
    bg = render_view(box, cam, background=(10, 20, 30))
    assert (bg.rgb[~bg.mask] == (10, 20, 30)).all()
    # The camera-frame light follows the camera: its default is in front, so the
    # visible faces are lit above ambient.
    default = render_view(box, cam)
    assert default.rgb[default.mask].mean() > 0.35 * render.DEFAULT_ALBEDO[0] * 255 + 5


# ---------------------------------------------------------------------------------
# inputs, caching, part sources
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(eye=(1, 2, 3), target=(1, 2, 3)), "eye and target"),
        (dict(eye=(0, 0, 2), target=(0, 0, 0)), "parallel"),
        (dict(eye=(0, -2, 0), target=(0, 0, 0), up=(0, 0, 0)), "non-zero"),
        (dict(eye=(0, -2, 0), target=(0, 0, 0), fov_deg=0.0), "fov_deg"),
        (dict(eye=(0, -2, 0), target=(0, 0, 0), fov_deg=180.0), "fov_deg"),
        (dict(eye=(0, -2, 0), target=(0, 0, 0), width=5000), "width"),
        (dict(eye=(0, -2, 0), target=(0, 0, 0), height=0), "height"),
        (dict(eye=(0, -2, 0), target=(0, 0, 0), width=12.5), "width"),
        (dict(eye=(0, np.nan, 0), target=(0, 0, 0)), "finite"),
        (dict(eye=(0, -2), target=(0, 0, 0)), "3-vector"),
    ],
)
def test_look_at_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Camera.look_at(**kwargs)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="elevation"):
        Camera.orbit(azimuth_deg=0, elevation_deg=95, distance=2)
    with pytest.raises(ValueError, match="distance"):
        Camera.orbit(azimuth_deg=0, elevation_deg=0, distance=0)
    cam = Camera.look_at((0, -2, 0), (0, 0, 0), width=8, height=8)
    box = trimesh.creation.box()
    with pytest.raises(TypeError, match="Trimesh"):
        render_view(np.zeros((3, 3)), cam)
    with pytest.raises(TypeError, match="Camera"):
        render_view(box, "camera")
    with pytest.raises(ValueError, match="face_parts"):
        render_view(box, cam, face_parts=np.zeros(5, int))
    with pytest.raises(ValueError, match="light_frame"):
        render_view(box, cam, light_frame="object")
    with pytest.raises(ValueError, match="points"):
        cam.project(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="rotation"):
        Camera(fx=10, fy=10, cx=4, cy=4, width=8, height=8, R=np.diag([1.0, 1.0, -1.0]), eye=(0, 0, 0))


@pytest.mark.parametrize(
    "eye, target, window",
    [
        ((0.0, -3.0, 0.4), (0.0, 0.0, 0.3), "part"),
        ((0.2, -0.1, 0.35), (0.0, 0.0, 0.3), "full"),  # inside the bounding box
        ((3.0, 3.0, 40.0), (0.0, 0.0, 0.3), "part"),
        ((0.0, -3.0, 0.3), (1.5, -2.6, 0.3), "none"),  # object outside the field of view
    ],
)
def test_pixel_window_matches_full_cast(monkeypatch, eye, target, window):
    """Casting only the bbox window gives the same view as casting every pixel."""
    mesh, _ = box_and_sphere()
    cam = Camera.look_at(eye, target, width=37, height=29)
    rect = Renderer(mesh)._pixel_rect(cam)
    kind = "none" if rect is None else "full" if rect == (0, 37, 0, 29) else "part"
    assert kind == window, rect
    fast = Renderer(mesh).render(cam)
    monkeypatch.setattr(Renderer, "_pixel_rect", lambda self, cam: (0, cam.width, 0, cam.height))
    full = Renderer(mesh).render(cam)
    for name in ("rgb", "mask", "face_id", "bary", "depth", "normal"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(full, name), err_msg=name)
    np.testing.assert_array_equal(np.isnan(fast.xyz), np.isnan(full.xyz))


def test_empty_mesh_renders_background():
    cam = Camera.look_at((0, -2, 0), (0, 0, 0), width=8, height=6)
    v = render_view(trimesh.Trimesh(), cam)
    assert not v.mask.any() and (v.face_id == -1).all() and (v.rgb == 255).all()


def test_part_sources():
    mesh, parts = box_and_sphere()
    cam = Camera.look_at((0.0, -3.0, 0.3), (0.3, 0.0, 0.3), width=32, height=32)
    unknown = render_view(mesh, cam)
    assert (unknown.part_id == -1).all()

    @dataclass
    class ShapeLike:
        mesh: trimesh.Trimesh
        face_parts: np.ndarray

    from_shape = render_view(ShapeLike(mesh, parts + 3), cam)
    np.testing.assert_array_equal(from_shape.part_id[from_shape.mask], parts[from_shape.face_id[from_shape.mask]] + 3)
    from_kw = Renderer(mesh, face_parts=parts).render(cam)
    np.testing.assert_array_equal(from_kw.part_id[from_kw.mask], parts[from_kw.face_id[from_kw.mask]])
    mesh.metadata["face_parts"] = parts
    from_meta = render_view(mesh, cam)  # metadata change invalidates the cached renderer
    np.testing.assert_array_equal(from_meta.part_id, from_kw.part_id)


def test_procedural_shape_parts():
    from tango3d_core.data import shapes

    if "chair" not in getattr(shapes, "CATEGORIES", []):
        pytest.skip("procedural chairs not available")
    shape = shapes.generate("chair", 0)
    cam = Camera.orbit(azimuth_deg=30.0, elevation_deg=20.0, distance=1.6, width=48, height=48)
    v = render_view(shape, cam)
    m = v.mask
    assert m.mean() > 0.05
    np.testing.assert_array_equal(v.part_id[m], np.asarray(shape.face_parts)[v.face_id[m]])
    assert len(np.unique(v.part_id[m])) >= 2
    cam_pts = (v.xyz[m].astype(np.float64) - cam.eye) @ cam.R.T
    np.testing.assert_allclose(v.depth[m], cam_pts[:, 2], rtol=1e-5, atol=1e-6)


def test_renderer_cache_reuses_and_invalidates():
    render.clear_cache()
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.3)
    cam = Camera.look_at((0, -2, 0), (0, 0, 0), width=32, height=32)
    r1 = render.renderer_for(mesh)
    assert render.renderer_for(mesh) is r1
    before = render_view(mesh, cam)
    assert render.renderer_for(mesh) is r1
    mesh.apply_translation((0.5, 0, 0))  # edits vertices in place
    assert render.renderer_for(mesh) is not r1
    after = render_view(mesh, cam)
    assert np.nanmean(after.xyz[..., 0]) > np.nanmean(before.xyz[..., 0]) + 0.4
    # Least recently used meshes are dropped after a few.
    others = [trimesh.creation.box() for _ in range(render._CACHE_SIZE + 1)]
    for m in others:
        render.renderer_for(m)
    assert id(mesh) not in render._cache
    # The cache holds meshes weakly: a dropped mesh leaves it.
    import gc

    last = others[-1]
    key = id(last)
    assert key in render._cache
    del others, last, m
    gc.collect()
    assert key not in render._cache


def test_render_views_matches_render_view(scene):
    mesh, _, cam, v = scene
    cams = [cam, Camera.orbit(azimuth_deg=200, elevation_deg=-10, distance=2.5, width=20, height=30)]
    views = render_views(mesh, cams)
    assert len(views) == 2 and views[1].rgb.shape == (30, 20, 3)
    np.testing.assert_array_equal(views[0].face_id, v.face_id)
    np.testing.assert_array_equal(views[0].rgb, v.rgb)
    assert views[0].camera is cam
