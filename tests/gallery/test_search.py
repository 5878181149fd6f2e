"""Queries: hits best first with path and score, filters, thresholds, model checks."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from tango3d_core.gallery.build import build_gallery
from tango3d_core.gallery.embed import ModelMismatchError
from tango3d_core.gallery.search import Filters, search, search_image, search_text
from tango3d_core.gallery.store import GalleryStore

from .conftest import CountingEmbedder, geometric_features


@pytest.fixture
def store(mesh_dir, tmp_path, embedder) -> GalleryStore:
    build_gallery(mesh_dir, tmp_path / "g", embedder, progress=False)
    return GalleryStore(tmp_path / "g")


def test_hits_are_best_first_with_exact_scores(store, mesh_dir):
    q = geometric_features(trimesh.creation.box())
    hits = search(store, q, k=10)
    assert len(hits) == len(store) == 5
    v = np.asarray(store.vectors, dtype=np.float64)
    ref = v @ (q / np.linalg.norm(q))
    assert [h.row for h in hits] == list(np.argsort(-ref, kind="stable"))
    np.testing.assert_allclose([h.score for h in hits], np.sort(ref)[::-1], atol=1e-6)
    assert [h.rank for h in hits] == list(range(5))
    best = hits[0]
    assert best.path == str(mesh_dir.resolve() / "boxes/deep/cube.off") and best.score == pytest.approx(1.0)
    d = best.to_dict()
    assert {"path", "score", "name", "category", "faces", "thumbnail"} <= set(d) and "spec" not in d
    assert d["thumbnail"] and d["thumbnail"].endswith(".webp")


def test_filters(store):
    q = geometric_features(trimesh.creation.box())
    assert {h.category for h in search(store, q, k=10, filters=Filters(category="balls"))} == {"balls"}
    assert len(search(store, q, k=10, filters=Filters(category=["balls", "boxes"]))) == 4
    assert search(store, q, k=10, filters=Filters(category="sofas")) == []
    few = search(store, q, k=10, filters=Filters(max_faces=100))
    assert few and all(h.faces <= 100 for h in few)
    many = search(store, q, k=10, filters=Filters(min_faces=100, category="balls"))
    assert [h.path.rsplit("/", 1)[1] for h in many] == ["ball2.obj"]
    top = search(store, q, k=10, filters=Filters(min_score=0.999))
    assert [h.score >= 0.999 for h in top] == [True] * len(top) and len(top) >= 1
    for bad in ({"min_faces": -1}, {"max_faces": 1.5}, {"min_faces": 5, "max_faces": 2}, {"min_score": 2.0}):
        with pytest.raises(ValueError):
            Filters(**bad)


def test_text_and_image_queries_check_the_model(store):
    hits = search_text(store, "a box", CountingEmbedder(), k=2)
    assert hits[0].path.endswith("cube.off")
    with pytest.raises(ModelMismatchError, match="geom-v1"):
        search_text(store, "a box", CountingEmbedder("another-model"))
    with pytest.raises(ModelMismatchError):
        search_image(store, None, CountingEmbedder("another-model"))
    with pytest.raises(ValueError, match="empty"):
        search_text(store, "  ", CountingEmbedder())


def test_bad_queries(store):
    with pytest.raises(ValueError, match="width"):
        search(store, np.ones(5), k=3)
    with pytest.raises(ValueError, match="zeros"):
        search(store, np.zeros(32), k=3)
    with pytest.raises(ValueError, match="k must be"):
        search(store, np.ones(32), k=0)
