"""Dataset shards of rendered procedural shapes, and the torch datasets that read them.

Build
-----
:func:`build_shards` generates ``shapes_per_category`` instances of every category,
renders ``views_per_shape`` views of each from random orbits, samples surface points
and occupancy queries, and writes ``{split}-{k:05d}.npz`` shards
(``np.savez_compressed``, no pickled objects) plus ``{split}-index.json`` and
``manifest.json`` (the resolved build config of every split in the directory).

Splits never share a shape: instance ``i`` of a category in split ``s`` is
``shapes.generate(category, SPLIT_OFFSET[s] + i)`` and each split owns a range of
``SPLIT_SIZE`` seeds. All other randomness (cameras, lights, point samples) is drawn
from a generator keyed by ``(seed, split, category, shape seed)``, so the arrays of a
shard depend only on the build arguments: not on ``workers``, shard order or reruns.

Shard layout (one ``.npz`` per shard, ``S`` shapes, ``V`` views, ``R x R`` pixels,
``P`` surface points, ``M`` occupancy queries, ``K`` = longest part vocabulary)::

    format_version      int64  []
    config_hash         <U16   []        hash of the content-defining build config
    shape_index         int64  [S]       position of the shape in its split
    seed                int64  [S]       shapes.generate seed
    category_index      int64  [S]       index into shapes.CATEGORIES
    category, caption   <U     [S]
    part_names          <U     [S, K]    padded with ""
    s{j:04d}.points     float32 [P, 3]   area-uniform samples of the OUTER surface (faces
                                         buried inside other parts excluded), canonical
    s{j:04d}.normals    int8    [P, 3]   unit normal * 127, rounded
    s{j:04d}.point_parts int8   [P]      part index, -1 unknown
    s{j:04d}.occ_points float16 [M, 3]   labels were computed on these float16 values
    s{j:04d}.occ_labels uint8   [M]      1 inside
    s{j:04d}.cam_K      float64 [V, 3, 3] intrinsics (pixel centres on integers)
    s{j:04d}.cam_R      float64 [V, 3, 3] world-to-camera rotation, OpenCV axes
    s{j:04d}.cam_eye    float64 [V, 3]
    s{j:04d}.v{k:02d}.rgb     uint8   [R, R, 3]
    s{j:04d}.v{k:02d}.mask    bool    [R, R]
    s{j:04d}.v{k:02d}.xyz     float16 [R, R, 3]  canonical coords, 0 off the mask
    s{j:04d}.v{k:02d}.normal  int8    [R, R, 3]  unit normal * 127, 0 off the mask
    s{j:04d}.v{k:02d}.part_id int8    [R, R]     -1 off the mask

Views are separate members so that reading one training example decompresses one
view, not the whole shard. Depth is not stored: it is recomputed exactly from xyz and
the camera (``(xyz - eye) . R[2]``), which is both smaller and more precise than a
float16 depth map (float16 at z ~ 2 has steps of 2e-3; xyz in [-0.5, 0.5] has 2.4e-4).

Read
----
:class:`ShardDataset` (map-style) and :class:`OnTheFlyDataset` (iterable, renders
as it goes) yield examples in the format below;
:func:`load_split` gives un-augmented per-shape records for evaluation.

Example format
--------------
One example = one shape + one rendered view; collation stacks the tensors::

    image          float32 [3, H, W]  RGB in [0, 1], after colour/background/crop jitter
    mask           bool    [H, W]     object pixels
    depth          float32 [H, W]     camera-space z (mesh units, shape diagonal 1), 0 off mask
    xyz            float32 [H, W, 3]  surface point per pixel, CANONICAL coords, 0 off mask
    normal         float32 [H, W, 3]  unit normal, canonical coords, 0 off mask
    normal_camera  float32 [H, W, 3]  the same normal in the camera frame (rows of the
                                      world-to-camera rotation), 0 off mask
    part_id        int64   [H, W]     -1 off mask
    points         float32 [N, 3]     surface samples, rotated by ``yaw`` about +Z, then
                                      re-normalised: (R_z(yaw) p - shape_center) * shape_scale
    normals        float32 [N, 3]     their normals, rotated likewise
    point_parts    int64   [N]
    yaw            float32 []         radians
    shape_center   float32 [3]        bbox centre of the rotated shape (before scaling)
    shape_scale    float32 []         1 / bbox diagonal of the rotated shape
    occ_points     float32 [M, 3]     occupancy queries, transformed like ``points``
    occ_labels     float32 [M]        1 inside, 0 outside
    shape_index    int64   []         id of the shape within its split
    category_index int64   []         index into ``shapes.CATEGORIES``
    caption, category  str

A masked pixel p sees canonical point ``xyz[p]``; the 3D branch sees the rotated,
re-normalised shape, so the matching 3D query is
``(R_z(yaw) xyz[p] - shape_center) * shape_scale``. The 3D side has a query decoder,
so any xyz gets a feature: training needs no nearest-neighbour search."""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import multiprocessing as mp
import os
import queue
import zlib
import zipfile
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from . import render, shapes
from .sampling import sample_occupancy, sample_surface

__all__ = [
    "SPLITS",
    "SPLIT_OFFSET",
    "SPLIT_SIZE",
    "FORMAT_VERSION",
    "Split",
    "BuildConfig",
    "Augment",
    "BuildResult",
    "build_shards",
    "render_shape",
    "ShardDataset",
    "OnTheFlyDataset",
    "ShapeRecord",
    "ViewRecord",
    "SplitRecords",
    "load_split",
    "rotation_z",
]

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
SPLIT_SIZE = 100_000
"""Seeds per split; a category can have at most this many instances per split."""
SPLIT_OFFSET: dict[str, int] = {"train": 0, "val": 100_000, "test": 200_000}
"""Instance ``i`` of split ``s`` uses ``shapes.generate(category, SPLIT_OFFSET[s] + i)``."""
FORMAT_VERSION = 1

_SPLIT_ID = {s: k for k, s in enumerate(SPLITS)}
_MAX_PARTS = 127  # part ids are stored as int8


# ============================================================== configuration


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides the content of a split's shards.

    ``workers`` is not here: it changes speed, never bytes. Camera and sampling
    constants are fields (with defaults) so that they are recorded in the manifest.
    """

    split: Split
    categories: tuple[str, ...]
    shapes_per_category: int
    views_per_shape: int
    resolution: int
    points_per_shape: int
    occ_per_shape: int
    shard_size: int
    seed: int = 0
    fov_deg: float = 40.0
    elevation_deg: tuple[float, float] = (5.0, 45.0)
    # Per view, the camera distance makes the object's widest projected extent span
    # U(fill) of the half frame (1 = touches the border), measured on the vertices.
    fill: tuple[float, float] = (0.7, 0.95)
    near_surface_frac: float = 0.6
    occ_sigma: float = 0.01
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        cats = tuple(self.categories)
        object.__setattr__(self, "categories", cats)
        if not cats:
            raise ValueError("categories is empty; give at least one category")
        unknown = [c for c in cats if c not in shapes.CATEGORIES]
        if unknown:
            raise ValueError(f"unknown categories {unknown}; choose from {shapes.CATEGORIES}")
        if len(set(cats)) != len(cats):
            raise ValueError(f"categories contains duplicates: {list(cats)}")
        for name, lo in (
            ("shapes_per_category", 1),
            ("views_per_shape", 1),
            ("resolution", 8),
            ("points_per_shape", 1),
            ("occ_per_shape", 1),
            ("shard_size", 1),
            ("seed", 0),
        ):
            val = getattr(self, name)
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {val!r}")
            object.__setattr__(self, name, int(val))
        if self.shapes_per_category > SPLIT_SIZE:
            raise ValueError(
                f"shapes_per_category must be <= {SPLIT_SIZE} so that splits stay disjoint, "
                f"got {self.shapes_per_category}"
            )
        if self.resolution > 2048:
            raise ValueError(f"resolution must be <= 2048, got {self.resolution}")
        object.__setattr__(self, "elevation_deg", tuple(float(x) for x in self.elevation_deg))
        object.__setattr__(self, "fill", tuple(float(x) for x in self.fill))
        if not 0.0 < self.fill[0] <= self.fill[1] <= 1.0:
            raise ValueError(f"fill must satisfy 0 < lo <= hi <= 1, got {self.fill}")
        if not 0.0 < self.fov_deg < 180.0:
            raise ValueError(f"fov_deg must be in (0, 180), got {self.fov_deg}")

    @property
    def num_shapes(self) -> int:
        return len(self.categories) * self.shapes_per_category

    @property
    def num_shards(self) -> int:
        return math.ceil(self.num_shapes / self.shard_size)

    def shape_at(self, shape_index: int) -> tuple[str, int]:
        """``(category, instance)`` of a split position; categories interleave so every
        shard mixes categories."""
        i, c = divmod(int(shape_index), len(self.categories))
        return self.categories[c], i

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["categories"] = list(self.categories)
        d["elevation_deg"] = list(self.elevation_deg)
        d["fill"] = list(self.fill)
        return d

    @property
    def config_hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ============================================================== rendering one shape


def _shape_rng(cfg: BuildConfig, category: str, shape_seed: int) -> np.random.Generator:
    # crc32, not hash(): Python salts str hashes per process.
    return np.random.default_rng(
        [cfg.seed, _SPLIT_ID[cfg.split], zlib.crc32(category.encode()), int(shape_seed)]
    )


def _random_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """uint8 [h, w, 3]: a solid colour, a linear gradient or blurred colour noise."""
    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(rng.integers(0, 256, 3).astype(np.uint8), (h, w, 3)).copy()
    if kind == 1:
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        ang = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:h, 0:w]
        t = (np.cos(ang) * xs / max(w - 1, 1) + np.sin(ang) * ys / max(h - 1, 1))
        t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
        img = c0 * (1 - t[..., None]) + c1 * t[..., None]
        return img.astype(np.uint8)
    cells = int(rng.integers(2, 9))
    grid = rng.uniform(0, 255, (cells, cells, 3))
    ys = np.linspace(0, cells - 1, h)
    xs = np.linspace(0, cells - 1, w)
    return _bilinear_grid(grid, ys, xs).astype(np.uint8)


def _bilinear_grid(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample ``img`` [h, w, C] bilinearly on the grid ``ys`` x ``xs`` (pixel-centre
    coords, clamped at the border) -> float32 [len(ys), len(xs), C]."""
    h, w = img.shape[:2]
    img = img.astype(np.float32, copy=False)
    ys = np.clip(ys, 0, h - 1)
    xs = np.clip(xs, 0, w - 1)
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy = (ys - y0).astype(np.float32)[:, None, None]
    wx = (xs - x0).astype(np.float32)[None, :, None]
    # Separable: rows first, then columns (two gathers instead of four 2-D ones).
    rows = img[y0] * (1 - wy) + img[y1] * wy
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx


def _quantize_unit(n: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.nan_to_num(n) * 127.0), -127, 127).astype(np.int8)


def _framing_distance(pts: np.ndarray, az: float, el: float, fov_deg: float, fill: float) -> float:
    """Distance from the target at which every point of ``pts`` [N, 3] (relative to the
    target) projects within ``fill`` of the half frame of a square ``fov_deg`` camera.

    A point p at lateral offset a = p . right (or p . down) and depth D - p . back is
    inside when |a| <= fill * tan(fov/2) * (D - p . back), so D is the max over points.
    """
    cam = render.Camera.orbit(azimuth_deg=az, elevation_deg=el, distance=1.0, fov_deg=fov_deg, width=8, height=8)
    back = -cam.R[2]  # from the target towards the camera
    t = fill * math.tan(math.radians(fov_deg) / 2)
    lateral = np.maximum(np.abs(pts @ cam.R[0]), np.abs(pts @ cam.R[1]))
    along = pts @ back
    # Keep the nearest point at least 5 % of the object's size in front of the camera.
    near = float(along.max()) + 0.05 * float(np.linalg.norm(pts.max(0) - pts.min(0)))
    return max(float((lateral / t + along).max()), near)


def render_shape(cfg: BuildConfig, shape_index: int) -> dict[str, Any]:
    """Generate, sample and render the shape at ``shape_index`` of ``cfg``'s split.

    Returns the shape in its stored (quantised) form: the per-shape keys of the shard
    layout (without the ``s{j}.`` prefix), ``views`` (a list of per-view dicts) and the
    metadata ``shape_index, seed, category, category_index, caption, part_names``.
    """
    category, inst = cfg.shape_at(shape_index)
    shape_seed = SPLIT_OFFSET[cfg.split] + inst
    try:
        s = shapes.generate(category, shape_seed)
    except Exception as e:  # noqa: BLE001 - re-raised with the shape named
        raise RuntimeError(f"shapes.generate({category!r}, {shape_seed}) failed: {e}") from e
    mesh = s.mesh
    face_parts = np.asarray(s.face_parts, dtype=np.int64)
    if len(s.part_names) > _MAX_PARTS:
        raise ValueError(f"{category} has {len(s.part_names)} parts; shards store part ids as int8")
    rng = _shape_rng(cfg, category, shape_seed)

    # Exterior only: a third of a sofa's triangles are buried inside other parts,
    # and no pixel can ever see those points.
    surf = sample_surface(
        mesh, cfg.points_per_shape, seed=int(rng.integers(2**63 - 1)), face_parts=face_parts, exterior_only=True
    )
    occ_pts, occ_lab = sample_occupancy(
        mesh,
        cfg.occ_per_shape,
        seed=int(rng.integers(2**63 - 1)),
        near_surface_frac=cfg.near_surface_frac,
        sigma=cfg.occ_sigma,
        quantize=True,
    )

    v = np.asarray(mesh.vertices, dtype=np.float64)
    centre = (v.min(0) + v.max(0)) / 2
    renderer = render.Renderer(mesh, face_parts=face_parts)
    R = cfg.resolution
    views, Ks, Rs, eyes = [], [], [], []
    for _ in range(cfg.views_per_shape):
        az, el = float(rng.uniform(0.0, 360.0)), float(rng.uniform(*cfg.elevation_deg))
        dist = _framing_distance(v - centre, az, el, cfg.fov_deg, float(rng.uniform(*cfg.fill)))
        cam = render.Camera.orbit(
            azimuth_deg=az, elevation_deg=el, distance=dist, target=centre, fov_deg=cfg.fov_deg, width=R, height=R
        )
        # Light from the front hemisphere, mostly from above (camera frame: y down).
        light = (rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 0.3), rng.uniform(-1.2, -0.2))
        tint = 1.0 - rng.uniform(0.0, 0.15, 3)
        view = renderer.render(
            cam,
            light_dir=light,
            light_frame="camera",
            ambient=float(rng.uniform(0.25, 0.5)),
            diffuse=float(rng.uniform(0.5, 0.8)),
            light_color=tuple(tint / tint.max()),
        )
        bg = _random_background(rng, R, R)
        rgb = np.where(view.mask[..., None], view.rgb, bg)
        mask = view.mask
        xyz = np.where(mask[..., None], view.xyz, 0.0).astype(np.float16)
        views.append(
            {
                "rgb": rgb.astype(np.uint8),
                "mask": mask.astype(bool),
                "xyz": xyz,
                "normal": np.where(mask[..., None], _quantize_unit(view.normal), 0).astype(np.int8),
                "part_id": np.where(mask, view.part_id, -1).astype(np.int8),
            }
        )
        Ks.append(cam.K)
        Rs.append(cam.R)
        eyes.append(cam.eye)
    return {
        "shape_index": int(shape_index),
        "seed": int(shape_seed),
        "category": category,
        "category_index": shapes.CATEGORIES.index(category),
        "caption": str(s.caption),
        "part_names": [str(p) for p in s.part_names],
        "points": surf.points.astype(np.float32),
        "normals": _quantize_unit(surf.normals),
        "point_parts": surf.part_id.astype(np.int8),
        "occ_points": occ_pts.astype(np.float16),
        "occ_labels": occ_lab.astype(np.uint8),
        "cam_K": np.stack(Ks).astype(np.float64),
        "cam_R": np.stack(Rs).astype(np.float64),
        "cam_eye": np.stack(eyes).astype(np.float64),
        "views": views,
    }


_SHAPE_KEYS = ("points", "normals", "point_parts", "occ_points", "occ_labels", "cam_K", "cam_R", "cam_eye")
_VIEW_KEYS = ("rgb", "mask", "xyz", "normal", "part_id")
_META_KEYS = ("format_version", "config_hash", "shape_index", "seed", "category_index", "category", "caption", "part_names")


def _shard_arrays(cfg: BuildConfig, records: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    k_max = max(len(r["part_names"]) for r in records)
    part_names = [r["part_names"] + [""] * (k_max - len(r["part_names"])) for r in records]
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "config_hash": np.array(cfg.config_hash),
        "shape_index": np.array([r["shape_index"] for r in records], dtype=np.int64),
        "seed": np.array([r["seed"] for r in records], dtype=np.int64),
        "category_index": np.array([r["category_index"] for r in records], dtype=np.int64),
        # np.array of str gives a fixed-width '<U' array: no pickle needed to load it.
        "category": np.array([r["category"] for r in records], dtype=str),
        "caption": np.array([r["caption"] for r in records], dtype=str),
        "part_names": np.array(part_names, dtype=str).reshape(len(records), k_max),
    }
    for j, r in enumerate(records):
        for k in _SHAPE_KEYS:
            arrays[f"s{j:04d}.{k}"] = r[k]
        for vi, view in enumerate(r["views"]):
            for k in _VIEW_KEYS:
                arrays[f"s{j:04d}.v{vi:02d}.{k}"] = view[k]
    return arrays


def _expected_members(cfg: BuildConfig, n_shapes: int) -> set[str]:
    names = set(_META_KEYS)
    for j in range(n_shapes):
        names.update(f"s{j:04d}.{k}" for k in _SHAPE_KEYS)
        for vi in range(cfg.views_per_shape):
            names.update(f"s{j:04d}.v{vi:02d}.{k}" for k in _VIEW_KEYS)
    return {n + ".npy" for n in names}


def _shard_name(split: str, k: int) -> str:
    return f"{split}-{k:05d}.npz"


def _shard_range(cfg: BuildConfig, k: int) -> range:
    return range(k * cfg.shard_size, min((k + 1) * cfg.shard_size, cfg.num_shapes))


def _shard_is_valid(path: Path, cfg: BuildConfig, k: int) -> bool:
    """A shard counts as done when it opens, carries this config's hash and holds every
    member; shards are only ever created by an atomic rename, so no partial file can pass."""
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
        if names != _expected_members(cfg, len(_shard_range(cfg, k))):
            return False
        with np.load(path, allow_pickle=False) as z:
            return (
                int(z["format_version"]) == FORMAT_VERSION
                and str(z["config_hash"]) == cfg.config_hash
                and z["shape_index"].tolist() == list(_shard_range(cfg, k))
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return False


def _shard_meta(cfg: BuildConfig, k: int, path: Path) -> dict[str, Any]:
    rng_k = _shard_range(cfg, k)
    cats = [cfg.shape_at(i)[0] for i in rng_k]
    return {
        "file": path.name,
        "num_shapes": len(rng_k),
        "shape_index_start": rng_k.start,
        "shape_index_stop": rng_k.stop,
        "categories": cats,
        "seeds": [SPLIT_OFFSET[cfg.split] + cfg.shape_at(i)[1] for i in rng_k],
        "bytes": path.stat().st_size,
    }


# Set in each pool worker by _worker_init: where per-shape progress ticks go.
_PROGRESS: Any = None


class _BarTicks:
    """Queue-like adapter so in-process builds tick the bar per shape, like workers."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def put(self, n: int) -> None:
        self.bar.update(n)


def _worker_init(progress_queue: Any) -> None:
    global _PROGRESS
    _PROGRESS = progress_queue
    # Parallelism is across worker processes; torch's own thread pool in each of them (the
    # torch ray caster's CPU path) only makes them fight: 2 threads ran 17x slower here.
    torch.set_num_threads(1)


def _write_shard(cfg: BuildConfig, out_dir: str, k: int) -> int:
    """Render shard ``k`` and write it atomically; returns the number of shapes."""
    records = []
    for i in _shard_range(cfg, k):
        records.append(render_shape(cfg, i))
        if _PROGRESS is not None:
            _PROGRESS.put(1)
    final = Path(out_dir) / _shard_name(cfg.split, k)
    tmp = final.with_name(f"{final.stem}.tmp{os.getpid()}.npz")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **_shard_arrays(cfg, records))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return len(records)


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_shards` did. ``built``/``skipped`` are shard numbers."""

    config: BuildConfig
    out_dir: Path
    shard_paths: list[Path]
    built: list[int]
    skipped: list[int]
    index_path: Path
    manifest_path: Path


def _resolve_categories(categories: Sequence[str] | str | None) -> tuple[str, ...]:
    if categories is None:
        cats = tuple(shapes.CATEGORIES)
        if not cats:
            raise RuntimeError("shapes.CATEGORIES is empty: no shape family is registered")
        return cats
    if isinstance(categories, str):
        raise TypeError("categories must be a sequence of names, not one string")
    return tuple(categories)


def _update_manifest(out_dir: Path, cfg: BuildConfig) -> Path:
    import trimesh

    from .raycast import resolve_backend

    engine = resolve_backend()
    if engine == "open3d":
        import open3d

        engine = f"open3d {open3d.__version__}"

    path = out_dir / "manifest.json"
    manifest: dict[str, Any] = {}
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            manifest = {}
    manifest.update(
        {
            "format_version": FORMAT_VERSION,
            "split_offset": SPLIT_OFFSET,
            "split_size": SPLIT_SIZE,
            "all_categories": list(shapes.CATEGORIES),
            "versions": {"numpy": np.__version__, "trimesh": trimesh.__version__, "raycast": engine},
        }
    )
    manifest.setdefault("splits", {})[cfg.split] = {
        **cfg.to_dict(),
        "config_hash": cfg.config_hash,
        "num_shapes": cfg.num_shapes,
        "num_shards": cfg.num_shards,
        "index": f"{cfg.split}-index.json",
    }
    _atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_shards(
    out_dir: str | os.PathLike[str],
    *,
    split: Split,
    shapes_per_category: int,
    views_per_shape: int = 8,
    resolution: int = 224,
    points_per_shape: int = 8192,
    occ_per_shape: int = 8192,
    shard_size: int = 32,
    workers: int = 2,
    categories: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> BuildResult:
    """Render one split into shards under ``out_dir`` (created if missing).

    Args:
        out_dir: output directory; several splits may share it.
        split: "train", "val" or "test" (disjoint seed ranges, see ``SPLIT_OFFSET``).
        shapes_per_category: instances per category, in [1, SPLIT_SIZE].
        views_per_shape: rendered views per shape.
        resolution: square image side in pixels.
        points_per_shape: surface samples stored per shape (the pool datasets subsample).
        occ_per_shape: occupancy queries stored per shape.
        shard_size: shapes per shard file.
        workers: processes (spawn); each renders whole shards. 1 = in this process.
        categories: subset of ``shapes.CATEGORIES`` (order kept); default all.
        seed: seeds cameras, lights and samples (not the shapes themselves).
        progress: show a tqdm bar (per shape).

    Resumable: a shard that already exists with this config's hash is skipped; shards
    are written to ``*.tmpPID.npz`` and renamed, so an interrupted build leaves no
    half-written shard. One build per directory and split at a time.

    Returns:
        :class:`BuildResult`.

    Raises:
        ValueError: bad arguments (unknown category, non-positive sizes, ...).
        RuntimeError: a shape failed to generate (the message names it).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    cfg = BuildConfig(
        split=split,
        categories=_resolve_categories(categories),
        shapes_per_category=shapes_per_category,
        views_per_shape=views_per_shape,
        resolution=resolution,
        points_per_shape=points_per_shape,
        occ_per_shape=occ_per_shape,
        shard_size=shard_size,
        seed=seed,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Leftovers of a killed run; they never look like a finished shard.
    for stale in out.glob(f"{cfg.split}-*.tmp*.npz"):
        stale.unlink(missing_ok=True)
    paths = [out / _shard_name(cfg.split, k) for k in range(cfg.num_shards)]
    skipped = [k for k in range(cfg.num_shards) if _shard_is_valid(paths[k], cfg, k)]
    todo = [k for k in range(cfg.num_shards) if k not in set(skipped)]
    # Shards of an earlier, larger build of this split would be picked up by readers
    # that glob; the index is authoritative, but remove them to avoid confusion.
    for extra in out.glob(f"{cfg.split}-[0-9][0-9][0-9][0-9][0-9].npz"):
        if extra not in set(paths):
            extra.unlink()

    from tqdm.auto import tqdm

    n_todo = sum(len(_shard_range(cfg, k)) for k in todo)
    bar = tqdm(total=n_todo, desc=f"{cfg.split} shapes", unit="shape", disable=not progress or n_todo == 0)
    try:
        if workers == 1 or len(todo) <= 1:
            global _PROGRESS
            prev, _PROGRESS = _PROGRESS, _BarTicks(bar)
            try:
                for k in todo:
                    _write_shard(cfg, str(out), k)
            finally:
                _PROGRESS = prev
        else:
            ctx = mp.get_context("spawn")
            progress_q = ctx.Queue()
            with ctx.Pool(min(workers, len(todo)), initializer=_worker_init, initargs=(progress_q,)) as pool:
                pending = [pool.apply_async(_write_shard, (cfg, str(out), k)) for k in todo]
                while pending:
                    try:
                        bar.update(progress_q.get(timeout=0.2))
                    except queue.Empty:
                        pass
                    still = []
                    for res in pending:
                        if res.ready():
                            res.get()  # re-raises a worker's exception here
                        else:
                            still.append(res)
                    pending = still
                while True:  # ticks that raced the last completion
                    try:
                        bar.update(progress_q.get_nowait())
                    except queue.Empty:
                        break
    finally:
        bar.close()

    index = {
        "format_version": FORMAT_VERSION,
        "split": cfg.split,
        "config_hash": cfg.config_hash,
        "num_shapes": cfg.num_shapes,
        "shard_size": cfg.shard_size,
        "views_per_shape": cfg.views_per_shape,
        "resolution": cfg.resolution,
        "points_per_shape": cfg.points_per_shape,
        "occ_per_shape": cfg.occ_per_shape,
        "categories": list(cfg.categories),
        "shards": [_shard_meta(cfg, k, paths[k]) for k in range(cfg.num_shards)],
    }
    index_path = out / f"{cfg.split}-index.json"
    _atomic_write_text(index_path, json.dumps(index, indent=2) + "\n")
    manifest_path = _update_manifest(out, cfg)
    return BuildResult(cfg, out, paths, todo, skipped, index_path, manifest_path)


# ============================================================== reading shards


class _ShardReader:
    """Random access to the shapes and views of one split (process-local file cache).

    NpzFile handles are opened lazily and kept in a small LRU per process, so the
    reader is safe to pickle into DataLoader workers (handles are never shared).
    """

    def __init__(self, root: str | os.PathLike[str], split: Split, *, max_open: int = 8) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = Path(root)
        index_path = self.root / f"{split}-index.json"
        if not index_path.is_file():
            raise FileNotFoundError(
                f"no {index_path.name} in {self.root}; build it with "
                f"`python -m tango3d_core.data build {self.root} --split {split} ...`"
            )
        self.index = json.loads(index_path.read_text())
        if self.index.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{index_path} has format version {self.index.get('format_version')}, "
                f"this code reads {FORMAT_VERSION}; rebuild the shards"
            )
        self.split = split
        self.shards = self.index["shards"]
        for s in self.shards:
            if not (self.root / s["file"]).is_file():
                raise FileNotFoundError(f"shard {s['file']} listed in {index_path.name} is missing")
        self.num_shapes = int(self.index["num_shapes"])
        self.views_per_shape = int(self.index["views_per_shape"])
        self.resolution = int(self.index["resolution"])
        self.points_per_shape = int(self.index["points_per_shape"])
        self.occ_per_shape = int(self.index["occ_per_shape"])
        self._starts = [int(s["shape_index_start"]) for s in self.shards]
        self._max_open = max_open
        self._open: OrderedDict[int, Any] = OrderedDict()
        self._meta: dict[int, dict[str, np.ndarray]] = {}
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state

    def _npz(self, k: int) -> Any:
        if os.getpid() != self._pid:  # forked: never reuse the parent's file offsets
            self._open = OrderedDict()
            self._pid = os.getpid()
        z = self._open.get(k)
        if z is None:
            z = np.load(self.root / self.shards[k]["file"], allow_pickle=False)
            self._open[k] = z
            while len(self._open) > self._max_open:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(k)
        return z

    def locate(self, shape_index: int) -> tuple[int, int]:
        if not 0 <= shape_index < self.num_shapes:
            raise IndexError(f"shape index {shape_index} out of range [0, {self.num_shapes})")
        k = bisect.bisect_right(self._starts, shape_index) - 1
        return k, shape_index - self._starts[k]

    def meta(self, shape_index: int) -> dict[str, Any]:
        k, j = self.locate(shape_index)
        if k not in self._meta:
            z = self._npz(k)
            self._meta[k] = {n: z[n] for n in _META_KEYS}
        m = self._meta[k]
        names = [str(p) for p in m["part_names"][j] if str(p)]
        return {
            "shape_index": int(m["shape_index"][j]),
            "seed": int(m["seed"][j]),
            "category": str(m["category"][j]),
            "category_index": int(m["category_index"][j]),
            "caption": str(m["caption"][j]),
            "part_names": names,
        }

    def shape_arrays(self, shape_index: int) -> dict[str, np.ndarray]:
        k, j = self.locate(shape_index)
        z = self._npz(k)
        return {n: z[f"s{j:04d}.{n}"] for n in _SHAPE_KEYS}

    def view_arrays(self, shape_index: int, view: int) -> dict[str, np.ndarray]:
        if not 0 <= view < self.views_per_shape:
            raise IndexError(f"view {view} out of range [0, {self.views_per_shape})")
        k, j = self.locate(shape_index)
        z = self._npz(k)
        return {n: z[f"s{j:04d}.v{view:02d}.{n}"] for n in _VIEW_KEYS}


# ============================================================== decoding + augmentation


def rotation_z(yaw: float) -> np.ndarray:
    """float64 [3, 3] rotation by ``yaw`` radians about +Z (counter-clockwise from above)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _dequantize_unit(n: np.ndarray) -> np.ndarray:
    f = n.astype(np.float32) / 127.0
    norm = np.linalg.norm(f, axis=-1, keepdims=True)
    return np.divide(f, norm, out=np.zeros_like(f), where=norm > 0)


def _decode_view(view: dict[str, np.ndarray], K: np.ndarray, R: np.ndarray, eye: np.ndarray) -> dict[str, np.ndarray]:
    """Stored view -> float maps (canonical coords), 0 / -1 off the mask."""
    mask = view["mask"].astype(bool)
    xyz = np.where(mask[..., None], view["xyz"].astype(np.float32), 0.0).astype(np.float32)
    depth = np.where(mask, (xyz.astype(np.float64) - eye) @ R[2], 0.0).astype(np.float32)
    return {
        "rgb": view["rgb"],
        "mask": mask,
        "depth": depth,
        "xyz": xyz,
        "normal": np.where(mask[..., None], _dequantize_unit(view["normal"]), 0.0).astype(np.float32),
        "part_id": np.where(mask, view["part_id"].astype(np.int64), -1),
        "K": K.astype(np.float64),
        "R": R.astype(np.float64),
        "eye": eye.astype(np.float64),
    }


@dataclass(frozen=True)
class Augment:
    """Per-example options of the training datasets.

    Attributes:
        num_points: surface points per example (taken from the stored pool).
        num_occ: occupancy queries per example.
        image_size: output image side; default the stored resolution.
        yaw: "random" (uniform in [0, 2pi) per draw), "per_shape" (fixed for a shape,
            derived from ``seed`` and its shape index: deterministic eval with the
            canonical pose hidden), or a constant in radians.
        color_jitter: brightness/contrast/saturation (no hue shift: captions name colours).
        background_jitter: replace the background (probability 0.5) with a random
            solid / gradient / noise image.
        crop_jitter: random square crop (side in ``crop_scale`` of the image, inside the
            image) resized back to ``image_size``; every map is cropped identically.
        crop_scale: range of the crop side as a fraction of the image side.
        random_subset: random point/query subsets; off = the first N of the pool
            (the pool is stored in random order, so that is still a uniform sample).
        with_camera: add ``intrinsics`` float32 [3, 3] (after crop/resize) and
            ``world_to_cam`` float32 [4, 4] (canonical frame, OpenCV axes).
    """

    num_points: int = 2048
    num_occ: int = 2048
    image_size: int | None = None
    yaw: Literal["random", "per_shape"] | float = "random"
    color_jitter: bool = True
    background_jitter: bool = True
    crop_jitter: bool = True
    crop_scale: tuple[float, float] = (0.7, 1.0)
    random_subset: bool = True
    with_camera: bool = False

    def __post_init__(self) -> None:
        for name in ("num_points", "num_occ"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if self.image_size is not None and (not isinstance(self.image_size, int) or self.image_size < 8):
            raise ValueError(f"image_size must be an integer >= 8 or None, got {self.image_size!r}")
        if isinstance(self.yaw, str):
            if self.yaw not in ("random", "per_shape"):
                raise ValueError(f'yaw must be "random", "per_shape" or a number, got {self.yaw!r}')
        elif not math.isfinite(float(self.yaw)):
            raise ValueError(f"yaw must be finite, got {self.yaw}")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")

    @classmethod
    def eval(cls, *, yaw: Literal["per_shape"] | float = "per_shape", **kw: Any) -> Augment:
        """No augmentation; by default a fixed per-shape yaw."""
        return cls(
            yaw=yaw, color_jitter=False, background_jitter=False, crop_jitter=False, random_subset=False, **kw
        )


def _crop_resize(
    maps: dict[str, np.ndarray], K: np.ndarray, box: tuple[float, float, float], out: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Crop the square ``box = (x0, y0, side)`` (pixel-edge coords: pixel i spans
    [i, i+1]) from every map and resize it to ``out x out``.

    The RGB image is sampled bilinearly; every geometric map and id map takes its
    nearest source pixel, so values are never blended across surfaces or parts.
    Returns the new maps and the intrinsics of the new image.
    """
    x0, y0, side = box
    h, w = maps["mask"].shape
    s = side / out
    src_x = x0 + (np.arange(out) + 0.5) * s  # edge coords of the output pixel centres
    src_y = y0 + (np.arange(out) + 0.5) * s
    ix = np.clip(np.floor(src_x).astype(np.int64), 0, w - 1)
    iy = np.clip(np.floor(src_y).astype(np.int64), 0, h - 1)
    res = {k: v[iy][:, ix] for k, v in maps.items() if k != "rgb"}
    res["rgb"] = _bilinear_grid(maps["rgb"].astype(np.float32), src_y - 0.5, src_x - 0.5)
    scale = out / side
    K2 = K.copy()
    K2[0, 0] *= scale
    K2[1, 1] *= scale
    K2[0, 2] = (K[0, 2] + 0.5 - x0) * scale - 0.5
    K2[1, 2] = (K[1, 2] + 0.5 - y0) * scale - 0.5
    return res, K2


def _color_jitter(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """img float32 [H, W, 3] in [0, 1]."""
    img = img * rng.uniform(0.75, 1.25)
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.75, 1.25) + mean
    grey = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = (img - grey[..., None]) * rng.uniform(0.7, 1.3) + grey[..., None]
    return np.clip(img, 0.0, 1.0)


def _yaw_for(aug: Augment, rng: np.random.Generator, seed: int, shape_index: int) -> float:
    if aug.yaw == "random":
        return float(rng.uniform(0.0, 2 * np.pi))
    if aug.yaw == "per_shape":
        return float(np.random.default_rng([int(seed), 7, int(shape_index)]).uniform(0.0, 2 * np.pi))
    return float(aug.yaw)


def _make_example(
    meta: dict[str, Any],
    shape_arr: dict[str, np.ndarray],
    view_arr: dict[str, np.ndarray],
    view_index: int,
    *,
    aug: Augment,
    rng: np.random.Generator,
    seed: int,
) -> dict[str, Any]:
    """One training example (see "Example format" in the module docstring) from stored arrays."""
    K = shape_arr["cam_K"][view_index]
    R = shape_arr["cam_R"][view_index]
    eye = shape_arr["cam_eye"][view_index]
    d = _decode_view(view_arr, K, R, eye)
    maps = {k: d[k] for k in ("rgb", "mask", "depth", "xyz", "normal", "part_id")}
    h, w = maps["mask"].shape
    out = aug.image_size or h

    if aug.background_jitter and rng.random() < 0.5:
        bg = _random_background(rng, h, w)
        maps["rgb"] = np.where(maps["mask"][..., None], maps["rgb"], bg)
    if aug.crop_jitter:
        side = rng.uniform(*aug.crop_scale) * min(h, w)
        box = (float(rng.uniform(0, w - side)), float(rng.uniform(0, h - side)), float(side))
        maps, K = _crop_resize(maps, K, box, out)
    elif out != h or h != w:
        side = float(min(h, w))
        maps, K = _crop_resize(maps, K, ((w - side) / 2, (h - side) / 2, side), out)
    img = maps["rgb"].astype(np.float32) / 255.0
    if aug.color_jitter:
        img = _color_jitter(img, rng)

    P = len(shape_arr["points"])
    M = len(shape_arr["occ_points"])
    if aug.num_points > P:
        raise ValueError(f"num_points={aug.num_points} exceeds the {P} points stored per shape")
    if aug.num_occ > M:
        raise ValueError(f"num_occ={aug.num_occ} exceeds the {M} occupancy queries stored per shape")
    if aug.random_subset:
        pi = np.sort(rng.choice(P, aug.num_points, replace=False))
        oi = np.sort(rng.choice(M, aug.num_occ, replace=False))
    else:
        pi, oi = np.arange(aug.num_points), np.arange(aug.num_occ)

    yaw = _yaw_for(aug, rng, seed, meta["shape_index"])
    Rz = rotation_z(yaw).astype(np.float32)
    # After the yaw, re-normalise to the rotated shape's own bounding box (centre 0,
    # diagonal 1): that is all inference can do with a mesh in an unknown pose
    # (`Tango3D.encode_shape`), so the 3D branch must train on the same frame.
    pool = shape_arr["points"].astype(np.float32) @ Rz.T
    lo, hi = pool.min(0), pool.max(0)
    center = (lo + hi) / 2
    scale = np.float32(1.0 / max(float(np.linalg.norm(hi - lo)), 1e-9))
    points = (pool[pi] - center) * scale
    normals = _dequantize_unit(shape_arr["normals"][pi]) @ Rz.T
    occ = (shape_arr["occ_points"][oi].astype(np.float32) @ Rz.T - center) * scale

    ex: dict[str, Any] = {
        "image": torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)),
        "mask": torch.from_numpy(np.ascontiguousarray(maps["mask"], dtype=bool)),
        "depth": torch.from_numpy(np.ascontiguousarray(maps["depth"], dtype=np.float32)),
        "xyz": torch.from_numpy(np.ascontiguousarray(maps["xyz"], dtype=np.float32)),
        "normal": torch.from_numpy(np.ascontiguousarray(maps["normal"], dtype=np.float32)),
        # Crops and resizes change K only, so the view's rotation still maps normals to the camera.
        "normal_camera": torch.from_numpy(np.ascontiguousarray(maps["normal"] @ R.T.astype(np.float32), dtype=np.float32)),
        "part_id": torch.from_numpy(np.ascontiguousarray(maps["part_id"], dtype=np.int64)),
        "points": torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)),
        "normals": torch.from_numpy(np.ascontiguousarray(normals, dtype=np.float32)),
        "point_parts": torch.from_numpy(shape_arr["point_parts"][pi].astype(np.int64)),
        "yaw": torch.tensor(yaw, dtype=torch.float32),
        "shape_center": torch.from_numpy(center.astype(np.float32)),
        "shape_scale": torch.tensor(scale, dtype=torch.float32),
        "occ_points": torch.from_numpy(np.ascontiguousarray(occ, dtype=np.float32)),
        "occ_labels": torch.from_numpy(shape_arr["occ_labels"][oi].astype(np.float32)),
        "shape_index": torch.tensor(meta["shape_index"], dtype=torch.int64),
        "category_index": torch.tensor(meta["category_index"], dtype=torch.int64),
        "caption": meta["caption"],
        "category": meta["category"],
    }
    if aug.with_camera:
        w2c = np.eye(4)
        w2c[:3, :3] = R
        w2c[:3, 3] = -R @ eye
        ex["intrinsics"] = torch.from_numpy(K.astype(np.float32))
        ex["world_to_cam"] = torch.from_numpy(w2c.astype(np.float32))
    return ex


def _resolve_aug(aug: Augment | None, augment: bool, overrides: dict[str, Any]) -> Augment:
    base = aug if aug is not None else (Augment() if augment else Augment.eval())
    return replace(base, **overrides) if overrides else base


class ShardDataset(Dataset):
    """Map-style dataset over a built split: one example per (shape, view).

    ``len = num_shapes * views_per_shape``; index ``i`` is shape ``i // V``, view
    ``i % V``. Augmentation draws come from a generator keyed by
    ``(seed, epoch, i)``, so an epoch is reproducible in any worker layout; call
    :meth:`set_epoch` to get fresh draws.

    Args:
        root: directory given to :func:`build_shards`.
        split: which split.
        augment: True = :class:`Augment` defaults (training), False = ``Augment.eval()``
            (no jitter, fixed per-shape yaw).
        aug: full options; wins over ``augment``.
        seed: augmentation seed.
        **overrides: any :class:`Augment` field, e.g. ``crop_jitter=False``, ``yaw=0.0``,
            ``num_points=4096``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: Split,
        *,
        augment: bool = True,
        aug: Augment | None = None,
        seed: int = 0,
        **overrides: Any,
    ) -> None:
        self.reader = _ShardReader(root, split)
        self.aug = _resolve_aug(aug, augment, overrides)
        if self.aug.num_points > self.reader.points_per_shape:
            raise ValueError(
                f"num_points={self.aug.num_points} exceeds the {self.reader.points_per_shape} "
                "points stored per shape"
            )
        if self.aug.num_occ > self.reader.occ_per_shape:
            raise ValueError(
                f"num_occ={self.aug.num_occ} exceeds the {self.reader.occ_per_shape} "
                "occupancy queries stored per shape"
            )
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @property
    def num_shapes(self) -> int:
        return self.reader.num_shapes

    @property
    def views_per_shape(self) -> int:
        return self.reader.views_per_shape

    def __len__(self) -> int:
        return self.reader.num_shapes * self.reader.views_per_shape

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range [0, {len(self)})")
        shape_index, view = divmod(i, self.reader.views_per_shape)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return _make_example(
            self.reader.meta(shape_index),
            self.reader.shape_arrays(shape_index),
            self.reader.view_arrays(shape_index, view),
            view,
            aug=self.aug,
            rng=rng,
            seed=self.seed,
        )


class OnTheFlyDataset(IterableDataset):
    """Examples rendered on the fly, in the format of :class:`ShardDataset`.

    The same ``(config, shape_index)`` gives exactly the stored arrays a shard of that
    config would hold, so training on the fly and training on shards see the same data.
    Shapes are dealt round-robin to DataLoader workers (worker ``w`` of ``n`` renders
    shapes ``w, w + n, ...``), so each worker renders different shapes; each shape
    yields ``views_per_shape`` examples through a small shuffle buffer.

    Args:
        split: split whose seed range is used.
        shapes_per_category: finite epoch of ``C * shapes_per_category`` shapes;
            None = endless stream (instance numbers wrap after ``SPLIT_SIZE``).
        categories, views_per_shape, resolution, points_per_shape, occ_per_shape,
            seed: as in :func:`build_shards`.
        augment, aug, **overrides: as in :class:`ShardDataset`.
        shuffle_buffer: examples held to mix views of different shapes (1 = off).
    """

    def __init__(
        self,
        *,
        split: Split = "train",
        shapes_per_category: int | None = None,
        categories: Sequence[str] | None = None,
        views_per_shape: int = 4,
        resolution: int = 224,
        points_per_shape: int = 8192,
        occ_per_shape: int = 8192,
        seed: int = 0,
        augment: bool = True,
        aug: Augment | None = None,
        shuffle_buffer: int = 16,
        **overrides: Any,
    ) -> None:
        self.cfg = BuildConfig(
            split=split,
            categories=_resolve_categories(categories),
            shapes_per_category=SPLIT_SIZE if shapes_per_category is None else shapes_per_category,
            views_per_shape=views_per_shape,
            resolution=resolution,
            points_per_shape=points_per_shape,
            occ_per_shape=occ_per_shape,
            shard_size=1,
            seed=seed,
        )
        self.endless = shapes_per_category is None
        self.aug = _resolve_aug(aug, augment, overrides)
        if self.aug.num_points > points_per_shape or self.aug.num_occ > occ_per_shape:
            raise ValueError("num_points / num_occ exceed points_per_shape / occ_per_shape")
        if not isinstance(shuffle_buffer, int) or shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be an integer >= 1, got {shuffle_buffer!r}")
        self.shuffle_buffer = shuffle_buffer
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.endless:
            raise TypeError("an endless OnTheFlyDataset has no length")
        return self.cfg.num_shapes * self.cfg.views_per_shape

    def _shape_indices(self, worker: int, n_workers: int) -> Iterator[int]:
        k = worker
        total = self.cfg.num_shapes
        while self.endless or k < total:
            yield k % total
            k += n_workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rng = np.random.default_rng([self.seed, self.epoch, worker, 1])
        buf: list[dict[str, Any]] = []
        for shape_index in self._shape_indices(worker, n_workers):
            rec = render_shape(self.cfg, shape_index)
            meta = {k: rec[k] for k in ("shape_index", "category", "category_index", "caption")}
            shape_arr = {k: rec[k] for k in _SHAPE_KEYS}
            for v, view in enumerate(rec["views"]):
                buf.append(_make_example(meta, shape_arr, view, v, aug=self.aug, rng=rng, seed=self.seed))
                if len(buf) >= self.shuffle_buffer:
                    yield buf.pop(int(rng.integers(len(buf))))
        while buf:
            yield buf.pop(int(rng.integers(len(buf))))


# ============================================================== eval reader


@dataclass(frozen=True)
class ViewRecord:
    """One stored view, decoded, without augmentation.

    Attributes:
        rgb: uint8 [H, W, 3].
        mask: bool [H, W].
        depth: float32 [H, W], camera z in mesh units, 0 off the mask.
        xyz: float32 [H, W, 3], canonical mesh coords, 0 off the mask.
        normal: float32 [H, W, 3], unit, 0 off the mask.
        part_id: int64 [H, W], -1 off the mask.
        K: float64 [3, 3]; R: float64 [3, 3] world-to-camera; eye: float64 [3].
    """

    rgb: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    xyz: np.ndarray
    normal: np.ndarray
    part_id: np.ndarray
    K: np.ndarray
    R: np.ndarray
    eye: np.ndarray

    @property
    def camera(self) -> render.Camera:
        h, w = self.mask.shape
        K = self.K
        return render.Camera(
            fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], width=w, height=h, R=self.R, eye=self.eye
        )


@dataclass(frozen=True)
class ShapeRecord:
    """One shape of a split, decoded (canonical pose, no augmentation).

    Attributes:
        points: float32 [P, 3]; normals: float32 [P, 3] unit; point_parts: int64 [P].
        occ_points: float32 [M, 3]; occ_labels: float32 [M].
        views: the V rendered views.
    """

    shape_index: int
    seed: int
    category: str
    category_index: int
    caption: str
    part_names: list[str]
    points: np.ndarray
    normals: np.ndarray
    point_parts: np.ndarray
    occ_points: np.ndarray
    occ_labels: np.ndarray
    views: list[ViewRecord] = field(repr=False)


class SplitRecords(Sequence[ShapeRecord]):
    """Lazy sequence of :class:`ShapeRecord`: a shape is read when indexed."""

    def __init__(self, root: str | os.PathLike[str], split: Split) -> None:
        self.reader = _ShardReader(root, split)

    def __len__(self) -> int:
        return self.reader.num_shapes

    def __getitem__(self, i: int) -> ShapeRecord:  # type: ignore[override]
        if isinstance(i, slice):
            raise TypeError("SplitRecords does not support slices; index one shape at a time")
        i = int(i)
        if i < 0:
            i += len(self)
        meta = self.reader.meta(i)
        arr = self.reader.shape_arrays(i)
        views = []
        for v in range(self.reader.views_per_shape):
            d = _decode_view(self.reader.view_arrays(i, v), arr["cam_K"][v], arr["cam_R"][v], arr["cam_eye"][v])
            views.append(ViewRecord(**d))
        return ShapeRecord(
            **meta,
            points=arr["points"].astype(np.float32),
            normals=_dequantize_unit(arr["normals"]),
            point_parts=arr["point_parts"].astype(np.int64),
            occ_points=arr["occ_points"].astype(np.float32),
            occ_labels=arr["occ_labels"].astype(np.float32),
            views=views,
        )

    def __iter__(self) -> Iterator[ShapeRecord]:
        for i in range(len(self)):
            yield self[i]


def load_split(root: str | os.PathLike[str], split: Split) -> SplitRecords:
    """Per-shape eval records of a built split (lazy; see :class:`ShapeRecord`)."""
    return SplitRecords(root, split)
