"""The on-disk format: writing generations, reading entries and columns, damage and versions."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from tango3d_core.gallery.embed import DenseFeatures, ModelMismatchError
from tango3d_core.gallery.store import (
    MANIFEST,
    Entry,
    GalleryError,
    GalleryStore,
    GalleryWriter,
    is_gallery,
    load_dense,
    save_dense,
)

from .conftest import uniform

MODEL = {"fingerprint": "m-1", "settings": {"num_points": 64}, "dim": 8}


def key(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def entries(n: int, start: int = 0) -> list[Entry]:
    cats = ["chair", "", "mug"]
    return [Entry(key=key(i), path=f"d/{i}.ply", name=f"shape ü{i}", faces=10 * i, vertices=i,
                  category=cats[i % 3], caption=f"caption {i}") for i in range(start, start + n)]


def test_entry_roundtrip_and_validation():
    e = Entry(key=key(1), path="procedural:mug:3", name="mug #3", faces=5, vertices=4, category="mug",
              spec={"category": "mug", "seed": 3}, dense=True)
    assert Entry.from_dict(json.loads(e.to_json())) == e
    assert e.procedural and not entries(1)[0].procedural
    for bad in ("../../etc/passwd", "ABC", "12"):
        with pytest.raises(ValueError, match="hex"):
            Entry(key=bad, path="x", name="x", faces=0, vertices=0)


def test_write_then_read(tmp_path):
    vecs = uniform(7, 8, seed=0)
    w = GalleryWriter(tmp_path / "g", model=MODEL, root=str(tmp_path))
    w.add(entries(4), vecs[:4])
    w.add(entries(3, start=4), vecs[4:])
    store = w.commit()
    assert is_gallery(tmp_path / "g") and len(store) == 7
    np.testing.assert_array_equal(np.asarray(store.vectors), vecs)
    assert store.entry(5) == entries(3, start=4)[1]
    assert [e.name for e in store.entries([6, 0])] == ["shape ü6", "shape ü0"]
    assert [e.key for e in store.iter_entries()] == [key(i) for i in range(7)]
    np.testing.assert_array_equal(store.faces, 10 * np.arange(7))
    assert store.categories == ["chair", "mug"]
    np.testing.assert_array_equal(store.category_mask("mug"), [i % 3 == 2 for i in range(7)])
    np.testing.assert_array_equal(store.category_mask(["mug", "chair"]), [i % 3 != 1 for i in range(7)])
    assert not store.category_mask("sofa").any()
    assert store.file_path(store.entry(2)) == tmp_path / "d/2.ply"
    assert store.index().kind == "exact"
    with pytest.raises(IndexError):
        store.entry(7)
    store.check_model("m-1")
    with pytest.raises(ModelMismatchError, match="m-2"):
        store.check_model("m-2")


def test_new_generation_replaces_the_old(tmp_path):
    out = tmp_path / "g"
    w = GalleryWriter(out, model=MODEL)
    w.add(entries(3), uniform(3, 8, seed=1))
    first = w.commit()
    w = GalleryWriter(out, model=MODEL)
    w.add(entries(2), uniform(2, 8, seed=2))
    second = w.commit()
    assert len(GalleryStore(out)) == 2
    assert first.data != second.data and not first.data.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, second.data.name])
    # An aborted write leaves the current generation alone.
    w = GalleryWriter(out, model=MODEL)
    w.add(entries(1), uniform(1, 8, seed=3))
    w.abort()
    assert len(GalleryStore(out)) == 2
    with pytest.raises(GalleryError, match="empty"):
        GalleryWriter(out, model=MODEL).commit()
    with pytest.raises(ValueError, match="vectors must be"):
        GalleryWriter(out, model=MODEL).add(entries(2), uniform(3, 8, seed=4))


def test_damaged_or_foreign_folders(tmp_path):
    with pytest.raises(GalleryError, match="not a gallery"):
        GalleryStore(tmp_path)
    out = tmp_path / "g"
    w = GalleryWriter(out, model=MODEL)
    w.add(entries(2), uniform(2, 8, seed=5))
    w.commit()
    manifest = json.loads((out / MANIFEST).read_text())
    (out / MANIFEST).write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(GalleryError, match="version 99"):
        GalleryStore(out)
    (out / MANIFEST).write_text(json.dumps({**manifest, "format": "other"}))
    with pytest.raises(GalleryError, match="not a tango3d-gallery"):
        GalleryStore(out)
    (out / MANIFEST).write_text("{broken")
    with pytest.raises(GalleryError, match="cannot be read"):
        GalleryStore(out)
    (out / MANIFEST).write_text(json.dumps({**manifest, "count": 5}))
    with pytest.raises(GalleryError, match="rebuild"):
        GalleryStore(out)


def test_dense_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((50, 16)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    d = DenseFeatures(points=rng.random((50, 3), dtype=np.float32), normals=rng.random((50, 3), dtype=np.float32),
                      dense=dense, center=np.zeros(3, np.float32), scale=0.5)
    save_dense(tmp_path / "x" / "d.npz", d)
    back = load_dense(tmp_path / "x" / "d.npz")
    np.testing.assert_array_equal(back.points, d.points)
    np.testing.assert_allclose(back.dense, d.dense, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(back.dense, axis=1), 1.0, atol=1e-6)
    assert back.scale == 0.5
