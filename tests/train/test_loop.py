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


def test_log_gets_its_header_after_a_kill_before_the_first_row(tmp_path):
    # The log is opened (and so created) when the stage starts but written only every log_every
    # steps: a process killed in between leaves an empty log.csv behind.
    (tmp_path / "log.csv").touch()
    model, batches = _setup()
    spec = StageSpec(name="fit", steps=20, lr=0.1, warmup=5, trainable=("weight", "bias"))
    run_stage(model, spec, batches, tmp_path, loss_fn=_loss, save_fn=_save, load_fn=_load, log_every=10)
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["step"] for r in rows] == ["10", "20"]


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


def test_fit_steps_arithmetic():
    from tango3d_core.train.loop import _fit_steps

    # 10 steps after the probe start took 1 s: 0.1 s/step; 9 s left -> 90 more steps.
    assert _fit_steps(1000, elapsed=2.0, done=12, budget_s=11.0, probe_start=1.0) == 12 + 90
    assert _fit_steps(50, elapsed=2.0, done=12, budget_s=11.0, probe_start=1.0) == 50  # never above the plan
    assert _fit_steps(1000, elapsed=20.0, done=12, budget_s=11.0, probe_start=1.0) == 12  # over budget: stop


def test_time_budget_fits_the_stage_and_a_resume_keeps_the_fit(tmp_path):
    import time

    def slow_loss(model, b):
        time.sleep(0.02)
        return _loss(model, b)

    model, batches = _setup()
    spec = StageSpec(name="fit", steps=10_000, lr=0.05, warmup=100, trainable=("weight", "bias"))
    t0 = time.time()
    run_stage(model, spec, batches, tmp_path, loss_fn=slow_loss, save_fn=_save, load_fn=_load, time_budget_s=1.0,
              log_every=1)
    took = time.time() - t0
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    fitted = int(rows[-1]["step"])
    assert 20 <= fitted <= 60, fitted  # 1 s at >= 20 ms a step
    assert took < 3.0
    assert (tmp_path / "DONE").exists()
    trainer = json.loads((tmp_path / "latest" / "trainer.json").read_text())
    assert trainer["extra"]["total_steps"] == fitted
    # The learning rate still warmed up and decayed over the fitted steps, not the planned 10 000.
    assert float(rows[-1]["lr"]) < 0.2 * 0.05

    # Stopped after the fit (time limit), then resumed without a budget: the fitted count holds.
    m2, batches2 = _setup()
    part = tmp_path / "resumed"
    run_stage(m2, spec, batches2, part, loss_fn=slow_loss, save_fn=_save, load_fn=_load, time_budget_s=1.0,
              time_limit_s=0.5)
    assert not (part / "DONE").exists()
    run_stage(m2, spec, batches2, part, loss_fn=slow_loss, save_fn=_save, load_fn=_load)
    assert (part / "DONE").exists()
    again = int(list(csv.DictReader(open(part / "log.csv")))[-1]["step"])
    assert 20 <= again <= 60, again
