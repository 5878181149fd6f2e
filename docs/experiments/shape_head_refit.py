"""Does refitting the shape global head too lift image->shape instance retrieval? (issue #3)

Stage 5 (``tango3d_core.train.refit``) refits only the image global head, against the joint
stage's frozen shape embeddings. This probe caches the same features (plus each shape
encoding's mean decoded token, the shape global head's input), then, from the given
checkpoint, trains for the same steps:

- ``image``: the image head alone (what stage 5 does; from the bundled checkpoint this is a
  second refit, the control for "more steps");
- ``image+shape``: both heads, with the global stage's three terms (image-shape, image-text,
  shape-text; the text side frozen);
- ``shape``: the shape head alone, image-shape and shape-text terms.

Each is scored with the retrieval suite on the validation split.

    PYTHONPATH=. python docs/experiments/shape_head_refit.py --checkpoint assets/checkpoint

A lab record, not part of the package: docs/experiments/global_head.md §6.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tango3d_core import load_model
from tango3d_core.data.dataset import ShardDataset
from tango3d_core.eval.suites import default_config, run_suite
from tango3d_core.eval.suites._common import ModelProvider
from tango3d_core.train.refit import cache_global_features, cached_batches, refit_loss


def loss_of(model, batch: dict, variant: str, *, text_weight: float = 1.0) -> torch.Tensor:
    """The variant's mix of stage 5's three terms (``refit_loss``)."""
    t = refit_loss(model, batch)
    i_s, i_t, s_t = t["global_image_shape"], t["global_image_text"], t["global_shape_text"]
    if variant == "image":
        return 0.5 * (i_s + i_t)
    if variant == "shape":
        return (i_s + text_weight * s_t) / (1 + text_weight)
    return (i_s + i_t + text_weight * s_t) / (2 + text_weight)


def fit(model, cache: dict, variant: str, *, steps: int, lr: float, batch: int, text_weight: float = 1.0,
        shape_lr: float | None = None) -> None:
    for p in model.parameters():
        p.requires_grad_(False)
    heads = {"image": [model.image_global_head], "shape": [model.shape_global_head],
             "image+shape": [model.image_global_head, model.shape_global_head]}[variant]
    params = [p for h in heads for p in h.parameters()]
    for p in params:
        p.requires_grad_(True)
    # With both heads, the shape head may get a learning rate of its own (``shape_lr``).
    groups = [{"params": list(h.parameters()),
               "lr": shape_lr if (h is model.shape_global_head and shape_lr) else lr} for h in heads]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.05)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))))
    it = cached_batches(cache, batch_size=batch, seed=0)
    for h in heads:
        h.train()
    for s in range(steps):
        loss = loss_of(model, next(it), variant, text_weight=text_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (s + 1) % 1000 == 0:
            print(f"  {variant} step {s + 1}: loss {loss.item():.3f}", flush=True)
    model.eval()


def retrieval(model, split: str, seeds: tuple[int, ...] = (0,)) -> dict:
    """The retrieval suite's figures, averaged over ``seeds`` (each a new view, yaw and point
    sample of the same shapes: one seed is 102 queries on the validation split)."""
    runs = []
    for seed in seeds:
        cfg = dataclasses.replace(default_config("retrieval"), split=split, seed=seed)
        runs.append(run_suite("retrieval", {"tango3d": ModelProvider(model)}, cfg, models={"tango3d": model},
                              progress=False)["methods"]["tango3d"])

    def mean(*xs):
        return sum(xs) / len(xs) if not isinstance(xs[0], dict) else {k: mean(*(x[k] for x in xs)) for k in xs[0]}
    return mean(*runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: the bundled checkpoint")
    ap.add_argument("--variants", default="image,image+shape,shape")
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3800)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--split", default="val")
    ap.add_argument("--cache", default="/tmp/pv/refit_cache.safetensors")
    ap.add_argument("--skip-base", action="store_true")
    ap.add_argument("--seeds", default="0", help="retrieval seeds to average, e.g. 0,1,2")
    args = ap.parse_args()
    seeds = tuple(int(x) for x in args.seeds.split(","))
    torch.manual_seed(0)
    base_model = load_model(args.checkpoint).float().eval()
    if not args.skip_base:
        t0 = time.time()
        print("bundled:", retrieval(base_model, args.split, seeds), f"({time.time() - t0:.0f} s)", flush=True)
    if Path(args.cache).exists():
        cache = load_file(args.cache)
    else:
        t0 = time.time()
        ds = ShardDataset("data_cache/train", "train", augment=True, seed=0, num_points=2048, num_occ=8)
        cache = cache_global_features(base_model, ds, passes=args.passes, workers=2, progress=False)
        save_file({k: v.contiguous() for k, v in cache.items()}, args.cache)
        print(f"cache: {len(cache['shape_ids'])} rows, {time.time() - t0:.0f} s", flush=True)
    # The text tower cannot be deep-copied; the heads are put back after each variant instead.
    keep = {k: v.clone() for k, v in base_model.state_dict().items()
            if k.startswith(("image_global_head.", "shape_global_head."))}
    for spec in args.variants.split(","):
        # "shape:lr=3e-4:steps=1000:passes=1:text=2" overrides the defaults for one variant.
        variant, *opts = spec.split(":")
        o = dict(x.split("=") for x in opts)
        rows = len(cache["shape_ids"]) * int(o.get("passes", args.passes)) // args.passes
        sub = {k: v[:rows] for k, v in cache.items()}  # the cache is ordered pass by pass
        model = base_model
        model.load_state_dict(keep, strict=False)
        if o.get("reinit"):  # a fresh image head: closer to stage 4's than the bundled refit one
            torch.manual_seed(0)
            for m in model.image_global_head.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        t0 = time.time()
        fit(model, sub, variant, steps=int(o.get("steps", args.steps)), lr=float(o.get("lr", args.lr)),
            batch=args.batch, text_weight=float(o.get("text", 1.0)),
            shape_lr=float(o["slr"]) if "slr" in o else None)
        print(f"{spec}: fit {time.time() - t0:.0f} s", flush=True)
        print(f"{spec}:", retrieval(model, args.split, seeds), flush=True)


if __name__ == "__main__":
    main()
