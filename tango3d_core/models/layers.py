"""Building blocks shared by both branches: Fourier embedding, MLP, attention blocks.

All blocks are pre-norm transformers using ``F.scaled_dot_product_attention`` (fused kernels on
CPU and GPU, and a plain math path in float64 for gradient checks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FourierEmbedder",
    "Mlp",
    "SelfAttention",
    "CrossAttention",
    "SelfAttentionBlock",
    "CrossAttentionBlock",
]


class FourierEmbedder(nn.Module):
    """Sin/cos positional embedding of 3D coordinates (NeRF / 3DShape2VecSet style).

    For input x [..., C] the output is ``cat(x, sin(x*f_0..f_{K-1}), cos(x*f_0..f_{K-1}))`` with
    f_k = 2^k (times pi when ``include_pi``), laid out as [..., C + 2*C*K]; the sin block is
    ordered channel-major (x*f_0, x*f_1, ..., y*f_0, ...). Coordinates are expected in the
    canonical frame (bounding-box diagonal 1, so |x| <= 0.5).
    """

    frequencies: Tensor

    def __init__(self, num_freqs: int = 8, *, input_dim: int = 3, include_input: bool = True,
                 include_pi: bool = True) -> None:
        super().__init__()
        freqs = 2.0 ** torch.arange(num_freqs, dtype=torch.float32)
        if include_pi:
            freqs = freqs * math.pi
        # A buffer so it follows .to(device); not persistent because it is derived from config.
        self.register_buffer("frequencies", freqs, persistent=False)
        self.input_dim = input_dim
        self.include_input = include_input
        self.out_dim = input_dim * (2 * num_freqs + int(include_input))

    def forward(self, x: Tensor) -> Tensor:
        """x [..., input_dim] -> [..., out_dim]."""
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"expected last dim {self.input_dim}, got shape {tuple(x.shape)}")
        scaled = (x[..., None] * self.frequencies.to(x.dtype)).flatten(-2)  # [..., C*K]
        parts = [x] if self.include_input else []
        parts += [scaled.sin(), scaled.cos()]
        return torch.cat(parts, dim=-1)


class Mlp(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _split_heads(x: Tensor, heads: int) -> Tensor:
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)  # [B, h, N, c/h]


def _merge_heads(x: Tensor) -> Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class SelfAttention(nn.Module):
    """Multi-head self-attention. x [B, N, C] -> [B, N, C]."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        h = self.num_heads
        out = F.scaled_dot_product_attention(_split_heads(q, h), _split_heads(k, h), _split_heads(v, h))
        return self.proj(_merge_heads(out))


class CrossAttention(nn.Module):
    """Multi-head cross-attention. queries [B, M, C], context [B, N, Ck] -> [B, M, C]."""

    def __init__(self, dim: int, num_heads: int, *, context_dim: int | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        k, v = self.kv(context).chunk(2, dim=-1)
        h = self.num_heads
        out = F.scaled_dot_product_attention(_split_heads(self.q(x), h), _split_heads(k, h), _split_heads(v, h))
        return self.proj(_merge_heads(out))


class SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)); x + MLP(LN(x)). [B, N, C] -> [B, N, C]."""

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossAttentionBlock(nn.Module):
    """Pre-norm cross-attention block.

    x [B, M, C] (queries), context [B, N, Ck] -> [B, M, C]:
    x + CrossAttn(LN(x), LN(context)); then x + MLP(LN(x)) (skipped when ``mlp_ratio == 0``).
    """

    def __init__(self, dim: int, num_heads: int, *, context_dim: int | None = None,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(context_dim or dim)
        self.attn = CrossAttention(dim, num_heads, context_dim=context_dim)
        hidden = int(dim * mlp_ratio)
        self.norm2 = nn.LayerNorm(dim) if hidden > 0 else None
        self.mlp = Mlp(dim, hidden) if hidden > 0 else None

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = x + self.attn(self.norm_q(x), self.norm_kv(context))
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x
