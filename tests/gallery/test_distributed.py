"""Ray Data shards and their ingestion: a local Ray run on a small folder (slow), and
ingestion rules checked on hand-written shards (fast, no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from tango3d_core.gallery.build import build_gallery
from tango3d_core.gallery.distributed import SHARDS_MANIFEST, embed_with_ray, ingest_shards
from tango3d_core.gallery.embed import ModelMismatchError, load_embedder
from tango3d_core.gallery.files import sha256_file
from tango3d_core.gallery.store import GalleryStore

from .conftest import CountingEmbedder, geometric_features

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def write_shard(folder: Path, root: Path, rows: list[dict], *, name: str = "part-0.parquet") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cols = {k: [r[k] for r in rows] for k in rows[0]}
    pq.write_table(pa.table(cols), folder / name)
    (folder / SHARDS_MANIFEST).write_text(json.dumps({"root": str(root.resolve()), "up_axis": "z", "files": len(rows)}))


def shard_row(root: Path, rel: str, *, fingerprint: str = "geom-v1", error: str = "") -> dict:
    p = root / rel
    mesh = trimesh.load(p, force="mesh") if not error else None
    vec = b""
    if mesh is not None:
        f = geometric_features(mesh)
        vec = (f / np.linalg.norm(f)).astype("<f4").tobytes()
    return {"key": sha256_file(p), "rel": rel, "vector": vec, "faces": len(mesh.faces) if mesh is not None else 0,
            "vertices": len(mesh.vertices) if mesh is not None else 0, "size": p.stat().st_size,
            "mtime_ns": p.stat().st_mtime_ns, "thumbnail": b"", "error": error, "fingerprint": fingerprint,
            "settings": json.dumps({})}


def test_ingest_merges_shards_into_a_gallery(mesh_dir, tmp_path):
    out = tmp_path / "g"
    build_gallery(mesh_dir, out, CountingEmbedder(), thumbnails=False, progress=False)
    trimesh.creation.box(extents=(2.0, 1.0, 1.0)).export(mesh_dir / "boxes" / "box.stl")
    trimesh.creation.torus(1.0, 0.25).export(mesh_dir / "torus.ply")
    rows = [shard_row(mesh_dir, "boxes/box.stl"), shard_row(mesh_dir, "torus.ply"),
            shard_row(mesh_dir, "broken.obj", error="Cannot load mesh 'broken.obj': no faces")]
    write_shard(tmp_path / "shards", mesh_dir, rows)
    report = ingest_shards(tmp_path / "shards", out, progress=False)
    assert (report.embedded, report.reused, report.removed, report.entries) == (2, 4, 1, 6)
    assert report.skipped == [{"path": "broken.obj", "reason": "Cannot load mesh 'broken.obj': no faces"}]
    store = GalleryStore(out)
    by_path = {e.path: i for i, e in enumerate(store.iter_entries())}
    assert set(by_path) == {"balls/ball1.ply", "balls/ball2.obj", "boxes/box.stl", "boxes/deep/cube.off",
                            "cyl.glb", "torus.ply"}
    box = store.entry(by_path["boxes/box.stl"])
    assert box.key == sha256_file(mesh_dir / "boxes" / "box.stl")
    np.testing.assert_array_equal(store.vectors[by_path["torus.ply"]], np.frombuffer(rows[1]["vector"], "<f4"))


def test_ingest_refuses_mixed_or_foreign_models(mesh_dir, tmp_path):
    write_shard(tmp_path / "mixed", mesh_dir, [shard_row(mesh_dir, "cyl.glb"),
                                                shard_row(mesh_dir, "boxes/box.stl", fingerprint="other")])
    with pytest.raises(ModelMismatchError, match="several models"):
        ingest_shards(tmp_path / "mixed", tmp_path / "g", progress=False)
    build_gallery(mesh_dir, tmp_path / "g", CountingEmbedder("model-a"), thumbnails=False, progress=False)
    write_shard(tmp_path / "b", mesh_dir, [shard_row(mesh_dir, "cyl.glb", fingerprint="model-b")])
    with pytest.raises(ModelMismatchError, match="model-a"):
        ingest_shards(tmp_path / "b", tmp_path / "g", progress=False)
    with pytest.raises(FileNotFoundError, match=SHARDS_MANIFEST):
        ingest_shards(tmp_path / "nothing", tmp_path / "g2", progress=False)
    write_shard(tmp_path / "failed", mesh_dir, [shard_row(mesh_dir, "empty.ply", error="empty file")])
    with pytest.raises(ValueError, match="no embedded mesh"):
        ingest_shards(tmp_path / "failed", tmp_path / "g3", progress=False)


@pytest.mark.slow
def test_ray_data_embeds_a_folder_locally(tmp_path, checkpoint_dir):
    ray = pytest.importorskip("ray")
    import tango3d_core

    root = tmp_path / "meshes"
    (root / "a").mkdir(parents=True)
    for i in range(3):
        trimesh.creation.icosphere(subdivisions=i + 1).export(root / "a" / f"s{i}.ply")
    (root / "bad.stl").write_bytes(b"solid nothing\nendsolid nothing\n")
    # Local mode with one CPU; the workers import the code under test from this checkout.
    ray.init(num_cpus=1, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False,
             runtime_env={"py_modules": [str(Path(tango3d_core.__file__).parent)],
                          "env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        shards = embed_with_ray(root, tmp_path / "shards", checkpoint=str(checkpoint_dir), num_points=256,
                                batch_size=2)
    finally:
        ray.shutdown()
    assert list(shards.glob("*.parquet"))
    report = ingest_shards(shards, tmp_path / "g", progress=False)
    assert report.entries == 3 and [s["path"] for s in report.skipped] == ["bad.stl"]
    store = GalleryStore(tmp_path / "g")
    emb = load_embedder(checkpoint=str(checkpoint_dir), num_points=256)
    assert store.fingerprint == emb.fingerprint
    for i, e in enumerate(store.iter_entries()):
        np.testing.assert_allclose(store.vectors[i], emb.embed_shape(store.load_mesh(e)).vector, atol=1e-5)
        assert store.thumbnail_path(e).is_file()
    with pytest.raises(FileExistsError, match="already holds shards"):
        embed_with_ray(root, shards, checkpoint=str(checkpoint_dir))
