"""retrieval: global embeddings, queries against a gallery of held-out shapes.

Gallery: ``shapes_per_category`` instances of every category (each yawed); items are
``shape_features(...).global_embedding``. Queries, ranked by cosine similarity:
    image_to_shape           one rendered view of each gallery shape
    text_to_shape            each gallery shape's caption
    category_text_to_shape   "a <category>" once per category (category level only, plus P@10;
                             ``p_at_10_max`` is the best P@10 the gallery allows)
At instance level the only relevant item is the query's own shape; at category level every
shape of the query's category is. Metrics: R@1, R@5 and mAP (see ``eval.metrics``).
For a provider with ``pose_fit(image, shape) -> float`` (``tango3d-pose``), image->shape is
re-ranked: each query's ``POSE_RERANK_TOP_K`` most similar shapes by global embedding are
ordered by how well the image's predicted surface fits them (``models.pose``), the rest keep
their order below them. Text queries are ranked as for the plain model.
A method whose features have no global embedding (or no text side) is reported as unsupported.
(The back-projection baseline's shape embedding is the mean of its rendered views' image
embeddings, so for it image->shape is multi-view image matching.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...data.shapes import category_prompt
from ..metrics import mean_average_precision, precision_at_k, recall_at_k
from ._common import EvalShape, FeatureProvider, MethodTimer, SuiteConfig, as_numpy
from ._progress import progress_bar

__all__ = ["POSE_RERANK_TOP_K", "rerank_top_k", "run", "category_prompt"]

# Chosen on the validation split (docs/experiments/pose_matching.md §6): the global embedding
# finds the category; the pose fit tells the instances within its top 10 apart.
POSE_RERANK_TOP_K = 10


def _scores(sim: np.ndarray, q: np.ndarray, g: np.ndarray) -> dict[str, float]:
    return {"r@1": recall_at_k(sim, q, g, 1), "r@5": recall_at_k(sim, q, g, 5),
            "map": mean_average_precision(sim, q, g)}


def _unit(rows: list[Any]) -> np.ndarray:
    t = torch.stack([torch.as_tensor(r, dtype=torch.float32).reshape(-1) for r in rows])
    return as_numpy(F.normalize(t, dim=-1, eps=1e-12)).astype(np.float64)


def rerank_top_k(sim: np.ndarray, fit: Callable[[int, int], float], k: int, *, progress: bool = False) -> np.ndarray:
    """sim [Q, G] similarities -> [Q, G] scores whose ranking puts each query's top ``k`` items
    (by ``sim``) first, ordered by ``fit(query, item)`` (higher first; ties and -inf fall back to
    ``sim``), and every other item after them in its ``sim`` order."""
    out = np.array(sim, dtype=np.float64, copy=True)
    span = float(np.ptp(sim)) + 1.0
    for q in progress_bar(range(sim.shape[0]), total=sim.shape[0], desc="pose re-rank", enable=progress):
        top = np.argsort(-sim[q], kind="stable")[:k]
        fits = np.array([fit(q, int(j)) for j in top], dtype=np.float64)
        ok = np.isfinite(fits)
        # Rank within the top k: finite fits above failed ones, each group by fit then by sim.
        order = np.lexsort((-sim[q, top], -np.where(ok, fits, 0.0), ~ok))
        out[q, top[order]] = sim.max() + span * (k - np.arange(len(top)))
    return out


def run(providers: Mapping[str, FeatureProvider], cfg: SuiteConfig, scenes: Iterable[EvalShape], *,
        num_scenes: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate every provider on the same gallery; see the module docstring for the metrics."""
    timer = MethodTimer()
    shape_emb: dict[str, list[Any]] = {m: [] for m in providers}
    image_emb: dict[str, list[Any]] = {m: [] for m in providers}
    # Features kept whole only for the providers that re-rank by pose fit.
    kept: dict[str, tuple[list[Any], list[Any]]] = {m: ([], []) for m, p in providers.items()
                                                    if callable(getattr(p, "pose_fit", None))}
    unsupported: dict[str, str] = {}
    cats: list[str] = []
    captions: list[str] = []
    for scene in progress_bar(scenes, total=num_scenes, desc="retrieval", enable=progress):
        cats.append(scene.category)
        captions.append(scene.caption)
        for name, provider in providers.items():
            if name in unsupported:
                continue
            shp = timer.call(name, "shape", provider.shape_features, scene, num_points=cfg.num_points, seed=cfg.seed)
            img = timer.call(name, "image", provider.image_features, scene.views[0]) if scene.views else None
            if getattr(shp, "global_embedding", None) is None or img is None \
                    or getattr(img, "global_embedding", None) is None:
                unsupported[name] = "no global embedding"
                continue
            shape_emb[name].append(shp.global_embedding)
            image_emb[name].append(img.global_embedding)
            if name in kept:
                kept[name][0].append(img)
                kept[name][1].append(shp)
    inst = np.arange(len(cats))
    cat = np.asarray(cats)
    prompts_cats = sorted(set(cats))
    methods: dict[str, Any] = {}
    for name, provider in providers.items():
        if name in unsupported or not shape_emb[name]:
            methods[name] = {"unsupported": unsupported.get(name, "no gallery")}
            continue
        gallery = _unit(shape_emb[name])
        images = _unit(image_emb[name])
        sim = images @ gallery.T
        if name in kept:
            imgs, shps = kept[name]
            sim = rerank_top_k(sim, lambda q, j: timer.call(name, "pose", provider.pose_fit, imgs[q], shps[j]),
                               POSE_RERANK_TOP_K, progress=progress)
        row: dict[str, Any] = {"image_to_shape": {"instance": _scores(sim, inst, inst),
                                                   "category": _scores(sim, cat, cat)}}
        try:
            text = timer.call(name, "text", provider.text_features, captions)
            prompts = timer.call(name, "text", provider.text_features, [category_prompt(c) for c in prompts_cats])
        except NotImplementedError as e:
            row["text_to_shape"] = row["category_text_to_shape"] = {"unsupported": str(e) or "no text encoder"}
        else:
            st = _unit(list(text)) @ gallery.T
            row["text_to_shape"] = {"instance": _scores(st, inst, inst), "category": _scores(st, cat, cat)}
            sp = _unit(list(prompts)) @ gallery.T
            qc = np.asarray(prompts_cats)
            entry = _scores(sp, qc, cat)
            entry["p@10"] = precision_at_k(sp, qc, cat, 10)
            k = min(10, len(cat))
            entry["p_at_10_max"] = float(np.mean([min(k, int((cat == c).sum())) / k for c in prompts_cats]))
            row["category_text_to_shape"] = entry
        methods[name] = row
    return {"methods": methods, "counts": {"gallery": len(cats), "categories": len(prompts_cats)},
            "timing": {"methods": timer.summary()}}
