"""Quality figures for the procedural shape families.

``watertight_report`` answers "what fraction of instances is a closed mesh?",
``family_stats`` adds face counts, part counts and generation times. Run
``python -m tango3d_core.data.shapes.report`` for a table (``--json`` for JSON).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

from . import CATEGORIES, generate


@dataclass(frozen=True)
class FamilyStats:
    """Figures for one category over a set of seeds.

    Attributes:
        category: family name.
        n: number of seeds generated.
        watertight: fraction of instances whose mesh is watertight (every edge
            shared by exactly two faces), in [0, 1].
        faces_min, faces_median, faces_max: face counts.
        parts_min: fewest distinct parts labelling faces in one instance.
        seconds_mean, seconds_max: wall time of ``generate`` per instance, seconds.
    """

    category: str
    n: int
    watertight: float
    faces_min: int
    faces_median: int
    faces_max: int
    parts_min: int
    seconds_mean: float
    seconds_max: float


def _resolve(categories: Sequence[str] | None, seeds: Iterable[int]) -> tuple[list[str], list[int]]:
    cats = list(CATEGORIES) if categories is None else list(categories)
    unknown = [c for c in cats if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; choose from {CATEGORIES}")
    seed_list = [int(s) for s in seeds]
    if not seed_list:
        raise ValueError("seeds is empty: give at least one seed")
    return cats, seed_list


def family_stats(categories: Sequence[str] | None = None, seeds: Iterable[int] = range(20)) -> dict[str, FamilyStats]:
    """Generate every (category, seed) once and summarise each category.

    Args:
        categories: names from ``CATEGORIES``; ``None`` means all of them.
        seeds: the seeds to generate (each >= 0).

    Raises:
        ValueError: an unknown category, a negative seed, or no seeds.
    """
    cats, seed_list = _resolve(categories, seeds)
    out: dict[str, FamilyStats] = {}
    for cat in cats:
        tight, faces, parts, secs = [], [], [], []
        for s in seed_list:
            t0 = time.perf_counter()
            shape = generate(cat, s)
            secs.append(time.perf_counter() - t0)
            tight.append(bool(shape.mesh.is_watertight))
            faces.append(len(shape.mesh.faces))
            parts.append(len(np.unique(shape.face_parts)))
        out[cat] = FamilyStats(
            category=cat,
            n=len(seed_list),
            watertight=float(np.mean(tight)),
            faces_min=int(np.min(faces)),
            faces_median=int(np.median(faces)),
            faces_max=int(np.max(faces)),
            parts_min=int(np.min(parts)),
            seconds_mean=float(np.mean(secs)),
            seconds_max=float(np.max(secs)),
        )
    return out


def watertight_report(categories: Sequence[str] | None = None, seeds: Iterable[int] = range(20)) -> dict[str, float]:
    """Fraction of watertight meshes per category, e.g. ``{"chair": 1.0, ...}``.

    Args:
        categories: names from ``CATEGORIES``; ``None`` means all of them.
        seeds: the seeds to generate (each >= 0).

    Raises:
        ValueError: an unknown category, a negative seed, or no seeds.
    """
    cats, seed_list = _resolve(categories, seeds)
    return {c: float(np.mean([generate(c, s).mesh.is_watertight for s in seed_list])) for c in cats}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tango3d_core.data.shapes.report", description="Quality figures for the procedural shape families."
    )
    parser.add_argument("--seeds", type=int, default=20, help="generate seeds 0..N-1 (default 20)")
    parser.add_argument("--categories", nargs="*", default=None, help="default: every category")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    stats = family_stats(args.categories, range(args.seeds))
    if args.json:
        print(json.dumps({k: asdict(v) for k, v in stats.items()}, indent=2))
        return 0
    print(f"{'category':<11} {'n':>3} {'watertight':>10} {'faces min/med/max':>22} {'parts':>5} {'ms mean/max':>12}")
    for s in stats.values():
        faces = f"{s.faces_min}/{s.faces_median}/{s.faces_max}"
        ms = f"{1000 * s.seconds_mean:.0f}/{1000 * s.seconds_max:.0f}"
        print(f"{s.category:<11} {s.n:>3} {s.watertight:>10.2f} {faces:>22} {s.parts_min:>5} {ms:>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
