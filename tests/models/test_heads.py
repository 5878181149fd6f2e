"""models/heads.py: output keys and shapes, unit norms, the learnable clamped logit scale."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from tango3d_core.config import ShapeVAEConfig
from tango3d_core.models.heads import (
    DenseProjectionHead,
    ForegroundHead,
    GeometryHead,
    ImageGlobalHead,
    LogitScale,
    PointFeatureHead,
    ShapeGlobalHead,
    TextProjection,
)
from tango3d_core.models.shape_vae import QueryDecoder, ShapeVAE

SHAPE = ShapeVAEConfig(num_latents=8, width=16, num_heads=2, latent_channels=4, num_freqs=4,
                       query_mlp_ratio=1.0, encoder_points=8)


def _unit(x: torch.Tensor, dim: int) -> bool:
    return torch.allclose(x.norm(dim=dim), torch.ones(()), atol=1e-5)


def test_geometry_head() -> None:
    head = GeometryHead(8)
    out = head(torch.randn(2, 8, 5, 6))
    assert set(out) == {"depth", "normal", "xyz"}
    assert out["depth"].shape == (2, 5, 6)
    assert out["normal"].shape == out["xyz"].shape == (2, 5, 6, 3)
    assert _unit(out["normal"], -1)
    up = head(torch.randn(2, 8, 5, 6), out_size=(20, 24))
    assert up["depth"].shape == (2, 20, 24) and up["xyz"].shape == (2, 20, 24, 3)
    assert _unit(up["normal"], -1)


def test_foreground_head() -> None:
    head = ForegroundHead(8)
    out = head(torch.randn(2, 8, 5, 6, requires_grad=True))
    assert set(out) == {"foreground"} and out["foreground"].shape == (2, 5, 6)
    out["foreground"].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_dense_projection_head() -> None:
    out = DenseProjectionHead(8, 5, hidden=16)(torch.randn(2, 8, 4, 3))
    assert set(out) == {"dense"} and out["dense"].shape == (2, 5, 4, 3) and _unit(out["dense"], 1)


def test_global_heads() -> None:
    img = ImageGlobalHead(16, 12, hidden=8)(torch.randn(3, 16), torch.randn(3, 16, 2, 2))
    shp = ShapeGlobalHead(16, 12, hidden=8)(torch.randn(3, 7, 16))
    for out in (img, shp):
        assert set(out) == {"global"} and out["global"].shape == (3, 12) and _unit(out["global"], -1)


def test_point_feature_head_and_init_from() -> None:
    head = PointFeatureHead(SHAPE, 6, hidden=8)
    tokens, xyz = torch.randn(2, 8, 16), torch.rand(2, 9, 3) - 0.5
    out = head(tokens, xyz)
    assert set(out) == {"point_features"} and out["point_features"].shape == (2, 9, 6)
    assert _unit(out["point_features"], -1)
    dec = QueryDecoder(width=16, num_heads=2, num_freqs=4, include_pi=True, mlp_ratio=1.0)
    assert not torch.allclose(head.query(xyz, tokens), dec(xyz, tokens))
    head.init_from(dec)
    assert torch.allclose(head.query(xyz, tokens), dec(xyz, tokens))


def test_local_point_head_adds_a_learned_position_term() -> None:
    """The local decoder only sees offsets, so the head adds the absolute position; zero at init."""
    local = dataclasses.replace(SHAPE, query_decoder="local", local_neighbors=3, local_width=6, local_freqs=2)
    torch.manual_seed(0)
    head, vae = PointFeatureHead(local, 6, hidden=8), ShapeVAE(local)
    assert PointFeatureHead(SHAPE, 6, hidden=8).position is None
    tokens, xyz, anchors = torch.randn(2, 8, 16), torch.rand(2, 9, 3) - 0.5, torch.rand(2, 8, 3) - 0.5
    head.init_from(vae.occ_decoder)
    expected = torch.nn.functional.normalize(head.mlp(vae.occ_decoder(xyz, tokens, anchors=anchors)), dim=-1)
    torch.testing.assert_close(head(tokens, xyz, anchors=anchors)["point_features"], expected)
    head(tokens, xyz, anchors=anchors)["point_features"][..., 0].sum().backward()
    assert head.position is not None and head.position.weight.grad.abs().sum() > 0
    with torch.no_grad():
        head.position.bias.add_(1.0)
    assert not torch.allclose(head(tokens, xyz, anchors=anchors)["point_features"], expected)


def test_text_projection_identity_init() -> None:
    proj = TextProjection(6, 6)
    x = torch.nn.functional.normalize(torch.randn(4, 6), dim=-1)
    assert torch.allclose(proj(x)["global"], x, atol=1e-6)
    out = TextProjection(6, 3)(x)["global"]
    assert out.shape == (4, 3) and _unit(out, -1)


def test_logit_scale_learnable_and_clamped() -> None:
    scale = LogitScale(math.log(1 / 0.07))
    assert math.isclose(float(scale().detach()), 1 / 0.07, rel_tol=1e-5)
    scale().backward()
    assert scale.log_scale.grad is not None and float(scale.log_scale.grad) > 0
    with torch.no_grad():
        scale.log_scale.fill_(10.0)
    scale.log_scale.grad = None
    value = scale()
    assert math.isclose(float(value.detach()), 100.0, rel_tol=1e-5)
    value.backward()
    assert float(scale.log_scale.grad) == 0.0  # clamped: no push further out
    with torch.no_grad():
        scale.log_scale.fill_(-3.0)
    assert float(scale().detach()) == 1.0
    with pytest.raises(ValueError):
        LogitScale(6.0, max_log=math.log(100))
