"""point2pixel (reverse grounding): a 3D point finds its pixel, in every view that sees it.

For each held-out shape (yawed), ``points_per_shape`` outer-surface points are drawn. A point is
*visible* in a view when it projects inside the image onto a mask pixel whose rendered depth is
within ``depth_tolerance`` x bbox diagonal of the point's own depth. A method's prediction for a
visible point is the mask pixel whose feature is most cosine-similar to the point's feature
(``shape_features(...).query(point)``) or, for a provider with ``match_points(image, shape, xyz,
xy) -> [P, K]`` (``tango3d-pose``), the argmax of its scores; the error is the pixel distance
to the point's projection, also reported as a fraction of the image size (the longer side).

Consistency across views: among points visible in at least ``consistency_min_views`` views, the
share whose best pixel lies within ``consistency_threshold`` x image size of the projection in
every one of those views.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from ._common import (
    EvalShape,
    EvalView,
    FeatureProvider,
    MethodTimer,
    SuiteConfig,
    argmax_cosine,
    scene_rng,
    summarize_errors,
)
from ._progress import progress_bar

__all__ = ["run", "visible_points"]


def visible_points(view: EvalView, points: np.ndarray, *, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Which points [M, 3] a view sees, and where.

    Returns (visible bool [M], xy float64 [M, 2] projected (x, y) pixels, NaN behind the camera).
    ``tolerance`` is the allowed depth difference in mesh units.
    """
    xy, z = view.camera.project_with_depth(points)
    w, h = view.size
    col = np.rint(np.nan_to_num(xy[:, 0], nan=-1.0)).astype(np.int64)
    row = np.rint(np.nan_to_num(xy[:, 1], nan=-1.0)).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h) & (z > 0)
    vis = np.zeros(len(points), dtype=bool)
    r, c = row[inside], col[inside]
    vis[inside] = view.mask[r, c] & (np.abs(view.depth[r, c] - z[inside]) <= tolerance)
    return vis, xy


def run(providers: Mapping[str, FeatureProvider], cfg: SuiteConfig, scenes: Iterable[EvalShape], *,
        num_scenes: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate every provider on the same scenes; see the module docstring for the metrics."""
    timer = MethodTimer()
    px_err: dict[str, list[np.ndarray]] = {m: [] for m in providers}
    frac_err: dict[str, list[np.ndarray]] = {m: [] for m in providers}
    consistent: dict[str, list[bool]] = {m: [] for m in providers}
    n_shapes = n_pairs = 0
    for scene in progress_bar(scenes, total=num_scenes, desc="point2pixel", enable=progress):
        n_shapes += 1
        rng = scene_rng(cfg.seed, "points", scene.key)
        pick = rng.choice(len(scene.points), size=min(cfg.points_per_shape, len(scene.points)), replace=False)
        pts = scene.points[np.sort(pick)].astype(np.float64)
        tol = cfg.depth_tolerance * scene.diameter
        per_view = []
        for view in scene.views:
            vis, xy = visible_points(view, pts, tolerance=tol)
            if vis.any():
                per_view.append((view, vis, xy, view.masked_pixels()))
        if not per_view:
            continue
        n_pairs += sum(int(v[1].sum()) for v in per_view)
        seen = np.stack([v[1] for v in per_view]).sum(0)  # views seeing each point
        multi = seen >= cfg.consistency_min_views
        for name, provider in providers.items():
            shp = timer.call(name, "shape", provider.shape_features, scene, num_points=cfg.num_points, seed=cfg.seed)
            feats = shp.query(torch.as_tensor(pts, dtype=torch.float32))
            match = getattr(provider, "match_points", None)
            ok = np.ones(len(pts), dtype=bool)
            for view, vis, xy, pixels in per_view:
                img = timer.call(name, "image", provider.image_features, view)
                pix = torch.as_tensor(pixels, dtype=torch.float32)
                if match is not None:
                    q = torch.as_tensor(pts[vis], dtype=torch.float32)
                    idx = timer.call(name, "match", match, img, shp, q, pix).argmax(1).numpy()
                else:
                    idx = argmax_cosine(feats[torch.as_tensor(vis)], img.sample(pix)).numpy()
                err = np.linalg.norm(pixels[idx].astype(np.float64) - xy[vis], axis=1)
                frac = err / max(view.size)
                px_err[name].append(err)
                frac_err[name].append(frac)
                ok[np.flatnonzero(vis)[frac > cfg.consistency_threshold]] = False
            consistent[name].extend(ok[multi].tolist())
    methods: dict[str, Any] = {}
    for name in providers:
        e_px = np.concatenate(px_err[name]) if px_err[name] else np.zeros(0)
        e_fr = np.concatenate(frac_err[name]) if frac_err[name] else np.zeros(0)
        row = summarize_errors(e_fr, cfg.thresholds)
        row["median_error_px"] = float(np.median(e_px)) if e_px.size else float("nan")
        row["mean_error_px"] = float(np.mean(e_px)) if e_px.size else float("nan")
        c = consistent[name]
        row["consistency"] = {
            "share": float(np.mean(c)) if c else float("nan"),
            "num_points": len(c),
            "threshold": cfg.consistency_threshold,
            "min_views": cfg.consistency_min_views,
        }
        methods[name] = row
    return {"methods": methods, "counts": {"shapes": n_shapes, "point_view_pairs": n_pairs},
            "timing": {"methods": timer.summary()}}
