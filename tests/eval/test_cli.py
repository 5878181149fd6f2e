"""``python -m tango3d_core.eval``: help, the JSON it writes, argument errors, and the rule that
evaluation never imports training code."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import trimesh

from tango3d_core.eval.__main__ import jsonable, main
from tango3d_core.models import build_model, save_checkpoint

TINY_ARGS = ["--categories", "chair,mug", "--shapes-per-category", "1", "--views", "2", "--resolution", "48",
             "--num-points", "512", "--backprojection-views", "2", "--no-progress", "--no-png"]



@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ck")
    torch.manual_seed(0)
    a = save_checkpoint(build_model("tiny"), root / "a", extra={"stage": "test"})
    torch.manual_seed(1)
    b = save_checkpoint(build_model("tiny"), root / "b")
    return a, b


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_suite():
    out = _run("-m", "tango3d_core.eval", "--help")
    assert out.returncode == 0, out.stderr
    for name in ("pixel2point", "point2pixel", "part-transfer", "retrieval", "vae", "all"):
        assert name in out.stdout
    for flag in ("--json", "--report", "--meshes", "--quick", "--checkpoint", "--device", "--baseline-checkpoint"):
        assert flag in out.stdout


def test_eval_imports_no_training_code():
    code = (
        "import importlib, sys\n"
        "import tango3d_core.eval as e\n"
        "for m in ('metrics', 'suites', 'baselines', 'report', '__main__'):\n"
        "    importlib.import_module('tango3d_core.eval.' + m)\n"
        "_ = e.BackprojectionFeatures, e.run_suite, e.write_report\n"
        "bad = sorted(m for m in sys.modules if m == 'tango3d_core.train' or m.startswith('tango3d_core.train.'))\n"
        "assert 'tango3d_core.eval.suites' in sys.modules\n"
        "print('TRAIN:', bad)\n"
    )
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr
    assert "TRAIN: []" in out.stdout


@pytest.fixture()
def bundled(monkeypatch, tmp_path):
    """Point the bundled ablations at tmp_path/baselines/<name> (empty unless a test fills it)."""
    import tango3d_core.models.checkpoint as ck

    root = tmp_path / "baselines"
    monkeypatch.setattr(ck, "bundled_baseline_dir", lambda name: root / name)
    return root


def test_pixel2point_json_with_baseline_checkpoint(checkpoints, tmp_path, bundled):
    a, b = checkpoints
    out = tmp_path / "res" / "p.json"
    assert main(["--suite", "pixel2point", "--checkpoint", str(a), "--baseline-checkpoint", f"global-only={b}",
                 "--json", str(out), "--report", str(tmp_path / "rep"), *TINY_ARGS]) == 0
    res = json.loads(out.read_text())
    assert set(res) == {"suite", "config", "methods", "counts", "timing", "run"}
    assert res["suite"] == "pixel2point"
    # tango3d-pose: the same model with pose-verified matching (pixel2point and retrieval)
    assert set(res["methods"]) == {"tango3d", "tango3d-pose", "random", "backprojection", "global-only"}
    assert res["timing"]["methods"]["tango3d-pose"]["match_calls"] == res["counts"]["views"]
    assert res["config"]["categories"] == ["chair", "mug"] and res["config"]["resolution"] == 48
    assert res["run"]["checkpoint"]["extra"] == {"stage": "test"}
    assert res["run"]["baseline_checkpoints"] == {"global-only": str(b)}
    # the other bundled ablation is absent here: skipped, with the command that trains it
    assert "single-stage" in res["run"]["skipped_baselines"]
    assert "--schedule single-stage" in res["run"]["skipped_baselines"]["single-stage"]
    assert res["timing"]["methods"]["backprojection"]["shape_calls"] == 2
    # different weights, different numbers: the baseline checkpoint really is evaluated
    assert res["methods"]["tango3d"]["curve"] != res["methods"]["global-only"]["curve"]
    assert (tmp_path / "rep" / "results.md").is_file()


def test_bundled_ablations_are_default_baselines(checkpoints, tmp_path, bundled, capsys):
    a, b = checkpoints
    save_checkpoint(build_model("tiny"), bundled / "single-stage")  # a third set of weights
    assert main(["--suite", "pixel2point", "--checkpoint", str(a), *TINY_ARGS]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["methods"]) == {"tango3d", "tango3d-pose", "random", "backprojection", "single-stage"}
    assert res["run"]["baseline_checkpoints"] == {"single-stage": str(bundled / "single-stage")}
    assert set(res["run"]["skipped_baselines"]) == {"canonical-xyz", "global-only"}
    # asking only for the computed baselines leaves the checkpoints out
    assert main(["--suite", "pixel2point", "--checkpoint", str(a), "--baselines", "random", "--no-pose",
                 *TINY_ARGS]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["methods"]) == {"tango3d", "random"} and res["run"]["skipped_baselines"] == {}


def test_vae_token_rows_from_the_command_line(checkpoints, bundled, capsys):
    a, _ = checkpoints
    base = ["--suite", "vae", "--checkpoint", str(a), "--baselines", "none", "--categories", "mug",
            "--shapes-per-category", "1"]
    assert main([*base, "--vae-tokens", "300"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["methods"]) == {"tango3d", "tango3d@300", "random"} and res["config"]["vae_tokens"] == [300]
    assert main([*base, "--vae-tokens", "none"]) == 0
    assert set(json.loads(capsys.readouterr().out)["methods"]) == {"tango3d", "random"}


def test_all_with_meshes_runs_the_geometric_suites(checkpoints, tmp_path, capsys):
    a, _ = checkpoints
    (tmp_path / "m").mkdir()
    trimesh.creation.icosphere(subdivisions=2).export(tmp_path / "m" / "ball.ply")
    assert main(["--suite", "all", "--checkpoint", str(a), "--meshes", str(tmp_path / "m"), "--baselines", "random",
                 *TINY_ARGS]) == 0
    res = json.loads(capsys.readouterr().out)  # no --json: printed
    assert res["suite"] == "all" and set(res["suites"]) == {"pixel2point", "point2pixel"}
    assert set(res["suites"]["pixel2point"]["methods"]) == {"tango3d", "tango3d-pose", "random"}
    assert res["suites"]["point2pixel"]["config"]["meshes"] == str(tmp_path / "m")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--suite", "nope"], "invalid choice"),
        (["--suite", "vae", "--baseline-checkpoint", "oops"], "NAME=DIR"),
        (["--suite", "vae", "--baseline-checkpoint", "random=x"], "taken"),
        (["--suite", "vae", "--baselines", "magic"], "unknown"),
        (["--suite", "part-transfer", "--meshes", "."], "geometric"),
        (["--suite", "vae", "--meshes", "/definitely/not/here"], "not a directory"),
        (["--suite", "vae", "--checkpoint", "/definitely/not/here"], "does not exist"),
        (["--suite", "vae", "--categories", "spaceship"], "unknown categories"),
        (["--suite", "vae", "--vae-tokens", "512,lots"], "comma-separated integers"),
        (["--suite", "vae", "--vae-tokens", "0"], "vae_tokens must be integers >= 1"),
    ],
)
def test_bad_arguments(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_jsonable_makes_strict_json():
    import numpy as np

    out = jsonable({"a": float("nan"), "b": (np.float32(1.5), np.int64(2)), 3: [float("inf")], "c": np.bool_(True)})
    assert out == {"a": None, "b": [1.5, 2], "3": [None], "c": True}
    json.dumps(out, allow_nan=False)
