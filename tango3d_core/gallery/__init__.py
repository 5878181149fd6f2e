"""Retrieval galleries: index a folder of meshes (hundreds to millions), search it by text,
image or vector. Embedded and on disk; no server.

Command line (``python -m tango3d_core.gallery --help``)::

    python -m tango3d_core.gallery build DIR --out GALLERY          # incremental, resumable
    python -m tango3d_core.gallery query GALLERY --text "a mug" -k 5 --json
    python -m tango3d_core.gallery query GALLERY --image photo.png --category chair --max-faces 20000

Python::

    from tango3d_core.gallery import GalleryStore, build_gallery, load_embedder, search_text
    emb = load_embedder()                                   # the bundled checkpoint
    build_gallery("meshes/", "gallery/", emb)
    hits = search_text(GalleryStore("gallery/"), "a chair", emb, k=5)

Modules: ``files`` (listing, hashing), ``embed`` (model adapters), ``store`` (on-disk format),
``index`` (exact and approximate vector search), ``build`` (incremental builder), ``search``
(queries, filters), ``procedural`` (the bundled gallery), ``distributed`` (Ray Data shards).
Names below are imported on first use, so ``import tango3d_core.gallery`` stays cheap (vector
queries: ``tango3d_core.gallery.search.search``; the module name would shadow a package-level
``search``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "find_mesh_files": "files",
    "sha256_file": "files",
    "Embedder": "embed",
    "FunctionEmbedder": "embed",
    "ModelMismatchError": "embed",
    "ProviderEmbedder": "embed",
    "load_embedder": "embed",
    "Entry": "store",
    "GalleryError": "store",
    "GalleryStore": "store",
    "is_gallery": "store",
    "EXACT_LIMIT": "index",
    "ApproxIndex": "index",
    "ExactIndex": "index",
    "build_index": "index",
    "BuildReport": "build",
    "build_gallery": "build",
    "Filters": "search",
    "Hit": "search",
    "search_image": "search",
    "search_text": "search",
    "BUNDLED_GALLERY": "procedural",
    "build_procedural": "procedural",
    "embed_with_ray": "distributed",
    "ingest_shards": "distributed",
}

if TYPE_CHECKING:  # pragma: no cover
    from .build import BuildReport, build_gallery
    from .distributed import embed_with_ray, ingest_shards
    from .embed import Embedder, FunctionEmbedder, ModelMismatchError, ProviderEmbedder, load_embedder
    from .files import find_mesh_files, sha256_file
    from .index import EXACT_LIMIT, ApproxIndex, ExactIndex, build_index
    from .procedural import BUNDLED_GALLERY, build_procedural
    from .search import Filters, Hit, search_image, search_text
    from .store import Entry, GalleryError, GalleryStore, is_gallery


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tango3d_core.gallery' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
