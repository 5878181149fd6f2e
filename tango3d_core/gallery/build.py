"""Incremental, resumable indexing of every mesh under a folder.

:func:`build_gallery` walks ``root`` (recursively, every supported format), keys each file by
the sha256 of its bytes and embeds only keys the gallery does not hold yet: a rebuild after
editing three files embeds three meshes; a moved or duplicated file is not re-embedded; a
deleted file drops out. Files are re-hashed only when their size or mtime changed (like
``git status``); ``rehash=True`` hashes everything.

Resume: embeddings are written to ``GALLERY/work/`` every ``chunk_size`` meshes; a build that
is killed (Ctrl+C, OOM, power) continues from its last chunk when run again with the same
model. A file that cannot be read or embedded is skipped and listed, with the reason, in the
report (``GALLERY/report.json``); the build goes on. A file that failed before and has not
changed is not tried again unless ``retry_failed=True``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .embed import Embedder, ModelMismatchError, ShapeEmbedding
from .files import find_mesh_files, sha256_file
from .index import EXACT_LIMIT, IndexKind
from .store import Entry, GalleryBusyError, GalleryStore, GalleryWriter, is_gallery, save_dense

__all__ = ["THUMBNAIL_SIZE", "BuildReport", "Item", "build_gallery", "build_items", "render_thumbnail",
           "save_thumbnail"]

THUMBNAIL_SIZE = 128
UpAxis = Literal["z", "y"]


@dataclass
class BuildReport:
    """What a build did.

    files     mesh files found under the root
    embedded  meshes embedded by this run
    reused    rows whose embedding came from the previous gallery (same content hash)
    resumed   embeddings recovered from an interrupted run's chunks
    removed   rows of the previous gallery whose file is gone
    skipped   [{"path", "reason", "key"?}] files that could not be read or embedded
    entries   rows in the gallery now
    seconds   wall time
    """

    out: str
    files: int = 0
    embedded: int = 0
    reused: int = 0
    resumed: int = 0
    removed: int = 0
    entries: int = 0
    seconds: float = 0.0
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False)


# ------------------------------------------------------------------ thumbnails


def render_thumbnail(mesh: Any, *, size: int = THUMBNAIL_SIZE) -> Any:
    """A ``size`` x ``size`` PIL image of ``mesh`` from the front-right, slightly above."""
    from PIL import Image

    from ..data import render

    lo, hi = np.asarray(mesh.bounds[0], np.float64), np.asarray(mesh.bounds[1], np.float64)
    diag = float(np.linalg.norm(hi - lo)) or 1.0
    cam = render.Camera.orbit(azimuth_deg=35.0, elevation_deg=20.0, distance=1.75 * diag, target=(lo + hi) / 2,
                              width=size, height=size)
    return Image.fromarray(render.render_view(mesh, cam).rgb)


def save_thumbnail(image: Any, path: Path) -> None:
    """WebP (lossy, quality 80: ~3 kB at 128 px), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.webp")
    image.save(tmp, format="WEBP", quality=80, method=4)
    tmp.replace(path)


# ------------------------------------------------------------------ helpers


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One build at a time per gallery folder (an advisory lock, released if the process dies).

    The lock file lives in the temporary folder, keyed by the gallery's absolute path, so that
    a gallery folder holds nothing but the gallery (the bundled one is committed to git).
    """
    out.mkdir(parents=True, exist_ok=True)
    ident = hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"tango3d-gallery-{ident}.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise GalleryBusyError(f"another build is writing {out}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _reason(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    if isinstance(e, ValueError):  # MeshLoadError and friends: already in words a user understands
        return msg
    return f"{type(e).__name__}: {msg}"


def _read_metadata(path: str | os.PathLike[str] | None) -> dict[str, dict[str, str]]:
    """``{relative path: {"category", "caption"}}`` from a JSON-lines file (one object per line)."""
    if path is None:
        return {}
    out: dict[str, dict[str, str]] = {}
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                rel = Path(str(d["path"])).as_posix()
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{i}: expected a JSON object with a 'path' ({e})") from None
            out[rel] = {k: str(d[k]) for k in ("category", "caption") if k in d}
    return out


class _Work:
    """Chunks of embeddings of an unfinished build (``GALLERY/work``)."""

    def __init__(self, out: Path, embedder: Embedder) -> None:
        self.dir = out / "work"
        state = {"fingerprint": embedder.fingerprint, "settings": embedder.settings}
        try:
            old = json.loads((self.dir / "state.json").read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old != state:  # another model's leftovers are useless
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "state.json").write_text(json.dumps(state))
        self.found: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
        self.next = 0
        for p in sorted(self.dir.glob("chunk-*.npz")):
            try:
                with np.load(p, allow_pickle=False) as z:
                    vecs = z["vectors"].astype(np.float32)
                    meta = json.loads(z["meta"].tobytes().decode("utf-8"))
                for v, m in zip(vecs, meta, strict=True):
                    self.found[m["key"]] = (v, m)
                self.next = max(self.next, int(p.stem.split("-")[1]) + 1)
            except (OSError, ValueError, KeyError):  # a chunk torn by a kill: its meshes are embedded again
                p.unlink(missing_ok=True)

    def flush(self, rows: list[tuple[np.ndarray, dict[str, Any]]]) -> None:
        if not rows:
            return
        meta = np.frombuffer(json.dumps([m for _, m in rows]).encode("utf-8"), dtype=np.uint8)
        path = self.dir / f"chunk-{self.next:06d}.npz"
        tmp = self.dir / f"chunk-{self.next:06d}.tmp.npz"
        np.savez(tmp, vectors=np.stack([v for v, _ in rows]).astype(np.float32), meta=meta)
        tmp.replace(path)
        self.next += 1
        for v, m in rows:
            self.found[m["key"]] = (v, m)

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="mesh", disable=not enabled, dynamic_ncols=True)


# ------------------------------------------------------------------ the build


def build_gallery(root: str | os.PathLike[str], out: str | os.PathLike[str], embedder: Embedder, *,
                  up_axis: UpAxis = "z", dense: bool = False, thumbnails: bool = True,
                  thumbnail_size: int = THUMBNAIL_SIZE, chunk_size: int = 32,
                  metadata: str | os.PathLike[str] | None = None, rehash: bool = False, reembed: bool = False,
                  retry_failed: bool = False, index: IndexKind = "auto", exact_limit: int = EXACT_LIMIT,
                  progress: bool = True) -> BuildReport:
    """Index every mesh under ``root`` into the gallery folder ``out`` (created or updated).

    embedder      gives the vectors (see ``embed.py``); an existing gallery must have been built
                  with the same fingerprint and settings, or ``reembed=True`` starts afresh
    up_axis       how the files are oriented ("y" for glTF-style Y-up collections)
    dense         also cache per-point features (``dense/``) so a viewer opens entries fast
    chunk_size    meshes per resume chunk
    metadata      JSON-lines file of {"path": relative path, "category", "caption"} (optional;
                  otherwise the category is the file's top-level folder under ``root``)
    index         "auto" (exact up to ``exact_limit`` rows, approximate above), "exact", "approx"
    Returns the :class:`BuildReport`, also written to ``out/report.json``.
    """
    if up_axis not in ("z", "y"):
        raise ValueError(f"up_axis must be 'z' or 'y', got {up_axis!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    t0 = time.perf_counter()
    root_p = Path(root).resolve()
    out_p = Path(out)
    files = find_mesh_files(root_p)
    extra_meta = _read_metadata(metadata)
    report = BuildReport(out=str(out_p), files=len(files))
    with _locked(out_p):
        old = GalleryStore(out_p) if is_gallery(out_p) else None
        if old is not None and (old.fingerprint != embedder.fingerprint or old.settings != embedder.settings):
            if not reembed:
                raise ModelMismatchError(
                    f"{out_p} was built with model {old.fingerprint!r} {old.settings}; this build uses "
                    f"{embedder.fingerprint!r} {embedder.settings}. Pass reembed=True (--reembed) to embed "
                    f"everything again, or choose another output folder.")
            old = None
        old_rows: dict[str, int] = {}
        old_meta: dict[str, Entry] = {}
        stat_cache: dict[str, tuple[int, int, str]] = {}
        if old is not None:
            for row, e in enumerate(old.iter_entries()):
                old_rows.setdefault(e.key, row)
                old_meta.setdefault(e.key, e)
                if not e.procedural:
                    stat_cache[e.path] = (e.size, e.mtime_ns, e.key)
        failed_before: dict[str, dict[str, Any]] = {}
        if not retry_failed:
            with contextlib.suppress(OSError, json.JSONDecodeError, KeyError, TypeError):
                prev = json.loads((out_p / "report.json").read_text())
                failed_before = {s["path"]: s for s in prev["skipped"] if "key" in s}
        work = _Work(out_p, embedder)

        # 1. hash (only what changed)
        plan: list[tuple[str, Path, str, os.stat_result]] = []
        for p in files:
            rel = p.relative_to(root_p).as_posix()
            try:
                st = p.stat()
                cached = stat_cache.get(rel)
                if not rehash and cached is not None and cached[:2] == (st.st_size, st.st_mtime_ns):
                    key = cached[2]
                else:
                    key = sha256_file(p)
            except OSError as e:
                report.skipped.append({"path": rel, "reason": f"cannot read the file: {e.strerror or e}"})
                continue
            plan.append((rel, p, key, st))

        # 2. embed new content
        def have(key: str) -> bool:
            return (key in work.found) or (key in old_meta and (old_meta[key].dense or not dense))

        todo: dict[str, tuple[str, Path]] = {}
        failed: dict[str, str] = {}
        for rel, p, key, _ in plan:
            prev = failed_before.get(rel)
            if prev is not None and prev.get("key") == key and not have(key):
                failed[key] = str(prev["reason"])
            elif not have(key) and key not in todo:
                todo[key] = (rel, p)
        report.resumed = sum(1 for _, _, key, _ in plan if key in work.found and key not in old_meta)
        bar = _bar(len(todo), "embedding", progress)
        pending: list[tuple[np.ndarray, dict[str, Any]]] = []
        try:
            for key, (rel, p) in todo.items():
                bar.set_postfix_str(rel[-40:], refresh=False)
                try:
                    emb, meta = _embed_file(p, key, embedder, up_axis=up_axis, dense=dense, out=out_p,
                                            thumbnails=thumbnails, thumbnail_size=thumbnail_size)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as e:  # noqa: BLE001 - any failure of one file skips that file only
                    failed[key] = _reason(e)
                else:
                    pending.append((emb.vector, meta))
                    report.embedded += 1
                    if len(pending) >= chunk_size:
                        work.flush(pending)
                        pending = []
                bar.update(1)
        finally:
            work.flush(pending)
            bar.close()

        # 3. thumbnails missing for reused rows (a previous build without thumbnails)
        if thumbnails:
            for rel, p, key, _ in plan:
                if key not in failed and not (out_p / "thumbs" / key[:2] / f"{key}.webp").is_file():
                    with contextlib.suppress(Exception):
                        from ..data.meshio import load_mesh

                        save_thumbnail(render_thumbnail(load_mesh(p, up_axis=up_axis), size=thumbnail_size),
                                       out_p / "thumbs" / key[:2] / f"{key}.webp")

        # 4. commit a new generation in path order
        seen_paths = set()
        writer = GalleryWriter(out_p, model={"fingerprint": embedder.fingerprint, "settings": embedder.settings,
                                             "source": getattr(embedder, "source", None), "dim": _dim(work, old)},
                               root=str(root_p), up_axis=up_axis)
        batch_e: list[Entry] = []
        batch_v: list[np.ndarray] = []
        try:
            for rel, p, key, st in plan:
                if key in failed:
                    report.skipped.append({"path": rel, "reason": failed[key], "key": key})
                    continue
                if key in work.found:
                    vec, m = work.found[key]
                    faces, verts, has_dense = int(m["faces"]), int(m["vertices"]), bool(m.get("dense"))
                else:
                    e_old = old_meta[key]
                    assert old is not None
                    vec = np.asarray(old.vectors[old_rows[key]], dtype=np.float32)
                    faces, verts, has_dense = e_old.faces, e_old.vertices, e_old.dense
                    report.reused += 1
                parts = Path(rel).parts
                info = extra_meta.get(rel, {})
                batch_e.append(Entry(key=key, path=rel, name=rel, faces=faces, vertices=verts,
                                     category=info.get("category", parts[0] if len(parts) > 1 else ""),
                                     caption=info.get("caption", ""), size=st.st_size, mtime_ns=st.st_mtime_ns,
                                     dense=has_dense))
                batch_v.append(vec)
                seen_paths.add(rel)
                if len(batch_e) >= 4096:
                    writer.add(batch_e, np.stack(batch_v))
                    batch_e, batch_v = [], []
            if batch_e:
                writer.add(batch_e, np.stack(batch_v))
            if writer.count == 0:
                writer.abort()
                first = report.skipped[0] if report.skipped else {"path": "-", "reason": "-"}
                raise ValueError(f"none of the {len(files)} mesh files under {root_p} could be used "
                                 f"(first: {first['path']}: {first['reason']})")
            if old is not None:
                report.removed = sum(1 for e in old.iter_entries() if e.path not in seen_paths)
                old.close()
            store = writer.commit(index=index, exact_limit=exact_limit, progress=progress)
        except BaseException:
            writer.abort()
            raise
        work.clear()
        _collect_garbage(out_p, store)
        report.entries = len(store)
        report.seconds = round(time.perf_counter() - t0, 3)
        (out_p / "report.json").write_text(report.to_json())
        return report


def _dim(work: _Work, old: GalleryStore | None) -> int:
    for v, _ in work.found.values():
        return int(v.shape[0])
    if old is not None:
        return old.dim
    raise ValueError("no mesh could be embedded, so the embedding width is unknown")


def _embed_file(path: Path, key: str, embedder: Embedder, *, up_axis: str, dense: bool, out: Path,
                thumbnails: bool, thumbnail_size: int) -> tuple[ShapeEmbedding, dict[str, Any]]:
    from ..data.meshio import load_mesh

    mesh = load_mesh(path, up_axis=up_axis)  # type: ignore[arg-type]
    emb = embedder.embed_shape(mesh, dense=dense)
    if dense and emb.dense is not None:
        save_dense(out / "dense" / key[:2] / f"{key}.npz", emb.dense)
    thumb = out / "thumbs" / key[:2] / f"{key}.webp"
    if thumbnails and not thumb.is_file():
        save_thumbnail(render_thumbnail(mesh, size=thumbnail_size), thumb)
    return emb, {"key": key, "faces": int(len(mesh.faces)), "vertices": int(len(mesh.vertices)),
                 "dense": bool(dense and emb.dense is not None)}


def _collect_garbage(out: Path, store: GalleryStore) -> None:
    """Delete thumbnails and dense caches of keys no row uses any more."""
    live = {e.key for e in store.iter_entries()}
    for sub, suffix in (("thumbs", ".webp"), ("dense", ".npz")):
        folder = out / sub
        if not folder.is_dir():
            continue
        for p in folder.glob(f"*/*{suffix}"):
            if p.name[: -len(suffix)] not in live:
                p.unlink(missing_ok=True)


# ------------------------------------------------------------------ shapes that are not files


@dataclass(frozen=True)
class Item:
    """A shape to index that is not a file under a root: a procedural spec, another gallery's
    entry (re-embedding it with another model), anything with a loader.

    key   hex digest naming the shape (reuse across builds and the thumbnail file)
    path  what hits report as ``path`` (e.g. ``procedural:chair:300001``)
    load  () -> Z-up trimesh
    """

    key: str
    path: str
    name: str
    load: Callable[[], Any]
    category: str = ""
    caption: str = ""
    spec: dict[str, Any] | None = None


def build_items(out: str | os.PathLike[str], embedder: Embedder, items: Sequence[Item], *,
                thumbnails: bool = True, thumbnail_size: int = THUMBNAIL_SIZE, index: IndexKind = "auto",
                progress: bool = True, on_progress: Callable[[int, int], None] | None = None,
                extra: dict[str, Any] | None = None) -> BuildReport:
    """Embed ``items`` (in order) into the gallery ``out``; keys already there with the same
    model are not embedded again. An item whose loader or embedding fails is skipped and
    reported, like a bad file.

    on_progress  called as (done, total) before each item and once at the end
    """
    t0 = time.perf_counter()
    out_p = Path(out)
    keys = [it.key for it in items]
    if len(set(keys)) != len(keys):
        raise ValueError("item keys must be unique")
    report = BuildReport(out=str(out_p), files=len(items))
    with _locked(out_p):
        old: dict[str, tuple[Entry, np.ndarray]] = {}
        if is_gallery(out_p):
            store = GalleryStore(out_p)
            if store.fingerprint == embedder.fingerprint and store.settings == embedder.settings:
                for row, e in enumerate(store.iter_entries()):
                    old[e.key] = (e, np.asarray(store.vectors[row], dtype=np.float32))
            store.close()
        entries: list[Entry] = []
        vectors: list[np.ndarray] = []
        bar = _bar(len(items), "embedding", progress)
        for i, it in enumerate(items):
            if on_progress is not None:
                on_progress(i, len(items))
            thumb = out_p / "thumbs" / it.key[:2] / f"{it.key}.webp"
            if it.key in old and (thumb.is_file() or not thumbnails):
                e, v = old[it.key]
                e = Entry(**{**asdict(e), "path": it.path, "name": it.name, "category": it.category,
                             "caption": it.caption, "spec": it.spec})
                report.reused += 1
            else:
                try:
                    mesh = it.load()
                    v = embedder.embed_shape(mesh).vector
                    if thumbnails and not thumb.is_file():
                        save_thumbnail(render_thumbnail(mesh, size=thumbnail_size), thumb)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except Exception as err:  # noqa: BLE001 - one bad shape skips that shape only
                    report.skipped.append({"path": it.path, "reason": _reason(err)})
                    bar.update(1)
                    continue
                e = Entry(key=it.key, path=it.path, name=it.name, faces=len(mesh.faces), vertices=len(mesh.vertices),
                          category=it.category, caption=it.caption, spec=it.spec)
                report.embedded += 1
            entries.append(e)
            vectors.append(v)
            bar.update(1)
        bar.close()
        if not entries:
            first = report.skipped[0] if report.skipped else {"path": "-", "reason": "no shapes"}
            raise ValueError(f"none of the {len(items)} shapes could be embedded (first: {first['path']}: "
                             f"{first['reason']})")
        report.removed = len(set(old) - {e.key for e in entries})
        writer = GalleryWriter(out_p, model={"fingerprint": embedder.fingerprint, "settings": embedder.settings,
                                             "source": getattr(embedder, "source", None),
                                             "dim": int(vectors[0].shape[0])}, extra=dict(extra or {}))
        try:
            writer.add(entries, np.stack(vectors))
            store = writer.commit(index=index)
        except BaseException:
            writer.abort()
            raise
        _collect_garbage(out_p, store)
        report.entries = len(store)
        report.seconds = round(time.perf_counter() - t0, 3)
        (out_p / "report.json").write_text(report.to_json())
        if on_progress is not None:
            on_progress(len(items), len(items))
        return report
