"""This machine's limits, measured at the start of every suite run.

- **copy bandwidth**, STREAM "Copy" style: ``dst[:] = src`` over arrays much larger than the
  caches, counted as STREAM does (bytes read + bytes written = 2 x array size per copy). Best of
  numpy (one thread) and torch (``torch.get_num_threads()`` threads). A kernel that only reads
  ``B`` bytes cannot finish faster than ``B / bandwidth``.
- **fp32 / bf16 GEMM peak**: ``torch.mm`` of square matrices at the same thread count, in FLOP/s
  (2 n^3 per product). A model step that needs ``F`` FLOPs cannot finish faster than ``F / peak``.
  The size is capped so that one product takes about ``GEMM_TARGET_S``: a CPU without bf16
  instructions (AVX2 only) multiplies bf16 at about 1 GFLOP/s, where n = 2048 took minutes.

Run on its own: ``python -m benchmarks.hardware``.
"""

from __future__ import annotations

import numpy as np
import torch

from .common import Context, Row, time_call

__all__ = ["copy_bandwidth", "gemm_peak", "gemm_size", "measure", "run"]

GEMM_TARGET_S = 0.25
"""Seconds one timed product should take at most (the size is chosen from a small probe)."""


def copy_bandwidth(*, nbytes: int = 512 * 2**20, repeats: int = 5) -> dict[str, float]:
    """STREAM-copy bandwidth in GB/s (1e9 bytes/s) for numpy and torch; ``best`` is the larger.

    nbytes  size of each of the two arrays (default 512 MiB: larger than any cache here)
    """
    n = max(1, nbytes // 8)
    src = np.ones(n, dtype=np.float64)
    dst = np.empty_like(src)
    t_np = time_call(lambda: np.copyto(dst, src), repeats=repeats, warmup=1).min
    tsrc, tdst = torch.from_numpy(src), torch.from_numpy(dst)
    t_torch = time_call(lambda: tdst.copy_(tsrc), repeats=repeats, warmup=1).min
    moved = 2.0 * src.nbytes
    out = {"numpy_GBps": moved / t_np / 1e9, "torch_GBps": moved / t_torch / 1e9, "array_MiB": src.nbytes / 2**20}
    out["best"] = max(out["numpy_GBps"], out["torch_GBps"])
    return out


def gemm_peak(*, n: int = 2048, dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """FLOP/s of ``torch.mm`` on two [n, n] matrices of ``dtype`` (best of ``repeats``)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    t = time_call(lambda: torch.mm(a, b), repeats=repeats, warmup=1).min
    return 2.0 * n**3 / t


def gemm_size(dtype: torch.dtype, *, max_n: int, min_n: int = 128, target_s: float = GEMM_TARGET_S) -> int:
    """The largest power of two n in [min_n, max_n] whose [n, n] product of ``dtype`` should take
    at most ``target_s`` seconds, extrapolated (as n^3) from one timed product at ``min_n``."""
    flops = gemm_peak(n=min_n, dtype=dtype, repeats=2)
    n = min_n
    while n * 2 <= max_n and 2.0 * (2 * n) ** 3 / flops <= target_s:
        n *= 2
    return n


def measure(ctx: Context) -> dict[str, float]:
    """Fill ``ctx.hardware`` (``copy_GBps``, ``gemm_fp32_GFLOPs``, ``gemm_bf16_GFLOPs``, ...)."""
    if ctx.hardware:
        return ctx.hardware
    bw = copy_bandwidth(nbytes=(16 if ctx.smoke else 512) * 2**20, repeats=2 if ctx.smoke else 5)
    max_n = 256 if ctx.smoke else 2048
    n32, n16 = gemm_size(torch.float32, max_n=max_n), gemm_size(torch.bfloat16, max_n=max_n)
    ctx.hardware.update(
        copy_GBps=bw["best"], copy_numpy_GBps=bw["numpy_GBps"], copy_torch_GBps=bw["torch_GBps"],
        copy_array_MiB=bw["array_MiB"],
        gemm_fp32_GFLOPs=gemm_peak(n=n32, dtype=torch.float32) / 1e9,
        gemm_bf16_GFLOPs=gemm_peak(n=n16, dtype=torch.bfloat16) / 1e9,
        gemm_n=float(n32), gemm_bf16_n=float(n16),
    )
    return ctx.hardware


def run(ctx: Context) -> list[Row]:
    """No rows of its own: the limits are the baselines of the click and training rows."""
    measure(ctx)
    return []


if __name__ == "__main__":
    hw = measure(Context(threads=torch.get_num_threads()))
    for k, v in hw.items():
        print(f"{k:<20} {v:10.2f}")
