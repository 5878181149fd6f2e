"""Experiment (issue #3): two inference-time levers on a trained checkpoint, no retraining.

    python docs/experiments/inference_probes.py yaw-tta 4 [CHECKPOINT]
    python docs/experiments/inference_probes.py late [CHECKPOINT]
    python docs/experiments/inference_probes.py symmetry [CHECKPOINT]

``yaw-tta K``: encode every held-out shape under K yaws (0, 2pi/K, ...) and average each point's
features over them (renormalised), then run the pixel2point suite on the default data for the
plain model and the averaged one. It asks how far the point features still depend on the yaw
the 3D input arrives in.

``late``: image->shape retrieval on the retrieval suite's gallery (17 categories x 6 held-out
shapes, one view each) scored by late interaction instead of the global embeddings: the mean,
over 256 query pixels, of each pixel's best cosine similarity among 2048 of the shape's points.
Pixels come either from the ground-truth mask (an upper bound: a real query has no mask) or
uniformly from the whole image; both also fused with the global score (z-scored per query).

``symmetry``: the pixel2point suite's queries (same scenes, pixels and points), each prediction
also scored against the true point's mirror images in the canonical frame (x -> -x, y -> -y,
and both: a half turn). How many misses land on the mirror-image part (the other wing, the
other side of a chair) instead of anywhere?

A lab record, not part of the package: see docs/experiments/point_features.md.
"""
from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from tango3d_core import load_model
from tango3d_core.eval.metrics import recall_at_k
from tango3d_core.eval.suites import ModelProvider, default_config, run_suite
from tango3d_core.eval.suites._common import procedural_scenes


class YawAveraged:
    """The model's inference API with ``encode_shape`` averaged over ``k`` input yaws."""

    def __init__(self, model, k: int) -> None:
        self.model, self.k = model, k

    def encode_image(self, *args, **kwargs):
        return self.model.encode_image(*args, **kwargs)

    def encode_text(self, *args, **kwargs):
        return self.model.encode_text(*args, **kwargs)

    def encode_shape(self, mesh, *, num_points: int, seed: int):
        base = self.model.encode_shape(mesh, num_points=num_points, seed=seed)
        total = base.dense.clone()
        for j in range(1, self.k):
            rot = trimesh.transformations.rotation_matrix(2 * math.pi * j / self.k, [0, 0, 1])
            turned = mesh.copy()
            turned.apply_transform(rot)
            feats = self.model.encode_shape(turned, num_points=num_points, seed=seed)
            # the same seed draws the same surface samples on the turned mesh: row i is still point i
            r = torch.as_tensor(rot[:3, :3], dtype=torch.float32)
            if not torch.allclose(base.points @ r.T, feats.points, atol=1e-3):
                raise RuntimeError("surface samples differ between yaws")
            total += feats.dense
        return dataclasses.replace(base, dense=F.normalize(total, dim=-1))


def yaw_tta(model, k: int) -> None:
    cfg = default_config("pixel2point")
    res = run_suite("pixel2point", {"plain": ModelProvider(model), f"yaw-avg-{k}": ModelProvider(YawAveraged(model, k))},
                    cfg, models={"plain": model}, progress=True)
    for name, r in res["methods"].items():
        acc = r["accuracy"]
        print(f"{name:10s} pixel->point <=5% {100 * acc['0.05']:.1f}  <=10% {100 * acc['0.1']:.1f}")


def late_interaction(model) -> None:
    cfg = default_config("retrieval")
    rng = np.random.default_rng(0)
    img_g, shp_g, pix_mask, pix_any, points, cats = [], [], [], [], [], []
    for scene in procedural_scenes(cfg):
        shp = model.encode_shape(scene.mesh, num_points=cfg.num_points, seed=cfg.seed)
        view = scene.views[0]
        img = model.encode_image(view.image)
        img_g.append(img.global_embedding)
        shp_g.append(shp.global_embedding)
        points.append(shp.dense[rng.choice(shp.dense.shape[0], 2048, replace=False)])
        ys, xs = np.nonzero(view.mask)
        pick = rng.choice(len(xs), min(256, len(xs)), replace=False)
        pix_mask.append(img.sample(torch.tensor(np.stack([xs[pick], ys[pick]], -1), dtype=torch.float32)))
        h, w = view.mask.shape
        anywhere = np.stack([rng.uniform(0, w - 1, 256), rng.uniform(0, h - 1, 256)], -1)
        pix_any.append(img.sample(torch.tensor(anywhere, dtype=torch.float32)))
        cats.append(scene.category)
    n = len(cats)
    glob = (F.normalize(torch.stack(img_g), dim=-1) @ F.normalize(torch.stack(shp_g), dim=-1).T).numpy()

    def late(pixels: list[torch.Tensor]) -> np.ndarray:
        out = np.zeros((n, n))
        for i in range(n):
            q = F.normalize(pixels[i], dim=-1)
            for j in range(n):
                out[i, j] = float((q @ points[j].T).max(dim=1).values.mean())
        return out

    def z(s: np.ndarray) -> np.ndarray:
        return (s - s.mean(1, keepdims=True)) / s.std(1, keepdims=True)

    inst = np.arange(n)
    cat = np.array([sorted(set(cats)).index(c) for c in cats])
    mask_s, any_s = late(pix_mask), late(pix_any)
    rows = {"global": glob, "late, mask pixels": mask_s, "late, any pixels": any_s,
            "global + late (mask)": z(glob) + z(mask_s), "global + late (any)": z(glob) + z(any_s)}
    for name, s in rows.items():
        print(f"{name:22s} image->shape R@1 instance {100 * recall_at_k(s, inst, inst, 1):5.1f}"
              f"  category {100 * recall_at_k(s, cat, cat, 1):5.1f}")


def symmetry(model) -> None:
    from tango3d_core.eval.suites._common import argmax_cosine, scene_rng
    from tango3d_core.eval.suites.pixel2point import sample_query_pixels

    cfg = default_config("pixel2point")
    flips = {"x": np.array([-1.0, 1.0, 1.0]), "y": np.array([1.0, -1.0, 1.0]), "xy": np.array([-1.0, -1.0, 1.0])}
    err, err_flip = [], {k: [] for k in flips}
    for scene in procedural_scenes(cfg):
        shp = model.encode_shape(scene.mesh, num_points=cfg.num_points, seed=cfg.seed)
        pts = shp.points.numpy().astype(np.float64)
        c, s_ = math.cos(-scene.yaw), math.sin(-scene.yaw)
        unyaw = np.array([[c, -s_, 0.0], [s_, c, 0.0], [0.0, 0.0, 1.0]])
        for view in scene.views:
            xy = sample_query_pixels(view.mask, cfg.pixels_per_view, scene_rng(cfg.seed, "pixels", view.key))
            if not len(xy):
                continue
            img = model.encode_image(view.image)
            idx = argmax_cosine(img.sample(torch.as_tensor(xy, dtype=torch.float32)), shp.dense).numpy()
            gt = view.xyz[xy[:, 1], xy[:, 0]].astype(np.float64) @ unyaw.T
            pred = pts[idx] @ unyaw.T
            err.append(np.linalg.norm(pred - gt, axis=1) / scene.diameter)
            for k, f in flips.items():
                err_flip[k].append(np.linalg.norm(pred - gt * f, axis=1) / scene.diameter)
    e = np.concatenate(err)
    fl = {k: np.concatenate(v) for k, v in err_flip.items()}
    any_flip = np.minimum.reduce([fl[k] for k in flips])
    print(f"{len(e)} queries; pixel->point <=10%: {100 * np.mean(e <= 0.1):.1f}")
    for k in flips:
        print(f"  miss, but within 10% of the mirror image {k:>2s}: {100 * np.mean((e > 0.1) & (fl[k] <= 0.1)):.1f}")
    print(f"  <=10% of the true point or any mirror image: {100 * np.mean(np.minimum(e, any_flip) <= 0.1):.1f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    what = sys.argv[1]
    if what == "yaw-tta":
        yaw_tta(load_model(sys.argv[3] if len(sys.argv) > 3 else None), int(sys.argv[2]))
    elif what == "symmetry":
        symmetry(load_model(sys.argv[2] if len(sys.argv) > 2 else None))
    elif what == "late":
        late_interaction(load_model(sys.argv[2] if len(sys.argv) > 2 else None))
    else:
        raise SystemExit(__doc__)
