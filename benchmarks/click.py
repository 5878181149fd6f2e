"""Click similarity: one pixel feature against N point features, against the bandwidth limit.

What a click in the explorer computes (``Tango3D.match_pixel``): ``dense @ q``, with ``dense``
[N, D] unit point features and ``q`` [D] the pixel's feature, in the features' own dtype. For
N = 10k, 100k and 1M and for fp32, fp16 and bf16 the median time is compared with the time the
memory system needs just to read the features once: ``N x D x bytes / copy bandwidth``
(measured by :mod:`benchmarks.hardware` in the same run). Ratio = that limit / our time, the
fraction of the bandwidth limit reached.

Run on its own: ``python -m benchmarks.click [--smoke]``.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from . import hardware
from .common import Context, Curve, Row, fmt_count, print_rows, time_call

__all__ = ["run", "SIZES", "DTYPES"]

SIZES: tuple[int, ...] = (10_000, 100_000, 1_000_000)
SMOKE_SIZES: tuple[int, ...] = (1_000, 10_000)
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _features(n: int, dim: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    dense = F.normalize(torch.randn(n, dim, generator=g), dim=-1).to(dtype)
    q = F.normalize(torch.randn(dim, generator=g), dim=-1).to(dtype)
    return dense, q


def similarity_seconds(dense: torch.Tensor, q: torch.Tensor, *, min_time: float) -> float:
    """Median seconds of ``dense @ q`` (``dense`` [N, D], ``q`` [D]), as ``match_pixel`` computes it."""

    def click() -> torch.Tensor:
        with torch.inference_mode():
            return dense @ q

    return time_call(click, repeats=5, warmup=2, min_time=min_time).median


def read_seconds(dense: torch.Tensor, *, min_time: float) -> float:
    """Median seconds of ``dense.sum()``: the same bytes read by the simplest kernel there is."""
    return time_call(lambda: dense.sum(), repeats=5, warmup=2, min_time=min_time).median


def run(ctx: Context) -> list[Row]:
    hw = hardware.measure(ctx)
    bandwidth = hw["copy_GBps"] * 1e9
    dim = int(ctx.model().dense_dim)
    sizes = SMOKE_SIZES if ctx.smoke else SIZES
    min_time = 0.05 if ctx.smoke else 0.5
    rows: list[Row] = []
    fp32_times: list[float] = []
    for n in sizes:
        rate: dict[str, float] = {}  # GB/s each dtype reads its features at
        for name, dtype in DTYPES.items():
            dense, q = _features(n, dim, dtype)
            nbytes = dense.numel() * dense.element_size()
            ours = similarity_seconds(dense, q, min_time=min_time)
            limit = nbytes / bandwidth
            rate[name] = nbytes / ours / 1e9
            detail = f"reads the features at {rate[name]:.1f} GB/s"
            note = ""
            if name == "fp32":
                fp32_times.append(ours)
                plain = nbytes / read_seconds(dense, min_time=min_time) / 1e9
                detail += f"; a plain `dense.sum()` reads them at {plain:.1f} GB/s"
                if limit / ours < 0.5:
                    note = (f"reaches {100 * limit / ours:.0f} % of the copy-bandwidth limit; "
                            + ("a plain sum over the same array is hardly faster, so the memory system itself "
                               "delivers no more to one reader here" if plain < 1.5 * rate[name] else
                               f"a plain sum reads the same array {plain / rate[name]:.1f}x faster, which points "
                               "at torch's matrix-vector kernel rather than memory at this size"))
            elif rate[name] < 0.67 * rate["fp32"]:
                note = (f"{name} moves half the bytes of fp32 yet reads them at {rate[name]:.1f} GB/s against "
                        f"fp32's {rate['fp32']:.1f} GB/s: torch's CPU matrix-vector product for {name} is "
                        "compute-bound here, not memory-bound")
            if limit / ours > 1.0:
                note = (f"{nbytes / 2**20:.1f} MiB of features stay in cache between repeated clicks, so reads beat "
                        "the DRAM copy bandwidth")
            rows.append(Row(
                case="Click similarity", setting=f"N = {fmt_count(n)}, D = {dim}, {name}",
                ours=ours * 1e3, baseline=limit * 1e3, unit="ms",
                ours_name="torch `dense @ q` (Tango3D.match_pixel)",
                baseline_name=f"bandwidth limit: N x D x {dense.element_size()} B / {hw['copy_GBps']:.1f} GB/s "
                              "copy bandwidth",
                kind="limit", ours_detail=detail, note=note))
            del dense
    ctx.curves.append(Curve(
        name="click similarity, fp32", panel="points", xlabel="points N", sizes=[float(n) for n in sizes],
        seconds=fp32_times, expected_exponent=1.0, expected_why="one pass over N x D features: O(N)",
        bytes_per_item=4.0 * dim,
        issue="past the cache size a click is memory-bound: keep the point features of large scenes in bf16 on "
              "the CPU (half the bytes; compare the bf16 rows) or on the GPU"))
    return rows


if __name__ == "__main__":
    c = Context(smoke="--smoke" in sys.argv[1:], threads=torch.get_num_threads())
    print_rows(run(c))
