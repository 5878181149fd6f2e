"""Tests for tango3d_core.data.shapes: the registry, every family, the primitives, the report.

The family tests are generic (they loop over ``shapes.CATEGORIES``), so they cover
the organic families too; the pose/semantic and variation checks are per rigid
category. Generating every category x 20 seeds takes ~30 s on one core, so the
tests that need the whole set share one cached generation and are marked slow.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
import trimesh

from tango3d_core.data import shapes
from tango3d_core.data.shapes import _base
from tango3d_core.data.shapes._base import (
    PALETTE,
    ShapeBuilder,
    ball,
    beam,
    capsule,
    loft,
    revolve,
    rot,
    rounded_box,
    superellipse,
    tube,
)
from tango3d_core.data.shapes.report import FamilyStats, family_stats, main, watertight_report

SEEDS = range(20)
RIGID = ["airplane", "bed", "bottle", "car", "chair", "guitar", "lamp", "mug", "shelf", "sofa", "table", "vase"]


@pytest.fixture(scope="module")
def generated() -> dict[tuple[str, int], tuple[shapes.Shape, float]]:
    """Every (category, seed) for seeds 0..19, with its generation time in seconds."""
    out = {}
    for cat in shapes.CATEGORIES:
        for s in SEEDS:
            t0 = time.perf_counter()
            shp = shapes.generate(cat, s)
            out[cat, s] = (shp, time.perf_counter() - t0)
    return out


def _part_vertices(s: shapes.Shape, part: str) -> np.ndarray:
    """Vertices [K, 3] of the faces labelled ``part`` (empty if the part is absent)."""
    idx = s.part_names.index(part)
    f = np.asarray(s.mesh.faces)[s.face_parts == idx]
    return np.asarray(s.mesh.vertices)[np.unique(f)]


def _centroid(s: shapes.Shape, part: str) -> np.ndarray:
    v = _part_vertices(s, part)
    assert len(v), f"{s.category} seed {s.seed} has no {part!r}"
    return v.mean(0)


def _components(s: shapes.Shape, part: str) -> int:
    """Number of connected pieces of ``part`` (each primitive has its own vertices)."""
    faces = np.asarray(s.mesh.faces)[s.face_parts == s.part_names.index(part)]
    if len(faces) == 0:
        return 0
    sub = trimesh.Trimesh(np.asarray(s.mesh.vertices), faces, process=False)
    return len(trimesh.graph.connected_components(sub.face_adjacency, nodes=np.arange(len(faces))))


# ------------------------------------------------------------------ registry


def test_at_least_twelve_categories_with_part_vocabularies():
    assert len(shapes.CATEGORIES) >= 12
    assert shapes.CATEGORIES == sorted(shapes.CATEGORIES)
    for cat in shapes.CATEGORIES:
        parts = shapes.PARTS[cat]
        assert len(parts) >= 3 and len(set(parts)) == len(parts), cat
    for cat in RIGID:
        assert cat in shapes.CATEGORIES and cat not in shapes.ORGANIC_CATEGORIES


def test_required_part_names_of_rigid_families():
    must = {
        "chair": {"seat", "back", "leg", "armrest"},
        "table": {"top", "leg", "apron"},
        "airplane": {"fuselage", "wing", "tail", "engine"},
        "car": {"body", "cabin", "wheel"},
        "mug": {"body", "handle", "rim"},
        "bottle": {"body", "neck", "cap"},
        "lamp": {"base", "stem", "shade"},
        "shelf": {"side", "board", "back"},
        "bed": {"frame", "mattress", "headboard", "leg", "pillow"},
        "sofa": {"seat", "back", "armrest", "leg", "base"},
    }
    for cat, names in must.items():
        assert names <= set(shapes.PARTS[cat]), cat


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="unknown category"):
        shapes.generate("spaceship", 0)
    with pytest.raises(ValueError, match="seed"):
        shapes.generate("chair", -1)
    b = ShapeBuilder("chair", ["seat", "leg", "back"], np.random.default_rng(0))
    with pytest.raises(KeyError, match="not a part"):
        b.add("wheel", rounded_box((1, 1, 1), res=0.5))


@pytest.mark.parametrize("category", RIGID)
def test_one_instance_smoke(category):
    """Fast per-family check (seed 0) so a broken family fails without the slow set."""
    s = shapes.generate(category, 0)
    assert s.category == category and s.seed == 0
    assert s.mesh.is_watertight
    assert len(np.unique(s.face_parts)) >= 3
    assert category in s.caption


# ------------------------------------------------------------------ determinism


@pytest.mark.parametrize("category", RIGID)
def test_same_seed_same_shape_different_seed_different(category):
    a, b, c = shapes.generate(category, 7), shapes.generate(category, 7), shapes.generate(category, 8)
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    np.testing.assert_array_equal(a.mesh.faces, b.mesh.faces)
    np.testing.assert_array_equal(a.mesh.visual.vertex_colors, b.mesh.visual.vertex_colors)
    np.testing.assert_array_equal(a.face_parts, b.face_parts)
    assert a.caption == b.caption and a.attributes == b.attributes
    differs = a.mesh.vertices.shape != c.mesh.vertices.shape or not np.allclose(a.mesh.vertices, c.mesh.vertices)
    assert differs


def test_deterministic_across_processes():
    """No process-dependent state (hash seeds, global RNGs) leaks into generation."""
    code = (
        "import hashlib; from tango3d_core.data import shapes\n"
        "for c in ('chair', 'car'):\n"
        "    s = shapes.generate(c, 5)\n"
        "    print(hashlib.sha1(s.mesh.vertices.tobytes() + s.mesh.visual.vertex_colors.tobytes()).hexdigest(),"
        " s.caption)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    import hashlib

    here = ""
    for c in ("chair", "car"):
        s = shapes.generate(c, 5)
        digest = hashlib.sha1(s.mesh.vertices.tobytes() + s.mesh.visual.vertex_colors.tobytes()).hexdigest()
        here += f"{digest} {s.caption}\n"
    assert out == here


def test_generation_does_not_touch_global_rng():
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    shapes.generate("table", 3)
    assert np.random.random() == before


# ------------------------------------------------------------------ every category x 20 seeds


@pytest.mark.slow
def test_every_category_generates_in_canonical_pose(generated):
    for (cat, s), (shp, _) in generated.items():
        v = np.asarray(shp.mesh.vertices)
        assert np.isfinite(v).all(), (cat, s)
        lo, hi = v.min(0), v.max(0)
        assert np.abs((lo + hi) / 2).max() < 1e-6, (cat, s)
        assert abs(np.linalg.norm(hi - lo) - 1.0) < 1e-6, (cat, s)
        assert shp.category == cat and shp.seed == s


@pytest.mark.slow
def test_face_parts_are_consistent(generated):
    for (cat, s), (shp, _) in generated.items():
        fp = shp.face_parts
        assert fp.shape == (len(shp.mesh.faces),), (cat, s)
        assert np.issubdtype(fp.dtype, np.integer)
        assert fp.min() >= 0 and fp.max() < len(shp.part_names), (cat, s)
        assert len(np.unique(fp)) >= 3, (cat, s, shp.attributes.get("parts_present"))
        np.testing.assert_array_equal(shp.mesh.metadata["face_parts"], fp)
        # the vocabulary is the category's, whatever the instance
        assert shp.part_names == shapes.PARTS[cat], (cat, s)
        assert shp.mesh.metadata["part_names"] == shapes.PARTS[cat]


@pytest.mark.slow
def test_captions_name_the_category_and_colour(generated):
    for (cat, s), (shp, _) in generated.items():
        assert isinstance(shp.caption, str) and shp.caption.startswith("a"), (cat, s)
        assert cat.replace("_", " ") in shp.caption, (cat, s, shp.caption)
        if cat in RIGID:
            assert shp.attributes["colour"] in PALETTE
            assert shp.attributes["colour"] in shp.caption, shp.caption


@pytest.mark.slow
def test_rigid_meshes_are_watertight_moderate_and_fast(generated):
    for cat in RIGID:
        faces = []
        for s in SEEDS:
            shp, sec = generated[cat, s]
            m = shp.mesh
            assert m.is_watertight, (cat, s)
            assert m.is_winding_consistent and m.volume > 0, (cat, s)
            assert (m.area_faces > 1e-12).all(), (cat, s)
            # edges at most the builder's target, so the procedural textures are resolved
            assert m.edges_unique_length.max() <= 0.05 + 1e-9, (cat, s)
            faces.append(len(m.faces))
        assert 3_000 <= min(faces) and max(faces) <= 60_000, (cat, faces)
        assert 5_000 <= np.median(faces) <= 40_000, (cat, faces)
        assert np.mean([generated[cat, s][1] for s in SEEDS]) < 0.3, cat


# ------------------------------------------------------------------ pose and semantics of the rigid families

TOL = 1e-3  # in units of the bounding-box diagonal


def _lowest(shp: shapes.Shape, parts: list[str]) -> float:
    return min(_part_vertices(shp, p)[:, 2].min() for p in parts if len(_part_vertices(shp, p)))


def _check_chair(s):
    zmin = s.mesh.vertices[:, 2].min()
    assert abs(_lowest(s, ["leg"]) - zmin) < TOL
    assert _centroid(s, "back")[2] > _centroid(s, "seat")[2] > _centroid(s, "leg")[2]
    assert _centroid(s, "back")[1] > _centroid(s, "seat")[1]  # the seat opens towards -Y


def _check_table(s):
    v = s.mesh.vertices
    assert abs(_lowest(s, ["leg", "base"]) - v[:, 2].min()) < TOL
    assert abs(_part_vertices(s, "top")[:, 2].max() - v[:, 2].max()) < TOL
    if s.attributes["n_legs"] > 1:
        assert _components(s, "leg") == s.attributes["n_legs"]


def _check_sofa(s):
    assert _centroid(s, "back")[1] > _centroid(s, "seat")[1]
    assert _centroid(s, "back")[2] > _centroid(s, "base")[2]
    assert abs(_lowest(s, ["leg", "base"]) - s.mesh.vertices[:, 2].min()) < TOL
    assert s.attributes["armrests"] == ("armrest" in s.attributes["parts_present"])


def _check_bed(s):
    assert _centroid(s, "headboard")[1] > _centroid(s, "mattress")[1]  # head at +Y, foot towards -Y
    assert _centroid(s, "mattress")[2] > _centroid(s, "frame")[2]
    if s.attributes["footboard"]:
        assert _centroid(s, "footboard")[1] < _centroid(s, "mattress")[1]
    if s.attributes["n_pillows"]:
        assert _centroid(s, "pillow")[2] > _centroid(s, "mattress")[2]
        assert _components(s, "pillow") == s.attributes["n_pillows"]


def _check_shelf(s):
    assert abs(_lowest(s, ["side", "leg"]) - s.mesh.vertices[:, 2].min()) < TOL
    assert _components(s, "board") == s.attributes["n_boards"]
    if s.attributes["back"] != "none":
        assert _centroid(s, "back")[1] > _centroid(s, "board")[1]  # open side towards -Y


def _check_lamp(s):
    assert abs(_lowest(s, ["base"]) - s.mesh.vertices[:, 2].min()) < TOL
    assert _centroid(s, "shade")[2] > _centroid(s, "base")[2]


def _check_mug(s):
    assert _centroid(s, "handle")[0] > _centroid(s, "body")[0]  # handle on +X
    assert _centroid(s, "rim")[2] > _centroid(s, "body")[2]
    assert abs(_lowest(s, ["body", "base"]) - s.mesh.vertices[:, 2].min()) < TOL


def _check_bottle(s):
    assert abs(_part_vertices(s, "cap")[:, 2].max() - s.mesh.vertices[:, 2].max()) < TOL
    assert _centroid(s, "cap")[2] > _centroid(s, "neck")[2] > _centroid(s, "body")[2]


def _check_airplane(s):
    v = s.mesh.vertices
    assert _centroid(s, "tail")[1] > _centroid(s, "wing")[1]  # nose towards -Y
    assert _part_vertices(s, "fuselage")[:, 1].min() < _part_vertices(s, "wing")[:, 1].min()
    wing = _part_vertices(s, "wing")
    assert np.ptp(wing[:, 0]) > 0.95 * np.ptp(v[:, 0])  # span along X
    assert abs(wing[:, 0].mean()) < 0.01  # symmetric about the fuselage


def _check_car(s):
    v = s.mesh.vertices
    assert abs(_lowest(s, ["wheel"]) - v[:, 2].min()) < TOL
    assert abs(_part_vertices(s, "light")[:, 1].min() - v[:, 1].min()) < TOL  # headlights lead, at -Y
    assert _centroid(s, "cabin")[2] > _centroid(s, "wheel")[2]
    assert _components(s, "wheel") == s.attributes["n_wheels"]


def _check_guitar(s):
    assert _centroid(s, "headstock")[2] > _centroid(s, "neck")[2] > _centroid(s, "body")[2]
    assert _centroid(s, "string")[1] < _centroid(s, "body")[1]  # strings on the front (-Y)
    assert _components(s, "string") == s.attributes["n_strings"]


def _check_vase(s):
    assert abs(_lowest(s, ["base"]) - s.mesh.vertices[:, 2].min()) < TOL
    assert _centroid(s, "neck")[2] > _centroid(s, "body")[2]


SEMANTIC = {
    "chair": _check_chair, "table": _check_table, "sofa": _check_sofa, "bed": _check_bed, "shelf": _check_shelf,
    "lamp": _check_lamp, "mug": _check_mug, "bottle": _check_bottle, "airplane": _check_airplane, "car": _check_car,
    "guitar": _check_guitar, "vase": _check_vase,
}


@pytest.mark.slow
@pytest.mark.parametrize("category", RIGID)
def test_rigid_pose_is_z_up_and_front_minus_y(generated, category):
    for s in SEEDS:
        SEMANTIC[category](generated[category, s][0])


# ------------------------------------------------------------------ variation


def _attr(generated, cat, key):
    return [generated[cat, s][0].attributes[key] for s in SEEDS]


@pytest.mark.slow
def test_topology_really_varies(generated):
    arm = _attr(generated, "chair", "armrests")
    assert set(arm) == {True, False}
    for s in SEEDS:  # the attribute matches the geometry
        shp = generated["chair", s][0]
        assert shp.attributes["armrests"] == ("armrest" in shp.attributes["parts_present"])
    assert len(set(_attr(generated, "chair", "base"))) >= 2
    legs = [n for n in _attr(generated, "table", "n_legs") if n > 1]
    assert min(legs) == 3 and max(legs) == 6 and len(set(legs)) >= 3
    assert set(_attr(generated, "car", "n_wheels")) == {4, 6}
    assert len(set(_attr(generated, "mug", "handle"))) >= 3
    assert len(set(_attr(generated, "airplane", "tail"))) >= 2
    assert len(set(_attr(generated, "airplane", "n_engines"))) >= 3
    assert len(set(_attr(generated, "shelf", "n_boards"))) >= 3
    assert set(_attr(generated, "sofa", "armrests")) == {True, False}
    assert len(set(_attr(generated, "sofa", "n_seats"))) >= 2
    assert len(set(_attr(generated, "bed", "n_pillows"))) >= 2
    assert set(_attr(generated, "bed", "footboard")) == {True, False}
    assert len(set(_attr(generated, "lamp", "lamp_kind"))) >= 2
    assert len(set(_attr(generated, "bottle", "bottle_kind"))) >= 3
    assert len(set(_attr(generated, "guitar", "n_strings"))) >= 2
    assert set(_attr(generated, "vase", "handles")) == {True, False}


@pytest.mark.slow
def test_proportions_vary(generated):
    """Beyond topology, the bounding-box aspect ratio changes from seed to seed."""
    for cat in RIGID:
        ext = np.array([np.ptp(generated[cat, s][0].mesh.vertices, axis=0) for s in SEEDS])
        assert ext.std(0).max() > 0.03, cat


# ------------------------------------------------------------------ colour does not give the part away


@pytest.mark.slow
def test_part_colours_are_drawn_independently_of_the_part(generated):
    for cat in shapes.CATEGORIES:
        bases: dict[str, list[str]] = {}
        for s in SEEDS:
            shp = generated[cat, s][0]
            # a part can label faces yet own no vertex (a thin band in a labelled implicit
            # mesh): it then has no material of its own, so only painted parts count
            for part, mat in shp.attributes["materials"].items():
                bases.setdefault(part, []).append(mat[1])
        common = [p for p, v in bases.items() if len(v) >= 10]
        assert len(common) >= 2, cat
        for p in common:
            assert len(set(bases[p])) >= 4, (cat, p, Counter(bases[p]))
        # any two frequent parts share several colours: no part owns a colour
        a, b = common[:2]
        assert len(set(bases[a]) & set(bases[b])) >= 3, (cat, a, b)


@pytest.mark.slow
def test_rendered_vertex_colours_of_a_part_vary_across_seeds(generated):
    for cat in RIGID:
        first = shapes.PARTS[cat][0]
        medians = set()
        for s in SEEDS:
            shp = generated[cat, s][0]
            f = np.asarray(shp.mesh.faces)[shp.face_parts == 0]
            col = np.asarray(shp.mesh.visual.vertex_colors)[np.unique(f), :3]
            medians.add(tuple((np.median(col, axis=0) // 32).astype(int)))
        assert len(medians) >= 5, (cat, first, medians)


# ------------------------------------------------------------------ primitives (reference volumes)


def _polygon_area_factor(n: int) -> float:
    """Area of a regular n-gon inscribed in the unit circle."""
    return n / 2 * np.sin(2 * np.pi / n)


def _closed_ok(m: trimesh.Trimesh) -> None:
    assert m.is_watertight and m.is_winding_consistent
    assert m.volume > 0


def test_rounded_box_volume_and_edges():
    m = rounded_box((1.0, 0.5, 0.2), (1, 2, 3), res=0.05)
    _closed_ok(m)
    assert m.volume == pytest.approx(0.1, rel=1e-9)
    np.testing.assert_allclose(m.bounds, [[0.5, 1.75, 2.9], [1.5, 2.25, 3.1]], atol=1e-12)
    assert m.edges_unique_length.max() <= 0.05 * np.sqrt(2) + 1e-9
    a, b, c, r = 1.0, 0.5, 0.2, 0.05
    ai, bi, ci = a - 2 * r, b - 2 * r, c - 2 * r
    ref = ai * bi * ci + 2 * r * (ai * bi + ai * ci + bi * ci) + np.pi * r**2 * (ai + bi + ci) + 4 / 3 * np.pi * r**3
    mr = rounded_box((a, b, c), res=0.01, radius=r)
    _closed_ok(mr)
    assert mr.volume == pytest.approx(ref, rel=5e-3)
    np.testing.assert_allclose(mr.bounds, [[-a / 2, -b / 2, -c / 2], [a / 2, b / 2, c / 2]], atol=1e-9)


def test_revolve_cylinder_cup_and_ring_volumes():
    n = 64
    cyl = revolve([[0.3, 0.0], [0.3, 1.0]], res=0.05, sections=n)
    _closed_ok(cyl)
    assert cyl.volume == pytest.approx(_polygon_area_factor(n) * 0.09, rel=1e-9)
    # hollow cup: outer cylinder minus the cavity
    cup = revolve([[0.3, 0.0], [0.3, 1.0], [0.25, 1.0], [0.25, 0.1], [0.0, 0.1]], res=0.05, sections=n)
    _closed_ok(cup)
    k = _polygon_area_factor(n)
    assert cup.volume == pytest.approx(k * (0.09 * 1.0 - 0.0625 * 0.9), rel=1e-9)
    # ring (closed profile), about the X axis
    ring = revolve([[0.3, 0.0], [0.4, 0.0], [0.4, 0.1], [0.3, 0.1]], res=0.02, sections=n, closed=True,
                   axis=(1, 0, 0), origin=(5, 0, 0))
    _closed_ok(ring)
    assert ring.volume == pytest.approx(k * (0.16 - 0.09) * 0.1, rel=1e-9)
    assert ring.bounds[:, 0] == pytest.approx([5.0, 5.1])


def test_tube_capsule_ball_loft_volumes():
    n = 48
    t = tube([[0, 0, 0], [0, 0, 0.5], [0, 0, 1.0]], 0.1, res=0.05, sections=n)
    _closed_ok(t)
    assert t.volume == pytest.approx(_polygon_area_factor(n) * 0.01, rel=1e-6)
    bent = tube([[0, 0, 0], [0, 0, 1], [1, 0, 1]], 0.05, res=0.02, corner=0.3)
    _closed_ok(bent)
    cap = capsule(0.1, (0, 0, 0), (0, 1, 1), res=0.005)
    _closed_ok(cap)
    assert cap.volume == pytest.approx(np.pi * 0.01 * np.sqrt(2) + 4 / 3 * np.pi * 1e-3, rel=5e-3)
    sph = ball(0.2, (1, 1, 1), res=0.005)
    _closed_ok(sph)
    assert sph.volume == pytest.approx(4 / 3 * np.pi * 0.008, rel=5e-3)
    sq = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])
    prism = loft([np.c_[sq, np.zeros(4)], np.c_[sq, np.full(4, 2.0)]], res=0.1)
    _closed_ok(prism)
    assert prism.volume == pytest.approx(2.0, rel=1e-9)
    ring = loft([np.c_[sq * s, np.full(4, z)] for s, z in ((1, 0), (1.5, 1), (1, 2))], res=0.1, closed=True)
    assert ring.is_watertight


def test_beam_is_a_box_between_points():
    b = beam((0, 0, 0), (0, 0, 2), 0.2, 0.1, res=0.05)
    _closed_ok(b)
    assert b.volume == pytest.approx(0.04)
    np.testing.assert_allclose(b.bounds, [[-0.1, -0.05, 0.0], [0.1, 0.05, 2.0]], atol=1e-12)
    d = beam((1, 1, 1), (2, 3, 1.5), 0.1, res=0.05)
    assert d.volume == pytest.approx(0.01 * np.linalg.norm([1, 2, 0.5]))


def test_superellipse_is_evenly_spaced_and_on_the_curve():
    p = superellipse(2.0, 1.0, count=100, exponent=4.0)
    assert p.shape == (100, 2)
    assert np.abs(np.abs(p[:, 0] / 2) ** 4 + np.abs(p[:, 1]) ** 4 - 1).max() < 0.02
    seg = np.linalg.norm(np.roll(p, -1, 0) - p, axis=1)
    assert seg.max() / seg.min() < 1.1
    assert p[0] == pytest.approx([2.0, 0.0], abs=1e-9)


def test_rot_is_right_handed():
    np.testing.assert_allclose(rot("z", np.pi / 2) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(rot("x", np.pi / 2) @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(rot("y", np.pi / 2) @ [0, 0, 1], [1, 0, 0], atol=1e-12)


def test_primitive_bad_inputs():
    with pytest.raises(ValueError, match="radii"):
        revolve([[-0.1, 0], [0.1, 1]], res=0.1)
    with pytest.raises(ValueError, match="axis"):
        revolve([[0.1, 0], [0.0, 0.5], [0.1, 1]], res=0.1)
    with pytest.raises(ValueError, match="off the axis"):
        revolve([[0.0, 0], [0.1, 0], [0.1, 1]], res=0.1, closed=True)
    with pytest.raises(ValueError, match=r"\[K, 2\]"):
        revolve([[0.1, 0, 0]], res=0.1)
    with pytest.raises(ValueError, match="res"):
        revolve([[0.1, 0], [0.1, 1]], res=0.0)
    with pytest.raises(ValueError, match="radius"):
        tube([[0, 0, 0], [0, 0, 1]], 0.0, res=0.1)
    with pytest.raises(ValueError, match="path"):
        tube([[0, 0, 0]], 0.1, res=0.1)
    with pytest.raises(ValueError, match="same S"):
        loft([np.zeros((4, 3)), np.zeros((5, 3))], res=0.1)
    with pytest.raises(ValueError, match="extents"):
        rounded_box((1, -1, 1), res=0.1)
    with pytest.raises(ValueError, match="coincide"):
        beam((0, 0, 0), (0, 0, 0), 0.1, res=0.1)
    with pytest.raises(ValueError, match="coincide"):
        capsule(0.1, (1, 1, 1), (1, 1, 1), res=0.1)
    with pytest.raises(ValueError, match="radius"):
        ball(0.0, (0, 0, 0), res=0.1)
    with pytest.raises(ValueError, match="axis"):
        rot("w", 0.1)  # type: ignore[arg-type]


def test_existing_primitives_unchanged():
    """The helpers added to _base must not alter the original primitives."""
    assert len(_base.box((1, 2, 3), (0, 0, 0)).faces) == 12
    assert _base.cylinder(0.5, (0, 0, 0), (0, 0, 1)).is_watertight
    assert _base.torus(1.0, 0.2, (0, 0, 0)).is_watertight


# ------------------------------------------------------------------ report


def test_watertight_report_small():
    rep = watertight_report(["mug", "chair"], seeds=range(2))
    assert rep == {"mug": 1.0, "chair": 1.0}


def test_family_stats_fields():
    st = family_stats(["bottle"], seeds=[0, 1])
    s = st["bottle"]
    assert isinstance(s, FamilyStats) and s.n == 2 and s.watertight == 1.0
    assert s.faces_min <= s.faces_median <= s.faces_max
    assert s.parts_min >= 3 and 0 < s.seconds_mean <= s.seconds_max


def test_report_bad_inputs():
    with pytest.raises(ValueError, match="unknown categories"):
        watertight_report(["spaceship"], seeds=[0])
    with pytest.raises(ValueError, match="seeds is empty"):
        watertight_report(["mug"], seeds=[])
    with pytest.raises(ValueError, match="seed"):
        family_stats(["mug"], seeds=[-3])


def test_report_cli_json(capsys):
    assert main(["--seeds", "1", "--categories", "lamp", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lamp"]["watertight"] == 1.0 and out["lamp"]["n"] == 1


@pytest.mark.slow
def test_watertight_report_covers_every_category(generated):
    rep = watertight_report(seeds=range(3))
    assert set(rep) == set(shapes.CATEGORIES)
    assert all(0.0 <= v <= 1.0 for v in rep.values())
    for cat in RIGID:
        assert rep[cat] == 1.0, cat


def test_category_prompt_is_the_short_query_everyone_shares():
    from tango3d_core.eval.suites import retrieval

    assert shapes.category_prompt("chair") == "a chair"
    assert shapes.category_prompt("coffee_table") == "a coffee table"
    # The evaluation queries with the very function the text table enumerates.
    assert retrieval.category_prompt is shapes.category_prompt
