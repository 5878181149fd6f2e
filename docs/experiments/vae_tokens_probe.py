"""Experiment (issue #3): how the shape VAE's occupancy IoU depends on its latent tokens.

    python docs/experiments/vae_tokens_probe.py            # bundled checkpoint, validation split
    python docs/experiments/vae_tokens_probe.py CHECKPOINT

On the vae suite's validation data (17 categories x 6 shapes, 4096 queries each, random yaw on
the input, 8192 surface samples per shape) it prints the mean IoU of ``logit > 0``
1. with the trained 256 tokens, for 8 random 4096-point subsets of the samples one at a time and
   for the mean of their logits over the first 1 / 2 / 4 / 8 subsets;
2. at other token counts (farthest-point samples of the same 4096 points, or of all 8192), with
   the encoder's time per shape;
3. with the decision threshold moved off 0 (trained count).
About 6 minutes on two CPU cores. A lab record, not part of the package: see
docs/experiments/vae_tokens.md.
"""
import sys
import time

import numpy as np
import torch

from tango3d_core.eval.suites import vae
from tango3d_core.eval.suites._common import SuiteConfig
from tango3d_core.models.checkpoint import load_model

torch.set_num_threads(2)
model = load_model(sys.argv[1] if len(sys.argv) > 1 else None).eval()
cfg = SuiteConfig(split="val", shapes_per_category=6)
scenes = [vae.occupancy_scene(cfg, c, i, surface_points=8192) for c in cfg.category_list for i in range(6)]
labels = np.stack([s["occ_labels"] for s in scenes])


def iou(logits: np.ndarray, threshold: float = 0.0) -> float:
    pred = logits > threshold
    return float(((pred & labels).sum(1) / np.maximum((pred | labels).sum(1), 1)).mean() * 100)


def logits_of(s: dict, index: np.ndarray | slice, num_latents: int | None = None) -> tuple[np.ndarray, float]:
    with torch.inference_mode():
        t0 = time.perf_counter()
        enc = model.shape_vae.encode(torch.as_tensor(s["points"][index])[None],
                                     torch.as_tensor(s["normals"][index])[None], num_latents=num_latents)
        tokens = model.shape_vae.decode(enc["mean"])
        seconds = time.perf_counter() - t0
        out = model.shape_vae.query_occupancy(tokens, torch.as_tensor(s["occ_points"])[None],
                                              anchors=enc["anchors"], frame_yaw=enc["frame_yaw"])["logits"][0]
    return out.numpy(), seconds


# 1. Subsets of the samples, one at a time and averaged.
subsets = np.stack([[logits_of(s, np.random.default_rng(k).permutation(8192)[:4096])[0] for k in range(8)]
                    for s in scenes])  # [shapes, 8, queries]
print("single 4096-point subsets:", " ".join(f"{iou(subsets[:, k]):.1f}" for k in range(8)))
for k in (1, 2, 4, 8):
    print(f"mean logits of {k} subsets: {iou(subsets[:, :k].mean(1)):.1f}")
print(f"mean |logit - mean over 8 subsets|: {np.abs(subsets - subsets.mean(1, keepdims=True)).mean():.2f}")

# 2. Token counts.
for count, points in ((256, 4096), (384, 4096), (512, 4096), (768, 4096), (1024, 4096), (1024, 8192), (1536, 8192)):
    runs = [logits_of(s, slice(0, points), num_latents=count) for s in scenes]
    print(f"{count:5d} tokens from {points} points: IoU {iou(np.stack([r[0] for r in runs])):.1f}, "
          f"encoder {1000 * np.mean([r[1] for r in runs]):.0f} ms per shape")

# 3. Threshold at the trained count.
trained = np.stack([logits_of(s, slice(0, 4096))[0] for s in scenes])
print("threshold:", " ".join(f"{t:+.2f}: {iou(trained, t):.1f}" for t in (-1.0, -0.5, -0.25, 0.0, 0.25, 0.5)))
