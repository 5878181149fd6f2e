"""losses/vae.py: occupancy BCE and KL against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from tango3d_core.losses.vae import kl_divergence, vae_loss


def test_kl_hand_computed() -> None:
    zeros = torch.zeros(2, 3, 4)
    assert float(kl_divergence(zeros, zeros)) == 0.0
    # mean 1, var 1: 0.5 * (1 + 1 - 1 - 0) = 0.5 per channel, summed over 4 channels.
    assert math.isclose(float(kl_divergence(torch.ones(2, 3, 4), zeros)), 2.0)
    # mean 0, logvar log 2: 0.5 * (2 - 1 - log 2) per channel.
    lv = torch.full((1, 1, 1), math.log(2))
    assert math.isclose(float(kl_divergence(torch.zeros(1, 1, 1), lv)), 0.5 * (1 - math.log(2)), rel_tol=1e-6)


def test_vae_loss_hand_computed() -> None:
    logits = torch.tensor([[0.0, 2.0, -1.0, 3.0]])
    labels = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    mean, logvar = torch.ones(1, 2, 3), torch.zeros(1, 2, 3)
    out = vae_loss(logits, labels, mean, logvar, kl_weight=0.1)
    bce = (math.log(2) + math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1)) + math.log(1 + math.exp(3))) / 4
    assert math.isclose(float(out["occupancy"]), bce, rel_tol=1e-6)
    assert math.isclose(float(out["kl"]), 1.5, rel_tol=1e-6)
    assert math.isclose(float(out["loss"]), bce + 0.15, rel_tol=1e-6)
    # predictions (logit > 0): F T F T vs truth T T F F -> 2/4 right; IoU = 1 / 3
    assert math.isclose(float(out["accuracy"]), 0.5)
    assert math.isclose(float(out["iou"]), 1 / 3, rel_tol=1e-6)


def test_vae_loss_accepts_bool_labels_and_empty_union() -> None:
    out = vae_loss(torch.full((1, 3), -5.0), torch.zeros(1, 3, dtype=torch.bool), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))
    assert float(out["iou"]) == 1.0 and float(out["accuracy"]) == 1.0


def test_bad_shapes() -> None:
    with pytest.raises(ValueError):
        vae_loss(torch.zeros(1, 3), torch.zeros(1, 4), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1))
    with pytest.raises(ValueError):
        kl_divergence(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))
