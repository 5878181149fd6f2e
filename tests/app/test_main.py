"""Command line and serving: flags, the missing-checkpoint message, an in-process server."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import launch
from app.main import build_app, resolve_device, serve, start

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_flag():
    out = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    for flag in ("--host", "--port", "--checkpoint", "--provider", "--gallery", "--device", "--share"):
        assert flag in out


def test_defaults_are_local_and_private():
    args = launch.parse_args([])
    assert args.host == "127.0.0.1" and args.share is False and args.provider == "tango3d"


def test_missing_bundled_checkpoint_says_how_to_build_it(tmp_path, monkeypatch, capsys):
    from tango3d_core.models.checkpoint import BUILD_COMMAND

    monkeypatch.setenv("TANGO3D_CHECKPOINT", str(tmp_path / "none"))
    assert serve(launch.parse_args([])) == 2
    err = capsys.readouterr().err
    assert "no bundled checkpoint" in err and BUILD_COMMAND in err


def test_unknown_provider(capsys):
    assert serve(launch.parse_args(["--provider", "nope"])) == 2
    assert "unknown provider 'nope'" in capsys.readouterr().err


def test_device_resolution():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def test_in_process_server_serves_the_page(provider, examples_dir, tmp_path):
    app = build_app(provider, cache_dir=tmp_path, examples_dir=examples_dir)
    try:
        start(app, host="127.0.0.1", port=None)
        assert app.url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(app.url, timeout=30) as r:
            assert r.status == 200 and b"Tango3D explorer" in r.read()
    finally:
        app.demo.close()
        app.explorer.shutdown()
