"""Stage-0 geometric supervision of the 2D branch: depth, normal and xyz, masked to the object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["NormalFrame", "XyzMode", "geometry_loss"]

XyzMode = Literal["canonical", "yaw_invariant"]
# Which frame the normal target is in: "camera" is what an image shows (shading); "canonical"
# (the object frame) is ambiguous up to the object's yaw, like xyz. Chosen by the caller, which
# passes the matching target (batch "normal_camera" or "normal").
NormalFrame = Literal["camera", "canonical"]


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """values [B, H, W], mask bool [B, H, W] -> scalar mean over masked entries (0 if none)."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1.0)


def _yaw_invariant_l1(pred: Tensor, target: Tensor, mask: Tensor, steps: int) -> Tensor:
    """pred, target [B, H, W, 3], mask bool [B, H, W] -> scalar: sum over images of the
    smallest per-image L1 sum over ``steps`` yaws of ``pred``, divided by the masked pixel count."""
    if steps < 1:
        raise ValueError(f"yaw_steps must be >= 1, got {steps}")
    m = mask.to(pred.dtype)
    tx, ty, tz = target.unbind(-1)
    # The minimum's gradient is the gradient at the best yaw, so the search runs without
    # autograd (a graph over [steps, B, H, W] maps more than doubled a training step) and
    # only the chosen rotation is differentiated.
    with torch.no_grad():
        px, py, pz = pred.detach().unbind(-1)          # [B, H, W] each
        z_err = ((pz - tz).abs() * m).sum(dim=(1, 2))  # [B]; a yaw leaves z alone
        best_err = torch.full_like(z_err, float("inf"))
        best_t = torch.zeros_like(z_err)
        for k in range(steps):
            t = 2 * math.pi * k / steps
            c, s = math.cos(t), math.sin(t)
            e = (((c * px - s * py - tx).abs() + (s * px + c * py - ty).abs()) * m).sum(dim=(1, 2))
            better = e < best_err
            best_err = torch.where(better, e, best_err)
            best_t = torch.where(better, torch.full_like(best_t, t), best_t)
    c = torch.cos(best_t)[:, None, None]
    s = torch.sin(best_t)[:, None, None]
    px, py, pz = pred.unbind(-1)
    err = ((c * px - s * py - tx).abs() + (s * px + c * py - ty).abs() + (pz - tz).abs()) / 3.0
    return (err * m).sum() / m.sum().clamp(min=1.0)


def geometry_loss(
    pred: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    mask: Tensor,
    *,
    depth_mode: Literal["shift_invariant", "absolute"] = "shift_invariant",
    xyz_mode: XyzMode = "canonical",
    yaw_steps: int = 36,
    weights: Mapping[str, float] | None = None,
) -> dict[str, Tensor]:
    """Masked per-pixel losses.

    pred, target  dicts with ``depth`` [B, H, W], ``normal`` [B, H, W, 3], ``xyz`` [B, H, W, 3]
                  (a key missing from ``pred`` is skipped)
    mask          bool [B, H, W], object pixels
    depth_mode    "shift_invariant": L1 after subtracting each image's masked mean depth, since
                  the camera distance is not observable from a crop; "absolute": plain L1.
    xyz_mode      "canonical": L1 to the object-centred xyz. "yaw_invariant": per image, the
                  smallest L1 over ``yaw_steps`` rotations of the prediction about +Z (the
                  object's facing direction is not always visible: a canonical L1 then pulls
                  x and y of every pixel towards the mean, while this keeps the predicted
                  shape and lets the image choose its frame; the height is scored either way)
    weights       per-term weights for ``loss`` (default 1 each)

    Returns a dict of scalars: ``depth`` (L1, canonical units), ``normal`` (mean 1 - cosine),
    ``xyz`` (mean L1 over the 3 coordinates) for the terms present, and ``loss``, the weighted sum.
    Images without masked pixels contribute nothing.
    """
    if mask.dim() != 3:
        raise ValueError(f"mask must be [B, H, W], got {tuple(mask.shape)}")
    mask = mask.bool()
    w = {"depth": 1.0, "normal": 1.0, "xyz": 1.0, **(weights or {})}
    terms: dict[str, Tensor] = {}
    if "depth" in pred:
        pd, gd = pred["depth"], target["depth"].to(pred["depth"].dtype)
        if depth_mode == "shift_invariant":
            m = mask.to(pd.dtype)
            count = m.sum(dim=(1, 2), keepdim=True).clamp(min=1.0)
            pd = pd - (pd * m).sum(dim=(1, 2), keepdim=True) / count
            gd = gd - (gd * m).sum(dim=(1, 2), keepdim=True) / count
        elif depth_mode != "absolute":
            raise ValueError(f"depth_mode must be 'shift_invariant' or 'absolute', got {depth_mode!r}")
        terms["depth"] = _masked_mean((pd - gd).abs(), mask)
    if "normal" in pred:
        cos = F.cosine_similarity(pred["normal"], target["normal"].to(pred["normal"].dtype), dim=-1, eps=1e-6)
        terms["normal"] = _masked_mean(1.0 - cos, mask)
    if "xyz" in pred:
        if xyz_mode == "canonical":
            err = (pred["xyz"] - target["xyz"].to(pred["xyz"].dtype)).abs().mean(dim=-1)
            terms["xyz"] = _masked_mean(err, mask)
        elif xyz_mode == "yaw_invariant":
            terms["xyz"] = _yaw_invariant_l1(pred["xyz"], target["xyz"].to(pred["xyz"].dtype), mask, yaw_steps)
        else:
            raise ValueError(f"xyz_mode must be 'canonical' or 'yaw_invariant', got {xyz_mode!r}")
    if not terms:
        raise ValueError("pred has none of 'depth', 'normal', 'xyz'")
    terms["loss"] = sum(w[k] * v for k, v in terms.items())  # type: ignore[assignment]
    return terms
