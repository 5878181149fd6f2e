"""Embedding millions of meshes on a Ray cluster, then ingesting the shards into a gallery.

The heavy part of indexing is one model call per mesh; it parallelises perfectly. Ray Data
spreads the files over actors (each loads the model once), and writes Parquet shards::

    ray.data.from_items(files)                       # {"path", "rel"} per mesh file
       .map_batches(_EmbedBatch, concurrency=N)      # hash, load, embed, thumbnail
       .write_parquet(SHARDS)                        # key, rel, vector, faces, thumbnail, error, ...

Then ``ingest`` (one process, no Ray needed) adds the shards to a gallery and builds the index.
Command line::

    # on a cluster: RAY_ADDRESS=ray://head:10001, or nothing for a local one
    python -m tango3d_core.gallery embed-ray /data/meshes --shards /data/shards --concurrency 64
    python -m tango3d_core.gallery ingest /data/shards --out /data/gallery

``SHARDS`` must be a folder every worker can write (a shared file system, or an ``s3://``
URI that Ray's Parquet writer understands) and that ``ingest`` can read.

Shard columns (one row per file): ``key`` (sha256 of the file), ``rel`` (path relative to the
root), ``vector`` (float32 [G] as little-endian bytes), ``faces``, ``vertices``, ``size``,
``mtime_ns``, ``thumbnail`` (WebP bytes, may be empty), ``error`` ("" when embedded),
``fingerprint`` and ``settings`` (JSON) of the model.
"""

from __future__ import annotations

import functools
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .build import THUMBNAIL_SIZE, BuildReport, _locked, _reason, render_thumbnail
from .embed import Embedder, ModelMismatchError, load_embedder
from .files import find_mesh_files, sha256_file
from .index import EXACT_LIMIT, IndexKind
from .store import Entry, GalleryStore, GalleryWriter, is_gallery

__all__ = ["SHARDS_MANIFEST", "embed_with_ray", "ingest_shards"]

SHARDS_MANIFEST = "tango3d_shards.json"


class _EmbedBatch:
    """Ray Data actor: holds one embedder, turns a batch of file paths into shard rows."""

    def __init__(self, factory: Callable[[], Embedder], up_axis: str, thumbnails: bool, thumbnail_size: int,
                 torch_threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, torch_threads))
        self.embedder = factory()
        self.up_axis, self.thumbnails, self.size = up_axis, thumbnails, thumbnail_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from ..data.meshio import load_mesh

        cols: dict[str, list[Any]] = {k: [] for k in ("key", "rel", "vector", "faces", "vertices", "size",
                                                       "mtime_ns", "thumbnail", "error", "fingerprint", "settings")}
        for path, rel in zip(batch["path"], batch["rel"]):
            path, rel = str(path), str(rel)
            key, vec, faces, verts, size, mtime, thumb, err = "", b"", 0, 0, 0, 0, b"", ""
            try:
                st = os.stat(path)
                size, mtime = int(st.st_size), int(st.st_mtime_ns)
                key = sha256_file(path)
                mesh = load_mesh(path, up_axis=self.up_axis)  # type: ignore[arg-type]
                vec = np.asarray(self.embedder.embed_shape(mesh).vector, dtype="<f4").tobytes()
                faces, verts = int(len(mesh.faces)), int(len(mesh.vertices))
                if self.thumbnails:
                    buf = io.BytesIO()
                    render_thumbnail(mesh, size=self.size).save(buf, format="WEBP", quality=80, method=4)
                    thumb = buf.getvalue()
            except Exception as e:  # noqa: BLE001 - one bad file must not fail the job
                err, vec = _reason(e) or "unknown error", b""
            for k, v in (("key", key), ("rel", rel), ("vector", vec), ("faces", faces), ("vertices", verts),
                         ("size", size), ("mtime_ns", mtime), ("thumbnail", thumb), ("error", err),
                         ("fingerprint", self.embedder.fingerprint),
                         ("settings", json.dumps(self.embedder.settings, sort_keys=True))):
                cols[k].append(v)
        out: dict[str, np.ndarray] = {}
        for k, v in cols.items():
            if k in ("faces", "vertices", "size", "mtime_ns"):
                out[k] = np.asarray(v, dtype=np.int64)
            else:
                arr = np.empty(len(v), dtype=object)
                arr[:] = v
                out[k] = arr
        return out


def embed_with_ray(root: str | os.PathLike[str], shards: str | os.PathLike[str], *,
                   embedder_factory: Callable[[], Embedder] | None = None, checkpoint: str | None = None,
                   provider: str = "tango3d", device: str = "cpu", num_points: int = 4096, up_axis: str = "z",
                   thumbnails: bool = True, thumbnail_size: int = THUMBNAIL_SIZE, batch_size: int = 16,
                   concurrency: int = 1, cpus_per_worker: float = 1.0,
                   ray_init: dict[str, Any] | None = None) -> Path:
    """Embed every mesh under ``root`` on Ray; write Parquet shards to ``shards``.

    embedder_factory  picklable callable building the embedder inside each actor (default: the
                      registered ``provider`` from ``checkpoint``, see ``load_embedder``)
    concurrency       actors (each holds one model); cpus_per_worker = torch threads per actor
    ray_init          keywords for ``ray.init`` when Ray is not running yet (a cluster address,
                      ``num_cpus`` for a local one, ...)
    Returns the shards folder; it also gets ``tango3d_shards.json`` (root, up axis, counts).
    """
    try:
        import ray
    except ImportError as e:
        raise ImportError("embedding on Ray needs ray[data]: pip install 'tango3d[distributed]'") from e
    if up_axis not in ("z", "y"):
        raise ValueError(f"up_axis must be 'z' or 'y', got {up_axis!r}")
    root_p = Path(root).resolve()
    files = find_mesh_files(root_p)
    factory = embedder_factory or functools.partial(load_embedder, checkpoint=checkpoint, provider=provider,
                                                    device=device, num_points=num_points)
    shards_p = Path(shards)
    if shards_p.exists() and any(shards_p.glob("*.parquet")):
        raise FileExistsError(f"{shards_p} already holds shards; ingest them or choose an empty folder")
    if not ray.is_initialized():
        ray.init(**(ray_init or {}))
    t0 = time.perf_counter()
    items = [{"path": str(p), "rel": p.relative_to(root_p).as_posix()} for p in files]
    ds = ray.data.from_items(items)
    ds = ds.map_batches(_EmbedBatch, batch_size=batch_size, batch_format="numpy", concurrency=concurrency,
                        num_cpus=cpus_per_worker,
                        fn_constructor_kwargs={"factory": factory, "up_axis": up_axis, "thumbnails": thumbnails,
                                               "thumbnail_size": thumbnail_size,
                                               "torch_threads": int(cpus_per_worker)})
    ds.write_parquet(str(shards_p))
    shards_p.mkdir(parents=True, exist_ok=True)
    (shards_p / SHARDS_MANIFEST).write_text(json.dumps(
        {"root": str(root_p), "up_axis": up_axis, "files": len(files),
         "seconds": round(time.perf_counter() - t0, 3)}, indent=1))
    return shards_p


def _shard_files(shards: Path) -> tuple[dict[str, Any], list[Path]]:
    try:
        meta = json.loads((shards / SHARDS_MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        raise FileNotFoundError(f"{shards} has no readable {SHARDS_MANIFEST}: not written by embed_with_ray, "
                                f"or the job did not finish") from None
    return meta, sorted(shards.rglob("*.parquet"))


def ingest_shards(shards: str | os.PathLike[str], out: str | os.PathLike[str], *, index: IndexKind = "auto",
                  exact_limit: int = EXACT_LIMIT, progress: bool = True) -> BuildReport:
    """Add the rows of ``shards`` to the gallery ``out`` (created if needed).

    A shard row replaces the gallery's row of the same path; other rows stay. The model of the
    shards must be the gallery's. Files that failed in the workers are listed in the report.
    Shards are streamed file by file (memory stays bounded by one Parquet file).
    """
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError("reading shards needs pyarrow: pip install 'tango3d[distributed]'") from e
    t0 = time.perf_counter()
    shards_p, out_p = Path(shards), Path(out)
    meta, parquet = _shard_files(shards_p)
    report = BuildReport(out=str(out_p))
    # Pass 1: the small columns only: which paths arrive, which failed, which model.
    new_paths: set[str] = set()
    models: set[tuple[str, str]] = set()
    for p in parquet:
        t = pq.read_table(p, columns=["rel", "error", "fingerprint", "settings"]).to_pydict()
        for rel, err, fp, st in zip(t["rel"], t["error"], t["fingerprint"], t["settings"]):
            report.files += 1
            if err:
                report.skipped.append({"path": rel, "reason": err})
            else:
                new_paths.add(rel)
                models.add((fp, st))
    if len(models) > 1:
        raise ModelMismatchError(f"{shards_p} mixes embeddings of several models: {sorted(models)}")
    if not new_paths:
        raise ValueError(f"{shards_p} holds no embedded mesh ({report.files} rows, all failed or none)")
    fingerprint, settings_json = next(iter(models))
    settings = json.loads(settings_json)
    with _locked(out_p):
        old = GalleryStore(out_p) if is_gallery(out_p) else None
        if old is not None:
            if (old.fingerprint, old.settings) != (fingerprint, settings):
                raise ModelMismatchError(f"{out_p} holds model {old.fingerprint!r} {old.settings}; the shards "
                                         f"hold {fingerprint!r} {settings}")
            if old.root is not None and str(old.root) != meta["root"]:
                raise ValueError(f"{out_p} indexes {old.root}, the shards {meta['root']}: one root per gallery")
        writer: GalleryWriter | None = None

        def add(entries: list[Entry], vectors: list[np.ndarray]) -> None:
            nonlocal writer
            if not entries:
                return
            if writer is None:
                writer = GalleryWriter(out_p, model={"fingerprint": fingerprint, "settings": settings,
                                                     "dim": int(vectors[0].shape[0])},
                                       root=meta["root"], up_axis=meta.get("up_axis", "z"))
            writer.add(entries, np.stack(vectors))

        try:
            if old is not None:  # pass 2a: the gallery's rows that no shard replaces
                es: list[Entry] = []
                vs: list[np.ndarray] = []
                for row, e in enumerate(old.iter_entries()):
                    if e.path in new_paths:
                        report.removed += 1
                        continue
                    es.append(e)
                    vs.append(np.asarray(old.vectors[row], dtype=np.float32))
                    report.reused += 1
                    if len(es) >= 4096:
                        add(es, vs)
                        es, vs = [], []
                add(es, vs)
                old.close()
            seen: set[str] = set()
            for p in parquet:  # pass 2b: the shards, one file at a time
                es, vs = [], []
                for r in pq.read_table(p).to_pylist():
                    if r["error"] or r["rel"] in seen:
                        continue
                    seen.add(r["rel"])
                    parts = Path(r["rel"]).parts
                    e = Entry(key=r["key"], path=r["rel"], name=r["rel"], faces=int(r["faces"]),
                              vertices=int(r["vertices"]), category=parts[0] if len(parts) > 1 else "",
                              size=int(r["size"]), mtime_ns=int(r["mtime_ns"]))
                    if r["thumbnail"]:
                        thumb = out_p / "thumbs" / e.key[:2] / f"{e.key}.webp"
                        thumb.parent.mkdir(parents=True, exist_ok=True)
                        thumb.write_bytes(r["thumbnail"])
                    es.append(e)
                    vs.append(np.frombuffer(r["vector"], dtype="<f4").astype(np.float32))
                    report.embedded += 1
                try:
                    add(es, vs)
                except ValueError as err:
                    raise ValueError(f"{p}: vectors of another width than the gallery's ({err})") from None
            assert writer is not None
            store = writer.commit(index=index, exact_limit=exact_limit, progress=progress)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        report.entries = len(store)
        report.seconds = round(time.perf_counter() - t0, 3)
        (out_p / "report.json").write_text(report.to_json())
        return report
