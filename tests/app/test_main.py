"""Command line and serving: flags, the missing-checkpoint message, an in-process server."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import launch
from app.main import build_app, resolve_device, resolve_single_port, serve, start

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_every_flag():
    out = subprocess.run([sys.executable, str(ROOT / "launch.py"), "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    for flag in ("--host", "--port", "--checkpoint", "--provider", "--gallery", "--device", "--share",
                 "--single-port", "--viewer"):
        assert flag in out


def test_defaults_are_local_and_private(monkeypatch):
    for var in ("SPACE_ID", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(var, raising=False)
    args = launch.parse_args([])
    assert args.host == "127.0.0.1" and args.share is False and args.provider == "tango3d"
    assert args.port == 7860 and args.viewer == "viser" and resolve_single_port(args) is False


def test_single_port_is_the_default_on_a_space(monkeypatch):
    monkeypatch.setenv("SPACE_ID", "someone/tango3d")
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    args = launch.parse_args([])
    assert resolve_single_port(args) is True and args.host == "0.0.0.0"
    assert resolve_single_port(launch.parse_args(["--no-single-port"])) is False
    monkeypatch.delenv("SPACE_ID")
    assert resolve_single_port(launch.parse_args(["--single-port"])) is True
    monkeypatch.setenv("GRADIO_SERVER_PORT", "9000")
    assert launch.parse_args([]).port == 9000


def test_share_and_single_port_do_not_mix(capsys):
    assert serve(launch.parse_args(["--single-port", "--share", "--provider", "nope"])) == 2
    assert "--share cannot be combined with --single-port" in capsys.readouterr().err


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
        # The default mode has no proxy routes: viewers are reached on their own ports.
        s = app.explorer.open_session("x")
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(app.url + f"viser/{s.viewer_token}/", timeout=30)
    finally:
        app.close()


_ARENAS = """
import sys, threading, ctypes
from app.main import limit_malloc_arenas
print(limit_malloc_arenas(2), flush=True)
keep, all_alive = [], threading.Barrier(8)
def work():  # all 8 threads alive at once: an exited thread's arena would be handed on
    all_alive.wait()
    keep.append([bytearray(60_000) for _ in range(20)])
    all_alive.wait()
ts = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
ctypes.CDLL("libc.so.6").malloc_stats()  # one "Arena N:" block per arena, on stderr
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_malloc_arenas_are_capped_unless_the_user_set_them():
    import os
    import subprocess

    def run(env):
        r = subprocess.run([sys.executable, "-c", _ARENAS], capture_output=True, text=True, check=True,
                           env={k: v for k, v in {**os.environ, **env}.items() if v is not None})
        return r.stdout.strip(), r.stderr.count("Arena ")

    capped, n_capped = run({"MALLOC_ARENA_MAX": None})
    assert capped == "True" and 1 <= n_capped <= 2
    mine, n_mine = run({"MALLOC_ARENA_MAX": "6"})   # the user's own setting wins
    assert mine == "False" and n_capped < n_mine <= 6
