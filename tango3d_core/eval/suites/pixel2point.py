"""pixel2point: a pixel finds its 3D point.

For each held-out shape (yawed) and each of its views, ``pixels_per_view`` mask pixels are
drawn. A method's prediction for a pixel is the point, among the ``num_points`` surface samples
its ``shape_features`` returns, whose feature is most cosine-similar to the pixel's feature, or,
for a provider with ``match_pixels(image, shape, xy) -> [M, N]`` (``tango3d-pose``), the argmax
of those scores.
The error is the distance to the pixel's true surface point, as a fraction of the shape's
bounding-box diagonal.

Per method: accuracy at each threshold, median / mean error, the accuracy-vs-threshold curve,
the same per category, and ``nearest_sample``: the same statistics for the best possible choice
among that method's candidate points (the floor that sampling alone imposes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from ._common import (
    EvalShape,
    FeatureProvider,
    MethodTimer,
    SuiteConfig,
    argmax_cosine,
    as_numpy,
    scene_rng,
    summarize_errors,
)
from ._progress import progress_bar

__all__ = ["run"]


def sample_query_pixels(mask: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """int64 [min(count, K), 2] distinct (x, y) mask pixels, uniformly at random."""
    rows, cols = np.nonzero(mask)
    if len(rows) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    pick = rng.choice(len(rows), size=min(count, len(rows)), replace=False)
    return np.stack([cols[pick], rows[pick]], axis=-1).astype(np.int64)


def run(providers: Mapping[str, FeatureProvider], cfg: SuiteConfig, scenes: Iterable[EvalShape], *,
        num_scenes: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate every provider on the same scenes; see the module docstring for the metrics."""
    timer = MethodTimer()
    errors: dict[str, list[np.ndarray]] = {m: [] for m in providers}
    floors: dict[str, list[np.ndarray]] = {m: [] for m in providers}
    cats: list[np.ndarray] = []
    n_shapes = n_views = 0
    for scene in progress_bar(scenes, total=num_scenes, desc="pixel2point", enable=progress):
        n_shapes += 1
        queries = []
        for view in scene.views:
            xy = sample_query_pixels(view.mask, cfg.pixels_per_view, scene_rng(cfg.seed, "pixels", view.key))
            if len(xy):
                queries.append((view, xy, view.xyz[xy[:, 1], xy[:, 0]].astype(np.float64)))
        n_views += len(queries)
        for view, xy, _ in queries:
            cats.append(np.full(len(xy), scene.category, dtype=object))
        for name, provider in providers.items():
            shp = timer.call(name, "shape", provider.shape_features, scene, num_points=cfg.num_points, seed=cfg.seed)
            pts = as_numpy(shp.points).astype(np.float64)
            match = getattr(provider, "match_pixels", None)
            for view, xy, gt in queries:
                img = timer.call(name, "image", provider.image_features, view)
                if match is not None:
                    scores = timer.call(name, "match", match, img, shp, torch.as_tensor(xy, dtype=torch.float32))
                    idx = scores.argmax(dim=1).numpy()
                else:
                    idx = argmax_cosine(img.sample(torch.as_tensor(xy, dtype=torch.float32)), shp.dense).numpy()
                errors[name].append(np.linalg.norm(pts[idx] - gt, axis=1) / scene.diameter)
                floors[name].append(_nearest_distance(gt, pts) / scene.diameter)
    cat = np.concatenate(cats) if cats else np.zeros(0, dtype=object)
    methods: dict[str, Any] = {}
    for name in providers:
        e = np.concatenate(errors[name]) if errors[name] else np.zeros(0)
        row = summarize_errors(e, cfg.thresholds)
        fl = np.concatenate(floors[name]) if floors[name] else np.zeros(0)
        floor = summarize_errors(fl, cfg.thresholds)
        floor.pop("curve")
        row["nearest_sample"] = floor
        row["per_category"] = {
            c: {k: v for k, v in summarize_errors(e[cat == c], cfg.thresholds).items() if k != "curve"}
            for c in sorted(set(cat.tolist()))
        }
        methods[name] = row
    return {"methods": methods, "counts": {"shapes": n_shapes, "views": n_views},
            "timing": {"methods": timer.summary()}}


def _nearest_distance(queries: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[M] distance from each query [M, 3] to its nearest point [N, 3]."""
    from scipy.spatial import cKDTree

    return cKDTree(points).query(queries, k=1)[0]
