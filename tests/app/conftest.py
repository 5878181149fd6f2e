"""Shared fixtures for the explorer tests: a small random Tango3D checkpoint saved to a temporary
folder and loaded through the provider registry, the bundled examples written once, and a
deterministic stand-in for the MiniLM text encoder (no model weights needed)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from tango3d_core.config import Tango3DConfig, toy_config


def small_config() -> Tango3DConfig:
    """Every component of the real model at a size that encodes in tens of milliseconds."""
    return toy_config("small", name="app-test")


class CountingProvider:
    """Wraps a provider and counts calls (to check caching); optional delay per encode."""

    def __init__(self, inner, *, delay: float = 0.0, name: str | None = None) -> None:
        self.inner = inner
        self.name = name or inner.name
        self.supports_text = inner.supports_text
        self.delay = delay
        self.calls = {"image": 0, "shape": 0, "text": 0}
        self._lock = threading.Lock()

    @property
    def device(self):
        return self.inner.device

    @property
    def fingerprint(self) -> str:
        return f"{self.name}-{self.inner.fingerprint}"

    def _count(self, kind: str) -> None:
        with self._lock:
            self.calls[kind] += 1
        if self.delay:
            import time

            time.sleep(self.delay)

    def encode_image(self, image):
        self._count("image")
        return self.inner.encode_image(image)

    def encode_shape(self, mesh, *, num_points=8192, seed=0):
        self._count("shape")
        return self.inner.encode_shape(mesh, num_points=num_points, seed=seed)

    def encode_text(self, texts):
        self._count("text")
        return self.inner.encode_text(texts)


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    from tango3d_core.models import build_model, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(build_model(small_config()), tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="session")
def provider(checkpoint_dir, fake_text):
    """The ``tango3d`` provider built by the registry from a saved random checkpoint."""
    from tango3d_core.providers import create_provider

    p = create_provider("tango3d", checkpoint=str(checkpoint_dir), device="cpu")
    p.model.set_text_encoder(fake_text())
    return p


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory) -> Path:
    from app.examples import write_examples

    d = tmp_path_factory.mktemp("examples")
    write_examples(d)
    return d


@pytest.fixture
def counting():
    """The CountingProvider class (test modules cannot import conftest: tests/app is no package,
    and must not be one, or it would shadow the real ``app``)."""
    return CountingProvider


@pytest.fixture
def make_explorer(tmp_path, examples_dir):
    """Build explorers over the bundled examples (each with its own work folder), shut down at the
    end of the test. Options as ``Explorer``'s; ``limits`` defaults to small, quick ones."""
    from app.examples import load_examples
    from app.explorer import Explorer, Limits

    made = []

    def make(primary, *, limits=None, gallery=None, make_provider=None, compare=(), viewer=True):
        ex = Explorer(primary, make_provider=make_provider, compare_choices=list(compare),
                      examples=(examples_dir, load_examples(examples_dir)), gallery=gallery,
                      work_dir=tmp_path / f"work{len(made)}",
                      limits=limits or Limits(num_points=1024, timeout_s=60.0, max_sessions=4), viewer=viewer)
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.shutdown()
