import csv
import json
from itertools import cycle

import torch
from safetensors.torch import load_file, save_file

from tango3d_core.train.loop import lr_at, run_stage
from tango3d_core.train.stages import StageSpec


def _save(m, d):
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(d / "model.safetensors"))


def _load(m, d):
    m.load_state_dict(load_file(str(d / "model.safetensors")))


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    x = torch.randn(64, 2)
    y = x @ torch.tensor([[2.0], [-1.0]]) + 0.5
    batches = cycle([{"x": x[i : i + 16], "y": y[i : i + 16]} for i in range(0, 64, 16)])
    return model, batches


def _loss(model, b):
    mse = (model(b["x"]) - b["y"]).square().mean()
    return {"total": mse, "mse": mse}


def test_loss_goes_down_and_logs(tmp_path):
    model, batches = _setup()
    spec = StageSpec(name="fit", steps=120, lr=0.1, warmup=5, trainable=("weight", "bias"))
    first = _loss(model, next(batches))["mse"].item()
    summary = run_stage(model, spec, batches, tmp_path, loss_fn=_loss, save_fn=_save, load_fn=_load, log_every=10)
    assert summary["mse"] < 0.05 * first
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 12 and rows[-1]["step"] == "120"
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 120
    assert (tmp_path / "DONE").exists()


def test_resume_matches_uninterrupted(tmp_path):
    spec = StageSpec(name="fit", steps=40, lr=0.05, warmup=5, trainable=("weight", "bias"))
    ref, batches = _setup()
    run_stage(ref, spec, batches, tmp_path / "a", loss_fn=_loss, save_fn=_save, load_fn=_load, ckpt_every=10)

    # interrupted after 20 steps (a shorter spec shares the lr schedule only if total is equal,
    # so interrupt with a time limit of zero after each call instead)
    m, batches = _setup()
    run_stage(m, spec, batches, tmp_path / "b", loss_fn=_loss, save_fn=_save, load_fn=_load, ckpt_every=10, time_limit_s=0.0)
    assert not (tmp_path / "b" / "DONE").exists()
    m2, batches2 = _setup()
    next(batches2)  # the interrupted run consumed one batch
    run_stage(m2, spec, batches2, tmp_path / "b", loss_fn=_loss, save_fn=_save, load_fn=_load, ckpt_every=10)
    assert (tmp_path / "b" / "DONE").exists()
    for a, b in zip(ref.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b)


def test_lr_schedule_shape():
    lrs = [lr_at(s, total=100, base_lr=1.0, warmup=10) for s in range(100)]
    assert lrs[0] == 0.1 and lrs[9] == 1.0
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert abs(lrs[-1] - 0.05) < 0.01
