"""tango3d_core.config: JSON round trip, strict keys, validation, presets."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tango3d_core.config import (
    PRESETS,
    ImageEncoderConfig,
    ShapeVAEConfig,
    Tango3DConfig,
    get_preset,
    preset_names,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_json_round_trip(name: str) -> None:
    cfg = get_preset(name)
    text = cfg.to_json()
    back = Tango3DConfig.from_json(text)
    assert back == cfg
    assert isinstance(back.image, ImageEncoderConfig) and isinstance(back.shape, ShapeVAEConfig)
    assert isinstance(back.image.pixel_mean, tuple)  # lists from JSON are restored to tuples
    assert json.loads(text)["name"] == name


def test_custom_round_trip_with_hf_config() -> None:
    cfg = Tango3DConfig(
        image=ImageEncoderConfig(backbone="dinov2", hf_config={"hidden_size": 32, "patch_size": 14, "nested": {"a": [1, 2]}}),
        shape=ShapeVAEConfig(num_latents=8, width=16, num_heads=2, encoder_points=8),
        global_dim=32,
        text_projection="linear",
    )
    assert Tango3DConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_unknown_keys_raise_top_level_and_nested() -> None:
    d = get_preset("tiny").to_dict()
    with pytest.raises(ValueError, match="unknown key.*dense_dims"):
        Tango3DConfig.from_dict({**d, "dense_dims": 3})
    d2 = get_preset("tiny").to_dict()
    d2["shape"]["num_latent"] = 3
    with pytest.raises(ValueError, match="ShapeVAEConfig.*num_latent"):
        Tango3DConfig.from_dict(d2)


def test_missing_keys_take_defaults() -> None:
    assert Tango3DConfig.from_dict({}) == Tango3DConfig()
    assert Tango3DConfig.from_dict({"dense_dim": 32}).dense_dim == 32


def test_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(TypeError):
        Tango3DConfig.from_dict([("dense_dim", 3)])  # type: ignore[arg-type]


def test_frozen() -> None:
    cfg = get_preset("tiny")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.dense_dim = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "make",
    [
        lambda: ImageEncoderConfig(image_size=100, patch_size=16),
        lambda: ImageEncoderConfig(width=100, num_heads=3),
        lambda: ImageEncoderConfig(backbone="resnet"),  # type: ignore[arg-type]
        lambda: ImageEncoderConfig(dense_stride=8),
        lambda: ImageEncoderConfig(backbone="dinov2"),  # neither hf_path nor hf_config
        lambda: ShapeVAEConfig(width=100, num_heads=3),
        lambda: ShapeVAEConfig(num_latents=512, encoder_points=256),
        lambda: Tango3DConfig(global_dim=128),  # must be 384 without a text projection
        lambda: Tango3DConfig(text_projection="mlp"),  # type: ignore[arg-type]
        lambda: Tango3DConfig(logit_scale_init=5.0, logit_scale_max=4.0),
    ],
)
def test_invalid_configs_raise(make) -> None:
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("backbone", ["vit", "cnn"])
def test_image_size_must_be_a_multiple_of_the_patch(backbone) -> None:
    with pytest.raises(ValueError, match="multiple of patch_size 16"):
        ImageEncoderConfig(backbone=backbone, image_size=100, patch_size=16)
    assert ImageEncoderConfig(backbone=backbone, image_size=96, patch_size=16).image_size == 96


def test_dinov2_ignores_our_patch_size() -> None:
    # its patch comes from the transformers config, so our field cannot veto the image size
    cfg = ImageEncoderConfig(backbone="dinov2", hf_config={"patch_size": 14}, image_size=100, patch_size=16)
    assert cfg.image_size == 100


def test_global_dim_free_with_projection() -> None:
    assert Tango3DConfig(global_dim=128, text_projection="linear").global_dim == 128


def test_get_preset_unknown() -> None:
    with pytest.raises(ValueError, match="tiny"):
        get_preset("huge")
    assert preset_names() == ["base", "tiny"]


def test_preset_sizes_match_the_brief() -> None:
    tiny = get_preset("tiny")
    assert tiny.image.patch_size == 16 and tiny.image.image_size == 224 and tiny.image.width == 192
    assert tiny.shape.num_latents == 256 and tiny.global_dim == 384
    assert get_preset("base").dense_dim > tiny.dense_dim


def test_toy_configs_are_small_real_models():
    import torch

    from tango3d_core.config import toy_config
    from tango3d_core.models import build_model

    micro, small = toy_config(), toy_config("small", name="mine", dense_dim=12)
    assert micro.name == "micro" and micro.dense_dim == 8 and micro.image.image_size == 32
    assert small.name == "mine" and small.dense_dim == 12 and small.shape.num_latents == 16
    torch.manual_seed(0)
    model = build_model(micro).eval()
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_params < 200_000, n_params
    with pytest.raises(ValueError, match="micro' or 'small"):
        toy_config("base")  # type: ignore[arg-type]
