"""Experiment (issue #3): which 2D backbone learns the stage-0 geometry heads fastest here?

    python docs/experiments/geometry_backbones.py --backbone vit --seconds 300
    python docs/experiments/geometry_backbones.py --backbone cnn --seconds 300
    python docs/experiments/geometry_backbones.py --backbone cnn --seconds 300 --normal-frame camera

A fresh 2D branch of the ``tiny`` preset (input 128 px, as the training CLI sets it) with the
given backbone, plus a geometry head, trains on the training shards alone (no 3D branch) for
a fixed wall-clock budget: batch 16, AdamW 1e-3, 30 warm-up steps, clip 1.0, depth + normal +
yaw-invariant xyz loss, one data worker. It is then scored on held-out renders the way the
pixel->point evaluation samples them (``eval.suites.pixel2point``: 224 px, 64 query pixels per
view, random yaw on the 3D input): the predicted xyz of all object pixels is rotated by the
yaw (of 72) that best fits it to the shape's 8192 points, and each query pixel takes the
point nearest its rotated prediction. That is a pure-geometry matcher: how much of the
pixel->point task the geometry head alone solves. A lab record, not part of the package:
see docs/experiments/conv_backbone.md.
"""
import argparse
import dataclasses
import math
import time

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch.utils.data import DataLoader

from tango3d_core.config import PRESETS
from tango3d_core.data.dataset import ShardDataset
from tango3d_core.eval.suites._common import default_config, procedural_scenes, scene_rng
from tango3d_core.eval.suites.pixel2point import sample_query_pixels
from tango3d_core.losses.geometry import geometry_loss
from tango3d_core.models.heads import GeometryHead
from tango3d_core.models.image_encoder import build_image_encoder, pil_to_tensor


def _rz(t: float) -> np.ndarray:
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", choices=["vit", "cnn"], default="cnn")
    ap.add_argument("--normal-frame", choices=["canonical", "camera"], default="canonical")
    ap.add_argument("--seconds", type=float, default=300.0, help="training wall-clock budget")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--scenes", type=int, default=16, help="held-out shapes scored (4 views each)")
    ap.add_argument("--data", default="data_cache/train")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    tiny = PRESETS["tiny"].image
    if args.backbone == "vit":  # the ViT the tiny preset used before 2026-12-01
        cfg = dataclasses.replace(tiny, backbone="vit", image_size=128, depth=6, num_heads=3)
    else:
        cfg = dataclasses.replace(tiny, backbone="cnn", image_size=128)
    enc, _ = build_image_encoder(cfg)
    head = GeometryHead(cfg.dense_width)
    params = list(enc.parameters()) + list(head.parameters())
    print(f"{args.backbone}: {sum(p.numel() for p in params):,} parameters", flush=True)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    ds = ShardDataset(args.data, "train", num_points=256, num_occ=256)
    loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=1, drop_last=True, persistent_workers=True)
    normal_key = "normal_camera" if args.normal_frame == "camera" else "normal"

    t0, step, done = time.time(), 0, False
    while not done:
        for b in loader:
            for g in opt.param_groups:
                g["lr"] = args.lr * min(1.0, (step + 1) / 30)
            out = enc(b["image"])
            pred = head(out["dense_features"], out_size=tuple(b["image"].shape[-2:]))
            target = {"depth": b["depth"], "xyz": b["xyz"], "normal": b[normal_key]}
            terms = geometry_loss(pred, target, b["mask"], xyz_mode="yaw_invariant")
            opt.zero_grad()
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            if step % 20 == 0:
                print(step, f"{time.time() - t0:.0f} s", {k: round(float(v), 3) for k, v in terms.items()}, flush=True)
            if time.time() - t0 > args.seconds:
                done = True
                break

    enc.eval()
    ecfg = default_config("pixel2point")
    yaws = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    errors = []
    for si, scene in enumerate(procedural_scenes(ecfg)):
        if si >= args.scenes:
            break
        pts = scene.points.astype(np.float64)
        tree = cKDTree(pts)
        for view in scene.views:
            xy = sample_query_pixels(view.mask, ecfg.pixels_per_view, scene_rng(ecfg.seed, "pixels", view.key))
            gt = view.xyz[xy[:, 1], xy[:, 0]].astype(np.float64)
            w, h = view.image.size
            with torch.no_grad():
                o = enc(pil_to_tensor(view.image, (128, 128))[None])
                xyz = head(o["dense_features"], out_size=(h, w))["xyz"][0].numpy().astype(np.float64)
            rows, cols = np.nonzero(view.mask)
            fit = xyz[rows, cols]
            fit = fit[np.random.default_rng(0).choice(len(fit), min(800, len(fit)), replace=False)]
            best = min(yaws, key=lambda t: tree.query(fit @ _rz(t).T)[0].mean())
            idx = tree.query(xyz[xy[:, 1], xy[:, 0]] @ _rz(best).T)[1]
            errors.append(np.linalg.norm(pts[idx] - gt, axis=1) / scene.diameter)
    e = np.concatenate(errors)
    print(f"RESULT backbone={args.backbone} normal_frame={args.normal_frame} steps={step} "
          f"acc<=5%={(e <= 0.05).mean():.3f} acc<=10%={(e <= 0.1).mean():.3f} median={np.median(e):.3f}")


if __name__ == "__main__":
    main()
