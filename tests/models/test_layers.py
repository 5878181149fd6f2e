"""models/layers.py: Fourier embedding, attention against a naive reference, gradient checks."""

from __future__ import annotations

import math

import pytest
import torch

from tango3d_core.models.layers import (
    CrossAttention,
    CrossAttentionBlock,
    FourierEmbedder,
    SelfAttention,
    SelfAttentionBlock,
)


def test_fourier_shape_and_frequencies() -> None:
    emb = FourierEmbedder(8)
    assert emb.out_dim == 3 * (1 + 2 * 8) == 51
    assert torch.allclose(emb.frequencies, math.pi * 2.0 ** torch.arange(8))
    x = torch.randn(2, 5, 3)
    assert emb(x).shape == (2, 5, 51)


def test_fourier_values_channel_major() -> None:
    emb = FourierEmbedder(2, include_pi=False)
    x = torch.tensor([[0.1, 0.2, 0.3]])
    out = emb(x)[0]
    # Layout: x, y, z, then sin(x*1), sin(x*2), sin(y*1), sin(y*2), sin(z*1), sin(z*2), then cos likewise.
    scaled = torch.tensor([0.1, 0.2, 0.2, 0.4, 0.3, 0.6])
    expected = torch.cat([x[0], scaled.sin(), scaled.cos()])
    assert torch.allclose(out, expected)


def test_fourier_options_and_bad_input() -> None:
    assert FourierEmbedder(4, include_input=False).out_dim == 24
    assert FourierEmbedder(4, include_input=False)(torch.zeros(1, 3)).shape == (1, 24)
    with pytest.raises(ValueError, match="last dim 3"):
        FourierEmbedder(4)(torch.zeros(2, 2))


def _naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Per-head softmax(q k^T / sqrt(d)) v with explicit loops. q [M, C], k/v [N, C] -> [M, C]."""
    c = q.shape[-1]
    d = c // heads
    outs = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        w = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(d), dim=-1)
        outs.append(w @ v[:, sl])
    return torch.cat(outs, dim=-1)


def test_self_attention_matches_naive() -> None:
    torch.manual_seed(0)
    attn = SelfAttention(8, 2).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    out = attn(x)
    for b in range(2):
        q, k, v = attn.qkv(x[b]).chunk(3, dim=-1)
        ref = attn.proj(_naive_attention(q, k, v, 2))
        assert torch.allclose(out[b], ref, atol=1e-10)


def test_cross_attention_matches_naive() -> None:
    torch.manual_seed(1)
    attn = CrossAttention(8, 4, context_dim=6).double()
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    ctx = torch.randn(2, 7, 6, dtype=torch.float64)
    out = attn(x, ctx)
    for b in range(2):
        k, v = attn.kv(ctx[b]).chunk(2, dim=-1)
        ref = attn.proj(_naive_attention(attn.q(x[b]), k, v, 4))
        assert torch.allclose(out[b], ref, atol=1e-10)


def test_self_attention_block_gradcheck() -> None:
    torch.manual_seed(2)
    block = SelfAttentionBlock(4, 2, mlp_ratio=2.0).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,), eps=1e-6, atol=1e-5)


def test_cross_attention_block_gradcheck() -> None:
    torch.manual_seed(3)
    block = CrossAttentionBlock(4, 2, context_dim=3, mlp_ratio=1.0).double()
    x = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    ctx = torch.randn(1, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x, ctx), eps=1e-6, atol=1e-5)


def test_attention_gradcheck_wrt_weights() -> None:
    torch.manual_seed(4)
    attn = SelfAttention(4, 2).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    w = attn.qkv.weight.detach().clone().requires_grad_(True)

    def f(weight: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(attn, {"qkv.weight": weight}, (x,))

    assert torch.autograd.gradcheck(f, (w,), eps=1e-6, atol=1e-5)


def test_cross_block_without_mlp() -> None:
    block = CrossAttentionBlock(8, 2, mlp_ratio=0.0)
    assert block.mlp is None
    assert block(torch.randn(1, 4, 8), torch.randn(1, 6, 8)).shape == (1, 4, 8)


def test_heads_must_divide_width() -> None:
    with pytest.raises(ValueError):
        SelfAttention(10, 3)
    with pytest.raises(ValueError):
        CrossAttention(10, 4)
