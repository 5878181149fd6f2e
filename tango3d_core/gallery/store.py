"""The on-disk gallery: one folder, readable without a server.

Layout (``GALLERY/``)::

    gallery.json                  manifest: format, model fingerprint + settings, root folder,
                                  row count, categories, index kind, the current generation
    data-000007/                  one generation, written in full before the manifest points at it
        vectors.npy               float32 [N, G] global embeddings, unit length (read as a memmap)
        entries.jsonl             N lines, one :class:`Entry` each (row i <-> vectors[i])
        entries.offsets.npy       int64 [N + 1] byte offsets of the lines (random access)
        faces.npy                 int64 [N] face counts (filters)
        category.npy              int32 [N] index into manifest["categories"], -1 for none
        index/                    the vector index (``index.py``: exact or approximate)
    thumbs/ab/<key>.webp          thumbnail per content hash (never named after a user's file)
    dense/ab/<key>.npz            optional per-point features (``build --dense``)
    work/                         chunks of an unfinished build (resume) - see ``build.py``
    report.json                   the last build's report: counts, skipped files and why

A commit writes a new generation folder, then replaces ``gallery.json`` atomically, then
deletes the old generation, so a reader (or a killed build) never sees half a gallery.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .embed import DenseFeatures, ModelMismatchError
from .index import EXACT_LIMIT, IndexKind, VectorIndex, build_index, load_index

__all__ = [
    "FORMAT",
    "MANIFEST",
    "VERSION",
    "Entry",
    "GalleryBusyError",
    "GalleryError",
    "GalleryStore",
    "GalleryWriter",
    "is_gallery",
    "load_dense",
    "save_dense",
]

FORMAT = "tango3d-gallery"
VERSION = 1
MANIFEST = "gallery.json"
PROCEDURAL_PREFIX = "procedural:"
_KEY_RE = re.compile(r"^[0-9a-f]{16,64}$")


class GalleryError(ValueError):
    """A gallery folder is missing, damaged, or of another format version."""


class GalleryBusyError(RuntimeError):
    """Another process is writing the gallery folder."""


@dataclass(frozen=True)
class Entry:
    """Metadata of one gallery row.

    key       hex sha256 of the file's bytes (of the generated mesh for procedural shapes); names
              the thumbnail and the dense cache
    path      file path relative to the gallery's root (POSIX), or ``procedural:<category>:<seed>``
    name      display name
    faces, vertices  of the mesh as loaded (after any decimation)
    category, caption  when known ("" otherwise)
    size, mtime_ns     of the file when it was hashed (skip re-hashing unchanged files)
    spec      {"category", "seed"} for procedural shapes (regenerated on load, no mesh file)
    dense     whether ``dense/`` holds this entry's per-point features
    """

    key: str
    path: str
    name: str
    faces: int
    vertices: int
    category: str = ""
    caption: str = ""
    size: int = 0
    mtime_ns: int = 0
    spec: dict[str, Any] | None = None
    dense: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY_RE.match(self.key):
            raise ValueError(f"entry key must be 16-64 lowercase hex digits, got {self.key!r}")

    def to_json(self) -> str:
        d = {k: v for k, v in asdict(self).items() if v not in (None, False, "", 0) or k in ("faces", "vertices")}
        return json.dumps(d, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Entry:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def procedural(self) -> bool:
        return self.spec is not None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def is_gallery(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding a gallery manifest."""
    return (Path(path) / MANIFEST).is_file()


def _shard(folder: Path, key: str, suffix: str) -> Path:
    return folder / key[:2] / f"{key}{suffix}"


def save_dense(path: Path, d: DenseFeatures) -> None:
    """Per-point features as a compressed npz (features in float16: half the bytes, ~1e-3 error)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez_compressed(tmp, points=d.points.astype(np.float32), normals=d.normals.astype(np.float16),
                        dense=d.dense.astype(np.float16), center=np.asarray(d.center, np.float32),
                        scale=np.float64(d.scale))
    tmp.replace(path)


def load_dense(path: str | os.PathLike[str]) -> DenseFeatures:
    """Read features written by :func:`save_dense` (float32, dense rows re-normalised)."""
    with np.load(path, allow_pickle=False) as z:
        dense = z["dense"].astype(np.float32)
        dense /= np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
        return DenseFeatures(points=z["points"].astype(np.float32), normals=z["normals"].astype(np.float32),
                             dense=dense, center=z["center"].astype(np.float32), scale=float(z["scale"]))


class GalleryStore:
    """A gallery folder opened for reading (cheap: vectors are memory-mapped, entries read on demand).

    path    the gallery folder
    shards  threads the exact index scans with (default ``index.DEFAULT_SHARDS``)
    """

    def __init__(self, path: str | os.PathLike[str], *, shards: int | None = None) -> None:
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not mpath.is_file():
            hint = " (build one with: python -m tango3d_core.gallery build DIR --out GALLERY)"
            raise GalleryError(f"{self.path} is not a gallery: {MANIFEST} is missing{hint}")
        try:
            self.manifest: dict[str, Any] = json.loads(mpath.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise GalleryError(f"{mpath} cannot be read: {e}") from None
        if self.manifest.get("format") != FORMAT:
            raise GalleryError(f"{mpath} is not a {FORMAT} manifest")
        if int(self.manifest.get("version", -1)) != VERSION:
            raise GalleryError(f"{mpath} has format version {self.manifest.get('version')}; this code reads "
                               f"version {VERSION}: rebuild the gallery")
        self.data = self.path / str(self.manifest["generation"])
        try:
            self.vectors: np.ndarray = np.load(self.data / "vectors.npy", mmap_mode="r")
            self.offsets = np.load(self.data / "entries.offsets.npy")
            self.faces = np.load(self.data / "faces.npy")
            self.category_codes = np.load(self.data / "category.npy")
        except (OSError, ValueError) as e:
            raise GalleryError(f"{self.data} is damaged ({e}); rebuild the gallery") from None
        n = int(self.manifest["count"])
        if self.vectors.shape != (n, int(self.manifest["model"]["dim"])) or self.offsets.shape != (n + 1,):
            raise GalleryError(f"{self.data}: arrays do not match the manifest's {n} rows; rebuild the gallery")
        self.shards = shards
        self._index: VectorIndex | None = None
        self._lock = threading.Lock()
        self._entries_file = None

    # -------------------------------------------------------------- manifest
    def __len__(self) -> int:
        return int(self.manifest["count"])

    def __repr__(self) -> str:
        return f"GalleryStore({str(self.path)!r}, {len(self)} entries, model {self.fingerprint!r})"

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["model"]["fingerprint"])

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.manifest["model"].get("settings", {}))

    @property
    def source(self) -> dict[str, Any] | None:
        """How the gallery's model was loaded ({"provider", "checkpoint"}), when known."""
        src = self.manifest["model"].get("source")
        return dict(src) if isinstance(src, dict) else None

    @property
    def dim(self) -> int:
        return int(self.manifest["model"]["dim"])

    @property
    def root(self) -> Path | None:
        r = self.manifest.get("root")
        return Path(r) if r else None

    @property
    def categories(self) -> list[str]:
        return list(self.manifest.get("categories", []))

    @property
    def up_axis(self) -> str:
        return str(self.manifest.get("up_axis", "z"))

    def check_model(self, fingerprint: str, *, what: str = "the query") -> None:
        """Raise :class:`ModelMismatchError` unless ``fingerprint`` is the gallery's model."""
        if fingerprint != self.fingerprint:
            raise ModelMismatchError(
                f"gallery {self.path} was embedded with model {self.fingerprint!r}, but {what} uses "
                f"{fingerprint!r}; scores across models are meaningless. Query with the gallery's model "
                f"(--checkpoint) or rebuild the gallery with this one.")

    # -------------------------------------------------------------- entries
    def entry(self, row: int) -> Entry:
        """Entry of one row (reads one line of ``entries.jsonl``)."""
        return self.entries([row])[0]

    def entries(self, rows: Sequence[int]) -> list[Entry]:
        n = len(self)
        out = []
        with self._lock:
            if self._entries_file is None:
                self._entries_file = open(self.data / "entries.jsonl", "rb")  # noqa: SIM115 - kept open
            f = self._entries_file
            for r in rows:
                r = int(r)
                if not 0 <= r < n:
                    raise IndexError(f"row {r} out of range (gallery has {n} entries)")
                f.seek(int(self.offsets[r]))
                out.append(Entry.from_dict(json.loads(f.read(int(self.offsets[r + 1] - self.offsets[r])))))
        return out

    def iter_entries(self) -> Iterator[Entry]:
        with open(self.data / "entries.jsonl", encoding="utf-8") as f:
            for line in f:
                yield Entry.from_dict(json.loads(line))

    def close(self) -> None:
        with self._lock:
            if self._entries_file is not None:
                self._entries_file.close()
                self._entries_file = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    # -------------------------------------------------------------- files of an entry
    def file_path(self, entry: Entry) -> Path | None:
        """Absolute path of an entry's mesh file (None for procedural shapes)."""
        if entry.procedural:
            return None
        p = Path(entry.path)
        return p if p.is_absolute() or self.root is None else self.root / p

    def display_path(self, entry: Entry) -> str:
        fp = self.file_path(entry)
        return entry.path if fp is None else str(fp)

    def thumbnail_path(self, entry: Entry | str) -> Path:
        key = entry if isinstance(entry, str) else entry.key
        return _shard(self.path / "thumbs", key, ".webp")

    def dense_path(self, entry: Entry | str) -> Path:
        key = entry if isinstance(entry, str) else entry.key
        return _shard(self.path / "dense", key, ".npz")

    def load_mesh(self, entry: Entry) -> Any:
        """The entry's mesh: regenerated from its spec, or loaded from its file (Z-up)."""
        if entry.procedural:
            from ..data import shapes

            assert entry.spec is not None
            return shapes.generate(str(entry.spec["category"]), int(entry.spec["seed"])).mesh
        from ..data.meshio import load_mesh

        fp = self.file_path(entry)
        assert fp is not None
        return load_mesh(fp, up_axis=self.up_axis)  # type: ignore[arg-type]

    def dense(self, entry: Entry) -> DenseFeatures | None:
        """Cached per-point features of ``entry``, or None when the build did not store them."""
        p = self.dense_path(entry)
        return load_dense(p) if entry.dense and p.is_file() else None

    # -------------------------------------------------------------- search support
    def index(self) -> VectorIndex:
        """The vector index (loaded once, then shared)."""
        with self._lock:
            if self._index is None:
                self._index = load_index(self.data / "index", self.vectors, shards=self.shards)
            return self._index

    def category_mask(self, categories: str | Iterable[str]) -> np.ndarray:
        """bool [N]: rows in any of ``categories`` (unknown names match nothing)."""
        names = [categories] if isinstance(categories, str) else list(categories)
        codes = [i for i, c in enumerate(self.categories) if c in set(names)]
        return np.isin(self.category_codes, np.asarray(codes, dtype=np.int32))


# ================================================================= writing


@dataclass
class GalleryWriter:
    """Writes one new generation of a gallery: add rows in order, then :meth:`commit`.

    out     gallery folder (created if needed)
    model   {"fingerprint": str, "settings": dict, "dim": int, "source": how to load it (optional)}
    root    folder the entries' relative paths are relative to (None: procedural / absolute)
    """

    out: Path
    model: dict[str, Any]
    root: str | None = None
    up_axis: str = "z"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.dim = int(self.model["dim"])
        old = _read_manifest(self.out)
        gen = 1
        if old is not None:
            m = re.match(r"data-(\d+)$", str(old.get("generation", "")))
            gen = int(m.group(1)) + 1 if m else 1
        self.generation = f"data-{gen:06d}"
        self.dir = self.out / self.generation
        if self.dir.exists():  # left by a commit that died before its manifest was written
            shutil.rmtree(self.dir)
        self.dir.mkdir()
        self._vec_path = self.dir / "vectors.f32"
        self._vec = open(self._vec_path, "wb")  # noqa: SIM115 - closed in commit/abort
        self._ent = open(self.dir / "entries.jsonl", "wb")  # noqa: SIM115
        self._offsets = [0]
        self._faces: list[int] = []
        self._cats: list[str] = []
        self.count = 0

    def add(self, entries: Sequence[Entry], vectors: np.ndarray) -> None:
        """Append rows: ``entries`` and their vectors float32 [len(entries), G]."""
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape != (len(entries), self.dim):
            raise ValueError(f"vectors must be [{len(entries)}, {self.dim}], got {v.shape}")
        self._vec.write(v.tobytes())
        for e in entries:
            line = (e.to_json() + "\n").encode("utf-8")
            self._ent.write(line)
            self._offsets.append(self._offsets[-1] + len(line))
            self._faces.append(int(e.faces))
            self._cats.append(e.category or "")
        self.count += len(entries)

    def commit(self, *, index: IndexKind = "auto", exact_limit: int = EXACT_LIMIT,
               progress: bool = False) -> GalleryStore:
        """Write columns and the index, point the manifest at this generation, drop the old one."""
        self._vec.close()
        self._ent.close()
        n = self.count
        if n == 0:
            self.abort()
            raise GalleryError("nothing to write: the gallery would be empty")
        # The raw float32 rows become a .npy by prepending a header (no second copy of the data).
        vec_npy = self.dir / "vectors.npy"
        header = _npy_header(np.dtype(np.float32), (n, self.dim))
        with open(vec_npy, "wb") as out, open(self._vec_path, "rb") as src:
            out.write(header)
            shutil.copyfileobj(src, out, 1 << 24)
        self._vec_path.unlink()
        np.save(self.dir / "entries.offsets.npy", np.asarray(self._offsets, dtype=np.int64))
        np.save(self.dir / "faces.npy", np.asarray(self._faces, dtype=np.int64))
        categories = sorted({c for c in self._cats if c})
        code = {c: i for i, c in enumerate(categories)}
        np.save(self.dir / "category.npy", np.asarray([code.get(c, -1) for c in self._cats], dtype=np.int32))
        vectors = np.load(vec_npy, mmap_mode="r")
        built = build_index(vectors, kind=index, exact_limit=exact_limit, progress=progress)
        built.save(self.dir / "index")
        old = _read_manifest(self.out)
        manifest = {
            "format": FORMAT, "version": VERSION, "generation": self.generation,
            "model": {"fingerprint": self.model["fingerprint"], "settings": self.model.get("settings", {}),
                      "dim": self.dim, "source": self.model.get("source")},
            "root": self.root, "up_axis": self.up_axis, "count": n, "categories": categories,
            "index": {"kind": built.kind},
            "created": (old or {}).get("created", _now()), "updated": _now(),
            **self.extra,
        }
        _write_json_atomic(self.out / MANIFEST, manifest)
        for p in self.out.glob("data-*"):
            if p.is_dir() and p.name != self.generation:
                shutil.rmtree(p, ignore_errors=True)
        return GalleryStore(self.out)

    def abort(self) -> None:
        for f in (self._vec, self._ent):
            if not f.closed:
                f.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(dtype),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        return json.loads((out / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False))
    tmp.replace(path)
