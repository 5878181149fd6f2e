"""Experiment (issue #3): how far pose-verified matching (``tango3d_core.models.pose``) can go.

    python docs/experiments/pose_probes.py yaw CHECKPOINT [SPLIT] [SHAPES]
    python docs/experiments/pose_probes.py foreground CHECKPOINT [SPLIT]
    python docs/experiments/pose_probes.py gate CHECKPOINT [SPLIT]
    python docs/experiments/pose_probes.py retrieval CHECKPOINT [SPLIT] [TOP_K]

``yaw``: the pixel2point suite's queries (default: the validation split, where every setting
was chosen) matched four ways: cosine only; pose-verified with the estimated pose and the
model's own foreground; with the object's true mask instead; and with the *oracle* yaw (the turn
that best fits the predicted xyz of the masked pixels to their true xyz), the ceiling of a
perfect yaw search. Also the estimated yaw's error against the oracle's.

``foreground``: precision and recall of the foreground head's mask (and of the 5x5-eroded
one ``encode_image`` keeps) against the rendered mask, by logit threshold.

``gate``: would falling back to cosine matching when the pose is ambiguous (small
``PoseEstimate.margin``: the best yaw barely beats a yaw 45+ degrees away) help?

``retrieval``: image->shape over the retrieval suite's gallery (17 categories x 6 shapes, one
view each), the global-embedding ranking re-ranked in its top K by how well the image's
predicted surface fits each candidate (the best ``estimate_pose`` score), alone and added to
the z-scored global similarity.

A lab record, not part of the package: see docs/experiments/pose_matching.md.
"""
from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

from tango3d_core import load_model
from tango3d_core.eval.suites import default_config
from tango3d_core.eval.suites._common import argmax_cosine, procedural_scenes, scene_rng
from tango3d_core.eval.suites.pixel2point import sample_query_pixels
from tango3d_core.models.image_encoder import pil_to_tensor
from tango3d_core.models.pose import PoseEstimate, _frames, estimate_pose, pose_match


def _acc(errs: list[np.ndarray]) -> str:
    e = np.concatenate(errs)
    return f"{100 * np.mean(e <= 0.05):.1f} / {100 * np.mean(e <= 0.1):.1f}"


def _views(model, cfg, limit: int = 10**9):
    """(scene, shape features, points [N, 3], view, query pixels [M, 2], true xyz [M, 3], image
    features) for the pixel2point suite's scenes and queries, ``limit`` shapes at most."""
    for i, scene in enumerate(procedural_scenes(cfg)):
        if i >= limit:
            return
        shp = model.encode_shape(scene.mesh, num_points=cfg.num_points, seed=cfg.seed)
        for view in scene.views:
            xy = sample_query_pixels(view.mask, cfg.pixels_per_view, scene_rng(cfg.seed, "pixels", view.key))
            yield (scene, shp, shp.points.numpy(), view, torch.as_tensor(xy, dtype=torch.float32),
                   view.xyz[xy[:, 1], xy[:, 0]], model.encode_image(view.image))


def oracle_pose(img, shp, mask: np.ndarray, xyz: np.ndarray, steps: int = 72) -> PoseEstimate:
    """The yaw whose frame best fits the predicted xyz of the masked pixels to their true xyz."""
    rows, cols = np.nonzero(mask)
    pick = np.random.default_rng(0).choice(len(rows), min(512, len(rows)), replace=False)
    xy = torch.as_tensor(np.stack([cols[pick], rows[pick]], -1), dtype=torch.float32)
    pred = img.geometry.xyz_at(img.image_size, xy).double().numpy()
    canonical = ((shp.points - shp.center) * shp.scale).float()
    yaws = torch.arange(steps, dtype=torch.float32) * (2 * math.pi / steps)
    centers, scales = _frames(canonical, yaws)
    true_c = torch.as_tensor((xyz[rows[pick], cols[pick]] - shp.center.numpy()) * shp.scale, dtype=torch.float32)
    best, best_err = 0, float("inf")
    for k, t in enumerate(yaws.tolist()):
        c, s = math.cos(-t), math.sin(-t)
        rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        q = ((true_c @ rot.T) - centers[k]) * scales[k]
        err = float(np.abs(pred - q.double().numpy()).sum())
        if err < best_err:
            best, best_err = k, err
    return PoseEstimate(yaw=float(yaws[best]), center=centers[best], scale=float(scales[best]),
                        view_dir=torch.zeros(3), yaws=yaws, scores=torch.zeros(steps), num_pixels=len(pick))


def yaw(model, split: str, limit: int) -> None:
    cfg = dataclasses.replace(default_config("pixel2point"), split=split)
    errs = {k: [] for k in ("cosine", "pose", "pose, true mask", "oracle yaw")}
    yaw_err = []
    for scene, shp, pts, view, q, gt, img in _views(model, cfg, limit):
        poses = {"pose": estimate_pose(img, shp), "pose, true mask": estimate_pose(img, shp, mask=view.mask),
                 "oracle yaw": oracle_pose(img, shp, view.mask, np.nan_to_num(view.xyz))}
        idx = {"cosine": argmax_cosine(img.sample(q), shp.dense)}
        idx.update({k: pose_match(img, shp, q, pose=p).argmax(1) for k, p in poses.items()})
        for k, i in idx.items():
            errs[k].append(np.linalg.norm(pts[i.numpy()] - gt, axis=1) / scene.diameter)
        d = poses["pose"].yaw - poses["oracle yaw"].yaw
        yaw_err.append(abs(math.degrees((d + math.pi) % (2 * math.pi) - math.pi)))
    for k, v in errs.items():
        print(f"{k:16s} pixel->point <=5% / <=10%: {_acc(v)}")
    y = np.array(yaw_err)
    print(f"estimated yaw vs oracle: <15 deg {100 * np.mean(y < 15):.1f} %, <45 deg {100 * np.mean(y < 45):.1f} %, "
          f">135 deg (a half turn) {100 * np.mean(y > 135):.1f} %")


def foreground(model, split: str) -> None:
    cfg = dataclasses.replace(default_config("pixel2point"), split=split)
    thresholds = (-2.0, -1.0, 0.0, 1.0, 2.0)
    counts = {(t, e): np.zeros(3) for t in thresholds for e in (False, True)}
    for scene in procedural_scenes(cfg):
        for view in scene.views:
            x = pil_to_tensor(view.image, model.image_encoder.input_size(*view.image.size))[None]
            with torch.inference_mode():
                dense = model.image_forward(x)["dense_features"]
                logit = F.interpolate(model.foreground_head(dense)["foreground"][:, None], size=view.mask.shape,
                                      mode="bilinear", align_corners=False)[0, 0]
            gt = torch.as_tensor(view.mask)
            for t in thresholds:
                p = logit > t
                eroded = ~F.max_pool2d((~p)[None, None].float(), 9, 1, 4)[0, 0].bool()
                for e, m in ((False, p), (True, eroded)):
                    counts[t, e] += [int((m & gt).sum()), int(m.sum()), int(gt.sum())]
    for t in thresholds:
        (tp, pp, g), (etp, epp, eg) = counts[t, False], counts[t, True]
        print(f"logit > {t:+.0f}: precision {tp / pp:.3f} recall {tp / g:.3f}   eroded: precision "
              f"{etp / max(epp, 1):.3f} recall {etp / eg:.3f}")


def gate(model, split: str) -> None:
    cfg = dataclasses.replace(default_config("pixel2point"), split=split)
    rows = []
    for scene, shp, pts, _view, q, gt, img in _views(model, cfg):
        e_cos = np.linalg.norm(pts[argmax_cosine(img.sample(q), shp.dense).numpy()] - gt, axis=1) / scene.diameter
        pose = estimate_pose(img, shp)
        e_pose = np.linalg.norm(pts[pose_match(img, shp, q, pose=pose).argmax(1).numpy()] - gt, axis=1)
        rows.append((pose.margin, e_cos, e_pose / scene.diameter))
    for m0 in (0.0, 0.005, 0.01, 0.02, 0.05):
        chosen = [p if m >= m0 else c for m, c, p in rows]
        used = np.mean([m >= m0 for m, _, _ in rows])
        print(f"pose only where margin >= {m0}: {_acc(chosen)} (pose on {100 * used:.0f} % of views)")


def retrieval(model, split: str, top_k: int) -> None:
    from tango3d_core.eval.metrics import recall_at_k

    cfg = dataclasses.replace(default_config("retrieval"), split=split)
    imgs, shps, cats = [], [], []
    for scene in procedural_scenes(cfg, views=1):
        shps.append(model.encode_shape(scene.mesh, num_points=cfg.num_points, seed=cfg.seed))
        imgs.append(model.encode_image(scene.views[0].image))
        cats.append(scene.category)
    n = len(cats)
    glob = (torch.stack([i.global_embedding for i in imgs]) @ torch.stack([s.global_embedding for s in shps]).T).numpy()
    fit = np.full((n, n), -np.inf)
    for q in range(n):
        for j in np.argsort(-glob[q])[:top_k]:
            fit[q, j] = float(estimate_pose(imgs[q], shps[j]).scores.max())
    z = lambda a: (a - a.mean()) / (a.std() + 1e-9)  # noqa: E731
    both = np.full((n, n), -np.inf)
    for q in range(n):
        top = np.isfinite(fit[q])
        both[q, top] = z(glob[q, top]) + z(fit[q, top])
    inst = np.arange(n)
    cat = np.array([sorted(set(cats)).index(c) for c in cats])
    for name, s in (("global", glob), (f"pose fit, top {top_k}", np.where(np.isfinite(fit), fit, -1e9)),
                    (f"global + pose fit, top {top_k}", np.where(np.isfinite(both), both, -1e9))):
        print(f"{name:26s} image->shape R@1 instance {100 * recall_at_k(s, inst, inst, 1):5.1f}"
              f"  category {100 * recall_at_k(s, cat, cat, 1):5.1f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    if len(sys.argv) < 3 or sys.argv[1] not in ("yaw", "foreground", "gate", "retrieval"):
        raise SystemExit(__doc__)
    what, model = sys.argv[1], load_model(sys.argv[2])
    split = sys.argv[3] if len(sys.argv) > 3 else "val"
    if what == "yaw":
        yaw(model, split, int(sys.argv[4]) if len(sys.argv) > 4 else 10**9)
    elif what == "foreground":
        foreground(model, split)
    elif what == "retrieval":
        retrieval(model, split, int(sys.argv[4]) if len(sys.argv) > 4 else 10)
    else:
        gate(model, split)
