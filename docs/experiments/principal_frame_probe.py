"""Experiment (issue #3): is a principal-axis yaw frame of the 3D input stable?

    python docs/experiments/principal_frame_probe.py

For each category, 6 held-out test shapes, each sampled (8192 surface points) under 3 random
yaws. ``models.ops.principal_yaw`` gives the yaw of the cloud's own frame; subtracting the input
yaw gives the frame of the canonical shape, which should not depend on the input yaw. A shape
counts as stable when its 3 estimates agree within 10 degrees. Also printed: the canonical-frame
angle of each instance (do instances of a category share a frame?), the eigenvalue ratio
(minor / major horizontal variance; near 1 = isotropic) and the larger normalised skewness
(near 0 = no sign information) of the last sample.

A lab record, not part of the package: see docs/experiments/point_features.md.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from tango3d_core.data import dataset, shapes
from tango3d_core.models.ops import principal_yaw, rotate_z


def _wrap(a: float) -> float:
    return (a + math.pi) % (2 * math.pi) - math.pi


def _spread(points: np.ndarray) -> tuple[float, float]:
    c = points[:, :2] - points[:, :2].mean(axis=0)
    evals, evecs = np.linalg.eigh(c.T @ c / len(c))
    skew = [abs(np.mean((c @ evecs[:, i]) ** 3)) / evals[i] ** 1.5 for i in (0, 1)]
    return float(evals[0] / evals[1]), float(max(skew))


def main() -> None:
    rng = np.random.default_rng(0)
    stable_all = []
    for cat in shapes.CATEGORIES:
        stable, frames = [], []
        for i in range(6):
            mesh = shapes.generate(cat, dataset.SPLIT_OFFSET["test"] + i).mesh
            est = []
            for _ in range(3):
                yaw = float(rng.uniform(0.0, 2.0 * math.pi))
                pts = mesh.sample(8192, seed=int(rng.integers(2**31)))
                turned = rotate_z(torch.as_tensor(np.asarray(pts), dtype=torch.float64)[None], torch.tensor([yaw]))
                est.append(_wrap(float(principal_yaw(turned)[0]) - yaw))
            stable.append(max(abs(_wrap(e - est[0])) for e in est[1:]) < math.radians(10.0))
            frames.append(round(math.degrees(est[0])))
        ratio, skew = _spread(np.asarray(turned[0]))
        stable_all += stable
        print(f"{cat:10s} stable {np.mean(stable):.2f}  canonical-frame angles {frames}  "
              f"eig-ratio {ratio:.2f}  skew {skew:.2f}")
    print(f"overall stable {np.mean(stable_all):.3f} of {len(stable_all)} shapes")


if __name__ == "__main__":
    main()
