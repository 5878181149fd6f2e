"""Stage 5: refit the two global heads of images and shapes on cached, frozen features.

The global and joint stages train the global heads at batch 16 for a few hundred steps among
every other loss. Trained alone afterwards on the frozen model's features, with batches of 128
and many passes, the image global head ranks held-out shapes far better from an image
(validation split: image->shape category R@1 63.7 -> 81.4, instance 19.6 -> 23.5;
docs/experiments/global_head.md §2-3); refitting the shape global head beside it, at a lower
learning rate, separates the instances of a category further (§6). Every encoder and every
other head is frozen, so only the global embeddings of images and shapes change: dense
matching, the text embedding and the VAE are the joint stage's.

Encoding the examples is what costs, so it is done once: ``passes`` augmented passes over the
training views (the image encoder's CLS token and mean patch token per view), one shape
encoding per shape and pass (its random yaw and point subset; the shape global head's input,
the mean decoded latent token, is kept), one text embedding per caption. The heads then train
on these tensors in milliseconds a step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ..data.dataset import ShardDataset
from ..losses.global_ import global_alignment_loss

__all__ = ["cache_global_features", "cached_batches", "refit_loss"]


@torch.no_grad()
def cache_global_features(model: Any, dataset: ShardDataset, *, passes: int, batch_size: int = 64,
                          workers: int = 1, progress: bool = True) -> dict[str, Tensor]:
    """Frozen inputs of the two global heads and the text targets, over ``passes`` augmented passes.

    Returns (N = passes x views):
        global_token  float32 [N, C]  the image encoder's CLS token
        patch_mean    float32 [N, C]  its mean patch token
        shape_pooled  float32 [N, W]  the mean decoded latent token of the view's shape (the shape
                                      global head's input), one encoding per shape and pass
        text          float32 [N, G]  the global embedding of the shape's caption (unit length)
        shape_ids     int64 [N]       which shape (positives of the image-shape term)
        text_ids      int64 [N]       which caption (positives of the image-text and shape-text terms)
    """
    if passes < 1:
        raise ValueError(f"passes must be >= 1, got {passes}")
    model.eval()
    views = dataset.views_per_shape
    shape_rows = Subset(dataset, range(0, len(dataset), views))
    captions: dict[str, int] = {}
    out: dict[str, list[Tensor]] = {k: [] for k in ("global_token", "patch_mean", "shape_index")}
    shape_pool: list[Tensor] = []
    text_of_shape: dict[int, int] = {}
    total = passes * (len(dataset) + len(shape_rows))
    dev = model.device
    with tqdm(total=total, desc="stage global_refit: caching", disable=not progress, dynamic_ncols=True) as bar:
        for p in range(passes):
            dataset.set_epoch(10_000 + p)  # draws of their own, not the alignment stages'
            per_shape: dict[int, Tensor] = {}
            for b in DataLoader(shape_rows, batch_size=batch_size, num_workers=workers):
                pooled = model.shape_forward(b["points"].to(dev), b["normals"].to(dev))["tokens"].mean(dim=1)
                for s, q, c in zip(b["shape_index"].tolist(), pooled.float().cpu(), b["caption"]):
                    per_shape[s] = q
                    text_of_shape[s] = captions.setdefault(c, len(captions))
                bar.update(len(pooled))
            for b in DataLoader(dataset, batch_size=batch_size, num_workers=workers):
                img = model.image_encoder.tokens(b["image"].to(dev))
                out["global_token"].append(img["global_token"].float().cpu())
                out["patch_mean"].append(img["patch_map"].mean(dim=(2, 3)).float().cpu())
                out["shape_index"].append(b["shape_index"])
                shape_pool.append(torch.stack([per_shape[s] for s in b["shape_index"].tolist()]))
                bar.update(len(b["shape_index"]))
    texts = model.text_forward(list(captions)).float().cpu()  # [captions, G], row = caption id
    shape_ids = torch.cat(out["shape_index"])
    text_ids = torch.tensor([text_of_shape[s] for s in shape_ids.tolist()])
    return {"global_token": torch.cat(out["global_token"]), "patch_mean": torch.cat(out["patch_mean"]),
            "shape_pooled": torch.cat(shape_pool), "text": texts[text_ids], "shape_ids": shape_ids,
            "text_ids": text_ids}


def cached_batches(cache: dict[str, Tensor], *, batch_size: int, seed: int) -> Iterator[dict[str, Tensor]]:
    """Endless shuffled batches of ``batch_size`` rows of ``cache`` (a fresh order every epoch)."""
    n = len(cache["shape_ids"])
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} cached examples")
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(n, generator=g)
        for i in range(n // batch_size):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            yield {k: v[idx] for k, v in cache.items()}


def refit_loss(model: Any, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The global stage's three contrastive terms (image-shape, image-text, shape-text) on cached
    features, at the model's (frozen) global logit scale. Returns ``total`` (their mean) and
    each term. Which head they train is the stage's choice (``StageSpec.trainable`` / ``slow``)."""
    dev = model.device
    token, mean = batch["global_token"].to(dev), batch["patch_mean"].to(dev)
    # A 1 x 1 patch map: the head's mean over it is the cached mean patch token; likewise one
    # token whose mean is the cached mean decoded latent.
    image = model.image_global_head(token, mean[:, :, None, None])["global"]
    shape = model.shape_global_head(batch["shape_pooled"].to(dev)[:, None, :])["global"]
    terms = global_alignment_loss(image, shape, batch["text"].to(dev), logit_scale=model.logit_scale_global().detach(),
                                  shape_ids=batch["shape_ids"].to(dev), text_ids=batch["text_ids"].to(dev))
    return {"total": terms.pop("loss"), **{f"global_{k}": v for k, v in terms.items()}}
