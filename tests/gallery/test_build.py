"""The incremental builder: embeds only new or changed content, resumes, reports bad files."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import trimesh

from tango3d_core.gallery.build import Item, build_gallery, build_items
from tango3d_core.gallery.embed import ModelMismatchError
from tango3d_core.gallery.files import sha256_file
from tango3d_core.gallery.store import GalleryStore

from .conftest import CountingEmbedder, geometric_features, write_meshes


def rows_by_path(store: GalleryStore) -> dict[str, np.ndarray]:
    return {e.path: np.asarray(store.vectors[i]) for i, e in enumerate(store.iter_entries())}


def test_first_build_indexes_everything_and_reports_bad_files(mesh_dir, tmp_path, embedder):
    out = tmp_path / "g"
    report = build_gallery(mesh_dir, out, embedder, progress=False)
    store = GalleryStore(out)
    good = sorted(write_meshes(tmp_path / "ref"))
    assert [e.path for e in store.iter_entries()] == good
    assert report.files == 7 and report.embedded == 5 and report.entries == 5
    assert {s["path"] for s in report.skipped} == {"broken.obj", "empty.ply"}
    assert all(s["reason"] for s in report.skipped)
    assert json.loads((out / "report.json").read_text())["skipped"] == report.skipped
    assert store.categories == ["balls", "boxes"]
    for i, e in enumerate(store.iter_entries()):
        path = mesh_dir / e.path
        assert e.key == sha256_file(path)
        mesh = trimesh.load(path, force="mesh")
        assert e.faces == len(mesh.faces)
        f = geometric_features(store.load_mesh(e))
        np.testing.assert_allclose(store.vectors[i], f / np.linalg.norm(f), atol=1e-6)
        assert store.thumbnail_path(e).is_file()
    # Output files are named by content hash only: no user-supplied name appears under the gallery.
    names = " ".join(str(p.relative_to(out)) for p in out.rglob("*"))
    for stem in ("ball1", "ball2", "box", "cube", "cyl", "broken"):
        assert stem not in names


def test_incremental_rebuild_embeds_only_changed_files(mesh_dir, tmp_path, embedder):
    out = tmp_path / "g"
    build_gallery(mesh_dir, out, embedder, progress=False)
    before = rows_by_path(GalleryStore(out))
    embedder.calls.clear()

    trimesh.creation.box(extents=(3.0, 1.0, 1.0)).export(mesh_dir / "boxes" / "box.stl")   # changed
    trimesh.creation.torus(1.0, 0.3).export(mesh_dir / "new_torus.ply")                    # new
    os.remove(mesh_dir / "balls" / "ball1.ply")                                            # deleted
    shutil.move(mesh_dir / "cyl.glb", mesh_dir / "balls" / "moved_cyl.glb")                # moved
    (mesh_dir / "boxes" / "deep" / "cube.off").touch()                                     # touched only

    report = build_gallery(mesh_dir, out, embedder, progress=False)
    assert sorted(embedder.calls) == sorted([12, len(trimesh.creation.torus(1.0, 0.3).faces)])
    assert report.embedded == 2 and report.removed == 2 and report.reused == 3
    after = rows_by_path(GalleryStore(out))
    assert sorted(after) == ["balls/ball2.obj", "balls/moved_cyl.glb", "boxes/box.stl", "boxes/deep/cube.off",
                             "new_torus.ply"]
    for same in ("balls/ball2.obj", "boxes/deep/cube.off"):
        np.testing.assert_array_equal(after[same], before[same])
    np.testing.assert_array_equal(after["balls/moved_cyl.glb"], before["cyl.glb"])
    assert not np.allclose(after["boxes/box.stl"], before["boxes/box.stl"])

    # Nothing changed: nothing embedded, failed files not tried again.
    embedder.calls.clear()
    report = build_gallery(mesh_dir, out, embedder, progress=False)
    assert embedder.calls == [] and report.embedded == 0 and len(report.skipped) == 2


def test_killed_build_resumes_from_its_chunks(mesh_dir, tmp_path):
    out = tmp_path / "g"
    dying = CountingEmbedder(fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        build_gallery(mesh_dir, out, dying, chunk_size=2, progress=False)
    assert len(dying.calls) == 3
    # A full chunk of two, and the pending one saved on the way out (Ctrl+C loses nothing).
    assert len(list((out / "work").glob("chunk-*.npz"))) == 2
    (out / "work" / "chunk-000009.npz").write_bytes(b"torn by a hard kill")  # discarded on resume
    again = CountingEmbedder()
    report = build_gallery(mesh_dir, out, again, chunk_size=2, progress=False)
    assert len(again.calls) == 2 and report.resumed == 3 and report.entries == 5
    assert not (out / "work").exists()
    ref = CountingEmbedder()
    build_gallery(mesh_dir, tmp_path / "ref", ref, progress=False)
    a, b = rows_by_path(GalleryStore(out)), rows_by_path(GalleryStore(tmp_path / "ref"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_other_model_is_refused_unless_reembedding(mesh_dir, tmp_path, embedder):
    out = tmp_path / "g"
    build_gallery(mesh_dir, out, embedder, progress=False)
    other = CountingEmbedder("geom-v2")
    with pytest.raises(ModelMismatchError, match="geom-v1"):
        build_gallery(mesh_dir, out, other, progress=False)
    report = build_gallery(mesh_dir, out, other, reembed=True, progress=False)
    assert report.embedded == 5 and GalleryStore(out).fingerprint == "geom-v2"


def test_failed_files_are_retried_when_asked_or_changed(mesh_dir, tmp_path, embedder):
    out = tmp_path / "g"
    build_gallery(mesh_dir, out, embedder, progress=False)
    trimesh.creation.box().export(mesh_dir / "broken.obj")  # fixed
    embedder.calls.clear()
    report = build_gallery(mesh_dir, out, embedder, progress=False)
    assert embedder.calls == [12] and [s["path"] for s in report.skipped] == ["empty.ply"]
    report = build_gallery(mesh_dir, out, embedder, retry_failed=True, progress=False)
    assert [s["path"] for s in report.skipped] == ["empty.ply"]


def test_embedder_errors_skip_the_file(mesh_dir, tmp_path):
    flaky = CountingEmbedder(fail_at=0, fail_with=RuntimeError)
    report = build_gallery(mesh_dir, tmp_path / "g", flaky, progress=False)
    assert report.entries == 4
    assert any(s["reason"].startswith("RuntimeError") for s in report.skipped)


def test_metadata_file_and_options(mesh_dir, tmp_path, embedder):
    meta = tmp_path / "meta.jsonl"
    meta.write_text(json.dumps({"path": "cyl.glb", "category": "can", "caption": "a tin can"}) + "\n")
    build_gallery(mesh_dir, tmp_path / "g", embedder, metadata=meta, thumbnails=False, progress=False)
    store = GalleryStore(tmp_path / "g")
    cyl = next(e for e in store.iter_entries() if e.path == "cyl.glb")
    assert (cyl.category, cyl.caption) == ("can", "a tin can")
    assert not (tmp_path / "g" / "thumbs").exists()
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        build_gallery(mesh_dir, tmp_path / "g2", embedder, metadata=tmp_path / "bad.jsonl", progress=False)
    with pytest.raises(ValueError, match="up_axis"):
        build_gallery(mesh_dir, tmp_path / "g3", embedder, up_axis="x", progress=False)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no mesh files"):
        build_gallery(tmp_path / "g", tmp_path / "g4", embedder, progress=False)


def test_dense_cache_with_the_model(mesh_dir, tmp_path, checkpoint_dir):
    from tango3d_core.gallery.embed import load_embedder

    emb = load_embedder(checkpoint=str(checkpoint_dir), num_points=256)
    build_gallery(mesh_dir, tmp_path / "g", emb, dense=True, thumbnails=False, progress=False)
    store = GalleryStore(tmp_path / "g")
    e = store.entry(0)
    d = store.dense(e)
    assert e.dense and d is not None and d.dense.shape == (256, 16)
    ref = emb.provider.encode_shape(store.load_mesh(e), num_points=256, seed=0)
    np.testing.assert_allclose(d.points, ref.points.numpy(), atol=1e-6)
    np.testing.assert_allclose(d.dense, ref.dense.numpy(), atol=3e-3)


def test_build_items_is_incremental_too(tmp_path, embedder):
    meshes = {"a": trimesh.creation.box(), "b": trimesh.creation.icosphere(subdivisions=1)}
    items = [Item(key=f"{i:064x}", path=f"virtual:{n}", name=n, load=lambda m=m: m, category="x")
             for i, (n, m) in enumerate(meshes.items())]
    build_items(tmp_path / "g", embedder, items, progress=False)
    assert len(embedder.calls) == 2
    report = build_items(tmp_path / "g", embedder, items[:1], progress=False)
    assert len(embedder.calls) == 2 and report.reused == 1 and report.removed == 1
    assert [e.path for e in GalleryStore(tmp_path / "g").iter_entries()] == ["virtual:a"]
    with pytest.raises(ValueError, match="unique"):
        build_items(tmp_path / "g", embedder, items + items[:1], progress=False)
