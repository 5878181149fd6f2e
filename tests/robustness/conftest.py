"""Fixtures for the robustness tests: a small random checkpoint served by the ``tango3d``
provider (encodes in milliseconds), explorers on private work folders, and one in-process
server for the HTTP-level checks."""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from tango3d_core.config import Tango3DConfig, toy_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "assets" / "examples"


def tiny_config() -> Tango3DConfig:
    """Every component of the real model, small enough that an encode takes milliseconds."""
    return toy_config("micro", name="robustness")


@pytest.fixture(scope="session")
def provider(tmp_path_factory, fake_text):
    from tango3d_core.models import build_model, save_checkpoint
    from tango3d_core.providers import create_provider

    torch.manual_seed(0)
    ckpt = save_checkpoint(build_model(tiny_config()), tmp_path_factory.mktemp("robust-ckpt"))
    p = create_provider("tango3d", checkpoint=str(ckpt), device="cpu")
    p.model.set_text_encoder(fake_text())
    return p


@pytest.fixture
def make_explorer(tmp_path, provider):
    """Explorer factory (no 3D viewer unless asked); every explorer is shut down afterwards."""
    from app.examples import load_examples
    from app.explorer import Explorer, Limits

    made = []

    def make(*, limits=None, gallery=None, viewer=False, **kwargs):
        ex = Explorer(provider, examples=(EXAMPLES, load_examples(EXAMPLES)), gallery=gallery,
                      work_dir=tmp_path / f"work{len(made)}",
                      limits=limits or Limits(num_points=256, timeout_s=60.0), viewer=viewer, **kwargs)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ file-access auditing
_opened: list[tuple[str, str]] | None = None
_hook_installed = False


def _audit(event: str, args: tuple) -> None:
    if _opened is None:
        return
    try:
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
            _opened.append((os.path.abspath(os.fsdecode(args[0])), mode or "r"))
        elif event in ("os.rename", "os.replace", "shutil.copyfile", "os.symlink", "os.link") and len(args) > 1:
            if isinstance(args[0], (str, bytes, os.PathLike)):
                _opened.append((os.path.abspath(os.fsdecode(args[0])), "r"))
            if isinstance(args[1], (str, bytes, os.PathLike)):
                _opened.append((os.path.abspath(os.fsdecode(args[1])), "w"))
        elif event == "os.mkdir" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            _opened.append((os.path.abspath(os.fsdecode(args[0])), "w"))
    except Exception:  # an audit hook must never break the code it watches
        pass


@contextmanager
def file_access():
    """Record every file this process opens, creates, renames or copies (any thread) inside the
    block: a list of (absolute path, mode). Uses ``sys.addaudithook`` (installed once; idle
    outside the block)."""
    global _opened, _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


def written(access: list[tuple[str, str]]) -> list[str]:
    return sorted({p for p, mode in access if any(c in mode for c in "wax+")})


def load_test_module():
    """``benchmarks/load_test.py`` as a module (benchmarks are scripts, not a package)."""
    name = "tango3d_load_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "load_test.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while the class is built
        spec.loader.exec_module(module)
    return sys.modules[name]
