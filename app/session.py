"""Per-session state and the shared, content-addressed cache of encodings.

* :class:`LRUCache` is bounded, thread-safe, and computes each missing key once even when two
  sessions ask for it at the same time (the second waits for the first).
* :func:`file_digest` / :func:`image_digest` give the content keys: the same bytes uploaded
  twice, from any tab, are encoded once.
* :class:`Session` is everything one browser tab sees. Its ``lock`` serialises the Gradio
  handlers and the viser click callback, which run on different threads. Its ``viewer_token``
  names its viser server in single-port mode (``/viser/<token>/``, see ``app.proxy``).
* :class:`ViewResult` is what one view (shape x provider) shows for the current query: the
  scores, labels and colours that exports write.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from PIL import Image

from .overlay import OverlaySettings

__all__ = ["EncodedShape", "LRUCache", "Session", "ViewResult", "file_digest", "image_digest"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """At most ``maxsize`` entries; the least recently used is evicted first."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = int(maxsize)
        self._data: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[K, threading.Event] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._data)

    def get(self, key: K) -> V | None:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            return None

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> tuple[V, bool]:
        """(value, computed_now). Concurrent callers of a missing key wait for one computation;
        if it raises, the error propagates to that caller and the next caller tries again."""
        while True:
            with self._lock:
                if key in self._data:
                    self._data.move_to_end(key)
                    self.hits += 1
                    return self._data[key], False
                event = self._pending.get(key)
                if event is None:
                    event = self._pending[key] = threading.Event()
                    self.misses += 1
                    break
            event.wait()
        try:
            value = compute()
            self.put(key, value)
            return value, True
        finally:
            with self._lock:
                self._pending.pop(key, None)
            event.set()


def file_digest(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def image_digest(image: Image.Image) -> str:
    """sha256 over the decoded pixels and size (two files that decode alike share features)."""
    h = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


@dataclass
class EncodedShape:
    """A shape encoded by one provider, ready to display: features plus overlay colours.

    features   the provider's ShapeFeatures (``dense`` on the provider's device)
    base       float [N, 3] surface colours in [0, 1], on the provider's device
    base_u8    uint8 [N, 3], the same on the CPU (what the viewer shows with no heat)
    """

    features: Any
    base: Any
    base_u8: np.ndarray


@dataclass
class ViewResult:
    """What one view (shape x provider) shows for the current query, for exports.

    scores  float32 [N] per feature point: cosine similarity (heat maps), the region score
            (mask transfer) or the first principal coordinate (feature view)
    labels  bool [N]: inside the transferred region / the highlighted selection
    colors  uint8 [N, 3]: the colours shown
    """

    scores: np.ndarray
    labels: np.ndarray
    colors: np.ndarray


@dataclass
class Session:
    """One browser tab's state. Fields are read and written under ``lock``."""

    id: str
    viewer: Any = None
    # Unguessable id of this tab's viewer in single-port mode (the proxy path /viser/<token>/).
    viewer_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    lock: threading.RLock = field(default_factory=threading.RLock)
    closed: bool = False
    last_used: float = field(default_factory=time.monotonic)
    # inputs
    image: Image.Image | None = None            # the working image (RGB, longest side capped)
    image_key: str | None = None
    mesh: Any = None                            # trimesh.Trimesh, Z-up, in its file's units
    mesh_key: str | None = None                 # content key of the mesh (file digest + up axis)
    mesh_name: str = ""
    mesh_source: tuple[str, str] | None = None  # ("file", path) or ("gallery", key): to reload on up-axis change
    up_axis: str = "z"
    # providers in view: [primary] or [primary, comparison]
    providers: list[str] = field(default_factory=list)
    image_features: dict[str, Any] = field(default_factory=dict)
    shapes: dict[str, EncodedShape] = field(default_factory=dict)
    # provider -> (image features, shape features, PoseEstimate or None, why none): the pose of
    # the image in the first shape, re-estimated when either object changes
    poses: dict[str, tuple[Any, Any, Any, str]] = field(default_factory=dict)
    # interaction
    overlay: OverlaySettings = field(default_factory=OverlaySettings)
    # ("pixel", (x, y)), ("point", xyz [3], shape "a" | "b"), ("mask",) or ("pca",)
    last_query: tuple | None = None
    best_pixels: dict[str, tuple[int, int]] = field(default_factory=dict)
    best_points: dict[str, np.ndarray] = field(default_factory=dict)
    panels: list[Image.Image | None] = field(default_factory=lambda: [None, None])
    version: int = 0            # bumped whenever ``panels`` change from the viser side
    seen_version: int = 0       # last version the browser was sent
    search_hits: list[Any] = field(default_factory=list)
    status: str = ""
    last_ms: float = 0.0        # server-side time of the last query's similarity + colours
    last_pixel: tuple[float, float] | None = None   # last pixel clicked on the image (SAM's prompt)
    # the second shape (3D <-> 3D), side by side with the first
    second_mesh: Any = None
    second_key: str | None = None
    second_name: str = ""
    shapes_b: dict[str, EncodedShape] = field(default_factory=dict)
    match_points: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)  # (shape, provider) -> best point
    # mask transfer
    mask: np.ndarray | None = None              # bool [H, W] on the working image
    mask_threshold: float = 0.0
    foreground: np.ndarray | None = None        # bool [H, W], estimated once per image
    editor_image_key: str | None = None         # the image the mask editor was last given
    # pixel -> many gallery shapes
    many_keys: list[str] = field(default_factory=list)
    many_results: list[tuple[Image.Image, str]] = field(default_factory=list)
    # the shape VAE's reconstruction of the first shape (app.reconstruction.Reconstruction),
    # kept until that shape changes, and whether the viewer shows it now
    reconstruction: Any = None
    reconstruction_shown: bool = False
    # results of the current query per view (shape "a"/"b", provider), for exports
    results: dict[tuple[str, str], ViewResult] = field(default_factory=dict)
    exports: Any = None                         # app.export.ExportDir, made on the first export

    def touch(self) -> None:
        self.last_used = time.monotonic()
