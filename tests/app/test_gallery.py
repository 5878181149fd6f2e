"""The explorer's gallery adapter: indexing per provider through tango3d_core.gallery, caching on
disk, search order and filters, thumbnails, built galleries (the bundled one included)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from app.gallery import Gallery
from tango3d_core.gallery.build import build_gallery
from tango3d_core.gallery.embed import ProviderEmbedder
from tango3d_core.gallery.procedural import build_procedural


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
    # Filters reach the package's search.
    hits = small_gallery.search(provider, emb[0], k=3, category="mug")
    assert [h.item.category for h in hits] == ["mug"]
    assert small_gallery.item(small_gallery.items[2].key) == small_gallery.items[2]
    assert small_gallery.item("no-such-key") is None


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
    status = small_gallery.status(Broken())
    assert status.startswith("failed: ") and "RuntimeError: no features today" in status


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
    (root / "bad.obj").write_text("no geometry here")
    g = Gallery.from_directory(tmp_path / "meshes", cache_dir=tmp_path / "cache")
    assert sorted(it.name for it in g.items) == ["spheres/bad.obj", "spheres/ball.ply", "spheres/box.stl"]
    assert {it.category for it in g.items} == {"spheres"}
    emb = g.build(provider)
    assert emb.shape == (2, 24)  # the unreadable file is left out
    hits = g.search(provider, emb[1], k=5)
    assert len(hits) == 2 and hits[0].item.name == "spheres/box.stl"
    with pytest.raises(ValueError, match="no mesh files"):
        Gallery.from_directory(tmp_path / "cache" / "thumbs", cache_dir=tmp_path / "c2")
    with pytest.raises(ValueError, match="does not exist"):
        Gallery.from_directory(tmp_path / "nope", cache_dir=tmp_path / "c3")
    with pytest.raises(ValueError, match="python -m tango3d_core.gallery build"):
        Gallery.from_directory(tmp_path / "meshes", cache_dir=tmp_path / "c4", max_items=1)


def test_a_built_gallery_is_used_as_is_for_its_model(tmp_path, provider, counting):
    built = tmp_path / "built"
    root = tmp_path / "meshes"
    root.mkdir()
    trimesh.creation.icosphere(subdivisions=1).export(root / "ball.ply")
    trimesh.creation.box().export(root / "box.stl")
    build_gallery(root, built, ProviderEmbedder(provider), progress=False)
    counting = counting(provider)
    g = Gallery.from_directory(built, cache_dir=tmp_path / "cache")  # a gallery folder: opened, not indexed
    assert len(g.items) == 2 and [it.name for it in g.items] == ["ball.ply", "box.stl"]
    g.build_in_background(provider)
    assert g.wait(provider, timeout=30) and g.status(provider) == "ready"
    hit = g.search(provider, provider.encode_shape(g.items[1].load(), num_points=4096, seed=0).global_embedding, k=1)[0]
    assert hit.item.name == "box.stl" and hit.score == pytest.approx(1.0, abs=1e-4)
    assert hit.thumbnail.suffix == ".webp" and built in hit.thumbnail.parents
    # Another model: the shapes are embedded again (never compared across models).
    g.build(counting)
    assert counting.calls["shape"] == 2
    assert g.search(counting, g.build(counting)[0], k=1)[0].item.name == "ball.ply"


def test_bundled_gallery_is_ready_for_the_bundled_model(tmp_path):
    from tango3d_core.providers import create_provider

    tango = create_provider("tango3d")
    g = Gallery.bundled(cache_dir=tmp_path)
    assert len(g.items) >= 200
    g.build_in_background(tango)
    assert g.wait(tango, timeout=30)  # nothing to embed: the vectors ship with it
    item = g.items[5]
    v = g.build(tango)[5]
    hits = g.search(tango, v, k=3)
    assert hits[0].item.key == item.key and hits[0].thumbnail == item.thumbnail_path
    assert not (tmp_path / "stores").exists()
    with pytest.raises(ValueError, match="bundled gallery is missing"):
        Gallery.bundled(cache_dir=tmp_path, path=tmp_path / "nothing")


def test_dense_features_of_a_dense_build(tmp_path, provider):
    out = tmp_path / "g"
    build_procedural(out, ProviderEmbedder(provider, num_points=128), per_category=1, categories=["mug"],
                     progress=False)
    g = Gallery.open(out, cache_dir=tmp_path / "cache")
    assert g.dense_features(g.items[0], provider) is None  # built without --dense
    root = tmp_path / "m"
    root.mkdir()
    trimesh.creation.box().export(root / "box.stl")
    build_gallery(root, tmp_path / "d", ProviderEmbedder(provider, num_points=128), dense=True, progress=False)
    g = Gallery.open(tmp_path / "d", cache_dir=tmp_path / "cache")
    d = g.dense_features(g.items[0], provider)
    assert d is not None and d.dense.shape == (128, 16)


def test_unknown_category():
    with pytest.raises(ValueError, match="unknown categories"):
        Gallery.procedural(categories=["spaceship"], cache_dir="/tmp/unused")
