"""The explorer's retrieval gallery: a thin adapter over :mod:`tango3d_core.gallery`.

Where the shapes come from (one of):

* :meth:`Gallery.bundled` / :meth:`Gallery.open`: a gallery folder built by
  ``python -m tango3d_core.gallery build`` or ``procedural`` (the bundled ``assets/gallery``:
  204 procedural shapes, embeddings and thumbnails included, so it is ready at once);
* :meth:`Gallery.from_directory`: a folder of meshes, indexed incrementally into the cache on
  first use (a folder holding a built gallery is opened instead);
* :meth:`Gallery.procedural` or ``Gallery(items)``: shapes with loaders, indexed into the cache.

Vectors, index and search are the package's (exact, certified top-k; filters); this module
keeps what the explorer needs on top: one index per provider, built in the background when
the provider is not the gallery's own model (vectors of two models are never compared), a
status line, and :class:`Hit` objects carrying the item, its score and a thumbnail file.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
import trimesh

from tango3d_core.gallery.build import Item, build_gallery, build_items, render_thumbnail
from tango3d_core.gallery.embed import DenseFeatures, ProviderEmbedder
from tango3d_core.gallery.files import find_mesh_files
from tango3d_core.gallery.procedural import BUNDLED_GALLERY, procedural_items, procedural_specs
from tango3d_core.gallery.search import Filters, search
from tango3d_core.gallery.store import Entry, GalleryStore, is_gallery

__all__ = ["BUNDLED_GALLERY", "Gallery", "GalleryItem", "Hit"]

THUMB_SIZE = 128
GALLERY_POINTS = 4096  # surface samples per gallery shape (the global embedding is all we need)


@dataclass(frozen=True)
class GalleryItem:
    """One gallery shape. ``key`` is unique in its gallery and stable across runs."""

    key: str
    name: str
    category: str
    caption: str
    load: Callable[[], trimesh.Trimesh]
    thumbnail_path: Path | None = None  # a ready thumbnail (galleries built with thumbnails)


@dataclass(frozen=True)
class Hit:
    item: GalleryItem
    score: float
    thumbnail: Path


def _hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80]


class _StoreItems(Sequence[GalleryItem]):
    """The entries of a built gallery as items, created on access (a gallery may hold millions)."""

    def __init__(self, store: GalleryStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    @overload
    def __getitem__(self, i: int) -> GalleryItem: ...

    @overload
    def __getitem__(self, i: slice) -> list[GalleryItem]: ...

    def __getitem__(self, i: int | slice) -> GalleryItem | list[GalleryItem]:
        if isinstance(i, slice):
            rows = list(range(len(self)))[i]
            return [self._item(r, e) for r, e in zip(rows, self.store.entries(rows))]
        n = len(self)
        r = int(i) + n if int(i) < 0 else int(i)
        return self._item(r, self.store.entry(r))

    def __iter__(self) -> Iterator[GalleryItem]:
        for r, e in enumerate(self.store.iter_entries()):
            yield self._item(r, e)

    def _item(self, row: int, e: Entry) -> GalleryItem:
        store = self.store
        thumb = store.thumbnail_path(e)
        return GalleryItem(key=self.key(e), name=e.name, category=e.category, caption=e.caption,
                           load=lambda e=e: store.load_mesh(e), thumbnail_path=thumb)

    @staticmethod
    def key(e: Entry) -> str:
        # One row per path (the same content may sit at two paths): path + content, hashed.
        return f"{_hex(e.path)[:16]}-{e.key[:16]}"


class Gallery:
    """Shapes to retrieve from; one index per provider (built in the background when needed).

    items      the shapes (a sequence; store-backed galleries create items on access)
    cache_dir  where indexes for other providers, and thumbnails not in a built gallery, live
    """

    def __init__(self, items: Sequence[GalleryItem], *, cache_dir: str | Path,
                 _store: GalleryStore | None = None, _root: Path | None = None, _up_axis: str = "z",
                 _source: list[Item] | None = None) -> None:
        if not len(items):
            raise ValueError("a gallery needs at least one shape")
        if _store is None:
            keys = [it.key for it in items]
            if len(set(keys)) != len(keys):
                raise ValueError("gallery keys must be unique")
        self.items = items
        self.cache_dir = Path(cache_dir)
        self._base = _store          # a built gallery (items are its entries)
        self._root = _root           # a folder of meshes (items are its files)
        self._up_axis = _up_axis
        self._source = _source       # the package's items, in item order (procedural specs)
        self._by_key: dict[str, int] | None = None
        self._lock = threading.Lock()
        self._stores: dict[str, GalleryStore] = {}           # fingerprint -> store with that model's vectors
        self._rows: dict[str, np.ndarray] = {}               # fingerprint -> item index of each store row
        self._progress: dict[str, tuple[int, int]] = {}      # fingerprint -> (done, total)
        self._errors: dict[str, str] = {}
        self._threads: dict[str, threading.Thread] = {}

    # ------------------------------------------------------------- constructors
    @classmethod
    def open(cls, path: str | Path, *, cache_dir: str | Path) -> Gallery:
        """A gallery folder built by ``python -m tango3d_core.gallery build`` (or ``procedural``)."""
        store = GalleryStore(path)
        return cls(_StoreItems(store), cache_dir=cache_dir, _store=store)

    @classmethod
    def bundled(cls, *, cache_dir: str | Path, path: str | Path = BUNDLED_GALLERY) -> Gallery:
        """The gallery shipped in ``assets/gallery`` (procedural shapes of every category)."""
        if not is_gallery(path):
            raise ValueError(f"the bundled gallery is missing at {path}; rebuild it with "
                             f"python -m tango3d_core.gallery procedural --out {path} --per-category 12")
        return cls.open(path, cache_dir=cache_dir)

    @classmethod
    def procedural(cls, *, per_category: int = 2, categories: list[str] | None = None,
                   cache_dir: str | Path) -> Gallery:
        """``per_category`` generated shapes of each category (the bundled gallery's seed range)."""
        source = procedural_items(procedural_specs(per_category, categories=categories))
        items = [GalleryItem(key=f"procedural-{it.category}-{it.spec['seed']}", name=it.name,  # type: ignore[index]
                             category=it.category, caption=it.caption, load=it.load)
                 for it in source]
        return cls(items, cache_dir=cache_dir, _source=source)

    @classmethod
    def from_directory(cls, root: str | Path, *, cache_dir: str | Path, up_axis: str = "z",
                       max_items: int = 2000) -> Gallery:
        """Every supported mesh file under ``root`` (recursively), indexed into the cache on first
        use (incrementally: a restart embeds only new or changed files). A folder holding a
        built gallery (``gallery.json``) is opened as is."""
        from tango3d_core.data.meshio import load_mesh

        root = Path(root)
        if is_gallery(root):
            return cls.open(root, cache_dir=cache_dir)
        if not root.is_dir():
            raise ValueError(f"gallery folder {root} does not exist")
        try:
            files = find_mesh_files(root)
        except FileNotFoundError as e:
            raise ValueError(str(e)) from None
        if len(files) > max_items:
            raise ValueError(f"{root} holds {len(files)} meshes (more than {max_items} to index at start-up); "
                             f"index it once with: python -m tango3d_core.gallery build {root} --out GALLERY, "
                             f"then pass --gallery GALLERY")
        items = []
        for p in files:
            rel = p.relative_to(root)
            items.append(GalleryItem(key=f"file-{_hex(rel.as_posix())[:20]}", name=rel.as_posix(),
                                     category=rel.parts[0] if len(rel.parts) > 1 else "", caption="",
                                     load=lambda p=p: load_mesh(p, up_axis=up_axis)))  # type: ignore[arg-type]
        return cls(items, cache_dir=cache_dir, _root=root.resolve(), _up_axis=up_axis)

    # ------------------------------------------------------------------ lookup
    def item(self, key: str) -> GalleryItem | None:
        """The item with ``key`` (a dict lookup after the first call)."""
        with self._lock:
            if self._by_key is None:
                self._by_key = {it.key: i for i, it in enumerate(self.items)}
            i = self._by_key.get(key)
        return None if i is None else self.items[i]

    # --------------------------------------------------------------- thumbnails
    def thumbnail(self, item: GalleryItem) -> Path:
        """Thumbnail image of ``item`` (the gallery's own, else rendered once into the cache)."""
        if item.thumbnail_path is not None and item.thumbnail_path.is_file():
            return item.thumbnail_path
        path = self.cache_dir / "thumbs" / f"{_safe(item.key)}.png"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{threading.get_ident()}.png")
            render_thumbnail(item.load(), size=THUMB_SIZE).save(tmp)
            tmp.replace(path)
        return path

    # ----------------------------------------------------------------- indexing
    def _embedder(self, provider: Any) -> ProviderEmbedder:
        return ProviderEmbedder(provider, num_points=GALLERY_POINTS, seed=0)

    def _store_dir(self, kind: str, fp: str, ident: str) -> Path:
        return self.cache_dir / "stores" / f"{kind}-{_safe(fp)}-{_hex(ident)[:12]}"

    def _index(self, provider: Any, progress: Callable[[int, int], None]) -> tuple[GalleryStore, np.ndarray]:
        """(store holding ``provider``'s vectors, item index of each of its rows)."""
        fp = provider.fingerprint
        embedder = self._embedder(provider)
        if self._base is not None:
            base = self._base
            if base.fingerprint == fp:
                return base, np.arange(len(base))
            # Another model: re-embed the gallery's shapes into the cache (thumbnails stay the base's).
            items = [Item(key=_hex(f"{e.path}\n{e.key}"), path=e.path, name=e.name, category=e.category,
                          caption=e.caption, spec=e.spec, load=lambda e=e: base.load_mesh(e))
                     for e in base.iter_entries()]
            out = self._store_dir("gallery", fp, str(base.path.resolve()))
            build_items(out, embedder, items, thumbnails=False, progress=False, on_progress=progress)
            return self._aligned(GalleryStore(out), [it.path for it in items])
        if self._root is not None:
            out = self._store_dir("folder", fp, str(self._root))
            progress(0, len(self.items))
            build_gallery(self._root, out, embedder, up_axis=self._up_axis,  # type: ignore[arg-type]
                          thumbnails=False, progress=False)
            return self._aligned(GalleryStore(out), [it.name for it in self.items])
        if self._source is not None:
            items = self._source
        else:
            items = [Item(key=_hex(it.key), path=it.key, name=it.name, category=it.category, caption=it.caption,
                          load=it.load) for it in self.items]
        out = self._store_dir("items", fp, "\n".join(it.key for it in items))
        build_items(out, embedder, items, thumbnails=False, progress=False, on_progress=progress)
        return self._aligned(GalleryStore(out), [it.path for it in items])

    @staticmethod
    def _aligned(store: GalleryStore, item_paths: list[str]) -> tuple[GalleryStore, np.ndarray]:
        where = {p: i for i, p in enumerate(item_paths)}
        return store, np.asarray([where[e.path] for e in store.iter_entries()], dtype=np.int64)

    def _ready(self, provider: Any) -> tuple[GalleryStore, np.ndarray] | None:
        with self._lock:
            fp = provider.fingerprint
            return (self._stores[fp], self._rows[fp]) if fp in self._stores else None

    def build(self, provider: Any, *, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Index the gallery for ``provider`` (and render missing thumbnails); returns the
        embeddings [M, G] (float32, CPU) of the items, in item order (items that could not be
        embedded are left out)."""
        store, rows = self._ensure(provider, progress)
        order = np.argsort(rows, kind="stable")
        return torch.from_numpy(np.asarray(store.vectors, dtype=np.float32)[order].copy())

    def build_in_background(self, provider: Any) -> None:
        """Start indexing on a daemon thread (once per provider); instant for the gallery's own model."""
        fp = provider.fingerprint
        with self._lock:
            if fp in self._stores or (fp in self._threads and self._threads[fp].is_alive()):
                return
            self._errors.pop(fp, None)

            def run() -> None:
                try:
                    self._ensure(provider, None)
                except Exception as e:  # reported through status(); the app keeps running
                    self._errors[fp] = f"{type(e).__name__}: {e}"

            t = threading.Thread(target=run, name=f"gallery-{fp[:20]}", daemon=True)
            self._threads[fp] = t
            self._progress.setdefault(fp, (0, len(self.items)))
        t.start()

    def _ensure(self, provider: Any, progress: Callable[[int, int], None] | None
                ) -> tuple[GalleryStore, np.ndarray]:
        ready = self._ready(provider)
        if ready is not None:
            return ready
        fp = provider.fingerprint

        def report(done: int, total: int) -> None:
            self._progress[fp] = (done, total)
            if progress is not None:
                progress(done, total)

        store, rows = self._index(provider, report)
        store.index()  # load the vector index now, not on the first query
        if self._base is None:  # a built gallery brings its thumbnails; others get them rendered once
            for i in np.sort(rows):
                self.thumbnail(self.items[int(i)])
        with self._lock:
            self._stores[fp], self._rows[fp] = store, rows
            self._progress[fp] = (len(self.items), len(self.items))
        return store, rows

    def status(self, provider: Any) -> str:
        """'ready', 'indexing i/M', 'failed: ...' or 'not indexed'."""
        fp = provider.fingerprint
        with self._lock:
            if fp in self._stores:
                return "ready"
            if fp in self._errors:
                return f"failed: {self._errors[fp]}"
            if fp in self._progress:
                done, total = self._progress[fp]
                return f"indexing {done}/{total}"
        return "not indexed"

    def wait(self, provider: Any, timeout: float | None = None) -> bool:
        t = self._threads.get(provider.fingerprint)
        if t is not None:
            t.join(timeout)
        return self.status(provider) == "ready"

    # ------------------------------------------------------------------- search
    def search(self, provider: Any, query: torch.Tensor, *, k: int = 8, category: str | None = None,
               min_faces: int | None = None, max_faces: int | None = None,
               min_score: float | None = None) -> list[Hit]:
        """Top-``k`` shapes by cosine similarity to ``query`` [G], best first (exact search),
        optionally filtered by category, face count and a minimum score."""
        ready = self._ready(provider)
        if ready is None:
            raise RuntimeError(f"the gallery is not indexed for {provider.name} yet ({self.status(provider)})")
        store, rows = ready
        q = query.detach().float().cpu().reshape(-1).numpy()
        hits = search(store, q, k=int(k), filters=Filters(category=category, min_faces=min_faces,
                                                          max_faces=max_faces, min_score=min_score))
        out = []
        for h in hits:
            item = self.items[int(rows[h.row])]
            out.append(Hit(item, h.score, self.thumbnail(item)))
        return out

    def dense_features(self, item: GalleryItem, provider: Any) -> DenseFeatures | None:
        """Per-point features cached by ``build --dense`` for ``item``, when the gallery was built
        with ``provider``'s model and holds them; None otherwise (encode the mesh)."""
        base = self._base
        if base is None or base.fingerprint != provider.fingerprint or self.item(item.key) is None:
            return None
        assert self._by_key is not None
        return base.dense(base.entry(self._by_key[item.key]))
