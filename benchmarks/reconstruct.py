"""Shape VAE reconstruction: the coarse-to-fine occupancy grid against every grid point.

``Tango3D.reconstruct`` decodes the occupancy on a 64^3 grid with
``models.volume.grid_logits`` (every second point first, then only the cells near the zero
crossing); the baseline queries all 262,144 points (``dense_grid_logits``). Both decode the same
encoding (bundled model, 1024 tokens) of held-out procedural shapes; the row also reports how many
grid points differ in sign between the two (0 means the same marching-cubes mesh).

    python -m benchmarks --only reconstruct
"""

from __future__ import annotations

import numpy as np

from .common import Context, Row, time_call

__all__ = ["run"]


def run(ctx: Context) -> list[Row]:
    from tango3d_core.data import shapes
    from tango3d_core.models.volume import dense_grid_logits, grid_box, grid_logits

    model = ctx.model()
    resolution = 32 if ctx.smoke else 64
    names = [("chair", 200000)] if ctx.smoke else [("chair", 200000), ("lamp", 200001), ("airplane", 200002)]
    ours, base, evaluated, differ = [], [], [], 0
    for cat, seed in names:
        mesh = shapes.generate(cat, seed).mesh
        field, center, scale = model._occupancy_field(mesh, num_points=8192, num_latents=1024, seed=0)
        lo, hi = grid_box(mesh.bounds, center.numpy(), scale)  # the box reconstruct decodes
        out: dict[str, object] = {}  # each timed call's result, compared after the timing

        def fast():
            out["fast"] = grid_logits(field, lo, hi, resolution)

        def dense():
            out["dense"] = dense_grid_logits(field, lo, hi, resolution)

        ours.append(time_call(fast, repeats=1 if ctx.smoke else 3).median)
        base.append(time_call(dense, repeats=1 if ctx.smoke else 3).median)
        logits, n = out["fast"]
        evaluated.append(n / resolution ** 3)
        differ += int((np.sign(logits) != np.sign(out["dense"])).sum())
    return [Row(case="VAE reconstruction", setting=f"{resolution}^3 occupancy grid, 1024 tokens, {len(names)} shapes",
                ours=float(np.mean(ours)), baseline=float(np.mean(base)), unit="s",
                ours_name="coarse to fine (models.volume.grid_logits)", baseline_name="every grid point queried",
                ours_detail=f"{100 * np.mean(evaluated):.0f} % of the points queried; {differ} differ in sign",
                kind="alternative",
                note="" if np.mean(ours) < np.mean(base) else "coarse to fine should query fewer points; "
                                                              "check the band")]
