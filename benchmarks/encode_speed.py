"""Inference speed of ``encode_image`` (224x224) and ``encode_shape`` (8192 points).

Measures a preset (default ``tiny``) against a baseline preset (default ``base``) in the same
process and prints wall-clock times with their ratio, plus the budgets from the issue
(encode_image <= 150 ms, encode_shape <= 1 s for tiny on this CPU, default threads).

Weights are random: speed does not depend on them. Run::

    python benchmarks/encode_speed.py                  # tiny vs base
    python benchmarks/encode_speed.py --repeats 20 --json out/encode_speed.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import trimesh
from PIL import Image

from tango3d_core.models import build_model

BUDGET_MS = {"encode_image": 150.0, "encode_shape": 1000.0}


def time_call(fn: Callable[[], object], *, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Wall-clock median / min and process CPU-time median (ms) of ``fn`` over ``repeats`` calls.

    CPU time is the sum over threads; on a machine shared with other jobs it is the steadier
    figure (with one thread it approximates the wall time on an idle machine).
    """
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    return {"median_ms": statistics.median(wall), "min_ms": min(wall), "cpu_median_ms": statistics.median(cpu)}


def measure(preset: str, *, repeats: int, num_points: int) -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    model = build_model(preset).eval()
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((224, 224, 3)) * 255).astype(np.uint8))
    mesh = trimesh.creation.icosphere(subdivisions=4)
    return {
        "encode_image": time_call(lambda: model.encode_image(image), repeats=repeats),
        "encode_shape": time_call(lambda: model.encode_shape(mesh, num_points=num_points, seed=0),
                                  repeats=max(3, repeats // 2)),
        "parameters": {"count": float(model.num_parameters())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--baseline", default="base")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--num-points", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = {name: measure(name, repeats=args.repeats, num_points=args.num_points)
               for name in (args.preset, args.baseline)}
    ours, base = results[args.preset], results[args.baseline]
    print(f"{'call':<14}{args.preset + ' median':>14}{'min':>10}{'cpu':>10}{args.baseline + ' median':>16}"
          f"{'speed-up':>10}{'budget':>10}")
    for call in ("encode_image", "encode_shape"):
        o, b = ours[call], base[call]
        ratio = b["median_ms"] / o["median_ms"]
        ok = "ok" if o["median_ms"] <= BUDGET_MS[call] else "OVER"
        print(f"{call:<14}{o['median_ms']:>11.1f} ms{o['min_ms']:>7.1f} ms{o['cpu_median_ms']:>7.1f} ms"
              f"{b['median_ms']:>13.1f} ms"
              f"{ratio:>9.2f}x{BUDGET_MS[call]:>7.0f} ms {ok}")
        results[f"{call}_speedup_vs_{args.baseline}"] = {"ratio": ratio}
    print(f"parameters: {args.preset} {ours['parameters']['count']:.0f}, "
          f"{args.baseline} {base['parameters']['count']:.0f}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
