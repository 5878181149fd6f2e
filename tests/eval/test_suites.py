"""Suites end to end on a random tiny model and tiny data, plus oracle providers that must score
(near) perfectly: they catch any frame, rotation or pixel-convention mistake in the suites."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import trimesh

from tango3d_core.eval.baselines import BackprojectionBaseline, RandomBaseline
from tango3d_core.eval.suites import (
    SUITE_NAMES,
    ModelProvider,
    SuiteConfig,
    default_config,
    mesh_folder_scenes,
    procedural_scenes,
    run_suite,
)
from tango3d_core.models import build_model
from tango3d_core.models.tango3d import sample_mesh_surface

TINY = dict(categories=("chair", "mug"), shapes_per_category=2, views_per_shape=3, resolution=64, num_points=1024,
            pixels_per_view=16, points_per_shape=64, label_points=256, occupancy_points=512, backprojection_views=3)



@pytest.fixture(scope="module")
def model(fake_text):
    torch.manual_seed(0)
    m = build_model("tiny").eval()
    m.set_text_encoder(fake_text())
    return m


@pytest.fixture(scope="module")
def providers(model):
    return {"tango3d": ModelProvider(model), "random": RandomBaseline(dim=model.dense_dim, seed=0),
            "backprojection": BackprojectionBaseline.from_model(model, num_views=3, resolution=64)}


def cfg(suite: str, **kw) -> SuiteConfig:
    return default_config(suite, quick=True, **{**TINY, **kw})


# ---------------------------------------------------------------- oracle


def embed_xyz(p) -> torch.Tensor:
    """Unit embedding of positions whose cosine ranks neighbours by distance (up to a few %):
    the lift of R^3 onto a sphere of radius 2 in R^4."""
    p = torch.as_tensor(np.asarray(p), dtype=torch.float64) / 2.0
    h = torch.sqrt((1.0 - (p * p).sum(-1, keepdim=True)).clamp_min(0.0))
    return torch.cat([p, h], dim=-1).to(torch.float32)


class _OraclePixels:
    def __init__(self, view):
        self.view = view
        self.global_embedding = None

    def sample(self, xy):
        xy = torch.as_tensor(xy).round().long()
        return embed_xyz(self.view.xyz[xy[:, 1].numpy(), xy[:, 0].numpy()])


class _OraclePoints:
    def __init__(self, points):
        self.points = points
        self.dense = embed_xyz(points)
        self.global_embedding = None

    def query(self, xyz):
        return embed_xyz(np.asarray(xyz))


class OracleProvider:
    """Pixel feature = its true 3D point; point feature = its position: perfect correspondence."""

    def image_features(self, view):
        return _OraclePixels(view)

    def shape_features(self, shape, *, num_points, seed):
        return _OraclePoints(sample_mesh_surface(shape.mesh, num_points, seed=seed)[0])

    def text_features(self, texts):
        raise NotImplementedError("oracle has no text side")


# ---------------------------------------------------------------- scenes


def test_scenes_ground_truth_lives_in_the_yawed_frame():
    c = cfg("pixel2point", shapes_per_category=1)
    scenes = list(procedural_scenes(c))
    assert [s.category for s in scenes] == ["chair", "mug"]
    assert len({round(s.yaw, 6) for s in scenes}) == 2 and all(abs(np.sin(s.yaw)) > 1e-3 for s in scenes)
    for s in scenes:
        assert len(s.views) == 3 and s.diameter == pytest.approx(1.0, abs=1e-6)
        for v in s.views:
            rows, cols = np.nonzero(v.mask)
            xyz = v.xyz[rows, cols].astype(np.float64)
            # the camera of the yawed frame projects each pixel's point back onto that pixel ...
            np.testing.assert_allclose(v.camera.project(xyz), np.stack([cols, rows], 1), atol=0.05)
            # ... and the point lies on the yawed mesh (float16 storage: ~3e-4)
            _, dist, _ = trimesh.proximity.closest_point(s.mesh, xyz[::37])
            assert dist.max() < 2e-3
            assert np.isnan(v.xyz[~v.mask]).all() and (v.part_id[v.mask] >= 0).all()
        _, dist, _ = trimesh.proximity.closest_point(s.mesh, s.points[::50].astype(np.float64))
        assert dist.max() < 1e-4


def test_scenes_are_deterministic_and_held_out():
    c = cfg("pixel2point", shapes_per_category=1, categories=("mug",), views_per_shape=1)
    a, b = next(procedural_scenes(c)), next(procedural_scenes(c))
    assert a.seed >= 200_000 and a.key == b.key and a.yaw == b.yaw
    np.testing.assert_array_equal(np.asarray(a.views[0].image), np.asarray(b.views[0].image))


# ---------------------------------------------------------------- suites end to end


def _method_keys(res):
    assert set(res) >= {"suite", "config", "methods", "counts", "timing"}
    assert set(res["methods"]) == {"tango3d", "random", "backprojection"}
    assert res["timing"]["total_s"] > 0
    assert set(res["timing"]["methods"]) == {"tango3d", "random", "backprojection"}
    return res["methods"]


def test_pixel2point_end_to_end(providers):
    res = run_suite("pixel2point", providers, cfg("pixel2point"), progress=False)
    methods = _method_keys(res)
    assert res["counts"] == {"shapes": 4, "views": 12}
    for row in methods.values():
        assert set(row["accuracy"]) == {"0.01", "0.025", "0.05", "0.1"}
        assert row["num_queries"] == 12 * 16
        assert 0 <= row["median_error"] <= 2 and len(row["curve"]["threshold"]) == len(row["curve"]["accuracy"])
        assert set(row["per_category"]) == {"chair", "mug"}
        assert row["nearest_sample"]["accuracy"]["0.05"] == 1.0  # 1024 points: always one within 5 %
    assert res["timing"]["methods"]["backprojection"]["shape_calls"] == 4


def test_point2pixel_end_to_end(providers):
    res = run_suite("point2pixel", providers, cfg("point2pixel"), progress=False)
    methods = _method_keys(res)
    for row in methods.values():
        assert row["num_queries"] == res["counts"]["point_view_pairs"] > 0
        assert row["median_error_px"] >= 0 and set(row["consistency"]) == {"share", "num_points", "threshold", "min_views"}


class _CosineMatcher:
    """The plain model, but point->pixel goes through ``match_points`` (cosine scores): must
    reproduce the plain row exactly, so the suite's wiring (transposes, indices) is what is tested."""

    def __init__(self, base):
        self.base = base
        self.image_features, self.shape_features = base.image_features, base.shape_features

    def match_points(self, image, shape, xyz, xy):
        assert xyz.shape[1] == 3 and xy.shape[1] == 2
        return shape.query(xyz) @ image.sample(xy).T


def test_point2pixel_uses_match_points(providers):
    res = run_suite("point2pixel", {"plain": providers["tango3d"], "matched": _CosineMatcher(providers["tango3d"])},
                    cfg("point2pixel"), progress=False)
    plain, matched = res["methods"]["plain"], res["methods"]["matched"]
    assert matched["median_error_px"] == pytest.approx(plain["median_error_px"])
    assert matched["accuracy"] == pytest.approx(plain["accuracy"])
    assert res["timing"]["methods"]["matched"]["match_calls"] > 0


def test_part_transfer_end_to_end(providers):
    res = run_suite("part-transfer", providers, cfg("part-transfer"), progress=False)
    methods = _method_keys(res)
    assert res["counts"] == {"pairs": 2}
    for row in methods.values():
        for mode in ("3d_to_3d", "2d_to_3d", "2d_to_3d_same_instance"):
            assert row[mode]["num_pairs"] == 2 and 0 <= row[mode]["miou"] <= row[mode]["accuracy"] + 1
            assert set(row[mode]["per_category_miou"]) == {"chair", "mug"}


def test_retrieval_end_to_end(providers):
    res = run_suite("retrieval", providers, cfg("retrieval"), progress=False)
    methods = _method_keys(res)
    assert res["counts"] == {"gallery": 4, "categories": 2}
    for row in methods.values():
        assert set(row) == {"image_to_shape", "text_to_shape", "category_text_to_shape"}
        assert set(row["image_to_shape"]["instance"]) == {"r@1", "r@5", "map"}
        assert set(row["category_text_to_shape"]) == {"r@1", "r@5", "map", "p@10", "p_at_10_max"}
        assert row["category_text_to_shape"]["p_at_10_max"] == 0.5  # 2 of a gallery of 4


def test_vae_end_to_end(model):
    res = run_suite("vae", {}, cfg("vae"), models={"tango3d": model}, progress=False)
    # The tiny preset's "local" query decoder gets a row per extra token count (default 512, 1024).
    assert set(res["methods"]) == {"tango3d", "tango3d@512", "tango3d@1024", "random"}
    assert res["config"]["vae_tokens"] == [512, 1024]
    row = res["methods"]["tango3d"]
    assert set(row) >= {"iou", "iou_pooled", "accuracy", "iou_near_surface", "iou_uniform", "per_category_iou"}
    assert row["num_shapes"] == 4 and 0 <= row["iou"] <= 1
    assert res["methods"]["tango3d@512"]["num_shapes"] == 4


def test_vae_token_rows(model):
    c = cfg("vae", categories=("mug",), shapes_per_category=2, vae_tokens=(model.config.shape.num_latents, 300))
    res = run_suite("vae", {}, c, models={"tango3d": model}, progress=False)
    assert set(res["methods"]) == {"tango3d", "tango3d@300", "random"}  # the trained count is the plain row
    assert res["methods"]["tango3d@300"]["iou"] != res["methods"]["tango3d"]["iou"]
    none = run_suite("vae", {}, dataclasses.replace(c, vae_tokens=()), models={"tango3d": model}, progress=False)
    assert set(none["methods"]) == {"tango3d", "random"}
    assert none["methods"]["tango3d"] == res["methods"]["tango3d"]
    attention = build_model(dataclasses.replace(model.config, shape=dataclasses.replace(
        model.config.shape, query_decoder="attention"))).eval()
    att = run_suite("vae", {}, c, models={"attention": attention}, progress=False)
    assert set(att["methods"]) == {"attention", "random"}
    with pytest.raises(ValueError, match="exceed"):
        run_suite("vae", {}, dataclasses.replace(c, vae_tokens=(10**5,)), models={"tango3d": model}, progress=False)
    with pytest.raises(ValueError, match="vae_tokens"):
        dataclasses.replace(c, vae_tokens=(0,))


def test_pixel2point_is_deterministic(providers):
    c = cfg("pixel2point", categories=("mug",), shapes_per_category=1, views_per_shape=1)
    a = run_suite("pixel2point", providers, c, progress=False)
    b = run_suite("pixel2point", providers, c, progress=False)
    assert a["methods"] == b["methods"]


# ---------------------------------------------------------------- oracles


def test_oracle_pixel2point_reaches_the_sampling_floor():
    c = cfg("pixel2point", num_points=4096, pixels_per_view=32)
    res = run_suite("pixel2point", {"oracle": OracleProvider()}, c, progress=False)
    row = res["methods"]["oracle"]
    assert row["accuracy"]["0.05"] == 1.0 and row["accuracy"]["0.025"] > 0.97
    for t, floor in row["nearest_sample"]["accuracy"].items():
        assert row["accuracy"][t] >= floor - 0.03  # argmax picks (almost) the nearest candidate


def test_oracle_point2pixel_finds_the_projection():
    res = run_suite("point2pixel", {"oracle": OracleProvider()}, cfg("point2pixel", resolution=96), progress=False)
    row = res["methods"]["oracle"]
    assert row["median_error_px"] < 1.0 and row["accuracy"]["0.025"] > 0.95
    assert row["consistency"]["num_points"] > 0 and row["consistency"]["share"] > 0.9


def test_random_is_far_below_the_oracle(providers):
    c = cfg("pixel2point", categories=("chair",), shapes_per_category=1)
    res = run_suite("pixel2point", {"random": providers["random"], "oracle": OracleProvider()}, c, progress=False)
    assert res["methods"]["random"]["accuracy"]["0.05"] < 0.3 < res["methods"]["oracle"]["accuracy"]["0.05"]


class _OneHotGlobals:
    """Global embedding = [one-hot category | one-hot instance]; perfect retrieval at both levels."""

    def __init__(self, keys, cats):
        self.keys, self.cats = sorted(keys), sorted(cats)

    def _vec(self, key, cat):
        v = torch.zeros(len(self.cats) + len(self.keys))
        v[self.cats.index(cat)] = 1.0
        if key is not None:
            v[len(self.cats) + self.keys.index(key)] = 1.0
        return F.normalize(v, dim=0)

    def image_features(self, view):
        key = view.key.rsplit("/", 1)[0]
        return type("P", (), {"global_embedding": self._vec(key, key.split("/")[0]), "sample": None})()

    def shape_features(self, shape, *, num_points, seed):
        return type("S", (), {"global_embedding": self._vec(shape.key, shape.category)})()

    def text_features(self, texts):
        return torch.stack([self._vec(None, t[2:]) if t[2:] in self.cats else torch.ones(len(self.cats) + len(self.keys))
                            for t in texts])


def test_retrieval_wiring_with_perfect_globals():
    c = cfg("retrieval")
    keys = [f"{cat}/{200_000 + i}" for cat in c.category_list for i in range(c.shapes_per_category)]
    res = run_suite("retrieval", {"perfect": _OneHotGlobals(keys, ["chair", "mug"])}, c, progress=False)
    row = res["methods"]["perfect"]
    assert row["image_to_shape"]["instance"] == {"r@1": 1.0, "r@5": 1.0, "map": 1.0}
    assert row["image_to_shape"]["category"]["map"] == 1.0
    assert row["category_text_to_shape"]["map"] == 1.0 and row["category_text_to_shape"]["p@10"] == 0.5


def test_retrieval_reports_missing_globals_as_unsupported():
    res = run_suite("retrieval", {"oracle": OracleProvider()}, cfg("retrieval", shapes_per_category=1), progress=False)
    assert res["methods"]["oracle"] == {"unsupported": "no global embedding"}


class _CategoryGlobalsInstanceFit(_OneHotGlobals):
    """Globals that only know the category (instances tie), a pose fit that knows the instance."""

    def image_features(self, view):
        key = view.key.rsplit("/", 1)[0]
        return type("P", (), {"global_embedding": self._vec(None, key.split("/")[0]), "key": key})()

    def shape_features(self, shape, *, num_points, seed):
        return type("S", (), {"global_embedding": self._vec(None, shape.category), "key": shape.key})()


def test_retrieval_reranks_the_top_candidates_by_pose_fit():
    c = cfg("retrieval", shapes_per_category=3)
    keys = [f"{cat}/{200_000 + i}" for cat in c.category_list for i in range(c.shapes_per_category)]
    plain = _CategoryGlobalsInstanceFit(keys, ["chair", "mug"])
    fitted = _CategoryGlobalsInstanceFit(keys, ["chair", "mug"])
    fitted.pose_fit = lambda img, shp: 1.0 if img.key == shp.key else 0.0
    res = run_suite("retrieval", {"plain": plain, "fitted": fitted}, c, progress=False)
    assert res["methods"]["plain"]["image_to_shape"]["instance"]["r@1"] < 1.0
    assert res["methods"]["fitted"]["image_to_shape"]["instance"] == {"r@1": 1.0, "r@5": 1.0, "map": 1.0}
    assert res["timing"]["methods"]["fitted"]["pose_calls"] == len(keys) * min(len(keys), 10)
    # text queries are not re-ranked
    assert res["methods"]["fitted"]["text_to_shape"] == res["methods"]["plain"]["text_to_shape"]


def test_rerank_top_k_against_a_naive_sort():
    from tango3d_core.eval.suites.retrieval import rerank_top_k

    rng = np.random.default_rng(0)
    sim = rng.normal(size=(6, 9))
    fits = rng.normal(size=(6, 9))
    fits[fits < -1.0] = -np.inf  # failed pose estimates
    fits[2, :] = 0.5  # all tie: the top k keep their similarity order
    out = rerank_top_k(sim, lambda q, j: float(fits[q, j]), 4)
    for q in range(6):
        by_sim = list(np.argsort(-sim[q]))
        top, rest = by_sim[:4], by_sim[4:]
        want = sorted(top, key=lambda j: (not np.isfinite(fits[q, j]),
                                          -fits[q, j] if np.isfinite(fits[q, j]) else 0.0, -sim[q, j])) + rest
        assert list(np.argsort(-out[q], kind="stable")) == want
    assert list(np.argsort(-out[2])[:4]) == list(np.argsort(-sim[2])[:4])


# ---------------------------------------------------------------- user meshes


def test_mesh_folder_geometric_suites(tmp_path):
    box = trimesh.creation.box(extents=(2.0, 1.0, 0.5))
    cyl = trimesh.creation.cylinder(radius=0.4, height=1.5, sections=24)
    box.export(tmp_path / "box.ply")
    (tmp_path / "sub").mkdir()
    cyl.export(tmp_path / "sub" / "cyl.obj")
    (tmp_path / "broken.stl").write_text("not a mesh")
    c = cfg("pixel2point", meshes=str(tmp_path), views_per_shape=2)
    with pytest.warns(RuntimeWarning, match="broken.stl"):
        scenes = list(mesh_folder_scenes(c, tmp_path))
    assert [s.key for s in scenes] == ["box.ply", "sub/cyl.obj"]
    assert all(s.diameter == pytest.approx(1.0) for s in scenes)
    with pytest.warns(RuntimeWarning):
        res = run_suite("pixel2point", {"oracle": OracleProvider()}, c, progress=False)
    assert res["counts"]["shapes"] == 2 and res["methods"]["oracle"]["accuracy"]["0.05"] == 1.0
    assert res["config"]["meshes"] == str(tmp_path) and res["config"]["categories"] is None


# ---------------------------------------------------------------- bad input


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="unknown suite"):
        run_suite("nope", {}, cfg("pixel2point"))
    with pytest.raises(ValueError, match="unknown suite"):
        default_config("nope")
    with pytest.raises(ValueError, match="labelled procedural shapes"):
        run_suite("part-transfer", {}, cfg("part-transfer", meshes=str(tmp_path)))
    with pytest.raises(ValueError, match="pairs"):
        run_suite("part-transfer", {}, cfg("part-transfer", shapes_per_category=1))
    with pytest.raises(ValueError, match="unknown categories"):
        SuiteConfig(categories=("spaceship",))
    with pytest.raises(ValueError, match="views_per_shape"):
        SuiteConfig(views_per_shape=0)
    with pytest.raises(ValueError, match="thresholds"):
        SuiteConfig(thresholds=(0.0,))
    with pytest.raises(FileNotFoundError, match="no mesh files"):
        list(mesh_folder_scenes(cfg("pixel2point"), tmp_path))
    assert SUITE_NAMES == ("pixel2point", "point2pixel", "part-transfer", "retrieval", "vae")


# ---------------------------------------------------------------- helpers


def test_argmax_cosine_matches_naive_reference():
    from tango3d_core.eval.suites import argmax_cosine

    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(37, 5, generator=g), torch.randn(50, 5, generator=g) * torch.rand(50, 1, generator=g)
    naive = [max(range(50), key=lambda j: float(F.cosine_similarity(q[i], k[j], dim=0))) for i in range(37)]
    assert argmax_cosine(q, k, chunk=8).tolist() == naive
    with pytest.raises(ValueError, match="widths"):
        argmax_cosine(q, torch.randn(3, 4))


def test_summarize_errors():
    from tango3d_core.eval.suites._common import summarize_errors

    s = summarize_errors(np.array([0.005, 0.02, 0.04, 0.2]), (0.01, 0.05))
    assert s["accuracy"] == {"0.01": 0.25, "0.05": 0.75} and s["median_error"] == pytest.approx(0.03)
    assert s["num_queries"] == 4 and s["curve"]["accuracy"][-1] == 1.0
    assert np.isnan(summarize_errors(np.zeros(0), (0.1,))["median_error"])
