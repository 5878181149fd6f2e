"""Baselines evaluated beside Tango3D, on the same data, in the same run.

:class:`BackprojectionFeatures`
    3D features for any mesh from ANY 2D dense encoder (``image -> dense features``): render
    the mesh from an orbit of views, encode each view, and average the features each surface
    point receives from the views that see it. This is the usual "lift a 2D backbone to 3D"
    recipe (Diff3F-style); the app reuses it as a feature provider for arbitrary backbones.
:class:`BackprojectionBaseline`
    the back-projection as an evaluation provider (``image_features`` = the same 2D encoder on
    the query view, ``shape_features`` = back-projected features).
:class:`RandomBaseline`
    random unit features for pixels, points and texts (chance level; deterministic).

Every provider follows ``tango3d_core.eval.suites.FeatureProvider``.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from PIL import Image
from torch import Tensor

from .suites._common import EvalShape, EvalView, fit_distance

__all__ = [
    "BackprojectionFeatures",
    "BackprojectedShape",
    "BackprojectionBaseline",
    "RandomBaseline",
    "orbit_cameras",
]

Weighting = Literal["visibility", "cosine"]


def orbit_cameras(mesh: trimesh.Trimesh, *, num_views: int = 8, elevations_deg: Sequence[float] = (30.0, -15.0),
                  azimuth_offset_deg: float = 0.0, resolution: int = 224, fov_deg: float = 40.0,
                  fill: float = 0.85) -> list[Any]:
    """``num_views`` cameras evenly spaced in azimuth around the mesh's bbox centre.

    View ``k`` sits at azimuth ``offset + 360 k / num_views`` and elevation
    ``elevations_deg[k % len(elevations_deg)]`` (degrees), at the distance where every vertex
    projects within ``fill`` of the half frame. Returns ``render.Camera`` objects (square images).
    """
    from ..data import render

    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    if not elevations_deg:
        raise ValueError("elevations_deg is empty")
    if not 0 < fill <= 1:
        raise ValueError(f"fill must be in (0, 1], got {fill}")
    v = np.asarray(mesh.vertices, dtype=np.float64)
    if len(v) == 0:
        raise ValueError("mesh has no vertices")
    centre = (v.min(0) + v.max(0)) / 2
    cams = []
    for k in range(num_views):
        az = azimuth_offset_deg + 360.0 * k / num_views
        el = float(elevations_deg[k % len(elevations_deg)])
        probe = render.Camera.orbit(azimuth_deg=az, elevation_deg=el, distance=1.0, fov_deg=fov_deg, width=8, height=8)
        dist = fit_distance(v - centre, probe, fill=fill)
        cams.append(render.Camera.orbit(azimuth_deg=az, elevation_deg=el, distance=dist, target=centre,
                                        fov_deg=fov_deg, width=resolution, height=resolution))
    return cams


# ---------------------------------------------------------------- encoder outputs


def _sampler(output: Any, image_size: tuple[int, int]) -> Callable[[Tensor], Tensor]:
    """A function xy [M, 2] (x, y) pixels -> [M, D] for whatever the encoder returned."""
    if hasattr(output, "sample"):
        return lambda xy: torch.as_tensor(output.sample(xy), dtype=torch.float32)
    fmap = torch.as_tensor(np.asarray(output) if not isinstance(output, Tensor) else output).to(torch.float32)
    if fmap.dim() != 3:
        raise ValueError("the encoder must return a dense map [D, h, w] covering the image, or an object "
                         f"with .sample(xy) (like ImageFeatures); got a tensor of shape {tuple(fmap.shape)}")
    from ..models.ops import sample_map_at_pixels

    return lambda xy: sample_map_at_pixels(fmap[None], xy[None].to(torch.float32), image_size)[0]


@dataclass(frozen=True, eq=False)
class _EncodedView:
    camera: Any
    mask: np.ndarray  # bool [H, W]
    xyz: np.ndarray  # float32 [H, W, 3], NaN off the mask
    sample: Callable[[Tensor], Tensor]
    global_embedding: Tensor | None


@dataclass(frozen=True, eq=False)
class BackprojectedShape:
    """Back-projected features of one mesh (satisfies ``eval.suites.PointFeatures``).

    points            [N, 3] surface samples (mesh coordinates)
    normals           [N, 3] their face normals
    dense             [N, D] features (unit length when ``normalize``)
    weight            [N] summed view weight each point received (0: seen by no view; its
                      feature is then copied from the nearest seen point)
    num_views_seen    int64 [N] views that see each point
    global_embedding  [G] mean of the views' global embeddings (unit), or None when the
                      encoder gives none
    timing            seconds spent rendering, encoding and projecting
    """

    points: Tensor
    normals: Tensor
    dense: Tensor
    weight: Tensor
    num_views_seen: Tensor
    global_embedding: Tensor | None
    timing: dict[str, float]
    _owner: BackprojectionFeatures = field(repr=False)
    _views: list[_EncodedView] = field(repr=False)
    _rays: _RayScene = field(repr=False)

    def query(self, xyz: Any) -> Tensor:
        """Features [M, D] at any positions xyz [M, 3] (mesh coordinates), back-projected through
        the same views; normals (cosine weighting) and unseen positions use the nearest sample."""
        from scipy.spatial import cKDTree

        q = np.asarray(torch.as_tensor(xyz, dtype=torch.float64), dtype=np.float64)
        if q.ndim != 2 or q.shape[1] != 3:
            raise ValueError(f"xyz must be [M, 3], got {q.shape}")
        nearest = cKDTree(self.points.numpy()).query(q, k=1)[1]
        feats, weight, _ = self._owner._project(self._views, self._rays, q, self.normals.numpy()[nearest])
        unseen = weight <= 0
        if unseen.any():
            feats[torch.as_tensor(unseen)] = self.dense[torch.as_tensor(nearest[unseen])]
        return F.normalize(feats, dim=-1, eps=1e-12) if self._owner.normalize else feats


class BackprojectionFeatures:
    """Lift any 2D dense encoder to per-point 3D features by multi-view back-projection.

    encoder               ``encoder(image: PIL.Image) -> features`` of the whole image: either a
                          dense map [D, h, w] (Tensor or ndarray; any h, w covering the image,
                          sampled with the project's pixel convention) or an object with
                          ``.sample(xy [M, 2]) -> [M, D]`` such as ``ImageFeatures`` (then its
                          ``global_embedding``, if any, is averaged too)
    num_views, elevations_deg, azimuth_offset_deg, fov_deg, fill
                          the orbit, see :func:`orbit_cameras`
    resolution            side of the rendered square views, pixels
    background            RGB of empty pixels
    render_options        extra ``render.Renderer.render`` keywords (lighting, normals, ...)
    weighting             "visibility": each view that sees a point counts 1; "cosine": it counts
                          ``|n . v|``, the cosine between the point's normal and the view ray
    visibility_tolerance  a view sees a point when it projects inside the image and the ray from
                          the camera to it hits no surface more than ``tolerance x bbox
                          diagonal`` before it (an exact ray cast per point, so faces seen at
                          grazing angles count and an occluder in front hides the point)
    normalize             L2-normalise each view's features and the averages

    In each view that sees it, a point takes the feature at the centre of its *nearest visible
    pixel*: the mask pixel of the 3x3 neighbourhood of its projection whose rendered surface
    point (the renderer's exact per-pixel xyz) is closest to it, so features are never read off
    the silhouette onto the background. Points no view sees copy the feature of the nearest seen
    point. Calling the object returns a :class:`BackprojectedShape`.
    """

    def __init__(self, encoder: Callable[[Image.Image], Any], *, num_views: int = 8,
                 elevations_deg: Sequence[float] = (30.0, -15.0), azimuth_offset_deg: float = 0.0,
                 resolution: int = 224, fov_deg: float = 40.0, fill: float = 0.85,
                 background: tuple[int, int, int] = (255, 255, 255), render_options: Mapping[str, Any] | None = None,
                 weighting: Weighting = "visibility", visibility_tolerance: float = 0.01,
                 normalize: bool = True) -> None:
        if not callable(encoder):
            raise TypeError(f"encoder must be callable (image -> dense features), got {type(encoder).__name__}")
        if weighting not in ("visibility", "cosine"):
            raise ValueError(f'weighting must be "visibility" or "cosine", got {weighting!r}')
        if not visibility_tolerance > 0:
            raise ValueError(f"visibility_tolerance must be > 0, got {visibility_tolerance}")
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        self.encoder = encoder
        self.num_views = int(num_views)
        self.elevations_deg = tuple(float(e) for e in elevations_deg)
        self.azimuth_offset_deg = float(azimuth_offset_deg)
        self.resolution = int(resolution)
        self.fov_deg = float(fov_deg)
        self.fill = float(fill)
        self.background = tuple(int(c) for c in background)
        self.render_options = dict(render_options or {})
        self.weighting: Weighting = weighting
        self.visibility_tolerance = float(visibility_tolerance)
        self.normalize = bool(normalize)

    def cameras(self, mesh: trimesh.Trimesh) -> list[Any]:
        """The orbit this object renders ``mesh`` from."""
        return orbit_cameras(mesh, num_views=self.num_views, elevations_deg=self.elevations_deg,
                             azimuth_offset_deg=self.azimuth_offset_deg, resolution=self.resolution,
                             fov_deg=self.fov_deg, fill=self.fill)

    def __call__(self, mesh: trimesh.Trimesh, *, points: Any = None, normals: Any = None, num_points: int = 8192,
                 seed: int = 0) -> BackprojectedShape:
        """Back-projected features of ``points`` [N, 3] on ``mesh`` (with their ``normals``), or of
        ``num_points`` area-uniform samples drawn with ``seed`` (the same samples
        ``Tango3D.encode_shape`` uses for that count and seed)."""
        from ..data import render
        from ..models.tango3d import sample_mesh_surface

        if not isinstance(mesh, trimesh.Trimesh):
            raise TypeError(f"mesh must be a trimesh.Trimesh, got {type(mesh).__name__}")
        if points is None:
            p, n = sample_mesh_surface(mesh, num_points, seed=seed)
            pts, nrm = p.numpy().astype(np.float64), n.numpy().astype(np.float64)
        else:
            pts = np.asarray(torch.as_tensor(points, dtype=torch.float64))
            if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
                raise ValueError(f"points must be [N, 3] with N >= 1, got {pts.shape}")
            if normals is None:
                nrm = _closest_face_normals(mesh, pts)
            else:
                nrm = np.asarray(torch.as_tensor(normals, dtype=torch.float64))
                if nrm.shape != pts.shape:
                    raise ValueError(f"normals {nrm.shape} must match points {pts.shape}")
        timing = {"render_s": 0.0, "encode_s": 0.0, "project_s": 0.0}
        t = time.perf_counter()
        renderer = render.Renderer(mesh)
        rendered = [renderer.render(cam, background=self.background, **self.render_options)
                    for cam in self.cameras(mesh)]
        timing["render_s"] = time.perf_counter() - t
        views = []
        for v in rendered:
            t = time.perf_counter()
            out = self.encoder(Image.fromarray(v.rgb))
            timing["encode_s"] += time.perf_counter() - t
            glob = getattr(out, "global_embedding", None)
            views.append(_EncodedView(camera=v.camera, mask=v.mask, xyz=v.xyz, sample=_sampler(out, (v.mask.shape[1], v.mask.shape[0])),
                                      global_embedding=None if glob is None else torch.as_tensor(glob, dtype=torch.float32)))
        t = time.perf_counter()
        rays = _RayScene(mesh)
        feats, weight, seen = self._project(views, rays, pts, nrm)
        hit = weight > 0
        if not hit.any():
            raise ValueError("no view sees any of the points; is the mesh empty or degenerate?")
        if not hit.all():
            from scipy.spatial import cKDTree

            src = np.flatnonzero(hit)
            nearest = src[cKDTree(pts[src]).query(pts[~hit], k=1)[1]]
            feats[torch.as_tensor(~hit)] = feats[torch.as_tensor(nearest)]
        if self.normalize:
            feats = F.normalize(feats, dim=-1, eps=1e-12)
        timing["project_s"] = time.perf_counter() - t
        globs = [v.global_embedding for v in views if v.global_embedding is not None]
        glob = F.normalize(torch.stack(globs).mean(0), dim=-1, eps=1e-12) if len(globs) == len(views) else None
        return BackprojectedShape(points=torch.from_numpy(pts.astype(np.float32)),
                                  normals=torch.from_numpy(nrm.astype(np.float32)), dense=feats.to(torch.float32),
                                  weight=torch.from_numpy(weight.astype(np.float32)),
                                  num_views_seen=torch.from_numpy(seen), global_embedding=glob, timing=timing,
                                  _owner=self, _views=views, _rays=rays)

    def _project(self, views: list[_EncodedView], rays: _RayScene, pts: np.ndarray, nrm: np.ndarray
                 ) -> tuple[Tensor, np.ndarray, np.ndarray]:
        """(weighted mean features [N, D] (0 where unseen), total weight [N], views seeing [N])."""
        n = len(pts)
        acc: Tensor | None = None
        weight = np.zeros(n)
        seen = np.zeros(n, dtype=np.int64)
        for v in views:
            vis, pix = _visible_pixels(v, rays, pts, tolerance=self.visibility_tolerance * rays.diagonal)
            if not vis.any():
                continue
            idx = np.flatnonzero(vis)
            f = v.sample(torch.as_tensor(pix[idx], dtype=torch.float32)).to(torch.float32)
            if self.normalize:
                f = F.normalize(f, dim=-1, eps=1e-12)
            if self.weighting == "cosine":
                ray = v.camera.eye[None, :] - pts[idx]
                ray /= np.maximum(np.linalg.norm(ray, axis=1, keepdims=True), 1e-12)
                w = np.abs(np.sum(ray * nrm[idx], axis=1))
            else:
                w = np.ones(len(idx))
            if acc is None:
                acc = torch.zeros(n, f.shape[1], dtype=torch.float32)
            acc[torch.as_tensor(idx)] += torch.as_tensor(w, dtype=torch.float32)[:, None] * f
            weight[idx] += w
            seen[idx] += 1
        if acc is None:  # no view sees any point: zero features, zero weight
            dim = int(views[0].sample(torch.zeros(1, 2)).shape[1]) if views else 1
            return torch.zeros(n, dim), weight, seen
        acc = acc / torch.as_tensor(np.maximum(weight, 1e-12), dtype=torch.float32)[:, None]
        return acc, weight, seen


class _RayScene:
    """Open3D ray caster over one mesh: which points a camera sees (first hit along the ray)."""

    def __init__(self, mesh: trimesh.Trimesh) -> None:
        import open3d as o3d

        self._o3d = o3d
        v = np.asarray(mesh.vertices, dtype=np.float64)
        self.diagonal = float(np.linalg.norm(v.max(0) - v.min(0))) if len(v) else 1.0
        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
                                 o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))

    def first_hit(self, eye: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance to the first surface hit [N], distance to the point [N]) along eye -> point."""
        d = pts - eye
        dist = np.linalg.norm(d, axis=1)
        rays = np.empty((len(pts), 6), dtype=np.float32)
        rays[:, :3] = eye
        rays[:, 3:] = d / np.maximum(dist, 1e-12)[:, None]
        t = self.scene.cast_rays(self._o3d.core.Tensor(rays))["t_hit"].numpy().astype(np.float64)
        return t, dist


def _visible_pixels(view: _EncodedView, rays: _RayScene, pts: np.ndarray, *, tolerance: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(visible bool [N], pixel (x, y) float64 [N, 2]) of each point in one rendered view.

    Visible: the point projects inside the image and the ray from the eye to it hits nothing more
    than ``tolerance`` before it (exact, so grazing faces count). Pixel: the mask pixel of the 3x3
    neighbourhood of the projection whose rendered surface point is nearest to the point, so the
    feature is read on the object even at silhouettes (the projection itself when none is masked).
    """
    cam = view.camera
    h, w = view.mask.shape
    xy, z = cam.project_with_depth(pts)
    ok = np.isfinite(xy).all(1) & (z > 0)
    ok &= (xy[:, 0] >= -0.5) & (xy[:, 0] <= w - 0.5) & (xy[:, 1] >= -0.5) & (xy[:, 1] <= h - 0.5)
    vis = np.zeros(len(pts), dtype=bool)
    idx = np.flatnonzero(ok)
    if len(idx):
        t_hit, dist = rays.first_hit(cam.eye, pts[idx])
        vis[idx] = t_hit >= dist - tolerance
    col = np.rint(np.where(ok, xy[:, 0], -10)).astype(np.int64)
    row = np.rint(np.where(ok, xy[:, 1], -10)).astype(np.int64)
    best = np.full(len(pts), np.inf)
    best_px = np.where(ok[:, None], np.clip(xy, -0.5, [w - 0.5, h - 0.5]), 0.0)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            r, c = row + dr, col + dc
            i = np.flatnonzero(vis & (r >= 0) & (r < h) & (c >= 0) & (c < w))
            i = i[view.mask[r[i], c[i]]]
            d = np.linalg.norm(view.xyz[r[i], c[i]].astype(np.float64) - pts[i], axis=1)
            better = d < best[i]
            j = i[better]
            best[j] = d[better]
            best_px[j, 0], best_px[j, 1] = c[j], r[j]
    return vis, best_px


def _closest_face_normals(mesh: trimesh.Trimesh, pts: np.ndarray) -> np.ndarray:
    _, _, face = trimesh.proximity.closest_point(mesh, pts)
    return np.asarray(mesh.face_normals)[face]


# ---------------------------------------------------------------- providers


class BackprojectionBaseline:
    """Evaluation provider: query views through ``image_encoder``, shapes by back-projecting the
    same encoder (:class:`BackprojectionFeatures`), texts through ``text_encoder`` if given.

    image_encoder  ``PIL.Image -> ImageFeatures-like`` (``.sample``, ``.global_embedding``)
    text_encoder   ``list[str] -> [B, G]`` or None (retrieval then reports text as unsupported)
    **options      :class:`BackprojectionFeatures` keywords (num_views, weighting, ...)
    """

    def __init__(self, image_encoder: Callable[[Image.Image], Any], *,
                 text_encoder: Callable[[list[str]], Tensor] | None = None, **options: Any) -> None:
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.backprojection = BackprojectionFeatures(image_encoder, **options)

    @classmethod
    def from_model(cls, model: Any, **options: Any) -> BackprojectionBaseline:
        """The model's own 2D branch, lifted to 3D by back-projection instead of its 3D branch."""
        return cls(model.encode_image, text_encoder=model.encode_text, **options)

    def image_features(self, view: EvalView) -> Any:
        return self.image_encoder(view.image)

    def shape_features(self, shape: EvalShape, *, num_points: int, seed: int) -> BackprojectedShape:
        return self.backprojection(shape.mesh, num_points=num_points, seed=seed)

    def text_features(self, texts: Sequence[str]) -> Tensor:
        if self.text_encoder is None:
            raise NotImplementedError("this back-projection provider has no text encoder")
        return self.text_encoder(list(texts))


def _key_seed(*parts: object) -> list[int]:
    return [zlib.crc32(str(p).encode()) for p in parts]


def _random_unit(rng: np.random.Generator, *shape: int) -> Tensor:
    return F.normalize(torch.from_numpy(rng.standard_normal(shape).astype(np.float32)), dim=-1, eps=1e-12)


@dataclass(frozen=True, eq=False)
class _RandomPixels:
    table: Tensor  # [H, W, D]
    global_embedding: Tensor

    def sample(self, xy: Any) -> Tensor:
        p = torch.as_tensor(xy, dtype=torch.float32)
        h, w = self.table.shape[:2]
        c = p[:, 0].round().long().clamp(0, w - 1)
        r = p[:, 1].round().long().clamp(0, h - 1)
        return self.table[r, c]


@dataclass(frozen=True, eq=False)
class _RandomPoints:
    points: Tensor
    dense: Tensor
    global_embedding: Tensor
    key: str
    seed: int

    def query(self, xyz: Any) -> Tensor:
        q = np.ascontiguousarray(torch.as_tensor(xyz, dtype=torch.float32).numpy())
        rng = np.random.default_rng([self.seed, *_key_seed(self.key), zlib.crc32(q.tobytes())])
        return _random_unit(rng, len(q), self.dense.shape[1])


class RandomBaseline:
    """Chance level: i.i.d. Gaussian unit features for every pixel, point, shape and text.

    Deterministic: features depend only on ``seed`` and the view / shape / text they describe.
    Candidate points are the same surface samples the model's ``encode_shape`` draws, so a
    random point choice is what pixel2point measures.
    """

    def __init__(self, *, dim: int = 64, global_dim: int = 384, seed: int = 0) -> None:
        self.dim, self.global_dim, self.seed = int(dim), int(global_dim), int(seed)

    def image_features(self, view: EvalView) -> _RandomPixels:
        rng = np.random.default_rng([self.seed, *_key_seed("image", view.key)])
        w, h = view.size
        return _RandomPixels(table=_random_unit(rng, h, w, self.dim), global_embedding=_random_unit(rng, self.global_dim))

    def shape_features(self, shape: EvalShape, *, num_points: int, seed: int) -> _RandomPoints:
        from ..models.tango3d import sample_mesh_surface

        pts, _ = sample_mesh_surface(shape.mesh, num_points, seed=seed)
        rng = np.random.default_rng([self.seed, *_key_seed("shape", shape.key)])
        return _RandomPoints(points=pts, dense=_random_unit(rng, num_points, self.dim),
                             global_embedding=_random_unit(rng, self.global_dim), key=shape.key, seed=self.seed)

    def text_features(self, texts: Sequence[str]) -> Tensor:
        return torch.stack([_random_unit(np.random.default_rng([self.seed, *_key_seed("text", t)]), self.global_dim)
                            for t in texts])

