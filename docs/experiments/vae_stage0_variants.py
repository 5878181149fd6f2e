"""Experiment (issue #3): how fast does the shape VAE learn occupancy, alone, under variants?

    python docs/experiments/vae_stage0_variants.py --tag base
    python docs/experiments/vae_stage0_variants.py --tag det --no-sample --kl 0
    python docs/experiments/vae_stage0_variants.py --tag lr3e-3 --lr 3e-3
    python docs/experiments/vae_stage0_variants.py --tag f4 --freqs 4
    python docs/experiments/vae_stage0_variants.py --tag local --decoder local   (docs/experiments/local_decoder.md)

``--decoder`` picks the query decoder (``ShapeVAEConfig.query_decoder``); the default is the
one the 2026-12-01 lab record measured, "attention" (the ``tiny`` preset now uses "local").

A fresh ``tiny`` VAE trains on the training shards exactly as stage 0 feeds it (2048 surface
points, 2048 occupancy queries, batch 16, AdamW, 30 warm-up steps, clip 1.0) and every
``--eval-every`` steps is scored with the evaluation's protocol (``eval.suites.vae``) on 34
held-out shapes (2 per category). One thread, about 2 s a step. A lab record, not part of the
package: see docs/experiments/levers_2026-12-01.md.
"""
import argparse
import dataclasses
import json
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from tango3d_core.config import PRESETS
from tango3d_core.data import shapes
from tango3d_core.data.dataset import ShardDataset
from tango3d_core.eval.suites._common import SuiteConfig
from tango3d_core.eval.suites.vae import _iou, occupancy_scene
from tango3d_core.losses.vae import vae_loss
from tango3d_core.models.shape_vae import ShapeVAE

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=150)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--kl", type=float, default=1e-3, help="KL weight")
p.add_argument("--no-sample", action="store_true", help="decode the posterior mean (a deterministic AE)")
p.add_argument("--freqs", type=int, default=None, help="Fourier frequencies (tiny: 8)")
p.add_argument("--decoder", default="attention", choices=["attention", "local"], help="query decoder")
p.add_argument("--neighbors", type=int, default=None, help="k of the local decoder (tiny: 4)")
p.add_argument("--local-width", type=int, default=None, help="width of the local decoder (tiny: 64)")
p.add_argument("--eval-every", type=int, default=50)
p.add_argument("--data", default="data_cache/train")
p.add_argument("--tag", default="run")
a = p.parse_args()
torch.manual_seed(0)
torch.set_num_threads(1)
cfg = dataclasses.replace(PRESETS["tiny"].shape, query_decoder=a.decoder)
if a.freqs is not None:
    cfg = dataclasses.replace(cfg, num_freqs=a.freqs)
if a.neighbors is not None:
    cfg = dataclasses.replace(cfg, local_neighbors=a.neighbors)
if a.local_width is not None:
    cfg = dataclasses.replace(cfg, local_width=a.local_width)
vae = ShapeVAE(cfg)
loader = DataLoader(ShardDataset(a.data, "train", num_points=2048, num_occ=2048), batch_size=16, shuffle=True,
                    drop_last=True)
opt = torch.optim.AdamW(vae.parameters(), lr=a.lr, weight_decay=0.01)
scenes = [occupancy_scene(SuiteConfig(shapes_per_category=2), c, i, surface_points=cfg.encoder_points)
          for c in shapes.CATEGORIES for i in range(2)]


def held_out_iou() -> float:
    vae.eval()
    ious = []
    with torch.inference_mode():
        for s in scenes:
            enc = vae.encode(torch.as_tensor(s["points"])[None], torch.as_tensor(s["normals"])[None])
            logits = vae.query_occupancy(vae.decode(enc["mean"]), torch.as_tensor(s["occ_points"])[None],
                                         anchors=enc["anchors"])["logits"]
            ious.append(_iou((logits[0] > 0).numpy(), s["occ_labels"]))
    vae.train()
    return float(np.mean(ious))


step, t0 = 0, time.time()
while step < a.steps:
    for b in loader:
        for g in opt.param_groups:
            g["lr"] = a.lr * min(1.0, (step + 1) / 30)
        enc = vae.encode(b["points"], b["normals"], sample_posterior=not a.no_sample)
        logits = vae.query_occupancy(vae.decode(enc["z"]), b["occ_points"], anchors=enc["anchors"])["logits"]
        out = vae_loss(logits, b["occ_labels"], enc["mean"], enc["logvar"], kl_weight=a.kl)
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 10 == 0:
            row = {k: round(float(out[k].detach()), 4) for k in ("occupancy", "kl", "iou")}
            row.update(step=step, seconds=round(time.time() - t0))
            if a.eval_every and step % a.eval_every == 0:
                row["held_out_iou"] = round(held_out_iou(), 4)
            print(a.tag, json.dumps(row), flush=True)
        if step >= a.steps:
            break
