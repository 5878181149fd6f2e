"""Experiment (issue #3): continue stage 0 of a run with geometry-only training of the 2D branch
and track its object-xyz error on held-out renders, canonical and up to the best yaw per image.

    python docs/experiments/xyz_stage0_continue.py STEPS LR canonical|yaw_invariant

Starts from ``runs/tiny/0_pretrain/latest`` and writes ``runs/yawinv/0_pretrain`` (a copy of that
stage with the new 2D weights), which ``python -m tango3d_core.train --preset tiny --out runs/yawinv
--workers 1 --threads 1 --stages 1,2,3 --xyz-loss yaw_invariant --export DIR`` then aligns. A lab
record, not part of the package: see docs/experiments/xyz_collapse.md.
"""
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torch.utils.data import DataLoader

import tango3d_core as t3
from tango3d_core.data import dataset, shapes
from tango3d_core.data.dataset import ShardDataset
from tango3d_core.losses.geometry import geometry_loss
from tango3d_core.models.image_encoder import pil_to_tensor

steps, lr, mode = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
torch.set_num_threads(1)
m = t3.load_model("runs/tiny/0_pretrain/latest")
m.float()
cats = shapes.CATEGORIES
bc = dataset.BuildConfig(split="test", categories=cats, shapes_per_category=1, views_per_shape=2, resolution=128,
                         points_per_shape=64, occ_per_shape=1, shard_size=1, seed=0)
test = []
for i in range(len(cats)):
    rec = dataset.render_shape(bc, i)
    for v in rec["views"][:2]:
        test.append((pil_to_tensor(Image.fromarray(np.asarray(v["rgb"], np.uint8)), (128, 128))[None],
                     np.asarray(v["mask"], bool), np.asarray(v["xyz"], np.float64)))

TH = np.deg2rad(np.arange(0, 360, 5))
def xyz_err():
    m.eval(); errs = []; best = []; ratios = []
    with torch.no_grad():
        for x, mask, gt in test:
            pred = m.image_forward(x, geometry=True)["xyz"][0].numpy().astype(np.float64)
            p, g = pred[mask], gt[mask]
            errs.append(np.linalg.norm(p - g, axis=1))
            bm = []
            for t in TH:
                c, s = np.cos(t), np.sin(t)
                R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
                bm.append(np.linalg.norm(p @ R.T - g, axis=1))
            k = int(np.argmin([np.median(b) for b in bm])); best.append(bm[k])
            ratios.append(p.std(0) / g.std(0))
    m.train(); e = np.concatenate(errs); b = np.concatenate(best)
    return (f"canonical: median {np.median(e):.3f} <=10% {np.mean(e <= .10):.3f} | best yaw per image: median "
            f"{np.median(b):.3f} <=5% {np.mean(b <= .05):.3f} <=10% {np.mean(b <= .10):.3f} | std ratio xyz "
            f"{np.round(np.median(ratios, 0), 2)}")

ds = ShardDataset("data_cache/train", "train", num_points=2048, num_occ=2048)
dl = DataLoader(ds, batch_size=16, shuffle=True, num_workers=1, drop_last=True, persistent_workers=True)
params = list(m.image_encoder.parameters()) + list(m.geometry_head.parameters())
for p in m.parameters(): p.requires_grad_(False)
for p in params: p.requires_grad_(True)
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
print("step 0:", xyz_err(), flush=True)
t0, step = time.time(), 0
while step < steps:
    for batch in dl:
        img = m.image_forward(batch["image"], geometry=True)
        out = geometry_loss({k: img[k] for k in ("depth", "normal", "xyz")},
                            {k: batch[k] for k in ("depth", "normal", "xyz")}, batch["mask"], xyz_mode=mode)
        out["loss_xyz"] = out["xyz"]
        opt.zero_grad(); out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sched.step(); step += 1
        if step % 50 == 0:
            print(f"step {step} ({time.time()-t0:.0f} s) loss {out['loss'].item():.3f} xyz {out['loss_xyz'].item():.3f}", flush=True)
        if step % 200 == 0 or step == steps:
            print(f"step {step}:", xyz_err(), flush=True)
        if step >= steps: break

dst = Path("runs/yawinv/0_pretrain")
if dst.exists():
    shutil.rmtree(dst)
shutil.copytree("runs/tiny/0_pretrain", dst)
save_file({k: v.detach().contiguous() for k, v in m.state_dict().items()}, str(dst / "latest" / "model.safetensors"))
print("saved", dst, flush=True)
