"""Resumable training state without pickles.

Model weights go through ``models.checkpoint`` (safetensors + config.json). The
optimizer and scheduler state is split into tensors (``optim.safetensors``) and
JSON scalars (``trainer.json``) so resuming never unpickles anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def optimizer_state_to_files(optimizer: torch.optim.Optimizer, directory: str | Path, *, extra: dict | None = None) -> None:
    """Write ``optimizer``'s state to ``directory/optim.safetensors`` + ``trainer.json``.

    ``extra`` (JSON-serialisable: step counters, RNG seeds, stage name) is stored beside it.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(pid), {})[k] = v
    meta = {"param_groups": sd["param_groups"], "scalars": scalars, "extra": extra or {}}
    tmp = d / "optim.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(d / "optim.safetensors")
    (d / "trainer.json.tmp").write_text(json.dumps(meta, indent=1))
    (d / "trainer.json.tmp").replace(d / "trainer.json")


def optimizer_state_from_files(optimizer: torch.optim.Optimizer, directory: str | Path) -> dict:
    """Restore what :func:`optimizer_state_to_files` wrote; returns its ``extra`` dict.

    Raises:
        FileNotFoundError: no saved state in ``directory``.
        ValueError: the saved state does not fit ``optimizer`` (different parameters).
    """
    d = Path(directory)
    meta = json.loads((d / "trainer.json").read_text())
    flat = load_file(str(d / "optim.safetensors"))
    state: dict[int, dict[str, Any]] = {}
    for key, v in flat.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    for pid, sc in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(sc)
    groups = meta["param_groups"]
    current = optimizer.state_dict()["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in current]:
        raise ValueError("saved optimizer state was made for a different set of parameters")
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    return meta.get("extra", {})
