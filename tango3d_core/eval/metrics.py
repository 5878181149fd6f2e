"""Metric functions: pure numpy, no model, no training code.

Conventions (see ``docs/results.md``):
    * Correspondence accuracy at ``r`` (Diff3F / DPC): the share of queries whose
      predicted 3D point lies within ``r * diameter`` of the true point, where the
      diameter is the shape's bounding-box diagonal (1.0 for canonical shapes).
    * Retrieval: a query's relevant set is every gallery item whose label equals
      the query's label (instance id or category id).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1)


def correspondence_errors(pred: np.ndarray, true: np.ndarray, *, diameter: float | np.ndarray = 1.0) -> np.ndarray:
    """Euclidean error of each prediction as a fraction of the shape diameter.

    Args:
        pred: [Q, 3] predicted points (mesh units).
        true: [Q, 3] ground-truth points (mesh units).
        diameter: scalar or [Q] bounding-box diagonal of each query's shape.

    Returns:
        [Q] float64 errors, unitless (fraction of the diameter).
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 2 or pred.shape[1] != 3:
        raise ValueError(f"pred and true must both be [Q, 3], got {pred.shape} and {true.shape}")
    d = np.asarray(diameter, dtype=np.float64)
    if np.any(d <= 0):
        raise ValueError("diameter must be positive")
    return np.linalg.norm(pred - true, axis=1) / d


def accuracy_at(errors: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> dict[float, float]:
    """Share of ``errors`` [Q] that are <= each threshold. Empty input gives NaN."""
    e = np.asarray(errors, dtype=np.float64)
    if e.size == 0:
        return {float(t): float("nan") for t in thresholds}
    return {float(t): float(np.mean(e <= t)) for t in thresholds}


def accuracy_curve(errors: np.ndarray, *, max_threshold: float = 0.2, num: int = 41) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy-versus-threshold curve: (thresholds [num], accuracy [num])."""
    t = np.linspace(0.0, max_threshold, num)
    e = np.sort(np.asarray(errors, dtype=np.float64))
    if e.size == 0:
        return t, np.full(num, np.nan)
    return t, np.searchsorted(e, t, side="right") / e.size


def recall_at_k(sim: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray, k: int) -> float:
    """Share of queries with at least one relevant item among the top ``k``.

    Args:
        sim: [Q, N] similarity, higher is better.
        query_labels: [Q]; gallery_labels: [N].
    """
    sim, ql, gl = _check_retrieval(sim, query_labels, gallery_labels)
    k = min(int(k), sim.shape[1])
    if k < 1:
        raise ValueError("k must be >= 1")
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    hit = gl[top] == ql[:, None]
    return float(np.mean(hit.any(axis=1)))


def precision_at_k(sim: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray, k: int) -> float:
    """Mean share of relevant items among each query's top ``k``."""
    sim, ql, gl = _check_retrieval(sim, query_labels, gallery_labels)
    k = min(int(k), sim.shape[1])
    if k < 1:
        raise ValueError("k must be >= 1")
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return float(np.mean(gl[top] == ql[:, None]))


def mean_average_precision(sim: np.ndarray, query_labels: np.ndarray, gallery_labels: np.ndarray) -> float:
    """mAP over queries; a query with no relevant gallery item is skipped."""
    sim, ql, gl = _check_retrieval(sim, query_labels, gallery_labels)
    order = np.argsort(-sim, axis=1, kind="stable")
    rel = gl[order] == ql[:, None]  # [Q, N]
    n_rel = rel.sum(axis=1)
    ranks = np.arange(1, rel.shape[1] + 1)
    prec = np.cumsum(rel, axis=1) / ranks
    ap = (prec * rel).sum(axis=1) / np.maximum(n_rel, 1)
    valid = n_rel > 0
    if not valid.any():
        return float("nan")
    return float(ap[valid].mean())


def label_accuracy(pred: np.ndarray, true: np.ndarray, *, ignore: int = -1) -> float:
    """Share of entries where ``pred == true``, skipping ``true == ignore``."""
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape:
        raise ValueError(f"shape mismatch {pred.shape} vs {true.shape}")
    keep = true != ignore
    return float(np.mean(pred[keep] == true[keep])) if keep.any() else float("nan")


def mean_iou(pred: np.ndarray, true: np.ndarray, *, num_classes: int | None = None, ignore: int = -1) -> float:
    """Mean intersection-over-union over classes present in ``true`` or ``pred``."""
    pred, true = np.asarray(pred).ravel(), np.asarray(true).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"shape mismatch {pred.shape} vs {true.shape}")
    keep = true != ignore
    pred, true = pred[keep], true[keep]
    classes = np.union1d(np.unique(true), np.unique(pred))
    if num_classes is not None:
        classes = classes[(classes >= 0) & (classes < num_classes)]
    if classes.size == 0:
        return float("nan")
    ious = []
    for c in classes:
        inter = np.sum((pred == c) & (true == c))
        union = np.sum((pred == c) | (true == c))
        ious.append(inter / union)
    return float(np.mean(ious))


def _check_retrieval(sim, query_labels, gallery_labels):
    sim = np.asarray(sim, dtype=np.float64)
    ql, gl = np.asarray(query_labels), np.asarray(gallery_labels)
    if sim.ndim != 2 or sim.shape != (len(ql), len(gl)):
        raise ValueError(f"sim must be [Q, N] = [{len(ql)}, {len(gl)}], got {sim.shape}")
    if sim.shape[1] == 0:
        raise ValueError("empty gallery")
    return sim, ql, gl
