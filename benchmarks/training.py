"""Training throughput: samples per second per stage on this CPU, against the FLOP limit.

For each stage of the ``tiny`` progressive schedule (``tango3d_core.train.stages``) a fresh
``tiny`` model (128 px input, as the bundled checkpoint was trained) runs full optimiser steps
exactly as the training loop does (stage parameter groups, AdamW, forward with the stage's
losses, backward, gradient clipping, step) on a synthetic batch in the dataset's example format
at the stage's batch size, point and pixel counts. Text comes as precomputed MiniLM-sized
embeddings, so the frozen text model is not timed.

Baseline: the FLOP limit, ``fp32 GEMM peak (measured in the same run) / FLOPs per sample``, with
the FLOPs of one forward + backward counted by torch's FLOP counter (matrix products and
attention only). Ratio = our samples/s / that limit, the model-FLOP utilisation.

Run on its own: ``python -m benchmarks.training [--smoke]``.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import statistics
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import hardware
from .common import REPO_ROOT, Context, Row, count_flops, print_rows, time_call

__all__ = ["run", "synthetic_batch"]

TEXT_DIM = 384


def synthetic_batch(batch_size: int, resolution: int, *, num_points: int, num_occ: int, seed: int = 0
                    ) -> dict[str, Any]:
    """A random batch in ``tango3d_core.data.dataset``'s example format (collated).

    image [B, 3, R, R] in [0, 1]; mask [B, R, R] a centred disc (~1/3 of the pixels, as in the
    dataset's views); depth / xyz / normal on the mask; points / normals [B, num_points, 3];
    occ_points [B, num_occ, 3], occ_labels [B, num_occ]; yaw, shape_center, shape_scale,
    shape_index; text_embedding [B, 384] unit vectors.
    """
    g = torch.Generator().manual_seed(seed)
    b, r = batch_size, resolution
    yy, xx = torch.meshgrid(torch.arange(r), torch.arange(r), indexing="ij")
    disc = ((xx - (r - 1) / 2) ** 2 + (yy - (r - 1) / 2) ** 2) <= (0.33 * r) ** 2
    mask = disc.expand(b, r, r).clone()
    m = mask[..., None].float()
    return {
        "image": torch.rand(b, 3, r, r, generator=g),
        "mask": mask,
        "depth": (1.5 + torch.rand(b, r, r, generator=g)) * mask,
        "xyz": (torch.rand(b, r, r, 3, generator=g) - 0.5) * m,
        "normal": F.normalize(torch.randn(b, r, r, 3, generator=g), dim=-1) * m,
        "points": torch.rand(b, num_points, 3, generator=g) - 0.5,
        "normals": F.normalize(torch.randn(b, num_points, 3, generator=g), dim=-1),
        "yaw": torch.rand(b, generator=g) * 2 * math.pi,
        "shape_center": torch.zeros(b, 3),
        "shape_scale": torch.ones(b),
        "occ_points": torch.rand(b, num_occ, 3, generator=g) - 0.5,
        "occ_labels": (torch.rand(b, num_occ, generator=g) > 0.5).float(),
        "shape_index": torch.arange(b),
        "text_embedding": F.normalize(torch.randn(b, TEXT_DIM, generator=g), dim=-1),
    }


def logged_throughput(run_dir: Path, stage_dir: str, batch_size: int) -> float | None:
    """Median samples/s between consecutive lines of a training run's ``<stage>/log.csv``
    (None if absent). ``time_s`` restarts when a stage resumes, so only forward pairs count."""
    log = run_dir / stage_dir / "log.csv"
    try:
        with open(log, newline="") as f:
            points = [(int(r["step"]), float(r["time_s"])) for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError):
        return None
    rates = [batch_size * (s1 - s0) / (t1 - t0) for (s0, t0), (s1, t1) in zip(points, points[1:])
             if s1 > s0 and t1 > t0]
    return float(statistics.median(rates)) if rates else None


def run(ctx: Context) -> list[Row]:
    from tango3d_core.config import get_preset
    from tango3d_core.models import build_model
    from tango3d_core.train.stages import default_schedule

    hw = hardware.measure(ctx)
    peak = hw["gemm_fp32_GFLOPs"] * 1e9
    resolution = 64 if ctx.smoke else 128
    cfg = get_preset("tiny")
    cfg = dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, image_size=resolution))
    torch.manual_seed(0)
    model = build_model(cfg).to(ctx.device)
    rows = []
    for i, spec in enumerate(default_schedule("tiny")):
        bs = 2 if ctx.smoke else spec.batch_size
        n_pts = 512 if ctx.smoke else int(spec.extra.get("num_points", 2048))
        n_occ = 128 if ctx.smoke else int(spec.extra.get("num_occ", 2048))
        n_pix = 32 if ctx.smoke else int(spec.extra.get("num_pixels", 256))
        batch = {k: v.to(ctx.device) if isinstance(v, torch.Tensor) else v
                 for k, v in synthetic_batch(bs, resolution, num_points=n_pts, num_occ=n_occ, seed=i).items()}
        groups = spec.configure(model)
        params = [p for grp in groups for p in grp["params"]]
        opt = torch.optim.AdamW(groups, weight_decay=spec.weight_decay, betas=(0.9, 0.98))
        weights = spec.weights
        model.train()

        def forward_backward() -> None:
            losses = model(batch, losses=weights, num_pixels=n_pix)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()

        def step() -> None:
            forward_backward()
            if spec.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
            opt.step()

        # The counted call is also the warm-up (first-step allocations, AdamW state).
        flops = count_flops(forward_backward)
        opt.step()
        t = time_call(step, repeats=1 if ctx.smoke else 3, warmup=0)
        ours = bs / t.median
        limit = peak / (flops / bs)
        stage_dir = f"{spec.extra.get('index', i)}_{spec.name}"
        logged = logged_throughput(REPO_ROOT / "runs" / "tiny", stage_dir, spec.batch_size)
        detail = (f"{t.median:.2f} s/step (CPU {t.cpu_median:.2f} s), batch {bs}, {resolution} px, "
                  f"losses {'+'.join(weights)}")
        if logged is not None:
            detail += (f"; runs/tiny log (the bundled checkpoint's training, 1 thread, with data loading and "
                       f"MiniLM): {logged:.1f} samples/s")
        utilisation = ours / limit
        note = ""
        if utilisation < 0.2:
            note = ("far below the FLOP limit: batch-16 steps of a 6M-parameter model are small matrix products, "
                    "and element-wise work (norms, GELU, softmax, the optimiser) is not in the FLOP count")
        rows.append(Row(
            case="Training throughput", setting=f"stage {spec.extra.get('index', i)} {spec.name}",
            ours=ours, baseline=limit, unit="samples/s", higher_is_better=True,
            ours_name="one optimiser step of the training loop (forward, backward, clip, AdamW)",
            baseline_name=(f"FLOP limit: {hw['gemm_fp32_GFLOPs']:.0f} GFLOP/s fp32 GEMM peak / "
                           f"{flops / bs / 1e9:.2f} GFLOP per sample"),
            kind="limit", ours_detail=detail, note=note))
    return rows


if __name__ == "__main__":
    c = Context(smoke="--smoke" in sys.argv[1:], threads=torch.get_num_threads())
    print_rows(run(c))
