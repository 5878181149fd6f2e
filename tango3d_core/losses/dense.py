"""Dense pixel-to-point alignment: symmetric InfoNCE over all sampled pairs in a batch.

Each image contributes P masked pixels; pixel i of image b is paired with the 3D feature queried
at the same surface point (canonical xyz, rotated by the shape's yaw). The K = B*P valid pairs
form one K x K similarity matrix, so negatives come both from the same shape (other surface
points) and from the other shapes in the batch. Pairs that are the same shape and lie within
``ignore_radius`` of each other on the surface are not treated as negatives: they are the same
place seen twice (e.g. two views of one shape in the batch), and pushing them apart would fight
the positive.

``target="gaussian"`` replaces the one-hot target by a soft one: each pixel's target mass is
spread over the same-shape points by a Gaussian of their surface distance (``sigma``), so a point
a few millimetres from the positive is a near-miss rather than a negative. The metrics that judge
dense matching forgive errors up to 5-10 % of the shape's size; the one-hot target instead spends
the features on telling apart neighbours that no metric distinguishes.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DENSE_SIGMA", "DENSE_TARGETS", "DenseTarget", "pixel_point_infonce"]

DenseTarget = Literal["exact", "gaussian"]
DENSE_TARGETS: tuple[str, ...] = get_args(DenseTarget)
DENSE_SIGMA = 0.03  # default Gaussian width, shape units (a bbox diagonal is 1)


def pixel_point_infonce(
    pixel_features: Tensor,
    point_features: Tensor,
    *,
    logit_scale: Tensor | float,
    valid: Tensor | None = None,
    positions: Tensor | None = None,
    shape_ids: Tensor | None = None,
    ignore_radius: float = 0.0,
    target: DenseTarget = "exact",
    sigma: float = DENSE_SIGMA,
) -> dict[str, Tensor]:
    """Symmetric InfoNCE between matched pixel and point features.

    pixel_features  [B, P, D]  expected L2-normalised (the loss uses dot products)
    point_features  [B, P, D]  same layout; row (b, i) is the positive of pixel (b, i)
    logit_scale     scalar, 1 / temperature
    valid           bool [B, P]; invalid rows are left out entirely (default: all valid)
    positions       [B, P, 3] canonical surface positions, for ``ignore_radius``
    shape_ids       int [B]; rows of items with equal ids are the same shape (default: each
                    batch item is its own shape)
    ignore_radius   same-shape pairs closer than this (canonical units) are not negatives
                    ("exact" target only)
    target          "exact": one-hot on the paired point; "gaussian": soft target
                    exp(-d^2 / (2 sigma^2)) over same-shape points, normalised per row
                    (needs ``positions``)
    sigma           Gaussian width, canonical units (procedural shapes have a bbox diagonal of 1)

    Returns a dict of scalars:
        loss            mean of the two directions
        pixel_to_point  cross-entropy of each pixel against all points
        point_to_pixel  cross-entropy of each point against all pixels
        accuracy        share of pixels whose best point is their positive (no gradient)
        accuracy_sigma  share of pixels whose best point is on the same shape within ``sigma``
                        of the positive (no gradient; equals ``accuracy`` without positions)
    """
    if target not in DENSE_TARGETS:
        raise ValueError(f"target must be 'exact' or 'gaussian', not {target!r}")
    if target == "gaussian" and (positions is None or not sigma > 0.0):
        raise ValueError("target='gaussian' needs positions and sigma > 0")
    if pixel_features.dim() != 3 or pixel_features.shape != point_features.shape:
        raise ValueError(
            f"pixel_features {tuple(pixel_features.shape)} and point_features "
            f"{tuple(point_features.shape)} must both be [B, P, D]"
        )
    b, p, _ = pixel_features.shape
    device = pixel_features.device
    if valid is None:
        valid = torch.ones(b, p, dtype=torch.bool, device=device)
    if shape_ids is None:
        shape_ids = torch.arange(b, device=device)
    flat_valid = valid.reshape(-1)
    pix = pixel_features.reshape(b * p, -1)[flat_valid]
    pts = point_features.reshape(b * p, -1)[flat_valid]
    k = pix.shape[0]
    if k == 0:
        zero = pixel_features.sum() * 0.0 + point_features.sum() * 0.0
        zero_acc = torch.zeros((), device=device)
        return {"loss": zero, "pixel_to_point": zero, "point_to_pixel": zero, "accuracy": zero_acc,
                "accuracy_sigma": zero_acc}

    logits = logit_scale * (pix @ pts.T)  # [K, K]
    index = torch.arange(k, device=device)
    dist = same = None
    if positions is not None:
        ids = shape_ids.reshape(b, 1).expand(b, p).reshape(-1)[flat_valid]
        pos = positions.reshape(b * p, 3)[flat_valid]
        same = ids[:, None] == ids[None, :]
        dist = torch.cdist(pos, pos)  # [K, K]
    if target == "gaussian":
        assert dist is not None and same is not None
        # symmetric weights, so one normalisation serves both directions (rows of w and of w.T)
        w = torch.exp(-0.5 * (dist / sigma) ** 2) * same
        soft = w / w.sum(dim=1, keepdim=True)
        p2q = -(soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        q2p = -(soft * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
    else:
        if ignore_radius > 0.0:
            if dist is None:
                raise ValueError("ignore_radius > 0 needs positions")
            near = same & (dist < ignore_radius)
            near.fill_diagonal_(False)
            logits = logits.masked_fill(near, float("-inf"))
        p2q = F.cross_entropy(logits, index)
        q2p = F.cross_entropy(logits.T, index)
    with torch.no_grad():
        best = logits.argmax(dim=1)
        accuracy = (best == index).float().mean()
        if dist is not None:
            hit = same[index, best] & (dist[index, best] <= sigma)
            accuracy_sigma = (hit | (best == index)).float().mean()
        else:
            accuracy_sigma = accuracy
    return {"loss": 0.5 * (p2q + q2p), "pixel_to_point": p2q, "point_to_pixel": q2p, "accuracy": accuracy,
            "accuracy_sigma": accuracy_sigma}
