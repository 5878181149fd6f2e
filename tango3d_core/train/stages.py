"""What each training stage freezes, optimises and minimises.

Stage 0 pretrains the two encoders on their own geometric tasks; stages 1-3 are
the paper's progressive schedule:

====== ================ ============================================ =======================
stage  name             trains                                       losses
====== ================ ============================================ =======================
0      pretrain         2D backbone + geometry heads; 3D VAE         geometry, vae
1      local            dense projection heads (encoders frozen)     dense
2      global           + global heads and text projection           dense, global
3      joint            everything; encoders at ``slow_lr_scale``    dense, global, vae, geometry
4      foreground       foreground head only (all else frozen)       foreground
5      global_refit     image and shape global heads (the shape one  global (image-shape,
                        at ``slow_lr_scale``), on cached features    image-text, shape-text)
====== ================ ============================================ =======================

Stages 4 and 5 are not part of the paper. Stage 4 teaches a small head which pixels show the
object, on the final (frozen) features, for pose-verified matching (``models.pose``). Stage 5
trains the two global heads of images and shapes again, alone, with large batches over cached
features of the frozen model (``train.refit``): in the joint stage they get batch 16 and a few
hundred steps shared with every other loss, too few to read the category the image encoder
already knows or to tell apart the instances of a category (docs/experiments/global_head.md).
Freezing everything else keeps stages 0-3's model unchanged apart from those heads.

Parameters are selected by name prefix, so a stage spec is plain data that is
saved beside each stage's logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch


@dataclass(frozen=True)
class StageSpec:
    """One stage of the schedule.

    Attributes:
        name: short name, also the stage's folder name.
        steps: optimiser steps.
        lr: peak learning rate (after warm-up) for the ``trainable`` groups.
        warmup: linear warm-up steps.
        trainable: parameter-name prefixes trained at ``lr``.
        slow: parameter-name prefixes trained at ``lr * slow_lr_scale``.
        loss_weights: (loss name, weight) pairs; a loss absent here is not computed.
        batch_size: examples per step (per process under DDP).
    """

    name: str
    steps: int
    lr: float
    warmup: int = 50
    trainable: tuple[str, ...] = ()
    slow: tuple[str, ...] = ()
    slow_lr_scale: float = 0.1
    loss_weights: tuple[tuple[str, float], ...] = ()
    batch_size: int = 16
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    extra: dict = field(default_factory=dict)

    @property
    def weights(self) -> dict[str, float]:
        return dict(self.loss_weights)

    def configure(self, model: torch.nn.Module) -> list[dict]:
        """Set ``requires_grad`` on ``model`` for this stage; return optimiser groups.

        Raises:
            ValueError: a prefix matches no parameter (a typo would otherwise
                silently freeze what should train).
        """
        fast, slow = [], []
        hit = {p: False for p in self.trainable + self.slow}
        for name, p in model.named_parameters():
            grp = None
            for pre in self.trainable:
                if name.startswith(pre):
                    grp, hit[pre] = fast, True
            for pre in self.slow:
                if name.startswith(pre):
                    grp, hit[pre] = slow, True
            p.requires_grad_(grp is not None)
            if grp is not None:
                grp.append(p)
        missing = [p for p, ok in hit.items() if not ok]
        if missing:
            raise ValueError(f"stage {self.name}: no parameter matches prefixes {missing}")
        groups = [{"params": fast, "lr": self.lr, "lr_scale": 1.0}]
        if slow:
            groups.append({"params": slow, "lr": self.lr * self.slow_lr_scale, "lr_scale": self.slow_lr_scale})
        return [g for g in groups if g["params"]]


# Prefixes of the model's parameter groups (see models/tango3d.py).
_IMAGE_ENCODER = ("image_encoder.",)
_GEOMETRY = ("geometry_head.",)
_VAE = ("shape_vae.",)
_DENSE_HEADS = ("dense_head.", "point_head.", "logit_scale_dense")
_GLOBAL_HEADS = ("image_global_head.", "shape_global_head.", "logit_scale_global")
_FOREGROUND = ("foreground_head.",)
_IMAGE_GLOBAL = ("image_global_head.",)
_SHAPE_GLOBAL = ("shape_global_head.",)

# Steps per stage for each preset: `tiny` trains on 2 idle CPU cores (2 threads) in 43-89 minutes,
# by the day's speed of the box (README model card); `base` is meant for one GPU.
# `tiny` was 400 / 200 / 150 local / global / joint with the encoders at 0.1x: moving steps from the
# frozen-encoder stage to the later ones and training the encoders at 0.5x in the joint stage
# improved every alignment metric at the same wall time. Pretrain 600 -> 850 and joint 200 -> 260 came
# with the move to 2 threads, in the time it saved (VAE IoU 75.2 -> 77.5, pixel->point 27.7 -> 29.5).
# Pretrain 850 -> 950 is for the VAE (300 more VAE steps gave +2.9 IoU, docs/experiments/point_features.md);
# the alignment stages gave up 15 % of their steps (300 / 250 / 260 -> 250 / 210 / 220) to keep the
# run under 90 minutes on a day when this box ran 17 % slower than when the old schedule was timed.
# Pretrain 950 -> 880 gave back the minutes that stage 5 (the global refit) added.
# The foreground stage is cheap (a frozen image pass and a two-layer head): ~1 minute for `tiny`.
# The global refit's steps are on cached features (batch 128, milliseconds each); its cost is the
# cache: ``_REFIT_PASSES`` passes over the training views through the frozen encoders. Its shape
# head trains at ``_REFIT_SHAPE_LR_SCALE``: it sees each training shape only ``_REFIT_PASSES``
# times, and at the full rate it overfits them (global_head.md §6).
_STEPS = {
    "tiny": {"pretrain": 880, "local": 250, "global": 210, "joint": 220, "foreground": 150, "global_refit": 3800},
    "base": {"pretrain": 20000, "local": 8000, "global": 6000, "joint": 10000, "foreground": 2000,
             "global_refit": 20000},
}
_REFIT_PASSES = {"tiny": 2, "base": 3}
_REFIT_BATCH = 128
_REFIT_SHAPE_LR_SCALE = 0.1
_LR = {"tiny": 1e-3, "base": 3e-4}
_BATCH = {"tiny": 16, "base": 64}
_SLOW_LR_SCALE = {"tiny": 0.5, "base": 0.1}  # encoders' learning-rate factor in the joint stage
# Warm-up is a tenth of a stage's steps, at most 100, or at most these: the bundled `tiny` run kept
# the warm-up of the older, shorter global and joint stages, and the default must reproduce it.
_WARMUP_CAP = {"tiny": {"global": 20, "joint": 15}}


def warmup_steps(preset: str, stage: str, steps: int) -> int:
    """Linear warm-up of a ``stage`` of ``steps`` steps: a tenth, at most 100 (or the preset's cap)."""
    return max(1, min(_WARMUP_CAP.get(preset, {}).get(stage, 100), steps // 10))


def default_schedule(
    preset: str,
    *,
    kind: Literal["progressive", "single-stage", "global-only"] = "progressive",
    steps_scale: float = 1.0,
    foreground: bool = True,
    global_refit: bool = True,
) -> list[StageSpec]:
    """The stage list for ``preset``.

    ``progressive`` is the paper's schedule (stage 0 pretraining, then local, global,
    joint), followed by the foreground head's stage 4 when ``foreground`` (the model has
    one) and, when ``global_refit``, the global heads' refit, stage 5. The two
    ablations use the same stage 0 and the same total number of alignment steps:
    ``single-stage`` trains everything jointly from the start; ``global-only`` drops the
    dense objective.
    """
    if preset not in _STEPS:
        raise ValueError(f"no schedule for preset {preset!r}; choose from {sorted(_STEPS)}")
    if steps_scale <= 0:
        raise ValueError("steps_scale must be positive")
    st = {k: max(1, round(v * steps_scale)) for k, v in _STEPS[preset].items()}
    lr, bs = _LR[preset], _BATCH[preset]
    pretrain = StageSpec(
        name="pretrain", steps=st["pretrain"], lr=lr, warmup=warmup_steps(preset, "pretrain", st["pretrain"]),
        trainable=_IMAGE_ENCODER + _GEOMETRY + _VAE,
        loss_weights=(("geometry", 1.0), ("vae", 1.0)), batch_size=bs,
        extra={"index": 0, "init_point_head_after": True, "num_points": 2048, "num_occ": 2048},
    )
    align = {"index": 1, "num_points": 2048, "num_occ": 1024, "num_pixels": 256}
    if kind == "progressive":
        return [
            pretrain,
            StageSpec(name="local", steps=st["local"], lr=lr, warmup=warmup_steps(preset, "local", st["local"]),
                      trainable=_DENSE_HEADS, loss_weights=(("dense", 1.0),), batch_size=bs, extra=dict(align)),
            StageSpec(name="global", steps=st["global"], lr=lr, warmup=warmup_steps(preset, "global", st["global"]),
                      trainable=_DENSE_HEADS + _GLOBAL_HEADS, loss_weights=(("dense", 1.0), ("global", 1.0)),
                      batch_size=bs, extra={**align, "index": 2}),
            StageSpec(name="joint", steps=st["joint"], lr=lr * 0.5, warmup=warmup_steps(preset, "joint", st["joint"]),
                      trainable=_DENSE_HEADS + _GLOBAL_HEADS + _GEOMETRY, slow=_IMAGE_ENCODER + _VAE,
                      slow_lr_scale=_SLOW_LR_SCALE[preset],
                      loss_weights=(("dense", 1.0), ("global", 1.0), ("geometry", 0.2), ("vae", 0.2)),
                      batch_size=bs, extra={**align, "index": 3}),
        ] + ([StageSpec(
            name="foreground", steps=st["foreground"], lr=lr, warmup=warmup_steps(preset, "foreground", st["foreground"]),
            trainable=_FOREGROUND, loss_weights=(("foreground", 1.0),), batch_size=bs,
            extra={"index": 4, "num_points": 2048, "num_occ": 256})] if foreground else []) + ([StageSpec(
            name="global_refit", steps=st["global_refit"], lr=lr,
            warmup=warmup_steps(preset, "global_refit", st["global_refit"]), trainable=_IMAGE_GLOBAL,
            slow=_SHAPE_GLOBAL, slow_lr_scale=_REFIT_SHAPE_LR_SCALE, loss_weights=(("global", 1.0),),
            batch_size=_REFIT_BATCH, weight_decay=0.05,
            extra={"index": 5, "cached_passes": _REFIT_PASSES[preset], "num_points": 2048, "num_occ": 8})]
            if global_refit else [])
    total = st["local"] + st["global"] + st["joint"]
    if kind == "single-stage":
        return [pretrain, StageSpec(
            name="single", steps=total, lr=lr, warmup=warmup_steps(preset, "single", total),
            trainable=_DENSE_HEADS + _GLOBAL_HEADS + _GEOMETRY + _IMAGE_ENCODER + _VAE,
            loss_weights=(("dense", 1.0), ("global", 1.0), ("geometry", 0.2), ("vae", 0.2)),
            batch_size=bs, extra=align)]
    if kind == "global-only":
        return [pretrain, StageSpec(
            name="global_only", steps=total, lr=lr, warmup=warmup_steps(preset, "global_only", total),
            trainable=_GLOBAL_HEADS, loss_weights=(("global", 1.0),), batch_size=bs, extra=align)]
    raise ValueError(f"unknown schedule kind {kind!r}")
