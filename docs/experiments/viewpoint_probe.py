"""Can the 2D encoder learn which way an object faces, or what it is? (lab records:
pose_matching.md §10 for the azimuth, global_head.md §1 for the category)

Trains a small classifier on the training shards' views and scores it on views of held-out
shapes (the validation split): ``--target azimuth`` (36 bins of 10 degrees: the camera's
azimuth about +Z in the object's own frame) or ``--target category`` (17 classes). Three
variants of the 2D encoder under the same head:

    frozen     the bundled checkpoint's encoder, frozen (what the yaw-heads branch had)
    finetune   the bundled stage-0 encoder, trained end to end with the head
    scratch    a fresh encoder of the same size, trained end to end

Usage (about 15 minutes per target for two variants on the 2-core box):

    python -m tango3d_core.data build /tmp/pv/valdata --split val --shapes-per-category 10 --views 6 --resolution 128
    python docs/experiments/viewpoint_probe.py --val /tmp/pv/valdata --steps 300 --variants finetune,frozen
    python docs/experiments/viewpoint_probe.py --val /tmp/pv/valdata --steps 300 --variants finetune,frozen --target category
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from torch import nn
from safetensors.torch import load_file
from torch.utils.data import DataLoader

import tango3d_core as t3
from tango3d_core.data.dataset import ShardDataset
from tango3d_core.data.shapes import CATEGORIES

BINS = 36


def azimuth(world_to_cam: torch.Tensor) -> torch.Tensor:
    """world_to_cam [B, 4, 4] (object frame) -> camera azimuth about +Z, radians in [0, 2pi)."""
    R, t = world_to_cam[:, :3, :3], world_to_cam[:, :3, 3]
    eye = -(R.transpose(1, 2) @ t[:, :, None])[:, :, 0]
    return torch.remainder(torch.atan2(eye[:, 1], eye[:, 0]), 2 * math.pi)


class AzimuthHead(nn.Module):
    """patch_map [B, C, h, w] -> logits [B, classes]; keeps the spatial layout (a mean pool would
    discard which side of the image each part is on, which is what the azimuth is)."""

    def __init__(self, width: int, grid: int, classes: int = BINS) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(width, 32, 1), nn.GELU())
        self.mlp = nn.Sequential(nn.Flatten(), nn.Linear(32 * grid * grid, 256), nn.GELU(), nn.Dropout(0.2),
                                 nn.Linear(256, classes))

    def forward(self, patch_map: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.reduce(patch_map))


def loader(root: str, split: str, *, train: bool, batch: int) -> DataLoader:
    ds = ShardDataset(root, split, augment=train, with_camera=True, num_points=8, num_occ=8,
                      **({} if train else {"yaw": 0.0}))
    return DataLoader(ds, batch_size=batch, shuffle=train, num_workers=1 if train else 0, drop_last=train)


def evaluate(encoder: nn.Module, head: nn.Module, root: str, target: str) -> dict[str, float]:
    encoder.eval(), head.eval()
    errs, cats, hits = [], [], []
    with torch.no_grad():
        for b in loader(root, "val", train=False, batch=64):
            logits = head(encoder(b["image"])["patch_map"])
            cats += list(b["category"])
            if target == "category":
                hits.append(logits.argmax(1) == b["category_index"])
                continue
            centre = (logits.argmax(1).float() + 0.5) * (2 * math.pi / BINS)
            d = torch.remainder(centre - azimuth(b["world_to_cam"]), 2 * math.pi)
            errs.append(torch.minimum(d, 2 * math.pi - d))
    if target == "category":
        h = torch.cat(hits).numpy()
        per = {c: float(h[np.array(cats) == c].mean()) for c in sorted(set(cats))}
        return {"accuracy": float(h.mean()), "n": len(h), "per_category": per}
    e = torch.cat(errs).rad2deg().numpy()
    out = {"within_22": float((e <= 22.5).mean()), "within_45": float((e <= 45).mean()),
           "half_turn": float((e > 135).mean()), "n": len(e)}
    per = {c: float((e[np.array(cats) == c] <= 45).mean()) for c in sorted(set(cats))}
    out["per_category"] = per
    return out


def run(variant: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    encoder = t3.load_model(args.checkpoint).image_encoder
    if variant == "finetune":
        state = load_file(f"{args.stage0}/model.safetensors")
        encoder.load_state_dict({k[len("image_encoder."):]: v.float() for k, v in state.items()
                                 if k.startswith("image_encoder.")})
    if variant == "scratch":
        for m in encoder.modules():
            if hasattr(m, "reset_parameters") and m is not encoder:
                m.reset_parameters()
    with torch.no_grad():
        grid = encoder(torch.zeros(1, 3, 128, 128))["patch_map"].shape[-1]
    classes = len(CATEGORIES) if args.target == "category" else BINS
    head = AzimuthHead(encoder.backbone.width, grid, classes)
    groups = [{"params": head.parameters(), "lr": 1e-3}]
    if variant != "frozen":
        groups.append({"params": encoder.backbone.parameters(), "lr": args.encoder_lr})
    for p in encoder.parameters():
        p.requires_grad_(variant != "frozen")
    opt = torch.optim.AdamW(groups, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in groups], total_steps=args.steps,
                                                pct_start=0.1)
    step, t0, epoch = 0, time.time(), 0
    dl = loader(args.train, "train", train=True, batch=args.batch)
    while step < args.steps:
        dl.dataset.set_epoch(epoch)
        epoch += 1
        for b in dl:
            encoder.train(variant != "frozen"), head.train()
            if args.target == "category":
                target = b["category_index"]
            else:
                target = (azimuth(b["world_to_cam"]) / (2 * math.pi) * BINS).long().clamp_(0, BINS - 1)
            feats = encoder(b["image"])["patch_map"]
            loss = nn.functional.cross_entropy(head(feats), target, label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0:
                print(f"  {variant} step {step} loss {loss.item():.3f} ({time.time() - t0:.0f} s)", flush=True)
            if step >= args.steps:
                break
    res = evaluate(encoder, head, args.val, args.target)
    res["train_minutes"] = (time.time() - t0) / 60
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", default="data_cache/train")
    ap.add_argument("--val", required=True)
    ap.add_argument("--checkpoint", default="assets/checkpoint")
    ap.add_argument("--stage0", default="runs/tiny-fg/0_pretrain/latest")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--encoder-lr", type=float, default=3e-4)
    ap.add_argument("--target", choices=("azimuth", "category"), default="azimuth")
    ap.add_argument("--variants", default="frozen,finetune,scratch")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for v in args.variants.split(","):
        r = run(v, args)
        per = r.pop("per_category")
        print(f"{v}: " + ", ".join(f"{k} {val:.3f}" if isinstance(val, float) else f"{k} {val}" for k, val in r.items()))
        print(f"   per category ({'accuracy' if args.target == 'category' else 'within 45'}): " + ", ".join(f"{c} {x:.2f}" for c, x in per.items()), flush=True)


if __name__ == "__main__":
    main()
