"""The generic optimisation loop shared by every stage.

A stage is run by :func:`run_stage`: it owns the optimizer, the learning-rate
schedule, CSV logging, the progress bar, periodic checkpoints and resumption.
What is optimised and which losses are computed come from the
:class:`~tango3d_core.train.stages.StageSpec` and its ``loss_fn``; the loop knows
nothing about the model beyond ``nn.Module``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .state import optimizer_state_from_files, optimizer_state_to_files
from .stages import StageSpec

LossFn = Callable[[torch.nn.Module, dict], dict[str, torch.Tensor]]
"""``loss_fn(model, batch) -> {"total": scalar, name: scalar, ...}``."""


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def lr_at(step: int, *, total: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 5% of ``base_lr``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base_lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def run_stage(
    model: torch.nn.Module,
    spec: StageSpec,
    batches: Iterator[dict],
    out_dir: str | Path,
    *,
    loss_fn: LossFn,
    save_fn: Callable[[torch.nn.Module, Path], None],
    load_fn: Callable[[torch.nn.Module, Path], None],
    ckpt_every: int = 200,
    log_every: int = 10,
    time_limit_s: float | None = None,
    time_budget_s: float | None = None,
    progress: bool = True,
    ddp_wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
) -> dict[str, float]:
    """Run (or resume) one stage; return the mean of each loss over the last 50 steps.

    Args:
        model: the full model (unwrapped); ``spec.configure(model)`` sets which
            parameters train and returns the optimizer parameter groups.
        batches: an endless iterator of collated batches (dicts of tensors).
        out_dir: the stage's directory; holds ``latest/`` (model + optimizer
            state), ``log.csv``, ``config.json`` (the resolved stage spec) and
            ``DONE`` once finished.
        loss_fn: computes the stage's losses.
        save_fn / load_fn: model weights to / from a checkpoint directory.
        ckpt_every: steps between resumable checkpoints.
        time_limit_s: stop early (resumably) after this many seconds.
        time_budget_s: fit the stage into this many seconds: after ``_PROBE_STEPS`` steps
            the step count becomes ``min(spec.steps, what fits)`` and the learning-rate
            schedule is spread over it; the fitted count is saved, so a resume keeps it.
        progress: show a progress bar (the CSV log is written either way).
        ddp_wrap: wraps the model for DistributedDataParallel when running
            under torchrun; ``None`` for a single process.
    """
    out = Path(out_dir)
    main = is_main_process()
    if (out / "DONE").exists():
        load_fn(model, out / "latest")
        return json.loads((out / "DONE").read_text())
    out.mkdir(parents=True, exist_ok=True)
    if main:
        (out / "config.json").write_text(json.dumps(asdict(spec), indent=1))

    groups = spec.configure(model)
    optimizer = torch.optim.AdamW(groups, weight_decay=spec.weight_decay, betas=(0.9, 0.98))
    step = 0
    total_steps = spec.steps
    if (out / "latest" / "trainer.json").exists():
        load_fn(model, out / "latest")
        state = optimizer_state_from_files(optimizer, out / "latest")
        step = int(state.get("step", 0))
        total_steps = int(state.get("total_steps", spec.steps))
    fit_pending = time_budget_s is not None and step == 0
    t_probe = 0.0
    train_model = ddp_wrap(model) if ddp_wrap is not None else model
    train_model.train()

    log_path = out / "log.csv"
    writer = None
    log_file = None
    if main:
        # A run killed before its first log row leaves an empty file: it still needs the header.
        new = not log_path.exists() or log_path.stat().st_size == 0
        log_file = open(log_path, "a", newline="")
    recent: dict[str, list[float]] = {}
    t0 = time.time()
    bar = tqdm(total=total_steps, initial=step, desc=f"stage {spec.name}", disable=not (main and progress),
               dynamic_ncols=True)
    try:
        while step < total_steps:
            if fit_pending and step == _PROBE_STEPS:
                total_steps = _fit_steps(spec.steps, elapsed=time.time() - t0, done=step, budget_s=time_budget_s,
                                         probe_start=t_probe)
                fit_pending = False
                bar.total = total_steps
                if main:
                    print(f"stage {spec.name}: {total_steps} of {spec.steps} steps fit {time_budget_s:.0f} s",
                          flush=True)
                if step >= total_steps:
                    break
            if step == 2:
                t_probe = time.time() - t0  # steps 0-1 pay for worker start-up and allocator warm-up
            warm = spec.warmup if total_steps == spec.steps else min(spec.warmup, max(1, total_steps // 10))
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, total=total_steps, base_lr=spec.lr, warmup=warm) * g.get("lr_scale", 1.0)
            batch = next(batches)
            losses = loss_fn(train_model, batch)
            total = losses["total"]
            if not torch.isfinite(total):
                raise FloatingPointError(f"stage {spec.name}: non-finite loss at step {step}: {losses}")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if spec.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], spec.grad_clip)
            optimizer.step()
            step += 1
            row = {k: float(v.detach()) for k, v in losses.items()}
            for k, v in row.items():
                recent.setdefault(k, []).append(v)
                del recent[k][:-50]
            if main and (step % log_every == 0 or step == total_steps):
                row = {"step": step, "time_s": round(time.time() - t0, 2), "lr": optimizer.param_groups[0]["lr"], **row}
                if writer is None:
                    writer = csv.DictWriter(log_file, fieldnames=list(row))
                    if new:
                        writer.writeheader()
                writer.writerow(row)
                log_file.flush()
                bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k not in ("step", "time_s", "lr")})
            bar.update(1)
            timed_out = time_limit_s is not None and time.time() - t0 > time_limit_s
            if step % ckpt_every == 0 or step == total_steps or timed_out:
                _checkpoint(model, optimizer, out / "latest", step, save_fn, total_steps)
            if timed_out:
                break
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()
    summary = {k: sum(v) / len(v) for k, v in recent.items()}
    if step >= total_steps and main:
        (out / "DONE").write_text(json.dumps(summary, indent=1))
    return summary


_PROBE_STEPS = 12


def _fit_steps(planned: int, *, elapsed: float, done: int, budget_s: float, probe_start: float) -> int:
    """Steps that fit ``budget_s`` seconds, timed from steps 2..``done`` (``elapsed`` so far)."""
    per_step = max(1e-6, (elapsed - probe_start) / max(1, done - 2))
    fits = done + int(max(0.0, budget_s - elapsed) / per_step)
    return max(done, min(planned, fits))


def _checkpoint(model, optimizer, directory: Path, step: int, save_fn, total_steps: int) -> None:
    if not is_main_process():
        return
    directory.mkdir(parents=True, exist_ok=True)
    save_fn(model, directory)
    optimizer_state_to_files(optimizer, directory,
                             extra={"step": step, "total_steps": total_steps, "pid": os.getpid()})
