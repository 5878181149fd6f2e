"""Organic shape families (tango3d_core/data/shapes/_organic.py).

Two halves: the SDF / smooth-min / meshing helpers against naive references,
then every organic category over 20 seeds (watertight, parts, pose, captions).
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
import pytest
import trimesh

from tango3d_core.data import shapes
from tango3d_core.data.shapes import _organic as org

ORGANIC = ["bird", "fish", "humanoid", "insect", "quadruped"]
SEEDS = range(20)


@lru_cache(maxsize=None)
def _shape(category: str, seed: int) -> shapes.Shape:
    return shapes.generate(category, seed)


def _part_centre(s: shapes.Shape, part: str) -> np.ndarray:
    """Area-weighted centroid [3] of the faces labelled ``part``."""
    sel = s.face_parts == s.part_names.index(part)
    assert sel.any(), f"{s.category} seed {s.seed} has no {part!r} faces"
    w = s.mesh.area_faces[sel]
    return (s.mesh.triangles_center[sel] * w[:, None]).sum(0) / w.sum()


# ---------------------------------------------------------------- smooth min


def _smin_mix_form(a: float, b: float, k: float) -> float:
    """The same polynomial smin written the other common way (interpolate, then subtract)."""
    h = min(max(0.5 + 0.5 * (b - a) / k, 0.0), 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def test_smin_matches_scalar_reference_and_bounds():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, 500), rng.uniform(-1, 1, 500)
    for k in (0.05, 0.3, 2.0):
        got = org.smin(a, b, k)
        ref = np.array([_smin_mix_form(x, y, k) for x, y in zip(a, b)])
        np.testing.assert_allclose(got, ref, atol=1e-12)
        m = np.minimum(a, b)
        assert np.all(got <= m + 1e-15)
        assert np.all(m - got <= k / 4 + 1e-15)
        far = np.abs(a - b) >= k
        np.testing.assert_array_equal(got[far], m[far])
        np.testing.assert_allclose(org.smin(b, a, k), got, atol=1e-15)  # symmetric
    with pytest.raises(ValueError, match="k must be > 0"):
        org.smin(a, b, 0.0)


# ---------------------------------------------------------------- SDF primitives


def _segment_reference(p: np.ndarray, a: np.ndarray, b: np.ndarray, n: int = 20001) -> np.ndarray:
    s = a + np.linspace(0, 1, n)[:, None] * (b - a)
    return np.sqrt(((p[:, None, :] - s[None]) ** 2).sum(-1)).min(1)


def test_capsule_matches_dense_segment_sampling():
    rng = np.random.default_rng(1)
    a, b, r = np.array([0.1, -0.2, 0.3]), np.array([-0.4, 0.5, 0.0]), 0.15
    p = rng.uniform(-1, 1, (300, 3))
    ref = _segment_reference(p, a, b) - r  # exact inside and out for a capsule
    np.testing.assert_allclose(org.sd_capsule(p, a, b, r), ref, atol=1e-6)


def _hull_of_two_balls_reference(p: np.ndarray, a, b, r1, r2, n: int = 100_001) -> np.ndarray:
    """Signed distance to a convex body = max over unit n of (n.p - support(n)).

    The support of the hull of two balls is max(n.a + r1, n.b + r2). By symmetry
    the best n lies in the plane of the axis and p, so sample it by angle.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    e1 = (b - a) / np.linalg.norm(b - a)
    out = []
    for x in p:
        v = x - a
        w = v - (v @ e1) * e1
        e2 = w / np.linalg.norm(w) if np.linalg.norm(w) > 1e-12 else np.cross(e1, [0.3, 0.5, 0.8])
        e2 = e2 / np.linalg.norm(e2)
        t = np.linspace(-np.pi, np.pi, n)
        nrm = np.cos(t)[:, None] * e1 + np.sin(t)[:, None] * e2
        out.append(np.max(nrm @ x - np.maximum(nrm @ a + r1, nrm @ b + r2)))
    return np.array(out)


@pytest.mark.parametrize("r1,r2", [(0.3, 0.1), (0.05, 0.25), (0.2, 0.2)])
def test_round_cone_matches_support_function_reference(r1, r2):
    rng = np.random.default_rng(2)
    a, b = np.array([0.0, 0.0, 0.0]), np.array([0.2, 0.6, -0.3])
    p = rng.uniform(-0.8, 0.9, (200, 3))
    got = org.sd_round_cone(p, a, b, r1, r2)
    ref = _hull_of_two_balls_reference(p, a, b, r1, r2)
    assert (got < 0).any() and (got > 0).any()  # both sides are exercised
    # Sampled angles can only miss the best normal; the optimum sits at a kink of
    # the min, so the shortfall is linear in the angle step (|p| * 2pi / n).
    assert np.all(ref <= got + 1e-12)
    np.testing.assert_allclose(got, ref, atol=5e-5)
    # Outside, the hull is also the union of balls with interpolated centre and radius.
    t = np.linspace(0, 1, 20001)
    c = a + t[:, None] * (b - a)
    rad = r1 + t * (r2 - r1)
    union = (np.sqrt(((p[:, None] - c[None]) ** 2).sum(-1)) - rad).min(1)
    out = got > 0
    np.testing.assert_allclose(got[out], union[out], atol=1e-5)


def test_round_cone_degenerates_to_bigger_ball():
    p = np.random.default_rng(3).uniform(-1, 1, (50, 3))
    got = org.sd_round_cone(p, [0, 0, 0], [0.05, 0, 0], 0.4, 0.1)  # small ball inside the big one
    np.testing.assert_allclose(got, np.linalg.norm(p, axis=1) - 0.4, atol=1e-12)


def test_triangle_matches_dense_sampling():
    rng = np.random.default_rng(4)
    a, b, c, t = np.array([0.0, 0.0, 0.0]), np.array([0.6, 0.1, 0.0]), np.array([0.2, 0.5, 0.3]), 0.03
    n = 500
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    keep = (u + v) <= 1
    samples = a + u[keep][:, None] * (b - a) + v[keep][:, None] * (c - a)
    from scipy.spatial import cKDTree

    p = rng.uniform(-0.4, 0.9, (400, 3))
    ref = cKDTree(samples).query(p)[0] - t
    got = org.sd_triangle(p, a, b, c, t)
    # Sampling can only overestimate the distance, by at most about one spacing.
    assert np.all(got <= ref + 1e-12)
    np.testing.assert_allclose(got, ref, atol=2e-3)


def test_ellipsoid_sign_near_surface_and_box_bound():
    rng = np.random.default_rng(5)
    r = np.array([0.3, 0.2, 0.1])
    rot = org._rot("z", 30) @ org._rot("x", 20)
    c = np.array([0.1, -0.05, 0.2])
    u = rng.normal(size=(400_000, 3))
    surf = c + (u / np.linalg.norm(u, axis=1, keepdims=True) * r) @ rot.T
    from scipy.spatial import cKDTree

    near_surface = surf[:600] + rng.normal(scale=0.006, size=(600, 3))
    p = np.concatenate([c + rng.uniform(-0.45, 0.45, (2000, 3)), near_surface])
    local = (p - c) @ rot
    inside = ((local / r) ** 2).sum(1) < 1
    ref = np.where(inside, -1, 1) * cKDTree(surf).query(p)[0]
    got = org.sd_ellipsoid(p, c, r, rot)
    np.testing.assert_array_equal(got < 0, inside)  # exact sign
    near = np.abs(ref) < 0.01
    assert near.sum() > 300
    np.testing.assert_allclose(got[near], ref[near], atol=2e-3)
    # Culling relies on: SDF >= signed distance to the local bounding box.
    assert np.all(got >= org._box_sd(local, r) - 1e-12)
    # A sphere is exact.
    np.testing.assert_allclose(org.sd_ellipsoid(p, c, [0.2] * 3), np.linalg.norm(p - c, axis=1) - 0.2, atol=1e-12)


def test_plate_matches_disc_sampling():
    rng = np.random.default_rng(6)
    R, t = 0.3, 0.02
    rot = org._rot("y", 25)
    rr, th = np.meshgrid(np.sqrt(np.linspace(0, 1, 300)) * R, np.linspace(0, 2 * np.pi, 900, endpoint=False))
    disc = np.stack([rr.ravel() * np.cos(th.ravel()), rr.ravel() * np.sin(th.ravel()), 0 * rr.ravel()], 1) @ rot.T
    from scipy.spatial import cKDTree

    p = rng.uniform(-0.5, 0.5, (500, 3))
    ref = cKDTree(disc).query(p)[0] - t
    got = org.sd_plate(p, [0, 0, 0], (R, R), rot, t)
    np.testing.assert_allclose(got, ref, atol=3e-3)
    # An elliptical plate: inside iff within the ellipse and the slab; >= distance to its box.
    ra, rb = 0.4, 0.15
    got = org.sd_plate(p, [0, 0, 0], (ra, rb), rot, t)
    local = p @ rot
    assert np.all(got[((local[:, 0] / ra) ** 2 + (local[:, 1] / rb) ** 2 < 1) & (np.abs(local[:, 2]) < t)] < 0)
    assert np.all(got >= org._box_sd(local, np.array([ra + t, rb + t, t])) - 1e-12)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: org.sd_round_cone(np.zeros((2, 3)), [0, 0, 0], [1, 0, 0], -0.1, 0.1), "radii"),
        (lambda: org.sd_round_cone(np.zeros((2, 2)), [0, 0, 0], [1, 0, 0], 0.1, 0.1), r"\[\.\.\., 3\]"),
        (lambda: org.sd_round_cone(np.zeros((2, 3)), [0, 0], [1, 0, 0], 0.1, 0.1), "3-vector"),
        (lambda: org.sd_ellipsoid(np.zeros((2, 3)), [0, 0, 0], [0.1, 0.0, 0.1]), "> 0"),
        (lambda: org.sd_triangle(np.zeros((2, 3)), [0, 0, 0], [1, 0, 0], [2, 0, 0], 0.1), "degenerate"),
        (lambda: org.sd_triangle(np.zeros((2, 3)), [0, 0, 0], [1, 0, 0], [0, 1, 0], 0.0), "thickness"),
        (lambda: org.sd_plate(np.zeros((2, 3)), [0, 0, 0], (0.1, 0.1), np.eye(3), 0.0), "> 0"),
        (lambda: org.sd_capsule(np.zeros((2, 3)), [0, 0, np.nan], [1, 0, 0], 0.1), "finite"),
    ],
)
def test_sdf_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- blob meshing


def _toy_blob() -> org.Blob:
    blob = org.Blob(["a", "b", "c"])
    blob.ellipsoid("a", (0, 0, 0), (0.4, 0.25, 0.2), blend=0.08)
    blob.cone("b", (0.3, 0.0, 0.0), (0.7, 0.1, 0.3), 0.08, 0.04, blend=0.06)
    blob.plate_along(
        "c", (-0.3, 0, 0.1), (-0.7, 0.1, 0.2), width=0.12, thickness=0.03, normal_hint=(0, 1, 0), blend=0.04
    )
    blob.triangle("c", (0, 0.2, 0), (0.1, 0.5, 0.1), (-0.1, 0.45, -0.05), thickness=0.03, blend=0.03)
    return blob


def _naive_field(blob: org.Blob, points: np.ndarray, start: float) -> np.ndarray:
    f = np.full(points.shape[:-1], start)
    for prim in blob.prims:
        f = org.smin(f, prim.sdf(points), prim.blend)
    return f


def test_field_matches_naive_full_evaluation():
    blob = _toy_blob()
    values, lo, h = blob.field(cells=40)
    axes = [lo[i] + h * np.arange(values.shape[i]) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    kmax = max(p.blend for p in blob.prims)
    ref = _naive_field(blob, grid, 4 * h + kmax)
    inner = (slice(1, -1),) * 3
    near = np.abs(ref[inner]) < 2 * h
    assert near.sum() > 1000
    assert np.abs(values[inner] - ref[inner])[near].max() < 0.01 * h
    np.testing.assert_array_equal(values[inner] < 0, ref[inner] < 0)
    # The boundary layer is outside, so the zero set cannot be cut open.
    assert values[[0, -1]].min() > 0 and values[:, [0, -1]].min() > 0 and values[:, :, [0, -1]].min() > 0


def test_blob_mesh_is_closed_on_the_zero_set_and_labels_match_reference():
    blob = _toy_blob()
    mesh, fp = blob.mesh(cells=48)
    _, _, h = blob.field(cells=48)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert mesh.body_count == 1
    f = _naive_field(blob, mesh.vertices, 1.0)
    assert np.abs(f).max() < 0.5 * h  # marching-cubes vertices lie on the zero set up to interpolation
    # Culled labelling equals labelling by every primitive.
    np.testing.assert_array_equal(fp, blob.label(mesh.triangles_center))
    d = np.stack([p.sdf(mesh.triangles_center) for p in blob.prims])
    names = [p.part for p in blob.prims]
    np.testing.assert_array_equal(fp, [blob.part_names.index(names[i]) for i in d.argmin(0)])
    assert set(np.unique(fp)) == {0, 1, 2}


def test_blob_sphere_volume_and_outward_normals():
    blob = org.Blob(["x"])
    blob.ellipsoid("x", (0.2, -0.1, 0.3), (0.5, 0.5, 0.5), blend=0.01)
    mesh, fp = blob.mesh(cells=40)
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * 0.5**3, rel=0.02)
    out = mesh.vertices - [0.2, -0.1, 0.3]
    assert np.all(np.einsum("ij,ij->i", mesh.vertex_normals, out) > 0)
    assert np.all(fp == 0)


def test_family_field_and_labels_match_naive(monkeypatch):
    """Culling in a real family (quadruped, 2 seeds) changes neither field nor labels."""
    captured = {}
    real_mesh = org.Blob.mesh

    def spy(self, *, cells):
        captured["blob"], captured["cells"] = self, cells
        return real_mesh(self, cells=cells)

    monkeypatch.setattr(org.Blob, "mesh", spy)
    for seed in (0, 1):
        shapes.generate("quadruped", seed)
        blob, cells = captured["blob"], captured["cells"]
        values, lo, h = blob.field(cells=cells)
        axes = [lo[i] + h * np.arange(values.shape[i]) for i in range(3)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
        ref = _naive_field(blob, grid, 4 * h + max(p.blend for p in blob.prims))
        near = np.abs(ref) < 2 * h
        assert np.abs(values - ref)[near].max() < 0.01 * h
        mesh, fp = real_mesh(blob, cells=cells)
        np.testing.assert_array_equal(fp, blob.label(mesh.triangles_center))


def test_drop_fragments_removes_specks_only():
    big = trimesh.creation.icosphere(subdivisions=4)  # 5120 faces
    speck = trimesh.creation.icosphere(subdivisions=0)  # 20 faces, < 1%
    mid = trimesh.creation.icosphere(subdivisions=2)  # 320 faces, > 1% of the total
    both = trimesh.util.concatenate([big, speck.apply_translation([5, 0, 0]), mid.apply_translation([-5, 0, 0])])
    kept = org._drop_fragments(np.asarray(both.faces), len(both.vertices))
    assert len(kept) == len(big.faces) + len(mid.faces)


def test_blob_bad_input():
    blob = org.Blob(["a"])
    with pytest.raises(KeyError, match="'b' is not one of"):
        blob.cone("b", (0, 0, 0), (1, 0, 0), 0.1, 0.1, blend=0.1)
    with pytest.raises(ValueError, match="blend must be > 0"):
        blob.cone("a", (0, 0, 0), (1, 0, 0), 0.1, 0.1, blend=0.0)
    with pytest.raises(ValueError, match="radii"):
        blob.cone("a", (0, 0, 0), (1, 0, 0), -0.1, 0.1, blend=0.1)
    with pytest.raises(ValueError, match="chain"):
        blob.chain("a", [(0, 0, 0), (1, 0, 0)], [0.1], blend=0.1)
    with pytest.raises(ValueError, match="no primitives"):
        blob.mesh(cells=32)
    blob.ellipsoid("a", (0, 0, 0), (0.3, 0.3, 0.3), blend=0.05)
    with pytest.raises(ValueError, match="cells must be >= 8"):
        blob.mesh(cells=4)


# ---------------------------------------------------------------- families


def test_organic_categories_registered():
    assert set(ORGANIC) <= set(shapes.ORGANIC_CATEGORIES)
    assert set(ORGANIC) <= set(shapes.CATEGORIES)
    for cat in ORGANIC:
        parts = shapes.PARTS[cat]
        assert len(parts) >= 3 and len(set(parts)) == len(parts)
    assert {"torso", "head", "leg", "tail"} <= set(shapes.PARTS["quadruped"])
    assert {"torso", "head", "arm", "leg"} <= set(shapes.PARTS["humanoid"])
    assert {"body", "head", "wing", "tail", "beak"} <= set(shapes.PARTS["bird"])
    assert {"body", "head", "tail_fin", "dorsal_fin", "side_fin"} <= set(shapes.PARTS["fish"])


@pytest.mark.slow
@pytest.mark.parametrize("category", ORGANIC)
def test_instances_are_valid(category):
    for seed in SEEDS:
        s = _shape(category, seed)
        m = s.mesh
        ctx = f"{category} seed {seed}"
        assert m.is_watertight and m.is_winding_consistent, ctx
        assert m.volume > 0, ctx
        assert m.body_count == 1, ctx
        assert 5_000 <= len(m.faces) <= 40_000, (ctx, len(m.faces))
        assert s.category == category and s.seed == seed
        assert s.part_names == shapes.PARTS[category]
        assert s.face_parts.dtype == np.int64 and s.face_parts.shape == (len(m.faces),)
        assert s.face_parts.min() >= 0 and s.face_parts.max() < len(s.part_names)
        np.testing.assert_array_equal(m.metadata["face_parts"], s.face_parts)
        assert len(np.unique(s.face_parts)) >= 3, ctx
        lo, hi = m.bounds
        np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-9)
        assert np.linalg.norm(hi - lo) == pytest.approx(1.0, abs=1e-9)
        assert m.visual.vertex_colors.shape == (len(m.vertices), 4)
        assert category in s.caption and s.attributes["colour"] in s.caption, ctx


# Parts whose order along -Y (front) and +Z (up) the canonical pose fixes.
FRONT_OF = {
    "quadruped": ("head", "tail"),
    "bird": ("head", "tail"),
    "fish": ("head", "tail_fin"),
    "insect": ("head", "abdomen"),
    "humanoid": ("foot", "leg"),  # toes point forwards
}
ABOVE = {
    "quadruped": [("head", "leg"), ("torso", "leg")],
    "bird": [("head", "body")],
    "fish": [("dorsal_fin", "body")],
    "insect": [("thorax", "leg")],
    "humanoid": [("head", "torso"), ("torso", "leg"), ("leg", "foot")],
}
GROUND = {"quadruped": {"leg"}, "humanoid": {"foot", "leg"}, "insect": {"leg"}}


@pytest.mark.slow
@pytest.mark.parametrize("category", ORGANIC)
def test_canonical_orientation(category):
    for seed in SEEDS:
        s = _shape(category, seed)
        front, back = FRONT_OF[category]
        assert _part_centre(s, front)[1] < _part_centre(s, back)[1], (category, seed)
        for upper, lower in ABOVE[category]:
            assert _part_centre(s, upper)[2] > _part_centre(s, lower)[2], (category, seed, upper, lower)
        ground = GROUND.get(category, {"leg"} if s.attributes.get("pose") == "perched" else None)
        if ground:
            lowest = s.part_names[s.face_parts[np.argmin(s.mesh.triangles_center[:, 2])]]
            assert lowest in ground, (category, seed, lowest)


def test_humanoid_head_is_highest_part():
    for seed in range(8):
        s = _shape("humanoid", seed)
        head = _part_centre(s, "head")[2]
        raised = "up" in s.attributes["arm_pose"].values()
        for part in s.part_names:
            if part != "head" and not (raised and part in ("arm", "hand")):
                assert _part_centre(s, part)[2] < head, (seed, part)


@pytest.mark.parametrize("category", ORGANIC)
def test_deterministic(category):
    a = _shape(category, 3)
    b = shapes.generate(category, 3)  # a fresh run, not the cache
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    np.testing.assert_array_equal(a.mesh.faces, b.mesh.faces)
    np.testing.assert_array_equal(a.face_parts, b.face_parts)
    np.testing.assert_array_equal(a.mesh.visual.vertex_colors, b.mesh.visual.vertex_colors)
    assert a.caption == b.caption and a.attributes == b.attributes
    c = _shape(category, 4)
    assert len(c.mesh.vertices) != len(a.mesh.vertices) or not np.allclose(c.mesh.vertices, a.mesh.vertices)


@pytest.mark.slow
def test_variation_across_seeds():
    def attrs(cat, key):
        return [_shape(cat, s).attributes[key] for s in SEEDS]

    assert len(set(attrs("quadruped", "tail"))) >= 3
    assert {"none"} < set(attrs("quadruped", "ears"))
    assert len(set(attrs("quadruped", "horns"))) == 2
    legs = attrs("quadruped", "leg_length")
    assert max(legs) - min(legs) > 0.25
    assert len({p for ap in attrs("humanoid", "arm_pose") for p in ap.values()}) >= 3
    assert set(attrs("bird", "pose")) == {"perched", "flying"}
    assert len(set(attrs("bird", "beak"))) >= 2
    assert len(set(attrs("fish", "tail_fin"))) >= 3 and len(set(attrs("fish", "build"))) >= 3
    assert len(set(attrs("insect", "wings"))) >= 2
    for cat in ORGANIC:
        ext = np.array([_shape(cat, s).mesh.extents for s in SEEDS])
        assert ext.std(0).max() > 0.02, cat  # proportions change, not just the textures
        assert len({_shape(cat, s).caption for s in SEEDS}) >= 15, cat
        # Colour is drawn per part, independently of which part it is.
        heads = {_shape(cat, s).attributes["materials"]["head"][1] for s in SEEDS}
        assert len(heads) >= 4, cat


def test_caption_mentions_notable_parts():
    hits = 0
    for seed in SEEDS:
        s = _shape("quadruped", seed)
        assert s.attributes["features"], seed
        for f in s.attributes["features"]:
            assert f in s.caption
        tail_word = {"long": "long tail", "short": "short tail", "bushy": "bushy tail", "curled": "curled tail"}
        hits += tail_word[s.attributes["tail"]] in s.caption
    assert hits >= 3  # the tail shows up in captions, and only as the tail it is


@pytest.mark.slow
def test_generation_time():
    for cat in ORGANIC:
        times = []
        for seed in range(100, 105):
            t0 = time.process_time()  # CPU time: robust to other jobs sharing the cores
            shapes.generate(cat, seed)
            times.append(time.process_time() - t0)
        assert np.median(times) < 0.5, (cat, times)


def test_negative_seed_rejected():
    with pytest.raises(ValueError, match="seed"):
        shapes.generate("quadruped", -1)
