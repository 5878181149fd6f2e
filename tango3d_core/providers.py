"""Feature providers: the one interface through which the explorer (and eval) reach a model.

A provider turns an image, a mesh or a text into features of one shared space:

=================  ======================================================================
``encode_image``   PIL image -> :class:`~tango3d_core.models.ImageFeatures`
                   (``dense`` [D, h, w] covering the whole image, ``global_embedding`` [G])
``encode_shape``   Z-up ``trimesh.Trimesh`` -> :class:`~tango3d_core.models.ShapeFeatures`
                   (``points`` [N, 3], ``normals`` [N, 3], ``dense`` [N, D], ``global_embedding`` [G])
``encode_text``    list of B strings -> [B, G] (only when ``supports_text``)
=================  ======================================================================

Everything returned is float32 and unit length along the feature axis; dense features stay on
``provider.device`` so that similarities can be computed there (on the GPU when there is one).

Two providers ship:

* ``tango3d``: the Tango3D model (:class:`Tango3DProvider`);
* ``backprojection``: a 2D backbone lifted to 3D by rendering the mesh from several views,
  encoding each view and averaging the features each surface point receives
  (:class:`BackprojectionProvider`, a thin wrapper of
  :class:`tango3d_core.eval.baselines.BackprojectionFeatures`; by default the 2D backbone is
  Tango3D's own image branch).

Bring your own (see ``docs/providers.md``)::

    from tango3d_core.providers import BackprojectionProvider, register_provider

    def make_mine(*, checkpoint=None, device="cpu"):
        return BackprojectionProvider(my_dense_encoder, name="mine", device=device)

    register_provider("mine", make_mine)
    # python launch.py --provider mymodule:make_mine   (or create_provider("mine") in Python)
"""

from __future__ import annotations

import hashlib
import importlib
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .models.features import ImageFeatures, ShapeFeatures

__all__ = [
    "BackprojectionProvider",
    "DenseImageEncoder",
    "FeatureProvider",
    "ProviderError",
    "ProviderFactory",
    "Tango3DProvider",
    "TextUnsupportedError",
    "available_providers",
    "create_provider",
    "register_provider",
]


class ProviderError(ValueError):
    """A provider name is unknown, a factory misbehaves, or a provider cannot do what was asked."""


class TextUnsupportedError(ProviderError, NotImplementedError):
    """``encode_text`` on a provider without a text encoder (``supports_text`` is False). Also a
    ``NotImplementedError``, which is how the evaluation suites recognise a missing capability."""


@runtime_checkable
class FeatureProvider(Protocol):
    """What the explorer needs from a model. Implement these five members and register a factory.

    name           short display name ("tango3d", "backprojection", ...)
    device         where ``dense`` features live (similarities run there)
    fingerprint    changes whenever the features would change (weights, settings); used as a
                   key of on-disk caches (gallery embeddings)
    supports_text  False when ``encode_text`` is not available
    """

    name: str
    device: torch.device
    supports_text: bool

    @property
    def fingerprint(self) -> str: ...

    def encode_image(self, image: Image.Image) -> ImageFeatures:
        """One PIL image of any size -> dense [D, h, w] + global [G]; ``sample(xy)`` takes input pixels."""
        ...

    def encode_shape(self, mesh: Any, *, num_points: int = 8192, seed: int = 0) -> ShapeFeatures:
        """A Z-up trimesh -> ``num_points`` surface samples with dense [N, D] and global [G] features."""
        ...

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """B strings -> [B, G] global embeddings (raise :class:`ProviderError` if unsupported)."""
        ...


ProviderFactory = Callable[..., FeatureProvider]
"""``factory(*, checkpoint: str | None, device: str) -> FeatureProvider``."""

# 2D backbone for back-projection: a PIL image -> ImageFeatures, or a dense map [D, h, w]
# covering the whole image (the global embedding is then its mean, normalised).
DenseImageEncoder = Callable[[Image.Image], "ImageFeatures | Tensor"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
_REGISTRY: dict[str, ProviderFactory] = {}
_REGISTRY_LOCK = threading.Lock()


def register_provider(name: str, factory: ProviderFactory, *, overwrite: bool = False) -> None:
    """Make ``factory`` available as ``name`` (``create_provider(name)``, ``--provider name``).

    factory    called as ``factory(checkpoint=..., device=...)``; returns a :class:`FeatureProvider`
    overwrite  replace an existing registration instead of raising
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ProviderError(f"provider name must be 1-64 letters, digits, '_', '.', '-', got {name!r}")
    if not callable(factory):
        raise ProviderError(f"factory for {name!r} must be callable, got {type(factory).__name__}")
    with _REGISTRY_LOCK:
        if name in _REGISTRY and not overwrite:
            raise ProviderError(f"a provider named {name!r} is already registered (pass overwrite=True to replace it)")
        _REGISTRY[name] = factory


def available_providers() -> list[str]:
    """Registered provider names, sorted."""
    with _REGISTRY_LOCK:
        return sorted(_REGISTRY)


def create_provider(name: str, *, checkpoint: str | None = None, device: str | torch.device = "cpu",
                    **options: Any) -> FeatureProvider:
    """Build a provider by registered name, or from ``"package.module:factory"``.

    The ``module:factory`` form imports the module (which may also register more providers)
    and calls the factory, so a provider defined in the researcher's own file can be chosen
    from the command line without touching this package.
    """
    if not isinstance(name, str) or not name:
        raise ProviderError(f"provider must be a non-empty string, got {name!r}")
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ProviderError(f"cannot import provider module {module_name!r}: {e}") from e
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise ProviderError(f"module {module_name!r} has no callable {attr!r}")
    else:
        with _REGISTRY_LOCK:
            factory = _REGISTRY.get(name)
        if factory is None:
            raise ProviderError(f"unknown provider {name!r}; registered: {available_providers()} "
                                f"(or give 'package.module:factory')")
    provider = factory(checkpoint=checkpoint, device=str(device), **options)
    missing = [m for m in ("name", "device", "supports_text", "fingerprint", "encode_image", "encode_shape",
                           "encode_text") if not hasattr(provider, m)]
    if missing:
        raise ProviderError(f"provider factory {name!r} returned {type(provider).__name__}, "
                            f"which lacks {missing} (see tango3d_core.providers.FeatureProvider)")
    return provider


# --------------------------------------------------------------------------- tango3d


class Tango3DProvider:
    """The Tango3D model as a provider; features are returned on the model's device."""

    supports_text = True

    def __init__(self, model: Any, *, name: str = "tango3d") -> None:
        from .models.tango3d import Tango3D

        if not isinstance(model, Tango3D):
            raise TypeError(f"Tango3DProvider wraps a Tango3D model, got {type(model).__name__}")
        self.model = model.eval()
        self.name = name
        self._fingerprint: str | None = None

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def fingerprint(self) -> str:
        """sha1 over the config and every weight (computed once; ~50 ms for the tiny model)."""
        if self._fingerprint is None:
            h = hashlib.sha1(self.model.config.to_json().encode())
            for k, t in self.model.state_dict().items():
                h.update(k.encode())
                h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._fingerprint = f"{self.name}-{h.hexdigest()[:16]}"
        return self._fingerprint

    def encode_image(self, image: Image.Image) -> ImageFeatures:
        return self.model.encode_image(image, device=self.device)

    def encode_shape(self, mesh: Any, *, num_points: int = 8192, seed: int = 0) -> ShapeFeatures:
        return self.model.encode_shape(mesh, num_points=num_points, seed=seed, device=self.device)

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        return self.model.encode_text(texts, device=self.device)


# -------------------------------------------------------------------- back-projection


class BackprojectionProvider:
    """Any 2D dense encoder lifted to 3D by multi-view back-projection.

    encoder    PIL image -> ``ImageFeatures`` or a dense map [D, h, w] covering the image
    num_views  views rendered around the object (an orbit at two elevations)
    view_size  side of each rendered view in pixels
    options    further keywords of :class:`tango3d_core.eval.baselines.BackprojectionFeatures`
               (elevations, weighting, visibility tolerance, ...), which does the lifting
    The shape's global embedding is the mean of the views' global embeddings (or, for an
    encoder returning bare maps, of their mean features), normalised; there is no text encoder.
    """

    supports_text = False

    def __init__(self, encoder: DenseImageEncoder, *, name: str = "backprojection", device: str | torch.device = "cpu",
                 num_views: int = 8, view_size: int = 224, fingerprint: str | None = None, **options: Any) -> None:
        from .eval.baselines import BackprojectionFeatures

        if not callable(encoder):
            raise TypeError(f"encoder must be callable (PIL image -> dense features), got {type(encoder).__name__}")
        self.encoder = encoder
        self.name = name
        self.device = torch.device(device)
        # The lifting accumulates on the CPU; views are encoded on the encoder's device and
        # their features brought over once per view.
        self._lift = BackprojectionFeatures(self._encode_on_cpu, num_views=num_views, resolution=view_size, **options)
        self._fingerprint = f"{fingerprint or f'{name}-{id(encoder):x}'}-v{int(num_views)}-s{int(view_size)}"

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    def encode_image(self, image: Image.Image) -> ImageFeatures:
        return self._image_features(image, self.device)

    def _encode_on_cpu(self, image: Image.Image) -> ImageFeatures:
        return self._image_features(image, torch.device("cpu"))

    def _image_features(self, image: Image.Image, device: torch.device) -> ImageFeatures:
        if not isinstance(image, Image.Image):
            raise TypeError(f"encode_image expects a PIL.Image.Image, got {type(image).__name__}")
        out = self.encoder(image)
        if isinstance(out, ImageFeatures):
            return ImageFeatures(dense=out.dense.to(device), global_embedding=out.global_embedding.to(device),
                                 image_size=out.image_size, model_size=out.model_size)
        dense = torch.as_tensor(out, dtype=torch.float32)
        if dense.dim() != 3:
            raise ProviderError(f"{self.name}: encoder must return [D, h, w], got shape {tuple(dense.shape)}")
        dense = F.normalize(dense.to(device), dim=0, eps=1e-6)
        glob = F.normalize(dense.mean(dim=(1, 2)), dim=0, eps=1e-6)
        return ImageFeatures(dense=dense, global_embedding=glob, image_size=(image.width, image.height),
                             model_size=(image.width, image.height))

    def encode_shape(self, mesh: Any, *, num_points: int = 8192, seed: int = 0) -> ShapeFeatures:
        try:
            shape = self._lift(mesh, num_points=num_points, seed=seed)
        except ValueError as e:
            raise ProviderError(f"{self.name}: {e}") from e
        lo, hi = np.asarray(mesh.bounds[0], np.float64), np.asarray(mesh.bounds[1], np.float64)
        centre, diag = (lo + hi) / 2.0, float(np.linalg.norm(hi - lo))
        dense = shape.dense.to(self.device)
        glob = shape.global_embedding
        if glob is None:
            glob = F.normalize(shape.dense.mean(0), dim=0, eps=1e-6)

        def query(xyz_canonical: Tensor) -> Tensor:
            # ShapeFeatures hands over canonical coordinates; the lifting works in the mesh's own.
            xyz = xyz_canonical.detach().cpu().double() * diag + torch.from_numpy(centre)
            return shape.query(xyz).to(self.device)

        return ShapeFeatures(points=shape.points.to(self.device), normals=shape.normals.to(self.device), dense=dense,
                             global_embedding=glob.to(self.device), center=torch.as_tensor(centre, dtype=torch.float32),
                             scale=1.0 / diag, _query=query)

    def encode_text(self, texts: Sequence[str]) -> Tensor:
        raise TextUnsupportedError(f"provider {self.name!r} has no text encoder; use an image query")


# ------------------------------------------------------------------ built-in factories

_MODEL_CACHE: dict[tuple[str, str], Any] = {}
_MODEL_LOCK = threading.Lock()


def _shared_model(checkpoint: str | None, device: str) -> Any:
    """One loaded model per (checkpoint, device), shared by the built-in providers."""
    from .models.checkpoint import default_checkpoint_dir, load_model

    key = (str(checkpoint or default_checkpoint_dir()), str(device))
    with _MODEL_LOCK:
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = load_model(checkpoint, device=device)
        return _MODEL_CACHE[key]


def _make_tango3d(*, checkpoint: str | None = None, device: str = "cpu") -> Tango3DProvider:
    return Tango3DProvider(_shared_model(checkpoint, device))


def _make_backprojection(*, checkpoint: str | None = None, device: str = "cpu", num_views: int = 8,
                         view_size: int = 224) -> BackprojectionProvider:
    inner = Tango3DProvider(_shared_model(checkpoint, device))
    return BackprojectionProvider(inner.encode_image, name="backprojection", device=device, num_views=num_views,
                                  view_size=view_size, fingerprint=f"backprojection-{inner.fingerprint}")


register_provider("tango3d", _make_tango3d)
register_provider("backprojection", _make_backprojection)
