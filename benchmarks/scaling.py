"""Scaling curves: time against the number of points, the image size and the gallery size.

- **points**: ``Tango3D.encode_shape`` of a procedural chair for N = 1k .. 64k surface points.
  Expected growth: that of the FLOPs it runs (counted per size), since the encoder reads at most
  ``encoder_points`` samples (a fixed cost) and the point head is linear in N. The click
  similarity curve (:mod:`benchmarks.click`) is drawn in the same panel: O(N).
- **image size**: the 2D encoder (``Tango3D.image_forward``, one S x S image) for S = 64 .. 512;
  expected: its counted FLOPs (O(S^2) patch embedding, MLPs and upsampling, O(S^4) attention over
  (S/16)^2 tokens). The ray-cast renderer (``render.Renderer.render``) for S = 64 .. 1024: O(S^2)
  rays.
- **gallery size**: exact top-5 retrieval by brute force (``emb @ q`` then ``topk``, as
  ``app.gallery`` searches) over M = 1k .. 256k unit embeddings of width G: O(M).

Each curve gives a table row: our time growth from the smallest to the largest size against the
growth the expected exponent predicts (ratio > 1: we grow more slowly than expected).

Run on its own: ``python -m benchmarks.scaling [--smoke]``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F

from .common import (
    EXPECTED_TOLERANCE,
    Context,
    Curve,
    Row,
    cache_sizes,
    count_flops,
    fit_exponent,
    fmt_count,
    print_rows,
    time_call,
)

__all__ = ["run", "curve_rows"]


def _points_curve(ctx: Context) -> Curve:
    from tango3d_core.data import shapes

    model = ctx.model()
    mesh = shapes.generate("chair", 0).mesh
    sizes = (512, 1024, 2048) if ctx.smoke else (1024, 2048, 4096, 8192, 16384, 32768, 65536)
    secs, flops = [], []
    for n in sizes:
        t = time_call(lambda n=n: model.encode_shape(mesh, num_points=n, seed=0), repeats=1 if ctx.smoke else 3)
        secs.append(t.median)
        flops.append(count_flops(lambda n=n: model.encode_shape(mesh, num_points=n, seed=0)))
    return Curve(name="encode_shape", panel="points", xlabel="points N", sizes=[float(s) for s in sizes],
                 seconds=secs, expected_exponent=fit_exponent(sizes, flops),
                 expected_why=f"counted FLOPs ({flops[0] / 1e9:.2f} to {flops[-1] / 1e9:.2f} GFLOP): a fixed "
                              "encoder cost plus a point head linear in N, O(N) for large N")


def _image_curves(ctx: Context) -> list[Curve]:
    from tango3d_core.data import render, shapes

    model = ctx.model()
    sizes = (32, 64) if ctx.smoke else (64, 128, 256, 384, 512)
    secs, flops = [], []
    for s in sizes:
        x = torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(s)).to(model.device)

        def forward(x: torch.Tensor = x) -> None:
            with torch.inference_mode():
                model.image_forward(x)

        secs.append(time_call(forward, repeats=2 if ctx.smoke else 5, warmup=1).median)
        flops.append(count_flops(forward))
    encoder = Curve(name="image encoder", panel="image size", xlabel="image side S (pixels)",
                    sizes=[float(s) for s in sizes], seconds=secs, expected_exponent=fit_exponent(sizes, flops),
                    expected_why=f"counted FLOPs ({flops[0] / 1e9:.2f} to {flops[-1] / 1e9:.2f} GFLOP): O(S^2) "
                                 "convolutions and MLPs, O(S^4) attention")
    mesh = shapes.generate("chair", 0).mesh
    renderer = render.Renderer(mesh)
    rsizes = (32, 64) if ctx.smoke else (64, 128, 256, 512, 1024)
    rsecs = []
    for s in rsizes:
        cam = render.Camera.orbit(azimuth_deg=30.0, elevation_deg=20.0, distance=1.5, width=s, height=s)
        rsecs.append(time_call(lambda cam=cam: renderer.render(cam), repeats=2 if ctx.smoke else 5, warmup=1).median)
    renderer_curve = Curve(name="ray-cast renderer", panel="image size", xlabel="image side S (pixels)",
                           sizes=[float(s) for s in rsizes], seconds=rsecs, expected_exponent=2.0,
                           expected_why="one ray per pixel: O(S^2)")
    return [encoder, renderer_curve]


def _gallery_curve(ctx: Context) -> Curve:
    dim = int(ctx.model().global_dim)
    sizes = (1000, 4000) if ctx.smoke else (1000, 4000, 16000, 64000, 256000)
    g = torch.Generator().manual_seed(0)
    secs = []
    for m in sizes:
        emb = F.normalize(torch.randn(m, dim, generator=g), dim=-1)
        q = F.normalize(torch.randn(dim, generator=g), dim=-1)

        def search(emb: torch.Tensor = emb, q: torch.Tensor = q) -> None:
            with torch.inference_mode():
                (emb @ q).topk(5)

        secs.append(time_call(search, repeats=5, warmup=2, min_time=0.05 if ctx.smoke else 0.3).median)
    return Curve(name="brute-force top-5 search", panel="gallery size", xlabel="gallery entries M",
                 sizes=[float(s) for s in sizes], seconds=secs, expected_exponent=1.0,
                 expected_why=f"one pass over M x {dim} embeddings: O(M)", bytes_per_item=4.0 * dim,
                 issue="galleries past the cache size are memory-bound: scan a compact copy (int8 codes, a quarter "
                       "of the bytes, as issue #6's exact index does) or an IVF index instead of float32 "
                       "brute force")


def curve_rows(curves: list[Curve]) -> list[Row]:
    """One row per curve: measured growth of the time over the size range against the expected one."""
    rows = []
    for c in curves:
        span = c.sizes[-1] / c.sizes[0]
        measured = c.seconds[-1] / c.seconds[0]
        expected = span ** c.expected_exponent
        rows.append(Row(
            case="Scaling", setting=f"{c.name}: {c.xlabel} {fmt_count(c.sizes[0])} to {fmt_count(c.sizes[-1])}",
            ours=measured, baseline=expected, unit="x growth",
            ours_name=f"measured time growth (fitted exponent {c.observed_exponent:.2f})",
            baseline_name=f"expected growth, exponent {c.expected_exponent:.2f}: {c.expected_why}",
            kind="expected", ours_detail=f"{c.seconds[0] * 1e3:.3g} ms to {c.seconds[-1] * 1e3:.3g} ms",
            note=_steepest_step(c) if measured > expected else "",
            issue=c.issue if expected / measured < EXPECTED_TOLERANCE else ""))
    return rows


def _steepest_step(c: Curve) -> str:
    """Where between two neighbouring sizes the time grows fastest, with the working set there."""
    steps = [(fit_exponent(c.sizes[i:i + 2], c.seconds[i:i + 2]), i) for i in range(len(c.sizes) - 1)]
    local, i = max(steps)
    text = (f"time grows faster than expected (exponent {c.observed_exponent:.2f} vs {c.expected_exponent:.2f}); "
            f"the steepest step is {fmt_count(c.sizes[i])} to {fmt_count(c.sizes[i + 1])} (local exponent "
            f"{local:.2f})")
    if c.bytes_per_item:
        a, b = (c.sizes[j] * c.bytes_per_item / 2**20 for j in (i, i + 1))
        caches = ", ".join(f"{k} {v / 2**20:g} MiB" for k, v in cache_sizes().items() if k != "L1d")
        text += (f", where the data each call reads grows from {a:.3g} to {b:.3g} MiB (caches per the OS: "
                 f"{caches or 'unknown'}): a scan slows down once its data no longer stays in cache between "
                 "calls and comes from DRAM instead")
    return text


def run(ctx: Context) -> list[Row]:
    curves = [_points_curve(ctx), *_image_curves(ctx), _gallery_curve(ctx)]
    ctx.curves.extend(curves)
    # every curve of the run (the click curve too) gets its row here, so all share one format
    return curve_rows(ctx.curves)


if __name__ == "__main__":
    c = Context(smoke="--smoke" in sys.argv[1:], threads=torch.get_num_threads())
    print_rows(run(c))
    for cv in c.curves:
        print(f"{cv.name:<28} observed exponent {cv.observed_exponent:.2f}, expected {cv.expected_exponent:.2f}"
              f"  ({np.round(cv.seconds, 5).tolist()})")
