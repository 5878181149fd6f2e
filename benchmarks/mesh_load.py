"""Load time of a 1.3M-face binary PLY: tango3d's load_mesh against trimesh.

Baselines:
  * ``trimesh.load_scene(process=False)``: parsing alone, the floor;
  * ``trimesh.load_mesh(path)``: trimesh's default load (parse, merge vertices,
    drop degenerate faces), i.e. what a caller would use without load_mesh.

Measured for load_mesh: under the face cap (checks, flatten, clean) and at the
default 1M cap (the same, plus quadric decimation to 1M faces).

    python benchmarks/mesh_load.py [--subdivisions 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import trimesh

from tango3d_core.data.meshio import MAX_FACES, load_mesh


def _best_of(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(*, subdivisions: int = 8, repeats: int = 3) -> dict:
    """Best-of-``repeats`` seconds of each loader on a vertex-coloured icosphere PLY.

    Returns ``{"faces", "vertices", "size_mb", "rows": [(label, seconds), ...]}``; ``rows[1]`` is
    the baseline (``trimesh.load_mesh``).
    """
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    rgb = np.clip((mesh.vertices + 1.0) * 127.5, 0, 255).astype(np.uint8)
    mesh.visual.vertex_colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    n_faces = len(mesh.faces)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.ply"
        mesh.export(path)
        size_mb = path.stat().st_size / 2**20

        rows = [
            (
                "trimesh.load_scene(process=False)  [parse only]",
                lambda: trimesh.load_scene(path, process=False),
            ),
            ("trimesh.load_mesh(path)            [baseline]", lambda: trimesh.load_mesh(path)),
            (
                "t3.load_mesh(max_faces=2M)         [no decimation]",
                lambda: load_mesh(path, max_faces=2_000_000),
            ),
        ]
        if n_faces > MAX_FACES:
            rows.append(
                (f"t3.load_mesh()                     [decimate to {MAX_FACES:,}]", lambda: load_mesh(path))
            )
        times = [(label, _best_of(fn, repeats)) for label, fn in rows]
    return {"faces": n_faces, "vertices": len(mesh.vertices), "size_mb": size_mb, "rows": times}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--subdivisions", type=int, default=8, help="icosphere level; 8 gives 1,310,720 faces"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    res = measure(subdivisions=args.subdivisions, repeats=args.repeats)
    print(f"binary PLY: {res['faces']:,} faces, {res['vertices']:,} vertices, {res['size_mb']:.1f} MB")
    times = res["rows"]
    baseline = times[1][1]
    for label, seconds in times:
        print(f"{label:58s} {seconds:6.2f} s   x{seconds / baseline:5.2f} of baseline")


if __name__ == "__main__":
    main()
