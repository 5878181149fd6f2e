"""``python -m tango3d_core.train``: one command runs every stage.

Builds the training shards if they are missing, runs stage 0 (geometry + VAE
pretraining) and the three progressive stages, then exports the final model as
a self-describing checkpoint (safetensors + config.json). Every stage resumes
from ``OUT/<stage>/latest`` when rerun, writes ``log.csv`` and its resolved
``config.json``; the whole run's resolved arguments go to ``OUT/run.json``.

Multi-GPU / multi-process: launch with ``torchrun --nproc_per_node=N -m
tango3d_core.train ...``; each process reads its own part of every epoch
(DistributedSampler) and gradients are averaged by DDP (NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from ..config import Tango3DConfig, get_preset
from ..data.dataset import ShardDataset, build_shards
from ..losses.dense import DENSE_SIGMA, DENSE_TARGETS
from ..models.checkpoint import load_state_dict_strict, read_checkpoint_config, save_checkpoint
from ..models.tango3d import Tango3D, build_model
from .loop import is_main_process, run_stage
from .refit import cache_global_features, cached_batches, refit_loss
from .stages import StageSpec, default_schedule, warmup_steps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tango3d_core.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", help="model preset: tiny (CPU, bundled) or base (GPU)")
    p.add_argument("--model-config", default=None,
                   help="JSON model config replacing the preset's architecture (the schedule still follows --preset); "
                        "or a checkpoint directory, whose architecture is reused (e.g. to retrain a bundled baseline "
                        "after the preset changed)")
    p.add_argument("--out", default="runs/tiny", help="run directory (stages, logs, resumable state)")
    p.add_argument("--data", default="data_cache/train", help="shard directory; built here if missing")
    p.add_argument("--shapes-per-category", type=int, default=40, help="training shapes per category")
    p.add_argument("--views", type=int, default=6, help="views per training shape")
    p.add_argument("--resolution", type=int, default=128, help="training render resolution (pixels)")
    p.add_argument("--image-size", type=int, default=None,
                   help="model input size (longest side); default = --resolution")
    p.add_argument("--reuse-pretrain", default=None, metavar="RUN",
                   help="start from the finished stage 0 of another run directory (copied into --out), e.g. to "
                        "train the ablations from the same pretrained encoders as another run")
    p.add_argument("--stages", default="0,1,2,3,4,5",
                   help="comma-separated stages to run (0=pretrain ... 3=joint, 4=foreground head, "
                        "5=global heads refit)")
    p.add_argument("--global-refit", default="on", choices=["on", "off"],
                   help="stage 5 of the progressive schedule: refit the image and shape global heads on cached features "
                        "(off: the schedule of checkpoints trained before it existed)")
    p.add_argument("--schedule", default="progressive", choices=["progressive", "single-stage", "global-only"],
                   help="progressive (the paper's), or an ablation baseline at equal total steps")
    p.add_argument("--xyz-loss", default="yaw_invariant", choices=["canonical", "yaw_invariant"],
                   help="object-xyz term of the 2D geometry loss: the smallest L1 over yaws of the prediction "
                        "(default), or plain L1 to the canonical xyz, which makes x and y collapse to the mean "
                        "where the facing direction is not visible (docs/experiments/xyz_collapse.md)")
    p.add_argument("--normal-frame", default="camera", choices=["camera", "canonical"],
                   help="frame of the 2D normal target: the camera's (what shading shows; default) or the "
                        "object's, which an image fixes only up to the object's yaw")
    p.add_argument("--dense-target", default="exact", choices=list(DENSE_TARGETS),
                   help="target of the dense pixel-point InfoNCE: one-hot on the paired point, or a Gaussian "
                        "of the surface distance over the same shape's points (--dense-sigma)")
    p.add_argument("--dense-sigma", type=float, default=DENSE_SIGMA, metavar="D",
                   help="width of the Gaussian dense target, in shape units (procedural shapes have a "
                        "bounding-box diagonal of 1)")
    p.add_argument("--text-table", default=None, metavar="FILE",
                   help="precomputed caption embeddings (python -m tango3d_core.train.text_table) instead of the "
                        "MiniLM, for machines without it; must hold every training caption")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="bf16: autocast the forward pass and losses to bfloat16 (CUDA); weights stay float32")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="fit the run into MIN minutes of training: each stage gets its share (by planned steps) "
                        "and, after timing its first steps, runs as many steps as fit, with the learning-rate "
                        "schedule spread over them")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every stage's steps (quick runs)")
    p.add_argument("--stage-steps", default=None, metavar="NAME=N,...",
                   help="replace the steps of named stages, e.g. local=300,global=300 (applied after --steps-scale; "
                        "names: pretrain, local, global, joint, foreground, global_refit, or single / global_only for the "
                        "ablations)")
    p.add_argument("--slow-lr-scale", type=float, default=None, metavar="X",
                   help="learning-rate factor of the encoders where a stage trains them slowly (joint stage; "
                        "default 0.1), in (0, 1]")
    p.add_argument("--batch-size", type=int, default=None, help="override every stage's batch size")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1, the safe choice on a shared machine: on a 2-core box "
                        "2 threads ran 5x slower while other work used the cores, and 1.5x faster when idle)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--export", default=None, help="write the final checkpoint here (e.g. assets/checkpoint)")
    p.add_argument("--export-dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    args = p.parse_args(argv)
    try:
        parse_stage_steps(args.stage_steps)
    except ValueError as e:
        p.error(f"--stage-steps: {e}")
    if args.slow_lr_scale is not None and not 0.0 < args.slow_lr_scale <= 1.0:
        p.error(f"--slow-lr-scale must be in (0, 1], got {args.slow_lr_scale}")
    if not args.dense_sigma > 0.0:
        p.error(f"--dense-sigma must be positive, got {args.dense_sigma}")
    return args


def parse_stage_steps(text: str | None) -> dict[str, int]:
    """``"local=300,global=300"`` -> ``{"local": 300, "global": 300}``; None or "" -> {}."""
    out: dict[str, int] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"expected NAME=STEPS, got {item.strip()!r}")
        try:
            steps = int(value)
        except ValueError:
            raise ValueError(f"steps of {name!r} must be an integer, got {value.strip()!r}") from None
        if steps < 1:
            raise ValueError(f"steps of {name!r} must be >= 1, got {steps}")
        if name in out:
            raise ValueError(f"stage {name!r} given twice")
        out[name] = steps
    return out


def apply_overrides(schedule: list[StageSpec], *, preset: str, stage_steps: dict[str, int] | None = None,
                    slow_lr_scale: float | None = None) -> list[StageSpec]:
    """``schedule`` (of ``preset``) with the named stages' steps replaced, their warm-up recomputed
    as the preset would for that many steps, and, where a stage has slow groups, their
    learning-rate factor replaced.

    Raises:
        ValueError: a name in ``stage_steps`` is not a stage of ``schedule``.
    """
    stage_steps = dict(stage_steps or {})
    unknown = sorted(set(stage_steps) - {s.name for s in schedule})
    if unknown:
        raise ValueError(f"no stage named {unknown} in this schedule; stages: {[s.name for s in schedule]}")
    out = []
    for spec in schedule:
        if spec.name in stage_steps:
            n = stage_steps[spec.name]
            spec = dataclasses.replace(spec, steps=n, warmup=warmup_steps(preset, spec.name, n))
        if slow_lr_scale is not None and spec.slow:
            spec = dataclasses.replace(spec, slow_lr_scale=float(slow_lr_scale))
        out.append(spec)
    return out


def resolve_schedule(args: argparse.Namespace, *, foreground: bool = True) -> list[StageSpec]:
    """The stages a parsed command line trains: its preset's schedule (``--schedule``,
    ``--steps-scale``; the foreground stage only when ``foreground``, i.e. the model has that
    head; the global refit unless ``--global-refit off``) with ``--stage-steps`` and
    ``--slow-lr-scale`` applied.

    Raises:
        SystemExit: ``--stage-steps`` names a stage the schedule does not have.
    """
    schedule = default_schedule(args.preset, kind=args.schedule, steps_scale=args.steps_scale, foreground=foreground,
                                global_refit=args.global_refit == "on")
    try:
        return apply_overrides(schedule, preset=args.preset, stage_steps=parse_stage_steps(args.stage_steps),
                               slow_lr_scale=args.slow_lr_scale)
    except ValueError as e:
        raise SystemExit(f"--stage-steps: {e}") from None


def _setup_distributed(device: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if device.startswith("cuda") and world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device(device)


def _batches(ds: ShardDataset, *, batch_size: int, workers: int, seed: int, world: int, rank: int) -> Iterator[dict]:
    """Endless iterator over shuffled batches; a new augmentation draw every epoch."""
    epoch = 0
    while True:
        ds.set_epoch(epoch)
        if world > 1:
            sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
            sampler.set_epoch(epoch)
        else:
            g = torch.Generator().manual_seed(seed * 1000 + epoch)
            sampler = RandomSampler(ds, generator=g)
        loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True,
                            persistent_workers=False)
        yield from loader
        epoch += 1


def _load_weights(model: torch.nn.Module, directory: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(directory / "model.safetensors"), device=str(next(model.parameters()).device))
    load_state_dict_strict(model, state)


def model_config_from(path: str | Path) -> Tango3DConfig:
    """The architecture in ``path``: a JSON ``Tango3DConfig`` file, or a checkpoint directory
    (its ``config.json``'s ``model_config``; no weights are read)."""
    path = Path(path)
    if path.is_dir():
        return read_checkpoint_config(path)[0]
    try:
        return Tango3DConfig.from_json(path.read_text())
    except OSError as e:
        raise SystemExit(f"--model-config: cannot read {path}: {e}") from e


def resolve_model_config(args: argparse.Namespace) -> Tango3DConfig:
    """The architecture a parsed command line trains: ``--model-config`` or the preset's, at the
    input size ``--image-size`` (default ``--resolution``)."""
    cfg = model_config_from(args.model_config) if args.model_config else get_preset(args.preset)
    image_size = args.image_size or args.resolution
    return dataclasses.replace(cfg, image=dataclasses.replace(cfg.image, image_size=image_size))


def _command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (every option spelled out; flags without a value)."""
    parts = ["python -m tango3d_core.train"]
    for k, v in vars(args).items():
        if v is None or v is False:
            continue
        parts.append(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}"))
    return " ".join(parts)


def _use_text_table(model: Tango3D, path: Path, data: Path) -> None:
    """Give ``model`` the caption embeddings of ``path``, after checking it covers every caption."""
    from ..models.text import TextEmbeddingTable
    from .text_table import captions_of_shards

    try:
        table = TextEmbeddingTable.load(path)
    except (OSError, ValueError) as e:
        raise SystemExit(f"--text-table {path}: {e}") from None
    gone = table.missing(captions_of_shards(data))
    if gone:
        raise SystemExit(f"--text-table {path} lacks {len(gone)} training caption(s), e.g. {gone[:2]!r}; "
                         "rebuild it for these shards (python -m tango3d_core.train.text_table --data ...)")
    model.set_text_encoder(table)


def _reuse_pretrain(source_run: Path, out: Path) -> None:
    """Copy ``source_run``'s finished stage 0 into ``out`` unless ``out`` already has one."""
    import shutil

    dst = out / "0_pretrain"
    if (dst / "DONE").exists():
        return
    src = source_run / "0_pretrain"
    if not (src / "DONE").exists():
        raise SystemExit(f"--reuse-pretrain {source_run}: no finished stage 0 there ({src}/DONE is missing)")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    print(f"stage pretrain: reused from {src}", flush=True)


def train(args: argparse.Namespace) -> Path:
    """Run the requested stages; return the directory of the final weights."""
    if args.threads:
        torch.set_num_threads(args.threads)
    rank, world, device = _setup_distributed(args.device)
    torch.manual_seed(args.seed + rank)
    out = Path(args.out)
    data = Path(args.data)
    if is_main_process():
        out.mkdir(parents=True, exist_ok=True)
        (out / "run.json").write_text(json.dumps({**vars(args), "world_size": world}, indent=1))
        # Resumable and hash-checked: shards that already exist are skipped.
        build_shards(data, split="train", shapes_per_category=args.shapes_per_category,
                     views_per_shape=args.views, resolution=args.resolution, points_per_shape=8192,
                     occ_per_shape=8192, shard_size=32, workers=max(1, args.workers + 1),
                     seed=args.seed, progress=not args.no_progress)
    if dist.is_initialized():
        dist.barrier()

    if args.reuse_pretrain and is_main_process():
        _reuse_pretrain(Path(args.reuse_pretrain), out)
    if dist.is_initialized():
        dist.barrier()
    cfg = resolve_model_config(args)
    model: Tango3D = build_model(cfg).to(device)
    if device.type == "cuda":
        # TF32 matmuls: float32 weights and optimiser, tensor-core speed.
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if args.text_table:
        _use_text_table(model, Path(args.text_table), data)

    ddp_wrap = None
    if world > 1:
        def ddp_wrap(m: torch.nn.Module) -> torch.nn.Module:
            return torch.nn.parallel.DistributedDataParallel(
                m, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)

    wanted = {int(s) for s in args.stages.split(",") if s.strip()}
    schedule = resolve_schedule(args, foreground=cfg.foreground_head)
    budgets: dict[str, float] = {}
    if args.time_budget:
        # A cached stage's steps take milliseconds: it gets no share of the window.
        todo = [s for i, s in enumerate(schedule) if s.extra.get("index", i) in wanted
                and not s.extra.get("cached_passes")]
        planned = sum(s.steps for s in todo)
        budgets = {s.name: 60.0 * args.time_budget * s.steps / planned for s in todo}
    last_dir = None
    for i, spec in enumerate(schedule):
        if args.batch_size:
            spec = dataclasses.replace(spec, batch_size=args.batch_size)
        stage_dir = out / f"{spec.extra.get('index', i)}_{spec.name}"
        if spec.extra.get("index", i) not in wanted:
            if (stage_dir / "latest" / "model.safetensors").exists():
                _load_weights(model, stage_dir / "latest")
                last_dir = stage_dir / "latest"
                if spec.extra.get("init_point_head_after"):
                    model.init_point_head_from_vae()
            continue
        ds = ShardDataset(data, "train", augment=True, seed=args.seed, num_points=spec.extra.get("num_points", 2048),
                          num_occ=spec.extra.get("num_occ", 2048))
        t0 = time.time()
        wrap = ddp_wrap
        if spec.extra.get("cached_passes"):
            # Every process fits the same head on the same cache: no gradients to average.
            wrap = None
            loss_fn = refit_loss
            batches: Iterator[dict] = iter(())
            if not (stage_dir / "DONE").exists():
                # Decoding the shards is what the cache waits on (the frozen forward passes are
                # cheap), so it gets a second worker even where training uses one.
                cache = cache_global_features(model, ds, passes=spec.extra["cached_passes"],
                                              workers=max(2, args.workers), progress=not args.no_progress)
                batches = cached_batches(cache, batch_size=spec.batch_size, seed=args.seed + i)
        else:
            batches = _batches(ds, batch_size=spec.batch_size, workers=args.workers, seed=args.seed + i, world=world,
                               rank=rank)

            def loss_fn(m: torch.nn.Module, batch: dict, _w=spec.weights, _spec=spec) -> dict[str, torch.Tensor]:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                    out = m(batch, losses=_w, num_pixels=_spec.extra.get("num_pixels", 256),
                            xyz_mode=args.xyz_loss, normal_frame=args.normal_frame, dense_target=args.dense_target,
                            dense_sigma=args.dense_sigma)
                return {k: v.float() for k, v in out.items()}

        run_stage(model, spec, batches, stage_dir, loss_fn=loss_fn, save_fn=save_checkpoint, load_fn=_load_weights,
                  ddp_wrap=wrap, time_budget_s=budgets.get(spec.name), progress=not args.no_progress)
        if is_main_process():
            print(f"stage {spec.name}: {time.time() - t0:.0f} s", flush=True)
        if spec.extra.get("init_point_head_after"):
            # The point head starts from the trained occupancy decoder, not a random one.
            model.init_point_head_from_vae()
        last_dir = stage_dir / "latest"

    if args.export and is_main_process():
        dtype = torch.float16 if args.export_dtype == "float16" else torch.float32
        save_checkpoint(model, args.export, dtype=dtype, extra={
            "trained_by": _command_line(args),
            "schedule": [dataclasses.asdict(s) for s in schedule],
        })
        print(f"exported {args.export}", flush=True)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return Path(args.export) if args.export else (last_dir or out)


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0
