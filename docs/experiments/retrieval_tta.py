"""Experiment (issue #3): inference-time levers for image->shape instance retrieval.

    PYTHONPATH=. python docs/experiments/retrieval_tta.py [--checkpoint DIR] [--split val] [--seeds 0,1,2]

On the retrieval suite's gallery (17 categories x 6 shapes, one view each, random yaw on the
3D input; one seed = 102 queries), image->shape scored six ways, each from the same features:

- ``global``: the suite's score, the cosine of the global embeddings;
- ``flip``: the image embedding averaged with that of its mirror image (most shapes are
  mirror-symmetric, so the mirror is a second view of the same object);
- ``yaw4``: the shape embedding averaged over four encodings, the 3D input turned by 0, 90,
  180, 270 degrees and each sampled with its own seed (the same seed on a turned mesh gives
  the same points turned, which the encoder's principal frame maps to the same input);
- ``late``: late interaction, the mean over the image's predicted foreground pixels (at most
  256) of each pixel's best cosine among 2048 of the shape's points;
- ``global+late w``: z(global) + w z(late), z-scored per query over the gallery.

A lab record, not part of the package.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time

import numpy as np
import torch
from PIL import ImageOps

from tango3d_core import load_model
from tango3d_core.eval.metrics import recall_at_k
from tango3d_core.eval.suites import default_config
from tango3d_core.data.dataset import rotation_z
from tango3d_core.eval.suites._common import _rotated, procedural_scenes
from tango3d_core.models.pose import _foreground_pixels


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _z(a: np.ndarray) -> np.ndarray:
    return (a - a.mean(axis=1, keepdims=True)) / (a.std(axis=1, keepdims=True) + 1e-9)


def scores(model, split: str, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    cfg = dataclasses.replace(default_config("retrieval"), split=split, seed=seed)
    img_g, flip_g, shp_g, yaw_g, pix, pts, cats = [], [], [], [], [], [], []
    gen = torch.Generator().manual_seed(0)
    for scene in procedural_scenes(cfg, views=1):
        cats.append(scene.category)
        shp = model.encode_shape(scene.mesh, num_points=cfg.num_points, seed=cfg.seed)
        shp_g.append(shp.global_embedding)
        turned = [shp.global_embedding] + [
            model.encode_shape(_rotated(scene.mesh, rotation_z(k * math.pi / 2)), num_points=cfg.num_points,
                               seed=cfg.seed + 1000 * k).global_embedding for k in (1, 2, 3)]
        yaw_g.append(_unit(torch.stack(turned)).mean(0))
        image = scene.views[0].image
        img = model.encode_image(image)
        img_g.append(img.global_embedding)
        flip_g.append(_unit(torch.stack([img.global_embedding,
                                         model.encode_image(ImageOps.mirror(image)).global_embedding])).mean(0))
        xy = _foreground_pixels(img, None, 256, 0)
        pix.append(_unit(img.sample(xy).float()))
        pts.append(_unit(shp.dense[torch.randperm(len(shp.dense), generator=gen)[:2048]].float()))
    G = lambda a, b: (_unit(torch.stack(a)) @ _unit(torch.stack(b)).T).numpy()  # noqa: E731
    out = {"global": G(img_g, shp_g), "flip": G(flip_g, shp_g), "yaw4": G(img_g, yaw_g),
           "flip+yaw4": G(flip_g, yaw_g)}
    n = len(cats)
    late = np.zeros((n, n))
    for q in range(n):
        for j in range(n):
            late[q, j] = float((pix[q] @ pts[j].T).max(dim=1).values.mean())
    out["late"] = late
    for w in (0.25, 0.5, 1.0):
        out[f"global+late {w}"] = _z(out["global"]) + w * _z(late)
        out[f"flip+yaw4+late {w}"] = _z(out["flip+yaw4"]) + w * _z(late)
    return out, np.asarray(cats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--split", default="val")
    ap.add_argument("--seeds", default="0")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model = load_model(args.checkpoint)
    table: dict[str, list[tuple[float, float, float]]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        t0 = time.time()
        sims, cats = scores(model, args.split, seed)
        inst = np.arange(len(cats))
        for name, s in sims.items():
            table.setdefault(name, []).append((recall_at_k(s, inst, inst, 1), recall_at_k(s, inst, inst, 5),
                                               recall_at_k(s, cats, cats, 1)))
        print(f"seed {seed}: {time.time() - t0:.0f} s", flush=True)
    print(f"split {args.split}, seeds {args.seeds}: instance R@1 / R@5, category R@1 (mean over seeds)")
    for name, rows in table.items():
        a = 100 * np.mean(rows, axis=0)
        print(f"  {name:22s} {a[0]:5.1f} / {a[1]:5.1f}   {a[2]:5.1f}")


if __name__ == "__main__":
    main()
