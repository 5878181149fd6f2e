"""Shape VAE objective: occupancy binary cross-entropy plus a KL prior term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["kl_divergence", "vae_loss"]


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per latent token, averaged.

    mean, logvar [B, L, C] -> scalar: the KL summed over the C channels of a token, averaged
    over tokens and batch (so its size does not depend on the number of latents).
    """
    if mean.shape != logvar.shape:
        raise ValueError(f"mean {tuple(mean.shape)} and logvar {tuple(logvar.shape)} differ")
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1).mean()


def vae_loss(logits: Tensor, labels: Tensor, mean: Tensor, logvar: Tensor, *, kl_weight: float = 1e-3
             ) -> dict[str, Tensor]:
    """Occupancy BCE + ``kl_weight`` * KL.

    logits  [B, M] occupancy logits at query points
    labels  [B, M] 1 inside, 0 outside (float or bool)
    mean, logvar  [B, L, C] posterior parameters

    Returns a dict of scalars: ``occupancy`` (mean BCE), ``kl``, ``loss`` (weighted sum), and,
    without gradient, ``accuracy`` and ``iou`` of the thresholded prediction.
    """
    if logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} differ")
    labels = labels.to(logits.dtype)
    occupancy = F.binary_cross_entropy_with_logits(logits, labels)
    kl = kl_divergence(mean, logvar)
    with torch.no_grad():
        pred = logits > 0
        truth = labels > 0.5
        accuracy = (pred == truth).float().mean()
        inter = (pred & truth).sum().float()
        union = (pred | truth).sum().float()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return {"loss": occupancy + kl_weight * kl, "occupancy": occupancy, "kl": kl, "accuracy": accuracy, "iou": iou}
