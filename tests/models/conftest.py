"""Shared tiny configurations so model tests run in milliseconds."""

from __future__ import annotations

import pytest

from tango3d_core.config import ImageEncoderConfig, ShapeVAEConfig, Tango3DConfig


def micro_config(**overrides) -> Tango3DConfig:
    """A few-thousand-parameter model with every component of the real one."""
    base = dict(
        image=ImageEncoderConfig(image_size=32, patch_size=8, width=16, depth=1, num_heads=2, dense_width=8),
        shape=ShapeVAEConfig(num_latents=8, width=16, num_heads=2, latent_channels=4, num_freqs=4,
                             enc_self_layers=1, dec_self_layers=1, mlp_ratio=2.0, query_mlp_ratio=1.0,
                             encoder_points=64),
        dense_dim=8,
        global_dim=12,
        head_hidden=16,
        text_projection="linear",
        name="micro",
    )
    base.update(overrides)
    return Tango3DConfig(**base)


@pytest.fixture
def micro() -> Tango3DConfig:
    return micro_config()

