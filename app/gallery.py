"""A small in-memory retrieval gallery: shapes, thumbnails, and global embeddings per provider.

Until the project's gallery package lands (``tango3d_core.gallery``), the explorer searches
this: by default a few procedural shapes per category, or every mesh under ``--gallery DIR``.
Thumbnails are rendered once and cached under the cache folder (never in git); each
provider's embeddings are cached there too, keyed by the provider's fingerprint. Search is
brute-force cosine similarity, as in the peers' demos, with the scores shown.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh

__all__ = ["Gallery", "GalleryItem", "Hit"]

THUMB_SIZE = 160
GALLERY_POINTS = 4096  # surface samples per gallery shape (the global embedding is all we need)


@dataclass(frozen=True)
class GalleryItem:
    """One gallery shape. ``key`` is stable across runs (content or generator spec)."""

    key: str
    name: str
    category: str
    caption: str
    load: Callable[[], trimesh.Trimesh]


@dataclass(frozen=True)
class Hit:
    item: GalleryItem
    score: float
    thumbnail: Path


class Gallery:
    """Shapes to retrieve from; embeddings are computed per provider, in the background.

    items      the shapes
    cache_dir  where thumbnails (``thumbs/``) and embeddings (``embeddings/``) are cached
    """

    def __init__(self, items: list[GalleryItem], *, cache_dir: str | Path) -> None:
        if not items:
            raise ValueError("a gallery needs at least one shape")
        keys = [it.key for it in items]
        if len(set(keys)) != len(keys):
            raise ValueError("gallery keys must be unique")
        self.items = list(items)
        self.cache_dir = Path(cache_dir)
        self._lock = threading.Lock()
        self._embeddings: dict[str, torch.Tensor] = {}     # fingerprint -> [M, G] on the CPU
        self._progress: dict[str, tuple[int, int]] = {}     # fingerprint -> (done, total)
        self._errors: dict[str, str] = {}
        self._threads: dict[str, threading.Thread] = {}

    # ------------------------------------------------------------- constructors
    @classmethod
    def procedural(cls, *, per_category: int = 2, categories: list[str] | None = None,
                   cache_dir: str | Path) -> Gallery:
        """``per_category`` generated shapes (seeds 100, 101, ...) of each category."""
        from tango3d_core.data import shapes

        cats = list(categories) if categories is not None else list(shapes.CATEGORIES)
        unknown = sorted(set(cats) - set(shapes.CATEGORIES))
        if unknown:
            raise ValueError(f"unknown categories {unknown}; choose from {shapes.CATEGORIES}")
        items = []
        for cat in cats:
            for i in range(per_category):
                seed = 100 + i
                items.append(GalleryItem(
                    key=f"procedural-{cat}-{seed}", name=f"{cat} #{seed}", category=cat,
                    caption=shapes.generate(cat, seed).caption,
                    load=lambda cat=cat, seed=seed: shapes.generate(cat, seed).mesh))
        return cls(items, cache_dir=cache_dir)

    @classmethod
    def from_directory(cls, root: str | Path, *, cache_dir: str | Path, up_axis: str = "z",
                       max_items: int = 2000) -> Gallery:
        """Every supported mesh file under ``root`` (recursively), keyed by its content."""
        from tango3d_core.data.meshio import SUPPORTED_EXTENSIONS, load_mesh

        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"gallery folder {root} does not exist")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS)
        if not files:
            raise ValueError(f"no mesh files ({', '.join(SUPPORTED_EXTENSIONS)}) under {root}")
        items = []
        for p in files[:max_items]:
            digest = hashlib.sha256(p.read_bytes()).hexdigest()[:20]
            rel = p.relative_to(root)
            items.append(GalleryItem(key=f"file-{digest}", name=str(rel), category=rel.parent.name or "",
                                     caption=p.stem.replace("_", " "),
                                     load=lambda p=p: load_mesh(p, up_axis=up_axis)))  # type: ignore[arg-type]
        return cls(items, cache_dir=cache_dir)

    # --------------------------------------------------------------- thumbnails
    def thumbnail(self, item: GalleryItem) -> Path:
        """PNG thumbnail of ``item`` (rendered on first use, then read from the cache)."""
        path = self.cache_dir / "thumbs" / f"{item.key}.png"
        if not path.is_file():
            from PIL import Image

            from tango3d_core.data import render

            mesh = item.load()
            lo, hi = mesh.bounds
            diag = float(np.linalg.norm(hi - lo)) or 1.0
            cam = render.Camera.orbit(azimuth_deg=35.0, elevation_deg=20.0, distance=1.75 * diag,
                                      target=(lo + hi) / 2, width=THUMB_SIZE, height=THUMB_SIZE)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{threading.get_ident()}.png")
            Image.fromarray(render.render_view(mesh, cam).rgb).save(tmp)
            tmp.replace(path)
        return path

    # ----------------------------------------------------------------- indexing
    def _cache_file(self, provider: Any) -> Path:
        keys = hashlib.sha1("\n".join(it.key for it in self.items).encode()).hexdigest()[:12]
        return self.cache_dir / "embeddings" / f"{provider.fingerprint}-{keys}.npy"

    def build(self, provider: Any, *, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """Encode every shape (and render its thumbnail) with ``provider``; [M, G] on the CPU."""
        fp = provider.fingerprint
        with self._lock:
            if fp in self._embeddings:
                return self._embeddings[fp]
        cache = self._cache_file(provider)
        emb: torch.Tensor | None = None
        if cache.is_file():
            try:
                arr = np.load(cache, allow_pickle=False)
                if arr.ndim == 2 and arr.shape[0] == len(self.items):
                    emb = torch.from_numpy(arr.astype(np.float32))
            except (OSError, ValueError):
                emb = None
        if emb is None:
            rows = []
            for i, item in enumerate(self.items):
                self._progress[fp] = (i, len(self.items))
                if progress is not None:
                    progress(i, len(self.items))
                feats = provider.encode_shape(item.load(), num_points=GALLERY_POINTS, seed=0)
                rows.append(feats.global_embedding.float().cpu())
                self.thumbnail(item)
            emb = torch.nn.functional.normalize(torch.stack(rows), dim=-1)
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".tmp{threading.get_ident()}.npy")
            np.save(tmp, emb.numpy())
            tmp.replace(cache)
            (cache.with_suffix(".json")).write_text(json.dumps([it.key for it in self.items]))
        else:
            for item in self.items:
                self.thumbnail(item)
        with self._lock:
            self._embeddings[fp] = emb
            self._progress[fp] = (len(self.items), len(self.items))
        return emb

    def build_in_background(self, provider: Any) -> None:
        """Start :meth:`build` on a daemon thread (once per provider)."""
        fp = provider.fingerprint
        with self._lock:
            if fp in self._embeddings or (fp in self._threads and self._threads[fp].is_alive()):
                return
            self._errors.pop(fp, None)

            def run() -> None:
                try:
                    self.build(provider)
                except Exception as e:  # reported through status(); the app keeps running
                    self._errors[fp] = f"{type(e).__name__}: {e}"

            t = threading.Thread(target=run, name=f"gallery-{fp[:20]}", daemon=True)
            self._threads[fp] = t
            self._progress.setdefault(fp, (0, len(self.items)))
        t.start()

    def status(self, provider: Any) -> str:
        """'ready', 'indexing i/M', 'failed: ...' or 'not indexed'."""
        fp = provider.fingerprint
        with self._lock:
            if fp in self._embeddings:
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
    def search(self, provider: Any, query: torch.Tensor, *, k: int = 8) -> list[Hit]:
        """Top-``k`` shapes by cosine similarity to ``query`` [G], best first."""
        with self._lock:
            emb = self._embeddings.get(provider.fingerprint)
        if emb is None:
            raise RuntimeError(f"the gallery is not indexed for {provider.name} yet ({self.status(provider)})")
        q = torch.nn.functional.normalize(query.detach().float().cpu().reshape(-1), dim=0)
        if q.shape[0] != emb.shape[1]:
            raise ValueError(f"query width {q.shape[0]} does not match the gallery's {emb.shape[1]}")
        scores = emb @ q
        top = scores.topk(min(int(k), len(self.items)))
        return [Hit(self.items[i], float(s), self.thumbnail(self.items[i]))
                for s, i in zip(top.values.tolist(), top.indices.tolist())]
