"""Global alignment: CLIP-style contrastive losses between image, shape and text embeddings.

Duplicates in a batch (two views of one shape, or two shapes with the same caption) would be
contradictory negatives in the usual one-hot formulation. Items that share an id are therefore
all positives of each other, with the target probability spread evenly over them; with all ids
distinct this is exactly the CLIP loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["contrastive_loss", "global_alignment_loss"]


def _soft_targets(ids: Tensor | None, n: int, device: torch.device) -> Tensor:
    if ids is None:
        return torch.eye(n, device=device)
    if ids.shape != (n,):
        raise ValueError(f"ids must be [{n}], got {tuple(ids.shape)}")
    same = (ids[:, None] == ids[None, :]).float()
    return same / same.sum(dim=1, keepdim=True)


def contrastive_loss(a: Tensor, b: Tensor, *, logit_scale: Tensor | float, ids: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE between two aligned batches.

    a, b         [B, G] expected L2-normalised; row i of ``a`` matches row i of ``b``
    logit_scale  scalar, 1 / temperature
    ids          int [B]; rows with equal ids are mutual positives (default: all distinct)
    returns      scalar: mean of the a->b and b->a cross-entropies
    """
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must both be [B, G]")
    logits = logit_scale * (a @ b.T)
    target = _soft_targets(ids, a.shape[0], a.device)
    # The positive relation is symmetric, so the same soft targets serve both directions.
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def global_alignment_loss(
    image: Tensor | None,
    shape: Tensor | None,
    text: Tensor | None,
    *,
    logit_scale: Tensor | float,
    shape_ids: Tensor | None = None,
    text_ids: Tensor | None = None,
) -> dict[str, Tensor]:
    """Pairwise contrastive losses among the modalities given (at least two).

    image, shape, text  [B, G] L2-normalised embeddings, or None to leave a modality out
    shape_ids           int [B]: positives for image-shape pairs (same shape, other view)
    text_ids            int [B]: positives for pairs involving text (same caption)

    Returns a dict of scalars: ``image_shape``, ``image_text``, ``shape_text`` (those that apply)
    and ``loss``, their mean.
    """
    terms: dict[str, Tensor] = {}
    if image is not None and shape is not None:
        terms["image_shape"] = contrastive_loss(image, shape, logit_scale=logit_scale, ids=shape_ids)
    if image is not None and text is not None:
        terms["image_text"] = contrastive_loss(image, text, logit_scale=logit_scale, ids=text_ids)
    if shape is not None and text is not None:
        terms["shape_text"] = contrastive_loss(shape, text, logit_scale=logit_scale, ids=text_ids)
    if not terms:
        raise ValueError("global_alignment_loss needs at least two of image, shape, text")
    terms["loss"] = torch.stack(list(terms.values())).mean()
    return terms
