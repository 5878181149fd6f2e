"""Embedders: what turns a mesh, a text or an image into a gallery vector.

A gallery stores its embedder's ``fingerprint`` (which model: weights and config) and
``settings`` (how shapes were encoded: surface points, seed). A query must come from an
embedder with the same fingerprint (:class:`ModelMismatchError` otherwise: vectors of two
models are not comparable); an incremental build must also use the same settings.

* :class:`ProviderEmbedder` wraps any feature provider (``tango3d_core.providers``), e.g. the
  bundled model: ``ProviderEmbedder(create_provider("tango3d"))`` or :func:`load_embedder`.
* :class:`FunctionEmbedder` wraps plain callables (tests, custom models).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "DenseFeatures",
    "Embedder",
    "FunctionEmbedder",
    "ModelMismatchError",
    "ProviderEmbedder",
    "ShapeEmbedding",
    "load_embedder",
    "unit_vector",
]


class ModelMismatchError(ValueError):
    """A gallery and a query (or a rebuild) come from different models or settings."""


@dataclass(frozen=True)
class DenseFeatures:
    """Per-point features of one shape, as cached by ``build --dense``.

    points   float32 [N, 3] surface samples, mesh coordinates
    normals  float32 [N, 3]
    dense    float32 [N, D] unit length
    center   float32 [3], scale float: the canonical frame ``(p - center) * scale``
    """

    points: np.ndarray
    normals: np.ndarray
    dense: np.ndarray
    center: np.ndarray
    scale: float


@dataclass(frozen=True)
class ShapeEmbedding:
    """vector float32 [G] unit length; dense only when asked for."""

    vector: np.ndarray
    dense: DenseFeatures | None = None


@runtime_checkable
class Embedder(Protocol):
    """fingerprint  identifies the model (a query needs the same one)
    settings     JSON-able dict of shape-encoding options (a rebuild needs the same)
    """

    @property
    def fingerprint(self) -> str: ...

    @property
    def settings(self) -> dict[str, Any]: ...

    def embed_shape(self, mesh: Any, *, dense: bool = False) -> ShapeEmbedding:
        """A Z-up trimesh -> its global embedding [G] (and dense features)."""
        ...

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """B strings -> float32 [B, G]."""
        ...

    def embed_image(self, image: Any) -> np.ndarray:
        """A PIL image -> float32 [G]."""
        ...


def unit_vector(v: Any, *, what: str = "embedding") -> np.ndarray:
    """``v`` as a float32 1-D unit vector; a clear error for NaN, infinite or zero input."""
    a = np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v, dtype=np.float32).reshape(-1)
    if a.size == 0:
        raise ValueError(f"the {what} is empty")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"the {what} has NaN or infinite values")
    n = float(np.linalg.norm(a))
    if n == 0.0:
        raise ValueError(f"the {what} is all zeros")
    return (a / n).astype(np.float32)


class ProviderEmbedder:
    """A feature provider as a gallery embedder.

    provider    anything with ``fingerprint``, ``encode_shape``, ``encode_text``, ``encode_image``
                (see ``tango3d_core.providers.FeatureProvider``)
    num_points  surface samples per shape (4096: the global embedding is all a gallery needs)
    seed        surface-sampling seed
    source      how to load the model again, e.g. {"provider": "tango3d", "checkpoint": None}
    """

    def __init__(self, provider: Any, *, num_points: int = 4096, seed: int = 0,
                 source: dict[str, Any] | None = None) -> None:
        for m in ("fingerprint", "encode_shape"):
            if not hasattr(provider, m):
                raise TypeError(f"provider {type(provider).__name__} lacks {m!r}")
        if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
            raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
        self.provider = provider
        self.num_points = num_points
        self.seed = int(seed)
        # How to get this model again (stored in the manifest so that `query` can default to it).
        self.source = dict(source) if source is not None else None

    @property
    def fingerprint(self) -> str:
        return str(self.provider.fingerprint)

    @property
    def settings(self) -> dict[str, Any]:
        return {"num_points": self.num_points, "seed": self.seed}

    def embed_shape(self, mesh: Any, *, dense: bool = False) -> ShapeEmbedding:
        f = self.provider.encode_shape(mesh, num_points=self.num_points, seed=self.seed)
        vec = unit_vector(f.global_embedding, what="shape embedding")
        if not dense:
            return ShapeEmbedding(vec)

        def np32(t: Any) -> np.ndarray:
            return np.asarray(t.detach().float().cpu().numpy(), dtype=np.float32)

        return ShapeEmbedding(vec, DenseFeatures(points=np32(f.points), normals=np32(f.normals), dense=np32(f.dense),
                                                 center=np32(f.center).reshape(3), scale=float(f.scale)))

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        out = self.provider.encode_text(list(texts))
        return np.stack([unit_vector(row, what="text embedding") for row in out])

    def embed_image(self, image: Any) -> np.ndarray:
        return unit_vector(self.provider.encode_image(image).global_embedding, what="image embedding")


class FunctionEmbedder:
    """Plain callables as an embedder (tests, or a model outside the provider registry).

    shape        mesh -> [G]
    fingerprint  a name that changes whenever ``shape`` would give other vectors
    text, image  optional: list[str] -> [B, G], PIL image -> [G]
    settings     stored with the gallery (default empty)
    """

    def __init__(self, shape: Callable[[Any], Any], *, fingerprint: str,
                 text: Callable[[list[str]], Any] | None = None, image: Callable[[Any], Any] | None = None,
                 settings: dict[str, Any] | None = None) -> None:
        if not callable(shape):
            raise TypeError("shape must be callable: mesh -> [G]")
        if not isinstance(fingerprint, str) or not fingerprint:
            raise ValueError("fingerprint must be a non-empty string")
        self._shape, self._text, self._image = shape, text, image
        self._fingerprint = fingerprint
        self._settings = dict(settings or {})

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self._settings)

    def embed_shape(self, mesh: Any, *, dense: bool = False) -> ShapeEmbedding:
        if dense:
            raise ValueError(f"embedder {self._fingerprint!r} has no dense features")
        return ShapeEmbedding(unit_vector(self._shape(mesh), what="shape embedding"))

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        if self._text is None:
            raise ValueError(f"embedder {self._fingerprint!r} has no text encoder")
        return np.stack([unit_vector(r, what="text embedding") for r in np.atleast_2d(self._text(list(texts)))])

    def embed_image(self, image: Any) -> np.ndarray:
        if self._image is None:
            raise ValueError(f"embedder {self._fingerprint!r} has no image encoder")
        return unit_vector(self._image(image), what="image embedding")


def load_embedder(*, checkpoint: str | None = None, provider: str = "tango3d", device: str = "cpu",
                  num_points: int = 4096, seed: int = 0) -> ProviderEmbedder:
    """The registered ``provider`` (default the Tango3D model from ``checkpoint``, default the
    bundled one) as an embedder."""
    from ..providers import create_provider

    ckpt = str(Path(checkpoint).resolve()) if checkpoint is not None else None
    return ProviderEmbedder(create_provider(provider, checkpoint=checkpoint, device=device),
                            num_points=num_points, seed=seed, source={"provider": provider, "checkpoint": ckpt})
