"""3D branch: a latent-set shape VAE in the style of 3DShape2VecSet / Hunyuan3D-2 ShapeVAE.

Encoder
    surface points + normals -> Fourier(xyz) ++ normal -> linear -> point tokens [B, N, W];
    queries = the point tokens at ``num_latents`` farthest-point samples;
    one cross-attention block (queries -> all points), ``enc_self_layers`` self-attention blocks,
    then a KL head giving mean / log-variance [B, L, latent_channels].
Decoder
    latent [B, L, Cl] -> linear -> ``dec_self_layers`` self-attention blocks -> tokens [B, L, W];
    any query xyz reads the tokens through a query decoder and a linear layer gives an occupancy
    logit. Two query decoders share one interface (``make_query_decoder``):
    ``QueryDecoder`` (3DShape2VecSet: the Fourier-embedded xyz cross-attends to every token) and
    ``LocalQueryDecoder`` (the k tokens whose anchors -- the farthest-point-sampled input points
    the tokens started from -- are nearest, read through the offset from each anchor).

All coordinates are in the canonical frame: bounding-box centre at the origin, bounding-box
diagonal 1. With ``yaw_frame="principal"`` the encoder first turns the cloud about +Z into its
principal-axis frame; :meth:`ShapeVAE.encode` returns that turn as ``frame_yaw`` and every query
must be passed through :meth:`ShapeVAE.to_frame` with it (``query_occupancy`` does so).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..config import ShapeVAEConfig
from .layers import CrossAttentionBlock, FourierEmbedder, Mlp, SelfAttentionBlock
from .ops import farthest_point_sample, gather_points, principal_yaw, rotate_z

__all__ = ["QueryDecoder", "LocalQueryDecoder", "make_query_decoder", "ShapeVAE", "DEFAULT_QUERY_CHUNK"]

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

    def forward(self, xyz: Tensor, tokens: Tensor, *, anchors: Tensor | None = None,
                chunk_size: int = DEFAULT_QUERY_CHUNK) -> Tensor:
        """``anchors`` is accepted for a common interface with :class:`LocalQueryDecoder` and unused."""
        _check_tokens(xyz, tokens)
        return _over_chunks(xyz, chunk_size, lambda x: self.norm(self.block(self.proj(self.fourier(x)), tokens)))


class LocalQueryDecoder(nn.Module):
    """Per-point features for arbitrary xyz from the k tokens whose anchors are nearest.

    xyz [B, M, 3] and anchors [B, L, 3] (canonical frame, so distances are in units of the
    bounding-box diagonal), tokens [B, L, W] -> features [B, M, W] (after LayerNorm).

    For each query x and each of its k nearest anchors a_j (token t_j):
        h_j = A t_j + (B F(x - a_j)) * (1 + G t_j);   h_j += MLP(LN(h_j))
        w_j = softmax_j(s . h_j - beta |x - a_j|^2);   out = Linear(LN(sum_j w_j h_j))
    with F a Fourier embedding of the offset and beta > 0 learned. Why: occupancy near a
    surface is roughly the sign of (x - a) . n for the nearest surface patch, a product of the
    offset and what the token says about its patch; the gate makes that product one layer deep,
    where cross-attention from absolute positions first has to learn where each token lies. A
    token outside the k nearest has no influence on x.
    """

    def __init__(self, *, width: int, local_width: int, neighbors: int, num_freqs: int,
                 include_pi: bool, init_radius: float = 0.05) -> None:
        super().__init__()
        self.neighbors = neighbors
        self.token_proj = nn.Linear(width, local_width)
        self.token_gate = nn.Linear(width, local_width)
        self.fourier = FourierEmbedder(num_freqs, include_pi=include_pi)
        self.offset_proj = nn.Linear(self.fourier.out_dim, local_width)
        self.norm = nn.LayerNorm(local_width)
        self.mlp = Mlp(local_width, 2 * local_width)
        self.score = nn.Linear(local_width, 1)
        # log beta, beta = 1 / (2 r^2): at init a neighbour at distance r is down-weighted by e^-1/2.
        self.log_beta = nn.Parameter(torch.tensor(math.log(1.0 / (2.0 * init_radius ** 2))))
        self.out_norm = nn.LayerNorm(local_width)
        self.out = nn.Linear(local_width, width)
        self.norm_out = nn.LayerNorm(width)

    def forward(self, xyz: Tensor, tokens: Tensor, *, anchors: Tensor | None = None,
                chunk_size: int = DEFAULT_QUERY_CHUNK) -> Tensor:
        _check_tokens(xyz, tokens)
        if anchors is None:
            raise ValueError("the local query decoder needs the tokens' anchors [B, L, 3] "
                             "(ShapeVAE.encode returns them as 'anchors')")
        _check_xyz(anchors, "anchors")
        if anchors.shape[:2] != tokens.shape[:2]:
            raise ValueError(f"anchors {tuple(anchors.shape)} do not match tokens {tuple(tokens.shape)}")
        k = min(self.neighbors, tokens.shape[1])
        # Projected once per token, gathered per query: cheaper than projecting k copies.
        tok, gate = self.token_proj(tokens), self.token_gate(tokens)
        return _over_chunks(xyz, chunk_size, lambda x: self._chunk(x, tok, gate, anchors, k))

    def _chunk(self, xyz: Tensor, tok: Tensor, gate: Tensor, anchors: Tensor, k: int) -> Tensor:
        b, m, _ = xyz.shape
        with torch.no_grad():
            idx = torch.cdist(xyz, anchors).topk(k, dim=-1, largest=False).indices  # [B, M, k]
        flat = idx.reshape(b, m * k)
        near = gather_points(anchors, flat).view(b, m, k, 3)
        offset = xyz.unsqueeze(2) - near  # [B, M, k, 3]
        c = tok.shape[-1]
        h = (gather_points(tok, flat).view(b, m, k, c)
             + self.offset_proj(self.fourier(offset)) * (1.0 + gather_points(gate, flat).view(b, m, k, c)))
        h = h + self.mlp(self.norm(h))
        w = torch.softmax(self.score(h)[..., 0] - self.log_beta.exp() * offset.square().sum(-1), dim=-1)
        return self.norm_out(self.out(self.out_norm((w.unsqueeze(-1) * h).sum(dim=2))))


def make_query_decoder(config: ShapeVAEConfig) -> QueryDecoder | LocalQueryDecoder:
    """The query decoder ``config.query_decoder`` names, sized by ``config``."""
    c = config
    if c.query_decoder == "local":
        return LocalQueryDecoder(width=c.width, local_width=c.local_width, neighbors=c.local_neighbors,
                                 num_freqs=c.local_freqs, include_pi=c.include_pi)
    return QueryDecoder(width=c.width, num_heads=c.num_heads, num_freqs=c.num_freqs, include_pi=c.include_pi,
                        mlp_ratio=c.query_mlp_ratio)


def _over_chunks(xyz: Tensor, chunk_size: int, fn) -> Tensor:
    """``fn`` applied to consecutive slices of ``xyz`` [B, M, 3] along M, concatenated (M = 0 gives
    one empty slice, so the output still has its feature width)."""
    return torch.cat([fn(xyz[:, s:s + chunk_size]) for s in range(0, max(xyz.shape[1], 1), chunk_size)], dim=1)


def _check_tokens(xyz: Tensor, tokens: Tensor) -> None:
    _check_xyz(xyz, "xyz")
    if not isinstance(tokens, Tensor) or tokens.dim() != 3 or tokens.shape[0] != xyz.shape[0]:
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be [B={xyz.shape[0]}, L, W], got {shape}")


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
        self.occ_decoder = make_query_decoder(c)
        self.occ_out = nn.Linear(c.width, 1)

    @property
    def width(self) -> int:
        return self.config.width

    def encode(self, points: Tensor, normals: Tensor, *, sample_posterior: bool = False,
               generator: torch.Generator | None = None, num_latents: int | None = None) -> dict[str, Tensor]:
        """Encode surface samples (canonical frame).

        points, normals  [B, N, 3], N >= L
        num_latents      L, the number of latent tokens (None: ``config.num_latents``, the count
                         the model was trained with). Every layer is a set operation, so any L
                         works: more tokens reconstruct occupancy better (anchors closer to every
                         query) at a higher cost; the per-point features are best at the trained
                         count (docs/experiments/vae_tokens.md).
        Returns a dict:
            mean, logvar  [B, L, Cl]   posterior parameters (logvar clamped to [-30, 20])
            z             [B, L, Cl]   a posterior sample, or ``mean`` when not sampling
            query_index   int64 [B, L] indices of the farthest-point-sampled queries
            anchors       [B, L, 3]    their positions: where each token sits, for the
                                       "local" query decoder (in the encoder's frame)
            frame_yaw     [B]          radians: the encoder's frame is the input turned by
                                       ``-frame_yaw`` about +Z (zeros with ``yaw_frame="input"``)
        """
        _check_xyz(points, "points")
        _check_xyz(normals, "normals")
        if points.shape != normals.shape:
            raise ValueError(f"points {tuple(points.shape)} and normals {tuple(normals.shape)} differ in shape")
        n, k = points.shape[1], self.config.num_latents if num_latents is None else num_latents
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"num_latents must be an integer >= 1, got {num_latents!r}")
        if n < k:
            raise ValueError(f"need at least num_latents={k} points, got {n}")
        if self.config.yaw_frame == "principal":
            with torch.no_grad():
                frame_yaw = principal_yaw(points.detach())
            points, normals = rotate_z(points, -frame_yaw), rotate_z(normals, -frame_yaw)
        else:
            frame_yaw = points.new_zeros(points.shape[0])
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
        return {"mean": mean, "logvar": logvar, "z": z, "query_index": query_index,
                "anchors": gather_points(points, query_index), "frame_yaw": frame_yaw}

    def to_frame(self, xyz: Tensor, frame_yaw: Tensor | None) -> Tensor:
        """Query positions xyz [B, M, 3] in the input's frame -> the encoder's frame, given
        ``frame_yaw`` [B] from :meth:`encode`.

        Raises:
            ValueError: ``frame_yaw`` is None under ``yaw_frame="principal"`` (the queries would
                silently land in the wrong frame).
        """
        if self.config.yaw_frame == "input":
            return xyz  # frame_yaw is all zeros here: skip the no-op turn on every query
        if frame_yaw is None:
            raise ValueError(f"yaw_frame={self.config.yaw_frame!r}: pass the frame_yaw that encode() returned")
        return rotate_z(xyz, -frame_yaw.to(xyz.dtype))

    def decode(self, z: Tensor) -> Tensor:
        """Latents z [B, L, Cl] -> decoded tokens [B, L, W] that query heads attend to."""
        x = self.post_kl(z)
        for block in self.dec_self:
            x = block(x)
        return self.dec_norm(x)

    def query_occupancy(self, tokens: Tensor, xyz: Tensor, *, anchors: Tensor | None = None,
                        frame_yaw: Tensor | None = None,
                        chunk_size: int = DEFAULT_QUERY_CHUNK) -> dict[str, Tensor]:
        """tokens [B, L, W], xyz [B, M, 3] in the input's frame, anchors [B, L, 3] and frame_yaw [B]
        (from :meth:`encode`; anchors are needed by the "local" decoder, frame_yaw by
        ``yaw_frame="principal"``) -> {"logits": [B, M], "features": [B, M, W]}."""
        feats = self.occ_decoder(self.to_frame(xyz, frame_yaw), tokens, anchors=anchors, chunk_size=chunk_size)
        return {"logits": self.occ_out(feats)[..., 0], "features": feats}

    def forward(self, points: Tensor, normals: Tensor, queries: Tensor, *, sample_posterior: bool = True,
                generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Full autoencoding pass.

        points, normals [B, N, 3]; queries [B, M, 3]. Returns the keys of :meth:`encode` plus
        ``tokens`` [B, L, W], ``logits`` [B, M] and ``features`` [B, M, W].
        """
        out = self.encode(points, normals, sample_posterior=sample_posterior, generator=generator)
        out["tokens"] = self.decode(out["z"])
        out.update(self.query_occupancy(out["tokens"], queries, anchors=out["anchors"], frame_yaw=out["frame_yaw"]))
        return out
