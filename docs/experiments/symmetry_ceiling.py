"""The best pixel->point accuracy any method can reach under the evaluation's random yaw.

The 3D input is the mesh turned by a random yaw about +Z. When a shape is unchanged by a turn g
about a vertical axis (a four-legged table by a half turn, a vase by any turn), the input for
yaw psi and for yaw psi + g is the same point set, so no method can tell a surface point q from
g(q): whatever it answers, it hits the truth for at most one of them. Averaged over the yaw,
the expected accuracy of a method that is right in every other respect is, per query,

    mean over g in G(shape) of [ |g(q) - q| <= threshold x diameter ]

where G is the shape's group of such turns (the identity included). This needs no model: the
shape's samples give G, the pixel2point suite's query pixels give q. A turn belongs to G when
it moves one half of the samples onto the other half about as well as no turn does: the
symmetric chamfer between half A and the turned half B is within ``ratio`` x the chamfer
between A and B unturned (what two samplings of one surface differ by).

    python docs/experiments/symmetry_ceiling.py [SPLIT] [RATIO ...]     # default: test 1.1 1.25 1.5

A lab record, not part of the package: see docs/experiments/pose_matching.md §11.
"""
from __future__ import annotations

import math
import sys
from collections import defaultdict

import numpy as np
from scipy.spatial import cKDTree

from tango3d_core.eval.suites import default_config
from tango3d_core.eval.suites._common import procedural_scenes, scene_rng
from tango3d_core.eval.suites.pixel2point import sample_query_pixels

STEPS = 72  # candidate turns, 5 degrees apart


def turns(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """[STEPS, 3, 3]: rotations about the vertical axis through ``centre``, k x 5 degrees."""
    a = np.arange(STEPS) * (2 * math.pi / STEPS)
    c, s = np.cos(a), np.sin(a)
    R = np.zeros((STEPS, 3, 3))
    R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = c, -s, s, c, 1.0
    return R


def symmetric_chamfer(a: np.ndarray, tree_a: cKDTree, b: np.ndarray, R: np.ndarray, centre: np.ndarray) -> float:
    """Mean of the two one-way nearest-neighbour distances between ``a`` and ``b`` turned by R."""
    moved = (b - centre) @ R.T + centre
    return 0.5 * (tree_a.query(moved)[0].mean() + cKDTree(moved).query(a)[0].mean())


def main() -> None:
    split = sys.argv[1] if len(sys.argv) > 1 else "test"
    tols = [float(t) for t in sys.argv[2:]] or [1.1, 1.25, 1.5]
    cfg = default_config("pixel2point")
    cfg = type(cfg)(**{**cfg.__dict__, "split": split})
    hits = {t: defaultdict(list) for t in tols}
    group_sizes = {t: defaultdict(list) for t in tols}
    for scene in procedural_scenes(cfg):
        pts = scene.points.astype(np.float64)
        centre = pts.mean(0)  # the area centroid of the outer surface lies on every symmetry axis
        a, b = pts[0::2], pts[1::2]
        tree = cKDTree(a)
        Rs = turns(pts, centre)
        cham = np.array([symmetric_chamfer(a, tree, b, R, centre) for R in Rs])
        cham /= cham[0]  # the identity: two samplings of one surface
        qs = []
        for view in scene.views:
            xy = sample_query_pixels(view.mask, cfg.pixels_per_view, scene_rng(cfg.seed, "pixels", view.key))
            qs.append(view.xyz[xy[:, 1], xy[:, 0]])
        q = np.concatenate(qs).astype(np.float64)  # [M, 3], the mesh's (yawed) frame
        for t in tols:
            G = np.nonzero(cham <= t)[0]
            G = np.union1d(G, [0])
            group_sizes[t][scene.category].append(len(G))
            moved = np.einsum("gij,mj->gmi", Rs[G], q - centre) + centre  # [|G|, M, 3]
            d = np.linalg.norm(moved - q[None], axis=-1) / scene.diameter
            for th in cfg.thresholds:
                hits[t][th].append((d <= th).mean(0))
    print(f"split {split}, {len(next(iter(hits.values()))[cfg.thresholds[0]])} shapes; "
          "Bayes ceiling of pixel->point accuracy (%) under a uniform random yaw")
    print("ratio | " + " | ".join(f"<= {100 * th:g}%" for th in cfg.thresholds)
          + " | shapes with a non-trivial turn")
    for t in tols:
        row = [100 * np.concatenate(hits[t][th]).mean() for th in cfg.thresholds]
        nontrivial = sum(sum(n > 1 for n in v) for v in group_sizes[t].values())
        total = sum(len(v) for v in group_sizes[t].values())
        print(f"{t:g} | " + " | ".join(f"{x:.1f}" for x in row) + f" | {nontrivial}/{total}")
        print("   symmetric turns per shape by category: " + ", ".join(
            f"{c} {np.mean(v):.1f}" for c, v in sorted(group_sizes[t].items())))


if __name__ == "__main__":
    main()
