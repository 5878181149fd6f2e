"""Fixtures every test folder shares."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run each test single-threaded: the tensors are tiny, and on a shared 2-core machine
    OpenMP threads waiting for each other make such tests 10-20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _viewers_stopped():
    """Start each test only once viewers closed in the background have stopped: viser prints
    "Server stopped" to stdout from its loop thread, and a fixture's teardown in tests/app
    once put it into the captured output of a JSON-parsing CLI test in tests/data."""
    import threading
    import time

    from app.viewer import STOP_THREAD_NAME

    for t in threading.enumerate():
        if t.name == STOP_THREAD_NAME:
            # enumerate() also lists a thread whose start() has not finished bootstrapping, and
            # join() refuses such a thread ("cannot join thread before it is started").
            for _ in range(100):
                try:
                    t.join(timeout=15)
                    break
                except RuntimeError:
                    time.sleep(0.01)
    yield


class FakeTextEncoder:
    """Deterministic stand-in for MiniLM (the real one takes ~10 s to load): a hash of the
    string -> a unit vector [384]. ``calls`` records what it was asked to encode."""

    dim = 384

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        out = []
        for t in texts:
            g = torch.Generator().manual_seed(sum(ord(c) * (i + 1) for i, c in enumerate(t)) % (2**31))
            out.append(torch.nn.functional.normalize(torch.randn(384, generator=g), dim=0))
        return torch.stack(out)


@pytest.fixture(scope="session")
def fake_text():
    """The :class:`FakeTextEncoder` class (test modules cannot import the root conftest)."""
    return FakeTextEncoder
