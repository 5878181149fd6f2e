"""losses/global_.py: CLIP-style contrast with duplicate-aware targets and a learnable scale."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tango3d_core.losses.global_ import contrastive_loss, global_alignment_loss
from tango3d_core.models.heads import LogitScale


def test_identity_2x2_hand_computed() -> None:
    s = 2.0
    eye = torch.eye(2)
    assert math.isclose(float(contrastive_loss(eye, eye, logit_scale=s)), math.log(1 + math.exp(-s)), rel_tol=1e-6)


def test_matches_clip_reference_when_ids_distinct() -> None:
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    b = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    logits = 4.0 * a @ b.T
    ref = 0.5 * (F.cross_entropy(logits, torch.arange(5)) + F.cross_entropy(logits.T, torch.arange(5)))
    assert torch.allclose(contrastive_loss(a, b, logit_scale=4.0), ref)
    assert torch.allclose(contrastive_loss(a, b, logit_scale=4.0, ids=torch.arange(5) * 3), ref)


def _lse(*v: float) -> float:
    return math.log(sum(math.exp(x) for x in v))


def test_duplicate_ids_share_the_target() -> None:
    # Two views of one shape (ids equal): each row's target is 0.5 / 0.5 over both columns.
    a = torch.tensor([[1.0, 0.0], [0.8, 0.6]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    s = 3.0
    dup = contrastive_loss(a, b, logit_scale=s, ids=torch.tensor([4, 4]))
    sims = [[1.0, 0.6], [0.8, 0.96]]  # a @ b.T
    rows = [_lse(s * r[0], s * r[1]) - 0.5 * s * (r[0] + r[1]) for r in sims]
    cols = [_lse(s * sims[0][j], s * sims[1][j]) - 0.5 * s * (sims[0][j] + sims[1][j]) for j in range(2)]
    assert math.isclose(float(dup), 0.5 * (sum(rows) / 2 + sum(cols) / 2), rel_tol=1e-6)
    # One-hot targets: row i wants column i only.
    one_hot_rows = [_lse(s * sims[i][0], s * sims[i][1]) - s * sims[i][i] for i in range(2)]
    one_hot_cols = [_lse(s * sims[0][j], s * sims[1][j]) - s * sims[j][j] for j in range(2)]
    plain = contrastive_loss(a, b, logit_scale=s)
    assert math.isclose(float(plain), 0.5 * (sum(one_hot_rows) / 2 + sum(one_hot_cols) / 2), rel_tol=1e-6)
    assert abs(float(plain) - float(dup)) > 1e-3


def test_global_alignment_terms() -> None:
    g = torch.Generator().manual_seed(1)
    img, shp, txt = (F.normalize(torch.randn(4, 6, generator=g), dim=-1) for _ in range(3))
    out = global_alignment_loss(img, shp, txt, logit_scale=10.0)
    assert set(out) == {"image_shape", "image_text", "shape_text", "loss"}
    assert torch.allclose(out["loss"], (out["image_shape"] + out["image_text"] + out["shape_text"]) / 3)
    two = global_alignment_loss(img, shp, None, logit_scale=10.0)
    assert set(two) == {"image_shape", "loss"} and torch.allclose(two["loss"], two["image_shape"])
    with pytest.raises(ValueError, match="at least two"):
        global_alignment_loss(img, None, None, logit_scale=1.0)
    with pytest.raises(ValueError, match=r"\[B, G\]"):
        contrastive_loss(img, shp[:3], logit_scale=1.0)
    with pytest.raises(ValueError, match="ids"):
        contrastive_loss(img, shp, logit_scale=1.0, ids=torch.arange(3))


def test_temperature_learnable_and_clamped() -> None:
    scale = LogitScale(math.log(10.0), max_log=math.log(100.0))
    a = F.normalize(torch.randn(4, 6), dim=-1)
    b = F.normalize(a + 0.1 * torch.randn(4, 6), dim=-1)
    global_alignment_loss(a, b, None, logit_scale=scale())["loss"].backward()
    assert scale.log_scale.grad is not None and float(scale.log_scale.grad) != 0.0
    with torch.no_grad():
        scale.log_scale.fill_(7.0)
    scale.log_scale.grad = None
    global_alignment_loss(a, b, None, logit_scale=scale())["loss"].backward()
    assert float(scale.log_scale.grad) == 0.0
    assert math.isclose(float(scale().detach()), 100.0, rel_tol=1e-5)
