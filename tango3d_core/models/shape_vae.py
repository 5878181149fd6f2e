"""3D branch: a latent-set shape VAE in the style of 3DShape2VecSet / Hunyuan3D-2 ShapeVAE.

Encoder
    surface points + normals -> Fourier(xyz) ++ normal -> linear -> point tokens [B, N, W];
    queries = the point tokens at ``num_latents`` farthest-point samples;
    one cross-attention block (queries -> all points), ``enc_self_layers`` self-attention blocks,
    then a KL head giving mean / log-variance [B, L, latent_channels].
Decoder
    latent [B, L, Cl] -> linear -> ``dec_self_layers`` self-attention blocks -> tokens [B, L, W];
    any query xyz, Fourier-embedded, cross-attends to the tokens (``QueryDecoder``) and a linear
    layer gives an occupancy logit.

All coordinates are in the canonical frame: bounding-box centre at the origin, bounding-box
diagonal 1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ShapeVAEConfig
from .layers import CrossAttentionBlock, FourierEmbedder, SelfAttentionBlock
from .ops import farthest_point_sample, gather_points

__all__ = ["QueryDecoder", "ShapeVAE", "DEFAULT_QUERY_CHUNK"]

# Queries are decoded in chunks so that memory stays bounded for very large M.
DEFAULT_QUERY_CHUNK = 16384


class QueryDecoder(nn.Module):
    """Per-point features for arbitrary xyz by cross-attention into a token set.

    xyz [B, M, 3] (canonical frame), tokens [B, L, W] -> features [B, M, W] (after LayerNorm).
    """

    def __init__(self, *, width: int, num_heads: int, num_freqs: int, include_pi: bool,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.fourier = FourierEmbedder(num_freqs, include_pi=include_pi)
        self.proj = nn.Linear(self.fourier.out_dim, width)
        self.block = CrossAttentionBlock(width, num_heads, mlp_ratio=mlp_ratio)
        self.norm = nn.LayerNorm(width)

    def forward(self, xyz: Tensor, tokens: Tensor, *, chunk_size: int = DEFAULT_QUERY_CHUNK) -> Tensor:
        _check_xyz(xyz, "xyz")
        if tokens.dim() != 3 or tokens.shape[0] != xyz.shape[0]:
            raise ValueError(f"tokens must be [B={xyz.shape[0]}, L, W], got {tuple(tokens.shape)}")
        outs = []
        for start in range(0, max(xyz.shape[1], 1), chunk_size):
            q = self.proj(self.fourier(xyz[:, start:start + chunk_size]))
            outs.append(self.norm(self.block(q, tokens)))
        return torch.cat(outs, dim=1)


def _check_xyz(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != 3:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a [B, N, 3] tensor, got {shape}")


class ShapeVAE(nn.Module):
    """Latent-set VAE over surface point clouds; see the module docstring."""

    def __init__(self, config: ShapeVAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.fourier = FourierEmbedder(c.num_freqs, include_pi=c.include_pi)
        self.input_proj = nn.Linear(self.fourier.out_dim + 3, c.width)  # + 3 for the normal
        self.enc_cross = CrossAttentionBlock(c.width, c.num_heads, mlp_ratio=c.mlp_ratio)
        self.enc_self = nn.ModuleList(
            SelfAttentionBlock(c.width, c.num_heads, mlp_ratio=c.mlp_ratio) for _ in range(c.enc_self_layers)
        )
        self.enc_norm = nn.LayerNorm(c.width)
        self.pre_kl = nn.Linear(c.width, 2 * c.latent_channels)
        self.post_kl = nn.Linear(c.latent_channels, c.width)
        self.dec_self = nn.ModuleList(
            SelfAttentionBlock(c.width, c.num_heads, mlp_ratio=c.mlp_ratio) for _ in range(c.dec_self_layers)
        )
        self.dec_norm = nn.LayerNorm(c.width)
        self.occ_decoder = QueryDecoder(width=c.width, num_heads=c.num_heads, num_freqs=c.num_freqs,
                                        include_pi=c.include_pi, mlp_ratio=c.query_mlp_ratio)
        self.occ_out = nn.Linear(c.width, 1)

    @property
    def width(self) -> int:
        return self.config.width

    def encode(self, points: Tensor, normals: Tensor, *, sample_posterior: bool = False,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Encode surface samples (canonical frame).

        points, normals  [B, N, 3], N >= num_latents
        Returns a dict:
            mean, logvar  [B, L, Cl]   posterior parameters (logvar clamped to [-30, 20])
            z             [B, L, Cl]   a posterior sample, or ``mean`` when not sampling
            query_index   int64 [B, L] indices of the farthest-point-sampled queries
        """
        _check_xyz(points, "points")
        _check_xyz(normals, "normals")
        if points.shape != normals.shape:
            raise ValueError(f"points {tuple(points.shape)} and normals {tuple(normals.shape)} differ in shape")
        n, k = points.shape[1], self.config.num_latents
        if n < k:
            raise ValueError(f"need at least num_latents={k} points, got {n}")
        data = self.input_proj(torch.cat([self.fourier(points), normals], dim=-1))  # [B, N, W]
        with torch.no_grad():
            query_index = farthest_point_sample(points.detach(), k)
        x = self.enc_cross(gather_points(data, query_index), data)
        for block in self.enc_self:
            x = block(x)
        mean, logvar = self.pre_kl(self.enc_norm(x)).chunk(2, dim=-1)
        logvar = logvar.clamp(-30.0, 20.0)
        if sample_posterior:
            noise_device = generator.device if generator is not None else mean.device
            eps = torch.randn(mean.shape, generator=generator, device=noise_device, dtype=mean.dtype).to(mean.device)
            z = mean + (0.5 * logvar).exp() * eps
        else:
            z = mean
        return {"mean": mean, "logvar": logvar, "z": z, "query_index": query_index}

    def decode(self, z: Tensor) -> Tensor:
        """Latents z [B, L, Cl] -> decoded tokens [B, L, W] that query heads attend to."""
        x = self.post_kl(z)
        for block in self.dec_self:
            x = block(x)
        return self.dec_norm(x)

    def query_occupancy(self, tokens: Tensor, xyz: Tensor, *, chunk_size: int = DEFAULT_QUERY_CHUNK
                        ) -> dict[str, Tensor]:
        """tokens [B, L, W], xyz [B, M, 3] -> {"logits": [B, M], "features": [B, M, W]}."""
        feats = self.occ_decoder(xyz, tokens, chunk_size=chunk_size)
        return {"logits": self.occ_out(feats)[..., 0], "features": feats}

    def forward(self, points: Tensor, normals: Tensor, queries: Tensor, *, sample_posterior: bool = True,
                generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Full autoencoding pass.

        points, normals [B, N, 3]; queries [B, M, 3]. Returns the keys of :meth:`encode` plus
        ``tokens`` [B, L, W], ``logits`` [B, M] and ``features`` [B, M, W].
        """
        out = self.encode(points, normals, sample_posterior=sample_posterior, generator=generator)
        out["tokens"] = self.decode(out["z"])
        out.update(self.query_occupancy(out["tokens"], queries))
        return out
