"""Is image->shape retrieval limited by the 2D encoder or by the image global head? (issue #3)

Everything of the bundled model stays frozen except a fresh image global head, trained on
cached features of the training views against the frozen shape and text embeddings (the
global stage's image-shape and image-text terms, bigger batches, more passes), then scored
with the retrieval suite on the validation split beside the bundled head.

    python docs/experiments/global_head_probe.py --checkpoint runs/export-fg   # ~25 min

(``runs/export-fg``: the bundled checkpoint before stage 5 existed, as in the record; the
default, today's bundled checkpoint, already has a refit head.)

``mean``: the bundled architecture (CLS + mean patch token, MLP); ``grid``: CLS + the patch
map pooled to a 4 x 4 grid (keeps where things are). A lab record, not part of the package:
docs/experiments/global_head.md §2. What shipped is ``tango3d_core.train.refit`` (stage 5).
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from tango3d_core import load_model
from tango3d_core.data.dataset import ShardDataset
from tango3d_core.eval.suites import default_config, run_suite
from tango3d_core.eval.suites._common import ModelProvider
from tango3d_core.losses.global_ import contrastive_loss
from tango3d_core.models.heads import ImageGlobalHead
from tango3d_core.models.layers import Mlp


class GridGlobalHead(nn.Module):
    """global_token [B, C], patch_map [B, C, h, w] -> {"global": [B, G]} unit length; the patch map
    reduced to ``reduce`` channels and pooled to a ``grid`` x ``grid`` layout before the MLP."""

    def __init__(self, in_dim: int, out_dim: int, *, hidden: int, reduce: int = 32, grid: int = 4) -> None:
        super().__init__()
        self.grid = grid
        self.reduce = nn.Conv2d(in_dim, reduce, 1)
        self.norm = nn.LayerNorm(2 * in_dim + reduce * grid * grid)
        self.mlp = Mlp(2 * in_dim + reduce * grid * grid, hidden, out_dim)

    def forward(self, global_token: torch.Tensor, patch_map: torch.Tensor) -> dict[str, torch.Tensor]:
        grid = F.adaptive_avg_pool2d(F.gelu(self.reduce(patch_map)), self.grid).flatten(1)
        x = torch.cat([global_token, patch_map.mean(dim=(2, 3)), grid], dim=-1)
        return {"global": F.normalize(self.mlp(self.norm(x)), dim=-1, eps=1e-6)}


@torch.no_grad()
def cache(model, passes: int, batch: int = 64) -> dict[str, torch.Tensor]:
    """Frozen features of ``passes`` augmented passes over the training views."""
    ds = ShardDataset("data_cache/train", "train", augment=True, num_points=2048, num_occ=8)
    out: dict[str, list] = {k: [] for k in ("global_token", "patch_map", "shape", "text", "shape_index")}
    for p in range(passes):
        ds.set_epoch(100 + p)
        for b in DataLoader(ds, batch_size=batch, shuffle=False, num_workers=1):
            img = model.image_encoder(b["image"])
            out["global_token"].append(img["global_token"])
            out["patch_map"].append(img["patch_map"].half())
            enc = model.shape_vae.encode(b["points"], b["normals"], sample_posterior=False)
            out["shape"].append(model.shape_global_head(model.shape_vae.decode(enc["mean"]))["global"])
            out["text"].append(model.text_forward(list(b["caption"])))
            out["shape_index"].append(b["shape_index"])
        print(f"  cached pass {p + 1}/{passes}", flush=True)
    return {k: torch.cat(v) for k, v in out.items()}


def train_head(head: nn.Module, feats: dict[str, torch.Tensor], *, epochs: int, batch: int, scale: float) -> None:
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3, weight_decay=0.05)
    n = len(feats["shape_index"])
    steps = epochs * (n // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.05)
    g = torch.Generator().manual_seed(0)
    for e in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(n // batch):
            idx = perm[i * batch:(i + 1) * batch]
            emb = head(feats["global_token"][idx], feats["patch_map"][idx].float())["global"]
            ids = feats["shape_index"][idx]
            loss = 0.5 * (contrastive_loss(emb, feats["shape"][idx], logit_scale=scale, ids=ids)
                          + contrastive_loss(emb, feats["text"][idx], logit_scale=scale, ids=ids))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if (e + 1) % 10 == 0:
            print(f"  epoch {e + 1}: loss {loss.item():.3f}", flush=True)


def retrieval(model, split: str) -> dict:
    cfg = dataclasses.replace(default_config("retrieval"), split=split)
    r = run_suite("retrieval", {"tango3d": ModelProvider(model)}, cfg, models={"tango3d": model})
    return r["methods"]["tango3d"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: the bundled checkpoint")
    ap.add_argument("--heads", default="mean,grid")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--split", default="val")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_model(args.checkpoint).eval()
    t0 = time.time()
    base = retrieval(model, args.split)
    print("bundled head:", {k: v for k, v in base.items() if "image" in k}, f"({time.time() - t0:.0f} s)", flush=True)
    feats = cache(model, args.passes)
    scale = float(model.logit_scale_global().detach())
    width, g = model.image_encoder.width, model.config.global_dim
    for name in args.heads.split(","):
        torch.manual_seed(0)
        hidden = model.config.head_hidden
        head = ImageGlobalHead(width, g, hidden=hidden) if name == "mean" else GridGlobalHead(width, g, hidden=hidden)
        train_head(head, feats, epochs=args.epochs, batch=args.batch, scale=scale)
        keep = model.image_global_head
        model.image_global_head = head.eval()
        r = retrieval(model, args.split)
        model.image_global_head = keep
        print(f"{name} head:", {k: v for k, v in r.items() if "image" in k}, flush=True)


if __name__ == "__main__":
    main()
