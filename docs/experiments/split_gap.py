"""Do the dense features generalise, or would more training shapes help? (issue #3)

pixel->point (cosine matching, the pixel2point suite's protocol: 224 px renders, random yaw on
the 3D input, 8192 points) of one checkpoint on *training* shapes (seeds 0-1 of each category,
rendered with the evaluation's cameras, not the training views) and on validation shapes.

    python docs/experiments/split_gap.py [CHECKPOINT]      # about a minute

A lab record, not part of the package: docs/experiments/point_features.md §10.
"""
from __future__ import annotations

import sys
import time

import torch

from tango3d_core.eval.suites import run_suite
from tango3d_core.eval.suites._common import ModelProvider, SuiteConfig
from tango3d_core.models.checkpoint import load_model


def main() -> None:
    torch.set_num_threads(1)
    model = load_model(sys.argv[1] if len(sys.argv) > 1 else None)
    for split in ("train", "val"):
        cfg = SuiteConfig(split=split, shapes_per_category=2)
        t0 = time.time()
        r = run_suite("pixel2point", {"tango3d": ModelProvider(model)}, cfg, models={"tango3d": model})
        acc = r["methods"]["tango3d"]["accuracy"]
        print(f"{split}: " + ", ".join(f"<= {100 * float(k):g}% {100 * v:.1f}" for k, v in acc.items())
              + f" ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
