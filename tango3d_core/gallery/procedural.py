"""The bundled gallery: procedural shapes of every category, stored by generator spec.

Each entry stores ``(category, seed)`` instead of a mesh file (``shapes.generate`` rebuilds the
identical mesh), its global embedding and a WebP thumbnail, so the whole gallery is about a
megabyte. Seeds come from a range of their own (:data:`GALLERY_SEED_OFFSET`), disjoint from the
train, val and test splits of ``tango3d_core.data.dataset`` (offsets 0, 100 000, 200 000, each
``SPLIT_SIZE`` = 100 000 seeds wide), so retrieval demos never show a training shape.

Rebuild it (about two minutes on two CPU cores with the tiny checkpoint)::

    python -m tango3d_core.gallery procedural --out assets/gallery --per-category 12
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .build import THUMBNAIL_SIZE, BuildReport, Item, build_items
from .embed import Embedder
from .index import IndexKind

__all__ = ["BUNDLED_GALLERY", "GALLERY_SEED_OFFSET", "build_procedural", "procedural_items", "procedural_key",
           "procedural_specs"]

GALLERY_SEED_OFFSET = 300_000
"""Instance ``i`` of a category is ``shapes.generate(category, GALLERY_SEED_OFFSET + i)``."""

BUNDLED_GALLERY = Path(__file__).resolve().parents[2] / "assets" / "gallery"
"""The gallery shipped in the repository (``assets/gallery``)."""


def procedural_specs(per_category: int, *, categories: list[str] | None = None,
                     seed_offset: int = GALLERY_SEED_OFFSET) -> list[tuple[str, int]]:
    """``[(category, seed)]``: ``per_category`` seeds from ``seed_offset`` for each category."""
    from ..data import dataset, shapes

    if isinstance(per_category, bool) or not isinstance(per_category, int) or per_category < 1:
        raise ValueError(f"per_category must be a positive integer, got {per_category!r}")
    cats = list(shapes.CATEGORIES) if categories is None else list(categories)
    unknown = sorted(set(cats) - set(shapes.CATEGORIES))
    if unknown:
        raise ValueError(f"unknown categories {unknown}; choose from {shapes.CATEGORIES}")
    for split, off in dataset.SPLIT_OFFSET.items():
        if seed_offset < off + dataset.SPLIT_SIZE and off < seed_offset + per_category:
            raise ValueError(f"seeds {seed_offset}..{seed_offset + per_category - 1} overlap the {split} split "
                             f"({off}..{off + dataset.SPLIT_SIZE - 1}); pick a seed_offset outside every split")
    return [(c, seed_offset + i) for c in cats for i in range(per_category)]


def procedural_key(category: str, seed: int) -> str:
    """Stable key of a generator spec (names the thumbnail)."""
    return hashlib.sha256(f"procedural:{category}:{int(seed)}".encode()).hexdigest()


def procedural_items(specs: list[tuple[str, int]]) -> list[Item]:
    """Build items (see ``build.build_items``) of generator specs; meshes are generated on load."""
    from ..data import shapes

    def loader(cat: str, seed: int) -> Any:
        return lambda: shapes.generate(cat, seed).mesh

    return [Item(key=procedural_key(c, s), path=f"procedural:{c}:{s}", name=f"{c} #{s}", load=loader(c, s),
                 category=c, caption=shapes.generate(c, s).caption, spec={"category": c, "seed": int(s)})
            for c, s in specs]


def build_procedural(out: str | os.PathLike[str], embedder: Embedder, *, per_category: int = 12,
                     categories: list[str] | None = None, seed_offset: int = GALLERY_SEED_OFFSET,
                     thumbnails: bool = True, thumbnail_size: int = THUMBNAIL_SIZE, index: IndexKind = "auto",
                     progress: bool = True, on_progress: Callable[[int, int], None] | None = None) -> BuildReport:
    """Generate, embed and thumbnail ``per_category`` shapes of each category into ``out``.

    Incremental: specs already in ``out`` with the same model are not embedded again.
    """
    specs = procedural_specs(per_category, categories=categories, seed_offset=seed_offset)
    return build_items(out, embedder, procedural_items(specs), thumbnails=thumbnails, thumbnail_size=thumbnail_size,
                       index=index, progress=progress, on_progress=on_progress,
                       extra={"procedural": {"per_category": per_category, "seed_offset": seed_offset,
                                             "categories": sorted({c for c, _ in specs})}})
