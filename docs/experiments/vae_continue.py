"""Experiment (issue #3): what do more shape-VAE steps buy, and what do they cost?

    python docs/experiments/vae_continue.py STEPS LR RUN OUT
    python -m tango3d_core.eval --suite vae --baselines none --checkpoint OUT/export

Continues the VAE of ``RUN``'s finished stage 0 alone (no 2D encoder: loss ``vae`` only,
only ``shape_vae.*`` trains) for STEPS steps at peak learning rate LR (a tenth warm-up, cosine),
batch 16, 2048 input points and 2048 occupancy queries as in stage 0, two torch threads and
one loader worker; prints the wall time and exports the model to ``OUT/export``.

A lab record, not part of the package: see docs/experiments/point_features.md.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from tango3d_core.data.dataset import ShardDataset
from tango3d_core.models.checkpoint import save_checkpoint
from tango3d_core.train import cli
from tango3d_core.train.loop import run_stage
from tango3d_core.train.stages import StageSpec


def main(argv: list[str]) -> None:
    steps, lr, run, out = int(argv[0]), float(argv[1]), Path(argv[2]), Path(argv[3])
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = cli.build_model(cli.model_config_from(run / "0_pretrain" / "latest"))
    cli._load_weights(model, run / "0_pretrain" / "latest")
    spec = StageSpec(name="vae", steps=steps, lr=lr, warmup=max(1, steps // 10), trainable=("shape_vae.",),
                     loss_weights=(("vae", 1.0),), batch_size=16)
    ds = ShardDataset(Path("data_cache/train"), "train", augment=True, seed=0, num_points=2048, num_occ=2048)
    batches = cli._batches(ds, batch_size=16, workers=1, seed=7, world=1, rank=0)

    def loss_fn(m: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return {k: v.float() for k, v in m(batch, losses={"vae": 1.0}).items()}

    t0 = time.time()
    run_stage(model, spec, batches, out / "stage", loss_fn=loss_fn, save_fn=save_checkpoint, load_fn=cli._load_weights)
    print(f"{steps} VAE steps: {time.time() - t0:.0f} s", flush=True)
    model.init_point_head_from_vae()
    save_checkpoint(model, out / "export")


if __name__ == "__main__":
    main(sys.argv[1:])
