"""part-transfer: semantic part labels carried from one instance to another of its category.

Pairs are instances ``(2k, 2k + 1)`` of each category of the held-out split, each with its own
random yaw. Labels are compared by part *name* (the same name is the same semantic part across
instances), over the union of both instances' part names.

Modes (each target point takes the label of its most cosine-similar source element):
    3d_to_3d                 source: ``label_points`` labelled surface points of the source shape
    2d_to_3d                 source: ``label_points`` part-labelled pixels of a view of the source
    2d_to_3d_same_instance   source: pixels of a view of the target itself (mask transfer onto
                             its own mesh, no 3D labels needed)
Targets: ``label_points`` labelled outer-surface points of the target shape, with features from
``shape_features(...).query``. Per mode: label accuracy and mIoU, averaged over pairs, and mIoU
per category.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from ..metrics import label_accuracy, mean_iou
from ._common import (
    EvalShape,
    FeatureProvider,
    MethodTimer,
    SuiteConfig,
    argmax_cosine,
    scene_rng,
)
from ._progress import progress_bar

__all__ = ["run", "MODES"]

MODES: tuple[str, ...] = ("3d_to_3d", "2d_to_3d", "2d_to_3d_same_instance")


def _labelled_points(shape: EvalShape, lut: np.ndarray, count: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    keep = np.flatnonzero(shape.point_parts >= 0)
    pick = np.sort(rng.choice(keep, size=min(count, len(keep)), replace=False))
    return shape.points[pick].astype(np.float32), lut[shape.point_parts[pick]]


def _labelled_pixels(shape: EvalShape, lut: np.ndarray, count: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    if not shape.views:
        return None
    view = shape.views[0]
    rows, cols = np.nonzero(view.mask & (view.part_id >= 0))
    if len(rows) == 0:
        return None
    pick = np.sort(rng.choice(len(rows), size=min(count, len(rows)), replace=False))
    xy = np.stack([cols[pick], rows[pick]], axis=-1).astype(np.float32)
    return xy, lut[view.part_id[rows[pick], cols[pick]]]


def run(providers: Mapping[str, FeatureProvider], cfg: SuiteConfig, pairs: Iterable[tuple[EvalShape, EvalShape]],
        *, num_pairs: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate every provider on the same (source, target) pairs; see the module docstring."""
    timer = MethodTimer()
    scores: dict[str, dict[str, list[tuple[str, float, float]]]] = {m: {k: [] for k in MODES} for m in providers}
    n_pairs = 0
    for source, target in progress_bar(pairs, total=num_pairs, desc="part-transfer", enable=progress):
        if source.category != target.category:
            raise ValueError(f"part-transfer pairs must share a category: {source.key} vs {target.key}")
        n_pairs += 1
        vocab = sorted(set(source.part_names) | set(target.part_names))
        lut_s = np.array([vocab.index(n) for n in source.part_names], dtype=np.int64)
        lut_t = np.array([vocab.index(n) for n in target.part_names], dtype=np.int64)
        rng = scene_rng(cfg.seed, "parts", source.key, target.key)
        src_pts, src_lab = _labelled_points(source, lut_s, cfg.label_points, rng)
        tgt_pts, tgt_lab = _labelled_points(target, lut_t, cfg.label_points, rng)
        src_pix = _labelled_pixels(source, lut_s, cfg.label_points, rng)
        own_pix = _labelled_pixels(target, lut_t, cfg.label_points, rng)
        for name, provider in providers.items():
            s_shp = timer.call(name, "shape", provider.shape_features, source, num_points=cfg.num_points, seed=cfg.seed)
            t_shp = timer.call(name, "shape", provider.shape_features, target, num_points=cfg.num_points, seed=cfg.seed)
            t_feat = t_shp.query(torch.as_tensor(tgt_pts))
            sources: dict[str, tuple[torch.Tensor, np.ndarray]] = {
                "3d_to_3d": (s_shp.query(torch.as_tensor(src_pts)), src_lab)}
            for mode, scene, pix in (("2d_to_3d", source, src_pix), ("2d_to_3d_same_instance", target, own_pix)):
                if pix is not None:
                    img = timer.call(name, "image", provider.image_features, scene.views[0])
                    sources[mode] = (img.sample(torch.as_tensor(pix[0])), pix[1])
            for mode, (feat, lab) in sources.items():
                pred = lab[argmax_cosine(t_feat, feat).numpy()]
                scores[name][mode].append((target.category, label_accuracy(pred, tgt_lab),
                                           mean_iou(pred, tgt_lab, num_classes=len(vocab))))
    methods: dict[str, Any] = {}
    for name in providers:
        row: dict[str, Any] = {}
        for mode in MODES:
            s = scores[name][mode]
            cats = sorted({c for c, _, _ in s})
            row[mode] = {
                "accuracy": float(np.mean([a for _, a, _ in s])) if s else float("nan"),
                "miou": float(np.mean([m for _, _, m in s])) if s else float("nan"),
                "num_pairs": len(s),
                "per_category_miou": {c: float(np.mean([m for cc, _, m in s if cc == c])) for c in cats},
            }
        methods[name] = row
    return {"methods": methods, "counts": {"pairs": n_pairs}, "timing": {"methods": timer.summary()}}
