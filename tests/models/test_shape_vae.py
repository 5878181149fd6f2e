"""models/shape_vae.py: output keys/shapes, FPS queries, posterior sampling, chunked queries."""

from __future__ import annotations

import pytest
import torch

from tango3d_core.config import ShapeVAEConfig
from tango3d_core.models.ops import farthest_point_sample
from tango3d_core.models.shape_vae import QueryDecoder, ShapeVAE

CFG = ShapeVAEConfig(num_latents=8, width=16, num_heads=2, latent_channels=4, num_freqs=4,
                     enc_self_layers=1, dec_self_layers=1, mlp_ratio=2.0, query_mlp_ratio=1.0, encoder_points=8)


def _cloud(b: int = 2, n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(b, n, 3, generator=g) - 0.5
    return pts, torch.nn.functional.normalize(pts, dim=-1)


def test_encode_keys_shapes_and_fps_queries() -> None:
    vae = ShapeVAE(CFG)
    pts, nrm = _cloud()
    out = vae.encode(pts, nrm)
    assert set(out) == {"mean", "logvar", "z", "query_index"}
    assert out["mean"].shape == out["logvar"].shape == out["z"].shape == (2, 8, 4)
    assert torch.equal(out["query_index"], farthest_point_sample(pts, 8))
    assert torch.equal(out["z"], out["mean"])


def test_posterior_sampling_is_reproducible_and_noisy() -> None:
    vae = ShapeVAE(CFG)
    pts, nrm = _cloud()
    a = vae.encode(pts, nrm, sample_posterior=True, generator=torch.Generator().manual_seed(1))["z"]
    b = vae.encode(pts, nrm, sample_posterior=True, generator=torch.Generator().manual_seed(1))["z"]
    c = vae.encode(pts, nrm, sample_posterior=True, generator=torch.Generator().manual_seed(2))["z"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_forward_decode_and_query_shapes() -> None:
    vae = ShapeVAE(CFG)
    pts, nrm = _cloud()
    out = vae(pts, nrm, torch.rand(2, 11, 3) - 0.5)
    assert out["tokens"].shape == (2, 8, 16)
    assert out["logits"].shape == (2, 11)
    assert out["features"].shape == (2, 11, 16)


def test_query_chunking_matches_single_pass_and_is_equivariant() -> None:
    vae = ShapeVAE(CFG)
    tokens = torch.randn(2, 8, 16)
    xyz = torch.rand(2, 23, 3) - 0.5
    full = vae.query_occupancy(tokens, xyz)["logits"]
    chunked = vae.query_occupancy(tokens, xyz, chunk_size=5)["logits"]
    assert torch.allclose(full, chunked, atol=1e-6)
    perm = torch.randperm(23)
    assert torch.allclose(vae.query_occupancy(tokens, xyz[:, perm])["logits"], full[:, perm], atol=1e-6)
    assert vae.query_occupancy(tokens, xyz[:, :0])["logits"].shape == (2, 0)


def test_all_parameters_receive_gradients() -> None:
    vae = ShapeVAE(CFG)
    pts, nrm = _cloud()
    out = vae(pts, nrm, torch.rand(2, 5, 3), sample_posterior=True)
    (out["logits"].sum() + out["logvar"].sum()).backward()
    assert [n for n, p in vae.named_parameters() if p.grad is None] == []


def test_bad_inputs() -> None:
    vae = ShapeVAE(CFG)
    pts, nrm = _cloud(n=5)
    with pytest.raises(ValueError, match="at least num_latents=8"):
        vae.encode(pts, nrm)
    pts, nrm = _cloud()
    with pytest.raises(ValueError, match="differ"):
        vae.encode(pts, nrm[:, :-1])
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        vae.encode(pts[0], nrm[0])
    with pytest.raises(ValueError, match="tokens"):
        QueryDecoder(width=16, num_heads=2, num_freqs=2, include_pi=True, mlp_ratio=1.0)(
            torch.rand(2, 3, 3), torch.rand(3, 4, 16))
