"""What every suite shares: the run configuration, the evaluation scenes, the feature-provider
interface, and small numeric helpers.

An evaluation *scene* (:class:`EvalShape`) is one shape as the 3D branch sees it (the mesh after
a random yaw about +Z) plus a few rendered views whose ground truth is expressed in that same
frame. So a pixel's true 3D point is ``view.xyz[row, col]`` and can be compared with the
``points`` a provider returns for ``shape.mesh`` without any further transform.

A *provider* (:class:`FeatureProvider`) turns views and shapes into features. The trained model
(:class:`ModelProvider`), the baselines (``tango3d_core.eval.baselines``) and test oracles all
implement it, so the suites never care where features come from.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from PIL import Image
from torch import Tensor

from ...data.meshio import SUPPORTED_EXTENSIONS
from ..metrics import DEFAULT_THRESHOLDS

__all__ = [
    "SUITE_NAMES",
    "SuiteName",
    "SuiteConfig",
    "default_config",
    "EvalView",
    "EvalShape",
    "PixelFeatures",
    "PointFeatures",
    "FeatureProvider",
    "ModelProvider",
    "MethodTimer",
    "procedural_scenes",
    "mesh_files",
    "mesh_folder_scenes",
    "scene_rng",
    "argmax_cosine",
    "random_view_cameras",
    "fit_distance",
    "MESH_EXTENSIONS",
]

SuiteName = Literal["pixel2point", "point2pixel", "part-transfer", "retrieval", "vae"]
SUITE_NAMES: tuple[str, ...] = ("pixel2point", "point2pixel", "part-transfer", "retrieval", "vae")
# The formats `load_mesh` reads: one list, so --meshes never offers a file the loader refuses.
MESH_EXTENSIONS: tuple[str, ...] = SUPPORTED_EXTENSIONS


# ================================================================ configuration


@dataclass(frozen=True)
class SuiteConfig:
    """Everything that decides a suite's numbers (saved, resolved, in every JSON result).

    categories           procedural categories (None: every category of ``shapes.CATEGORIES``)
    shapes_per_category  held-out instances per category (gallery size per category for
                         retrieval; for part-transfer, ``2 * pairs`` shapes per category)
    views_per_shape      rendered query views per shape
    resolution           side of the square rendered views, pixels
    num_points           N, surface points each provider encodes per shape (``encode_shape``)
    pixels_per_view      query pixels per view (pixel2point)
    points_per_shape     query points per shape (point2pixel)
    label_points         labelled points / pixels per shape (part-transfer)
    occupancy_points     occupancy queries per shape (vae)
    seed                 every random choice (yaw, views, pixels, point samples) derives from it
    thresholds           accuracy thresholds, fractions of the bbox diagonal (pixel2point) or
                         of the image size (point2pixel)
    depth_tolerance      a point is visible in a view when the rendered depth at its pixel is
                         within this fraction of the bbox diagonal of the point's own depth
    consistency_threshold, consistency_min_views
                         point2pixel: a point is consistent when its best pixel lies within
                         ``consistency_threshold`` x image size of its projection in every view
                         that sees it, counted over points seen in >= ``consistency_min_views``
    backprojection_views views the back-projection baseline renders per shape
    meshes               a folder of user meshes replacing the procedural test split
                         (geometric suites only)
    split                procedural split (disjoint seeds, see ``data.dataset.SPLIT_OFFSET``)
    vae_tokens           vae: latent-token counts each model's VAE ("local" query decoder) is
                         also evaluated at, as rows ``<name>@<count>`` (the trained count is
                         always the ``<name>`` row)
    """

    categories: tuple[str, ...] | None = None
    shapes_per_category: int = 4
    views_per_shape: int = 4
    resolution: int = 224
    num_points: int = 8192
    pixels_per_view: int = 64
    points_per_shape: int = 256
    label_points: int = 2048
    occupancy_points: int = 4096
    seed: int = 0
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    depth_tolerance: float = 0.01
    consistency_threshold: float = 0.05
    consistency_min_views: int = 3
    backprojection_views: int = 8
    meshes: str | None = None
    split: Literal["train", "val", "test"] = "test"
    vae_tokens: tuple[int, ...] = (512, 1024)

    def __post_init__(self) -> None:
        if self.categories is not None:
            from ...data import shapes

            cats = tuple(self.categories)
            unknown = [c for c in cats if c not in shapes.CATEGORIES]
            if unknown:
                raise ValueError(f"unknown categories {unknown}; choose from {shapes.CATEGORIES}")
            if not cats:
                raise ValueError("categories is empty; give at least one, or None for all")
            object.__setattr__(self, "categories", cats)
        for name in ("shapes_per_category", "views_per_shape", "num_points", "pixels_per_view",
                     "points_per_shape", "label_points", "occupancy_points", "backprojection_views",
                     "consistency_min_views"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
            object.__setattr__(self, name, int(v))
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, (int, np.integer)) \
                or not 16 <= self.resolution <= 2048:
            raise ValueError(f"resolution must be an integer in [16, 2048], got {self.resolution!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        th = tuple(float(t) for t in self.thresholds)
        if not th or any(not 0 < t < 1 for t in th):
            raise ValueError(f"thresholds must be fractions in (0, 1), got {self.thresholds}")
        object.__setattr__(self, "thresholds", th)
        tokens = tuple(self.vae_tokens)
        if any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1 for t in tokens):
            raise ValueError(f"vae_tokens must be integers >= 1, got {self.vae_tokens!r}")
        object.__setattr__(self, "vae_tokens", tuple(int(t) for t in tokens))
        for name in ("depth_tolerance", "consistency_threshold"):
            if not 0 < float(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if self.split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {self.split!r}")
        if self.meshes is not None:
            object.__setattr__(self, "meshes", str(self.meshes))

    @property
    def category_list(self) -> tuple[str, ...]:
        from ...data import shapes

        return self.categories if self.categories is not None else tuple(shapes.CATEGORIES)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["categories"] = list(self.category_list) if self.meshes is None else None
        d["thresholds"] = list(self.thresholds)
        d["vae_tokens"] = list(self.vae_tokens)
        return d


# Per suite: (full, quick) overrides of the SuiteConfig defaults. Quick sizes keep every suite
# under 5 minutes on one CPU thread with all baselines (see docs/results.md for timings).
_PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "pixel2point": ({"shapes_per_category": 4, "views_per_shape": 4},
                    {"shapes_per_category": 1, "views_per_shape": 2}),
    "point2pixel": ({"shapes_per_category": 4, "views_per_shape": 4},
                    {"shapes_per_category": 1, "views_per_shape": 3}),
    "part-transfer": ({"shapes_per_category": 6, "views_per_shape": 1},
                      {"shapes_per_category": 2, "views_per_shape": 1, "label_points": 1024}),
    "retrieval": ({"shapes_per_category": 6, "views_per_shape": 1},
                  {"shapes_per_category": 2, "views_per_shape": 1}),
    "vae": ({"shapes_per_category": 6, "views_per_shape": 1},
            {"shapes_per_category": 2, "views_per_shape": 1, "occupancy_points": 2048}),
}


def default_config(suite: str, *, quick: bool = False, **overrides: Any) -> SuiteConfig:
    """The documented default configuration of ``suite`` (``quick``: the <= 5 minute CPU one),
    with any :class:`SuiteConfig` field overridden."""
    if suite not in _PRESETS:
        raise ValueError(f"unknown suite {suite!r}; choose one of {list(SUITE_NAMES)}")
    kw = dict(_PRESETS[suite][1 if quick else 0])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return SuiteConfig(**kw)


# ================================================================ scenes


@dataclass(frozen=True, eq=False)
class EvalView:
    """One rendered query view; every coordinate is in the frame of ``EvalShape.mesh``.

    image    PIL RGB image, ``resolution`` x ``resolution``
    mask     bool [H, W] object pixels
    xyz      float32 [H, W, 3] surface point each pixel sees (mesh units), NaN off the mask
    depth    float32 [H, W] camera z of ``xyz`` (mesh units), 0 off the mask
    part_id  int64 [H, W] index into the shape's ``part_names``, -1 off the mask / unknown
    camera   ``render.Camera`` in the same frame (``camera.project(xyz)`` gives the pixel)
    key      unique name, e.g. ``"chair/200003/v1"`` (seeds random choices)
    """

    image: Image.Image
    mask: np.ndarray
    xyz: np.ndarray
    depth: np.ndarray
    part_id: np.ndarray
    camera: Any
    key: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.image.size

    def masked_pixels(self) -> np.ndarray:
        """int64 [K, 2] (x, y) of every mask pixel, row-major order."""
        rows, cols = np.nonzero(self.mask)
        return np.stack([cols, rows], axis=-1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class EvalShape:
    """One held-out shape, as the 3D branch gets it.

    mesh         trimesh.Trimesh after the yaw (the "3D input"); for procedural shapes Z-up,
                 bbox-centred, diagonal 1 before the yaw
    yaw          radians about +Z applied to the canonical mesh (and to all ground truth)
    diameter     bbox diagonal of the canonical mesh: errors are fractions of it
    points       float32 [P, 3] samples of the outer surface, same frame as ``mesh``
    point_parts  int64 [P] index into ``part_names``, -1 unknown
    part_names   the instance's part vocabulary (same name = same semantic part)
    views        rendered query views (may be empty)
    key          unique name ``"category/seed"`` or the mesh file's relative path
    """

    key: str
    category: str
    seed: int
    caption: str
    mesh: trimesh.Trimesh
    yaw: float
    diameter: float
    points: np.ndarray
    point_parts: np.ndarray
    part_names: list[str]
    views: list[EvalView] = field(default_factory=list)


def scene_rng(seed: int, *names: object) -> np.random.Generator:
    """A generator keyed by ``seed`` and any names (crc32, so identical in every process)."""
    return np.random.default_rng([int(seed)] + [zlib.crc32(str(n).encode()) for n in names])


def _rotated(mesh: trimesh.Trimesh, Rz: np.ndarray) -> trimesh.Trimesh:
    out = mesh.copy()
    T = np.eye(4)
    T[:3, :3] = Rz
    out.apply_transform(T)
    return out


def _rotate_camera(cam: Any, Rz: np.ndarray) -> Any:
    """The camera that sees ``Rz @ world`` exactly as ``cam`` sees ``world``."""
    from ...data import render

    return render.Camera(fx=cam.fx, fy=cam.fy, cx=cam.cx, cy=cam.cy, width=cam.width, height=cam.height,
                         R=cam.R @ Rz.T, eye=Rz @ cam.eye)


def _procedural_scene(cfg: SuiteConfig, category: str, instance: int, *, views: int, points: int) -> EvalShape:
    from ...data import dataset, render, shapes

    cats = cfg.category_list
    bc = dataset.BuildConfig(split=cfg.split, categories=cats, shapes_per_category=instance + 1,
                             views_per_shape=max(views, 1), resolution=cfg.resolution,
                             points_per_shape=points, occ_per_shape=1, shard_size=1, seed=cfg.seed)
    # The data engine's own renderer of a split position: same cameras, lights and backgrounds
    # as the training shards, on seeds no training shard uses.
    rec = dataset.render_shape(bc, instance * len(cats) + cats.index(category))
    shape = shapes.generate(category, rec["seed"])
    key = f"{category}/{rec['seed']}"
    yaw = float(scene_rng(cfg.seed, "yaw", key).uniform(0.0, 2.0 * math.pi))
    Rz = dataset.rotation_z(yaw)
    eval_views = []
    for k, v in enumerate(rec["views"][:views]):
        cam = render.Camera(fx=rec["cam_K"][k][0, 0], fy=rec["cam_K"][k][1, 1], cx=rec["cam_K"][k][0, 2],
                            cy=rec["cam_K"][k][1, 2], width=cfg.resolution, height=cfg.resolution,
                            R=rec["cam_R"][k], eye=rec["cam_eye"][k])
        mask = np.asarray(v["mask"], dtype=bool)
        xyz_c = np.asarray(v["xyz"], dtype=np.float64)
        depth = np.where(mask, (xyz_c - cam.eye) @ cam.R[2], 0.0).astype(np.float32)
        xyz = np.where(mask[..., None], xyz_c @ Rz.T, np.nan).astype(np.float32)
        eval_views.append(EvalView(image=Image.fromarray(np.asarray(v["rgb"], dtype=np.uint8)), mask=mask,
                                   xyz=xyz, depth=depth, part_id=np.asarray(v["part_id"], dtype=np.int64),
                                   camera=_rotate_camera(cam, Rz), key=f"{key}/v{k}"))
    return EvalShape(key=key, category=category, seed=int(rec["seed"]), caption=str(rec["caption"]),
                     mesh=_rotated(shape.mesh, Rz), yaw=yaw, diameter=float(_bbox_diag(shape.mesh)),
                     points=(np.asarray(rec["points"], dtype=np.float64) @ Rz.T).astype(np.float32),
                     point_parts=np.asarray(rec["point_parts"], dtype=np.int64),
                     part_names=list(rec["part_names"]), views=eval_views)


def procedural_scenes(cfg: SuiteConfig, *, instances: Sequence[int] | None = None, views: int | None = None,
                      points: int = 8192) -> Iterator[EvalShape]:
    """Held-out procedural scenes, category by category, instance by instance.

    instances  instance numbers within the split (default ``range(cfg.shapes_per_category)``);
               instance ``i`` of a category is ``shapes.generate(category, SPLIT_OFFSET[split] + i)``
    views      query views per shape (default ``cfg.views_per_shape``; 0 renders none)
    points     outer-surface samples with part labels per shape
    """
    inst = list(range(cfg.shapes_per_category)) if instances is None else [int(i) for i in instances]
    nv = cfg.views_per_shape if views is None else int(views)
    for category in cfg.category_list:
        for i in inst:
            yield _procedural_scene(cfg, category, i, views=nv, points=points)


def _bbox_diag(mesh: trimesh.Trimesh) -> float:
    v = np.asarray(mesh.vertices, dtype=np.float64)
    return float(np.linalg.norm(v.max(0) - v.min(0)))


def fit_distance(vertices: np.ndarray, camera: Any, *, fill: float) -> float:
    """Camera distance from the target along ``camera``'s viewing axis at which every vertex
    [V, 3] (relative to the target) projects within ``fill`` of the half frame.

    ``camera`` only gives the orientation (any distance); a square image is assumed.
    A vertex at lateral offset ``a`` and height ``b`` towards the camera is inside when
    ``|a| <= fill * tan(fov / 2) * (D - b)``, so ``D`` is the largest ``|a| / t + b``.
    """
    t = fill * math.tan(math.radians(camera.fov_deg) / 2.0)
    back = -camera.R[2]
    lateral = np.maximum(np.abs(vertices @ camera.R[0]), np.abs(vertices @ camera.R[1]))
    along = vertices @ back
    size = float(np.linalg.norm(vertices.max(0) - vertices.min(0)))
    return max(float((lateral / t + along).max()), float(along.max()) + 0.05 * size)


def random_view_cameras(mesh: trimesh.Trimesh, rng: np.random.Generator, count: int, *, resolution: int,
                        fov_deg: float = 40.0, elevation_deg: tuple[float, float] = (5.0, 45.0),
                        fill: tuple[float, float] = (0.7, 0.95)) -> list[Any]:
    """``count`` orbit cameras around the mesh's bbox centre with the test split's distribution:
    azimuth U(0, 360), elevation U(5, 45) degrees, object filling U(0.7, 0.95) of the half frame."""
    from ...data import render

    v = np.asarray(mesh.vertices, dtype=np.float64)
    centre = (v.min(0) + v.max(0)) / 2
    cams = []
    for _ in range(count):
        az, el = float(rng.uniform(0.0, 360.0)), float(rng.uniform(*elevation_deg))
        probe = render.Camera.orbit(azimuth_deg=az, elevation_deg=el, distance=1.0, fov_deg=fov_deg, width=8, height=8)
        dist = fit_distance(v - centre, probe, fill=float(rng.uniform(*fill)))
        cams.append(render.Camera.orbit(azimuth_deg=az, elevation_deg=el, distance=dist, target=centre,
                                        fov_deg=fov_deg, width=resolution, height=resolution))
    return cams


def mesh_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Every mesh file under ``folder`` (recursively, sorted by path); errors when there is none."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"meshes folder {root} is not a directory")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MESH_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"meshes folder {root} holds no mesh files ({', '.join(MESH_EXTENSIONS)})")
    return files


def mesh_folder_scenes(cfg: SuiteConfig, folder: str | os.PathLike[str], *, views: int | None = None,
                       points: int = 8192) -> Iterator[EvalShape]:
    """Scenes from every mesh file under ``folder`` (recursively, sorted): loaded with
    ``data.meshio.load_mesh`` (Z up), normalised (bbox centre at the origin, diagonal 1), yawed,
    and rendered from ``views`` random orbit cameras on a white background. No part labels.

    Raises ``FileNotFoundError`` when the folder holds no mesh; a file that cannot be loaded is
    skipped with a warning.
    """
    import warnings

    from ...data import dataset, meshio, render, sampling

    root = Path(folder)
    files = mesh_files(root)
    nv = cfg.views_per_shape if views is None else int(views)
    for path in files:
        key = path.relative_to(root).as_posix()
        try:
            mesh, _ = meshio.normalize_mesh(meshio.load_mesh(path))
        except ValueError as e:  # MeshLoadError is a ValueError
            warnings.warn(f"skipping {key}: {e}", RuntimeWarning, stacklevel=2)
            continue
        rng = scene_rng(cfg.seed, "mesh", key)
        yaw = float(rng.uniform(0.0, 2.0 * math.pi))
        Rz = dataset.rotation_z(yaw)
        rotated = _rotated(mesh, Rz)
        try:
            surf = sampling.sample_surface(rotated, points, seed=int(rng.integers(2**63 - 1)), exterior_only=True)
        except ValueError:  # almost everything buried (odd files): plain surface samples
            surf = sampling.sample_surface(rotated, points, seed=int(rng.integers(2**63 - 1)))
        renderer = render.Renderer(rotated)
        eval_views = []
        for k, cam in enumerate(random_view_cameras(rotated, rng, nv, resolution=cfg.resolution)):
            v = renderer.render(cam)
            mask = v.mask
            eval_views.append(EvalView(image=Image.fromarray(v.rgb), mask=mask, xyz=v.xyz.astype(np.float32),
                                       depth=v.depth.astype(np.float32),
                                       part_id=np.full(mask.shape, -1, dtype=np.int64), camera=cam, key=f"{key}/v{k}"))
        yield EvalShape(key=key, category="user", seed=0, caption=path.stem, mesh=rotated, yaw=yaw,
                        diameter=float(_bbox_diag(mesh)), points=surf.points.astype(np.float32),
                        point_parts=np.full(len(surf.points), -1, dtype=np.int64), part_names=[], views=eval_views)


# ================================================================ providers


@runtime_checkable
class PixelFeatures(Protocol):
    """Features of one image (``ImageFeatures`` satisfies this).

    sample(xy)        xy [M, 2] (x, y) input-image pixels -> [M, D] float32, unit length
    global_embedding  [G] unit length, or None when the provider has no global space
    """

    def sample(self, xy: Any) -> Tensor: ...

    @property
    def global_embedding(self) -> Tensor | None: ...


@runtime_checkable
class PointFeatures(Protocol):
    """Features of one shape (``ShapeFeatures`` satisfies this).

    points            [N, 3] surface samples, in the mesh's own coordinates
    dense             [N, D] unit length
    query(xyz)        xyz [M, 3] mesh coordinates -> [M, D] unit length
    global_embedding  [G] unit length, or None
    """

    @property
    def points(self) -> Tensor: ...

    @property
    def dense(self) -> Tensor: ...

    def query(self, xyz: Any) -> Tensor: ...

    @property
    def global_embedding(self) -> Tensor | None: ...


class FeatureProvider(Protocol):
    """Anything the suites can evaluate.

    image_features(view)                      -> PixelFeatures of ``view.image``
    shape_features(shape, num_points=, seed=) -> PointFeatures of ``shape.mesh``
    text_features(texts)                      -> [B, G] unit length (retrieval only; may raise
                                                 NotImplementedError)

    A provider may read anything in ``view`` / ``shape`` (an oracle in the tests reads the
    ground truth); real methods read only ``view.image`` and ``shape.mesh``.
    """

    def image_features(self, view: EvalView) -> PixelFeatures: ...

    def shape_features(self, shape: EvalShape, *, num_points: int, seed: int) -> PointFeatures: ...

    def text_features(self, texts: Sequence[str]) -> Tensor: ...


class ModelProvider:
    """Anything with the inference API as an evaluation provider: a
    :class:`~tango3d_core.models.Tango3D`, or any ``tango3d_core.providers`` provider (the app's
    backbones). It calls ``encode_image(view.image)``, ``encode_shape(shape.mesh, num_points=,
    seed=)`` and ``encode_text``, and reads nothing else of the view or shape."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def image_features(self, view: EvalView) -> PixelFeatures:
        return self.model.encode_image(view.image)

    def shape_features(self, shape: EvalShape, *, num_points: int, seed: int) -> PointFeatures:
        return self.model.encode_shape(shape.mesh, num_points=num_points, seed=seed)

    def text_features(self, texts: Sequence[str]) -> Tensor:
        try:
            return self.model.encode_text(list(texts))
        except ImportError as e:  # the optional text tower is not installed
            raise NotImplementedError(str(e)) from e


class PoseModelProvider(ModelProvider):
    """The Tango3D model with pose-verified matching (``models.pose``): the same features, but a
    pixel's match is ``argmax pose_match(...)`` instead of the most cosine-similar point. The pose
    is estimated once per (image, shape) from the image alone (its foreground from the plain
    background, the geometry head's xyz and depth) and the shape's points, normals and features.
    Suites that match pixels to points call ``match_pixels``, points to pixels ``match_points``;
    retrieval re-ranks each image query's global top candidates by ``pose_fit``; the others see
    the plain model."""

    def __init__(self, model: Any) -> None:
        super().__init__(model)
        self.fallbacks = 0  # images whose pose could not be estimated (too little foreground)

    def _pose(self, image: Any, shape: Any) -> Any:
        """The image's pose in the shape (``estimate_pose``), or None (counted in ``fallbacks``)
        where none can be estimated."""
        from ...models.pose import estimate_pose

        try:
            return estimate_pose(image, shape)
        except ValueError:
            self.fallbacks += 1
            return None

    def pose_fit(self, image: Any, shape: Any) -> float:
        """How well the image's predicted surface fits the shape at its best yaw (the best
        ``estimate_pose`` score; higher is better), or -inf where no pose can be estimated."""
        pose = self._pose(image, shape)
        return -float("inf") if pose is None else pose.score

    def match_points(self, image: Any, shape: Any, xyz: Tensor, xy: Tensor) -> Tensor:
        """[P, K] scores of points ``xyz`` [P, 3] (mesh coordinates) against pixels ``xy`` [K, 2];
        argmax along K = a point's pixel. Cosine similarities where no pose can be estimated."""
        from ...models.pose import pose_match

        pose = self._pose(image, shape)
        if pose is None:
            return shape.query(xyz) @ image.sample(xy).T
        return pose_match(image, shape, xy, pose=pose, points=xyz).T

    def match_pixels(self, image: Any, shape: Any, xy: Tensor) -> Tensor:
        """[M, N] scores of pixels ``xy`` [M, 2] against every point of ``shape``; argmax = match.
        Where no pose can be estimated the scores are the plain cosine similarities."""
        from ...models.pose import pose_match

        pose = self._pose(image, shape)
        if pose is None:
            return image.sample(xy) @ shape.dense.T
        return pose_match(image, shape, xy, pose=pose)


class MethodTimer:
    """Wall time each method spends in its provider calls, per kind ("shape", "image", "text")."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict[str, float]] = {}
        self.counts: dict[str, dict[str, int]] = {}

    def call(self, method: str, kind: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        dt = time.perf_counter() - t0
        self.seconds.setdefault(method, {}).setdefault(kind, 0.0)
        self.seconds[method][kind] += dt
        self.counts.setdefault(method, {}).setdefault(kind, 0)
        self.counts[method][kind] += 1
        return out

    def summary(self) -> dict[str, dict[str, float]]:
        """{method: {"<kind>_s_per_call": mean seconds, "<kind>_calls": n, "total_s": sum}}."""
        out: dict[str, dict[str, float]] = {}
        for m, kinds in self.seconds.items():
            row: dict[str, float] = {}
            for kind, s in kinds.items():
                n = self.counts[m][kind]
                row[f"{kind}_s_per_call"] = s / max(n, 1)
                row[f"{kind}_calls"] = n
            row["total_s"] = float(sum(kinds.values()))
            out[m] = row
        return out


# ================================================================ numeric helpers


def argmax_cosine(queries: Tensor, keys: Tensor, *, chunk: int = 4096) -> Tensor:
    """Index of the most cosine-similar key for each query.

    queries [M, D], keys [N, D] (any scale; both are L2-normalised here) -> int64 [M].
    Ties go to the lowest index.
    """
    q = F.normalize(torch.as_tensor(queries, dtype=torch.float32), dim=-1, eps=1e-12)
    k = F.normalize(torch.as_tensor(keys, dtype=torch.float32).to(q.device), dim=-1, eps=1e-12)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"feature widths differ: queries D={q.shape[-1]}, keys D={k.shape[-1]}")
    if k.shape[0] == 0:
        raise ValueError("no keys to match against")
    out = [(q[s:s + chunk] @ k.T).argmax(dim=1) for s in range(0, q.shape[0], chunk)]
    return torch.cat(out).cpu() if out else torch.zeros(0, dtype=torch.long)


def as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def summarize_errors(errors: np.ndarray, thresholds: Sequence[float], *, max_threshold: float = 0.2,
                     num: int = 41) -> dict[str, Any]:
    """Accuracy at each threshold, median / mean error and the accuracy-vs-threshold curve."""
    from ..metrics import accuracy_at, accuracy_curve

    e = np.asarray(errors, dtype=np.float64)
    t, a = accuracy_curve(e, max_threshold=max_threshold, num=num)
    return {
        "accuracy": {f"{k:g}": v for k, v in accuracy_at(e, thresholds).items()},
        "median_error": float(np.median(e)) if e.size else float("nan"),
        "mean_error": float(np.mean(e)) if e.size else float("nan"),
        "curve": {"threshold": [float(x) for x in t], "accuracy": [float(x) for x in a]},
        "num_queries": int(e.size),
    }
