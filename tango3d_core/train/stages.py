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
====== ================ ============================================ =======================

Parameters are selected by name prefix, so a stage spec is plain data that is
saved beside each stage's logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
