"""Queries against a gallery: a vector, a text or an image; metadata filters; JSON hits.

>>> store = GalleryStore("my_gallery")
>>> hits = search_text(store, "a chair with armrests", embedder, k=5,
...                    filters=Filters(category="chair", max_faces=50_000, min_score=0.3))
>>> hits[0].path, hits[0].score

Text and image queries check that the embedder is the gallery's model
(:class:`~tango3d_core.gallery.embed.ModelMismatchError` otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .embed import Embedder, unit_vector
from .store import Entry, GalleryStore

__all__ = ["Filters", "Hit", "search", "search_image", "search_text"]


@dataclass(frozen=True)
class Filters:
    """Metadata filters; None means "any".

    category   one category name or several (a row matches any of them)
    min_faces, max_faces  inclusive bounds on the face count
    min_score  drop hits with a cosine similarity below this
    """

    category: str | Sequence[str] | None = None
    min_faces: int | None = None
    max_faces: int | None = None
    min_score: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_faces", "max_faces"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0):
                raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
        if self.min_faces is not None and self.max_faces is not None and self.min_faces > self.max_faces:
            raise ValueError(f"min_faces ({self.min_faces}) is above max_faces ({self.max_faces})")
        if self.min_score is not None and not (-1.0 <= float(self.min_score) <= 1.0):
            raise ValueError(f"min_score must be a cosine similarity in [-1, 1], got {self.min_score!r}")

    def mask(self, store: GalleryStore) -> np.ndarray | None:
        """bool [N] of the rows that pass, or None when no row filter is set."""
        m: np.ndarray | None = None
        if self.category is not None:
            m = store.category_mask(self.category)
        if self.min_faces is not None:
            f = store.faces >= int(self.min_faces)
            m = f if m is None else m & f
        if self.max_faces is not None:
            f = store.faces <= int(self.max_faces)
            m = f if m is None else m & f
        return m


@dataclass(frozen=True)
class Hit:
    """One search result.

    rank      0 for the best hit
    score     cosine similarity of the query and the entry's global embedding
    row       row in the gallery
    path      absolute file path, or ``procedural:<category>:<seed>``
    thumbnail absolute path of the thumbnail image, or None when the gallery has none
    """

    rank: int
    score: float
    row: int
    key: str
    path: str
    name: str
    category: str
    caption: str
    faces: int
    thumbnail: str | None
    spec: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["spec"] is None:
            del d["spec"]
        return d


def _hit(store: GalleryStore, rank: int, row: int, score: float, e: Entry) -> Hit:
    thumb = store.thumbnail_path(e)
    return Hit(rank=rank, score=float(score), row=int(row), key=e.key, path=store.display_path(e), name=e.name,
               category=e.category, caption=e.caption, faces=e.faces,
               thumbnail=str(thumb) if thumb.is_file() else None, spec=e.spec)


def search(store: GalleryStore, query: Any, *, k: int = 10, filters: Filters = Filters()) -> list[Hit]:
    """The ``k`` entries most similar to ``query`` (float [G], any scale: it is normalised), best first."""
    q = unit_vector(query, what="query")
    if q.shape[0] != store.dim:
        raise ValueError(f"query width {q.shape[0]} does not match the gallery's {store.dim} "
                         f"(model {store.fingerprint!r})")
    res = store.index().search(q, k, mask=filters.mask(store), min_score=filters.min_score)
    entries = store.entries(res.ids.tolist())
    return [_hit(store, i, r, s, e) for i, (r, s, e) in enumerate(zip(res.ids.tolist(), res.scores.tolist(), entries))]


def search_text(store: GalleryStore, text: str, embedder: Embedder, *, k: int = 10,
                filters: Filters = Filters()) -> list[Hit]:
    """Hits for a description; ``embedder`` must be the gallery's model."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the text query is empty")
    store.check_model(embedder.fingerprint, what="the text query")
    return search(store, embedder.embed_text([text.strip()])[0], k=k, filters=filters)


def search_image(store: GalleryStore, image: Any, embedder: Embedder, *, k: int = 10,
                 filters: Filters = Filters()) -> list[Hit]:
    """Hits for a PIL image; ``embedder`` must be the gallery's model."""
    store.check_model(embedder.fingerprint, what="the image query")
    return search(store, embedder.embed_image(image), k=k, filters=filters)
