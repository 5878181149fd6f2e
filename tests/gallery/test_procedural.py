"""Procedural galleries, and the bundled one in assets/gallery: complete, small, current."""

from __future__ import annotations

import numpy as np
import pytest

from tango3d_core.data import dataset, shapes
from tango3d_core.gallery.procedural import (
    BUNDLED_GALLERY,
    GALLERY_SEED_OFFSET,
    build_procedural,
    procedural_key,
    procedural_specs,
)
from tango3d_core.gallery.store import GalleryStore

from .conftest import CountingEmbedder


def test_specs():
    specs = procedural_specs(3, categories=["mug", "chair"])
    assert specs == [("mug", GALLERY_SEED_OFFSET + i) for i in range(3)] + \
        [("chair", GALLERY_SEED_OFFSET + i) for i in range(3)]
    assert len(procedural_specs(2)) == 2 * len(shapes.CATEGORIES)
    with pytest.raises(ValueError, match="unknown categories"):
        procedural_specs(1, categories=["spaceship"])
    with pytest.raises(ValueError, match="overlap the test split"):
        procedural_specs(5, seed_offset=dataset.SPLIT_OFFSET["test"] + 10)
    with pytest.raises(ValueError, match="per_category"):
        procedural_specs(0)
    assert procedural_key("mug", 1) != procedural_key("mug", 2)


def test_build_procedural_stores_specs_not_meshes(tmp_path):
    emb = CountingEmbedder()
    report = build_procedural(tmp_path / "g", emb, per_category=2, categories=["mug", "lamp"], progress=False)
    assert report.embedded == 4 and len(emb.calls) == 4
    store = GalleryStore(tmp_path / "g")
    e = store.entry(0)
    assert e.spec == {"category": "mug", "seed": GALLERY_SEED_OFFSET} and e.path == f"procedural:mug:{GALLERY_SEED_OFFSET}"
    assert store.file_path(e) is None and store.display_path(e) == e.path
    ref = shapes.generate("mug", GALLERY_SEED_OFFSET).mesh
    np.testing.assert_array_equal(store.load_mesh(e).faces, ref.faces)
    assert e.caption == shapes.generate("mug", GALLERY_SEED_OFFSET).caption
    assert all(store.thumbnail_path(x).is_file() for x in store.iter_entries())
    assert not list((tmp_path / "g").rglob("*.ply")) and not list((tmp_path / "g").rglob("*.obj"))
    report = build_procedural(tmp_path / "g", emb, per_category=3, categories=["mug", "lamp"], progress=False)
    assert report.reused == 4 and report.embedded == 2 and len(emb.calls) == 6


def test_bundled_gallery_is_complete_and_small():
    store = GalleryStore(BUNDLED_GALLERY)
    entries = list(store.iter_entries())
    assert len(entries) >= 200
    assert sorted({e.category for e in entries}) == sorted(shapes.CATEGORIES)
    assert all(store.thumbnail_path(e).is_file() for e in entries)
    size = sum(p.stat().st_size for p in BUNDLED_GALLERY.rglob("*") if p.is_file())
    assert size < 5e6
    split_ranges = [(o, o + dataset.SPLIT_SIZE) for o in dataset.SPLIT_OFFSET.values()]
    for e in entries:
        assert e.spec is not None and e.key == procedural_key(e.spec["category"], e.spec["seed"])
        assert not any(lo <= e.spec["seed"] < hi for lo, hi in split_ranges)  # never a training shape
    # The generator still makes the shapes that were embedded (a rigid and an organic family).
    for e in (entries[0], next(x for x in entries if x.category == "quadruped")):
        mesh = store.load_mesh(e)
        assert (len(mesh.faces), len(mesh.vertices)) == (e.faces, e.vertices)
    assert store.source == {"provider": "tango3d", "checkpoint": None}


@pytest.mark.slow
def test_bundled_gallery_matches_the_bundled_checkpoint():
    """Fails when the bundled checkpoint changed without rebuilding the gallery; the fix is
    ``python -m tango3d_core.gallery procedural --out assets/gallery --per-category 12``."""
    from tango3d_core.gallery.embed import load_embedder

    store = GalleryStore(BUNDLED_GALLERY)
    emb = load_embedder(**store.settings)
    assert emb.fingerprint == store.fingerprint, "rebuild assets/gallery (see the docstring)"
    for row in (0, len(store) - 1):
        v = emb.embed_shape(store.load_mesh(store.entry(row))).vector
        np.testing.assert_allclose(v, store.vectors[row], atol=1e-3)
