"""The in-memory retrieval gallery: indexing, caching on disk, search order, thumbnails."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from app.gallery import Gallery


@pytest.fixture
def small_gallery(tmp_path):
    return Gallery.procedural(per_category=1, categories=["chair", "mug", "airplane"], cache_dir=tmp_path)


def test_build_search_and_self_retrieval(small_gallery, provider):
    emb = small_gallery.build(provider)
    assert emb.shape == (3, 24)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    assert small_gallery.status(provider) == "ready"
    for i, item in enumerate(small_gallery.items):
        hits = small_gallery.search(provider, emb[i], k=3)
        assert hits[0].item.key == item.key
        assert hits[0].score == pytest.approx(1.0, abs=1e-5)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        # Scores are the cosine similarities, not ranks.
        np.testing.assert_allclose(scores, sorted((emb @ emb[i]).tolist(), reverse=True), atol=1e-5)
        assert hits[0].thumbnail.is_file()


def test_embeddings_and_thumbnails_are_cached_on_disk(tmp_path, provider, counting):
    counting = counting(provider)
    g1 = Gallery.procedural(per_category=1, categories=["mug", "lamp"], cache_dir=tmp_path)
    g1.build(counting)
    assert counting.calls["shape"] == 2
    thumbs = sorted((tmp_path / "thumbs").iterdir())
    assert len(thumbs) == 2
    mtimes = [p.stat().st_mtime_ns for p in thumbs]
    g2 = Gallery.procedural(per_category=1, categories=["mug", "lamp"], cache_dir=tmp_path)
    torch.testing.assert_close(g2.build(counting), g1.build(counting))
    assert counting.calls["shape"] == 2  # nothing re-encoded
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "thumbs").iterdir())] == mtimes


def test_background_build_and_status(small_gallery, provider):
    assert small_gallery.status(provider) == "not indexed"
    with pytest.raises(RuntimeError, match="not indexed"):
        small_gallery.search(provider, torch.ones(24))
    small_gallery.build_in_background(provider)
    assert small_gallery.wait(provider, timeout=120)
    assert small_gallery.status(provider) == "ready"


def test_failed_build_is_reported(small_gallery):
    class Broken:
        name = "broken"
        fingerprint = "broken-1"

        def encode_shape(self, mesh, **kw):
            raise RuntimeError("no features today")

    small_gallery.build_in_background(Broken())
    small_gallery.wait(Broken(), timeout=60)
    assert small_gallery.status(Broken()).startswith("failed: RuntimeError: no features today")


def test_query_width_mismatch(small_gallery, provider):
    small_gallery.build(provider)
    with pytest.raises(ValueError, match="width"):
        small_gallery.search(provider, torch.ones(5))


def test_from_directory(tmp_path, provider):
    root = tmp_path / "meshes" / "spheres"
    root.mkdir(parents=True)
    trimesh.creation.icosphere(subdivisions=2).export(root / "ball.ply")
    trimesh.creation.box().export(root / "box.stl")
    (root / "notes.txt").write_text("not a mesh")
    g = Gallery.from_directory(tmp_path / "meshes", cache_dir=tmp_path / "cache")
    assert sorted(it.name for it in g.items) == ["spheres/ball.ply", "spheres/box.stl"]
    assert {it.category for it in g.items} == {"spheres"}
    assert g.build(provider).shape == (2, 24)
    with pytest.raises(ValueError, match="no mesh files"):
        Gallery.from_directory(tmp_path / "cache" / "thumbs", cache_dir=tmp_path / "c2")
    with pytest.raises(ValueError, match="does not exist"):
        Gallery.from_directory(tmp_path / "nope", cache_dir=tmp_path / "c3")


def test_unknown_category():
    with pytest.raises(ValueError, match="unknown categories"):
        Gallery.procedural(categories=["spaceship"], cache_dir="/tmp/unused")
