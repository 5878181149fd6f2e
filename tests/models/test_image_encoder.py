"""models/image_encoder.py: shapes at any resolution, DINOv2 behind the same interface, PIL input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tango3d_core.config import ImageEncoderConfig
from tango3d_core.models.image_encoder import (
    ConvBackbone,
    DenseUpsampler,
    ViTBackbone,
    build_image_encoder,
    model_input_size,
    pil_to_tensor,
)


def _vit() -> ViTBackbone:
    return ViTBackbone(image_size=32, patch_size=8, width=16, depth=1, num_heads=2, mlp_ratio=2.0)


@pytest.mark.parametrize("hw", [(32, 32), (48, 16), (8, 40)])
def test_vit_any_multiple_of_patch(hw: tuple[int, int]) -> None:
    out = _vit()(torch.randn(2, 3, *hw))
    assert out["patch_map"].shape == (2, 16, hw[0] // 8, hw[1] // 8)
    assert out["global_token"].shape == (2, 16)


def test_vit_native_size_uses_pos_embed_unchanged() -> None:
    vit = _vit()
    assert torch.equal(vit._pos_embed(4, 4), vit.pos_embed)
    assert vit._pos_embed(2, 6).shape == (1, 1 + 12, 16)


def test_vit_rejects_non_multiple() -> None:
    with pytest.raises(ValueError, match="multiples of the patch size 8"):
        _vit()(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        _vit()(torch.randn(1, 1, 32, 32))


def _cnn_config(**kw) -> ImageEncoderConfig:
    base = dict(backbone="cnn", image_size=32, patch_size=8, width=16, conv_channels=(8, 8), conv_blocks=1,
                dense_width=8)
    return ImageEncoderConfig(**{**base, **kw})


@pytest.mark.parametrize("hw", [(32, 32), (48, 16), (8, 40)])
def test_cnn_any_multiple_of_patch(hw: tuple[int, int]) -> None:
    enc, resolved = build_image_encoder(_cnn_config())
    assert isinstance(enc.backbone, ConvBackbone) and enc.patch_size == 8 and resolved == _cnn_config()
    out = enc(torch.rand(2, 3, *hw))
    assert out["patch_map"].shape == (2, 16, hw[0] // 8, hw[1] // 8)
    assert out["global_token"].shape == (2, 16)
    assert out["dense_features"].shape == (2, 8, hw[0] // 4, hw[1] // 4)


def test_cnn_matches_a_naive_stage_by_stage_reference() -> None:
    torch.manual_seed(0)
    net = ConvBackbone(width=16, channels=(8,), blocks=1)
    x = torch.randn(1, 3, 16, 12)
    y = x
    for layer in net.body:  # conv s2, block, conv s2, block
        if isinstance(layer, torch.nn.Conv2d):
            y = torch.nn.functional.conv2d(y, layer.weight, layer.bias, stride=2, padding=1)
        else:
            y = y + layer.conv2(torch.nn.functional.gelu(layer.norm2(layer.conv1(torch.nn.functional.gelu(layer.norm1(y))))))
    ref = net.norm(y)
    out = net(x)
    assert out["patch_map"].shape == (1, 16, 4, 3)
    torch.testing.assert_close(out["patch_map"], ref)
    torch.testing.assert_close(out["global_token"], net.global_proj(ref.mean(dim=(2, 3))))


def test_cnn_is_translation_equivariant_in_the_interior() -> None:
    # shared weights: a shift by one patch stride shifts the patch map by one cell (away from
    # the zero-padded border); this is the property a ViT with position embeddings lacks
    torch.manual_seed(0)
    net = ConvBackbone(width=8, channels=(8,), blocks=0).eval()
    x = torch.randn(1, 3, 64, 64)
    shifted = torch.roll(x, shifts=4, dims=-1)
    a = net.body(x)
    b = net.body(shifted)
    torch.testing.assert_close(b[..., 4:12, 4:12], a[..., 4:12, 3:11], atol=1e-5, rtol=1e-5)


def test_cnn_gradients_reach_all_parameters() -> None:
    enc, _ = build_image_encoder(_cnn_config())
    out = enc(torch.rand(1, 3, 16, 24))
    (out["dense_features"].square().mean() + out["global_token"].square().mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


def test_cnn_config_validation() -> None:
    with pytest.raises(ValueError, match="set patch_size=16"):
        _cnn_config(conv_channels=(8, 8, 8))
    with pytest.raises(ValueError, match="multiples of 8"):
        _cnn_config(conv_channels=(12, 8))
    with pytest.raises(ValueError, match="multiple of 8"):
        _cnn_config(width=12)
    with pytest.raises(ValueError, match="conv_blocks"):
        _cnn_config(conv_blocks=-1)
    with pytest.raises(ValueError, match="'vit', 'cnn' or 'dinov2'"):
        _cnn_config(backbone="resnet")
    cfg = _cnn_config()
    assert ImageEncoderConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="multiples of the patch size 8"):
        build_image_encoder(cfg)[0](torch.rand(1, 3, 30, 32))


@pytest.mark.parametrize("stride", [2, 4])
@pytest.mark.parametrize("hw", [(32, 32), (40, 24), (56, 8)])
def test_upsampler_output_size(stride: int, hw: tuple[int, int]) -> None:
    up = DenseUpsampler(16, 8, out_stride=stride)
    h, w = hw
    out = up(torch.randn(1, 16, h // 8, w // 8), torch.randn(1, 3, h, w))
    assert out.shape == (1, 8, -(-h // stride), -(-w // stride))


def test_image_encoder_keys_and_shapes() -> None:
    cfg = ImageEncoderConfig(image_size=32, patch_size=8, width=16, depth=1, num_heads=2, dense_width=8)
    enc, resolved = build_image_encoder(cfg)
    assert resolved == cfg
    out = enc(torch.rand(2, 3, 48, 32))
    assert set(out) == {"patch_map", "global_token", "dense_features"}
    assert out["patch_map"].shape == (2, 16, 6, 4)
    assert out["dense_features"].shape == (2, 8, 12, 8)


def test_image_encoder_gradients_reach_all_parameters() -> None:
    cfg = ImageEncoderConfig(image_size=16, patch_size=8, width=16, depth=1, num_heads=2, dense_width=8)
    enc, _ = build_image_encoder(cfg)
    out = enc(torch.rand(1, 3, 16, 24))
    (out["dense_features"].square().mean() + out["global_token"].square().mean()).backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_model_input_size_keeps_aspect() -> None:
    assert model_input_size(224, 224, longest=224, multiple=16) == (224, 224)
    assert model_input_size(37, 91, longest=224, multiple=16) == (96, 224)
    assert model_input_size(640, 480, longest=224, multiple=16) == (224, 160)
    assert model_input_size(1, 1000, longest=224, multiple=14) == (14, 224)  # never below one patch
    with pytest.raises(ValueError):
        model_input_size(0, 10, longest=224, multiple=16)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "F", "CMYK"])
def test_pil_to_tensor_modes(mode: str) -> None:
    rgb = Image.fromarray((np.random.default_rng(0).random((9, 13, 3)) * 255).astype(np.uint8))
    img = rgb.convert(mode) if mode not in ("I;16", "I", "F") else Image.fromarray(
        (np.asarray(rgb.convert("L"), dtype=np.float32) * (257.0 if mode == "I;16" else 1.0)).astype(
            {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]))
    t = pil_to_tensor(img, (16, 8))
    assert t.shape == (3, 8, 16) and t.dtype == torch.float32
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0
    assert float(t.max()) > 0.3  # not collapsed to black by a bad range conversion


def test_pil_to_tensor_alpha_composited_over_white() -> None:
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., 0] = 255  # red, but fully transparent where alpha = 0
    arr[:2, :, 3] = 255
    t = pil_to_tensor(Image.fromarray(arr, mode="RGBA"), (4, 4))
    assert torch.allclose(t[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(t[:, 3, 0], torch.ones(3))


def test_pil_to_tensor_bad_input() -> None:
    with pytest.raises(TypeError, match="PIL"):
        pil_to_tensor(np.zeros((4, 4, 3), dtype=np.uint8), (4, 4))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1x1"):
        pil_to_tensor(Image.new("RGB", (0, 5)), (4, 4))


@pytest.fixture
def dinov2_dir(tmp_path):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=32, image_size=28, patch_size=14)
    torch.manual_seed(0)
    model = transformers.Dinov2Model(cfg)
    path = tmp_path / "dinov2-tiny"
    model.save_pretrained(path)
    return path, model


def test_dinov2_local_backbone_same_interface(dinov2_dir) -> None:
    path, reference = dinov2_dir
    cfg = ImageEncoderConfig(backbone="dinov2", hf_path=str(path), image_size=30, dense_width=8)
    enc, resolved = build_image_encoder(cfg)
    assert resolved.patch_size == 14 and resolved.width == 16 and resolved.image_size == 28
    assert resolved.hf_config is not None and resolved.hf_config["hidden_size"] == 16
    # Pretrained weights really came from the directory.
    own = enc.backbone.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in reference.state_dict().items())
    out = enc(torch.rand(2, 3, 42, 28))
    assert out["patch_map"].shape == (2, 16, 3, 2)
    assert out["global_token"].shape == (2, 16)
    assert out["dense_features"].shape == (2, 8, 11, 7)
    # Rebuilding from the resolved config alone (directory not needed) gives the architecture.
    enc2, resolved2 = build_image_encoder(
        ImageEncoderConfig.from_dict({**resolved.to_dict(), "hf_path": None}), load_pretrained=False
    )
    assert set(enc2.state_dict()) == set(enc.state_dict())


def test_dinov2_wrong_model_type(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    transformers.ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="dinov2"):
        build_image_encoder(ImageEncoderConfig(backbone="dinov2", hf_path=str(tmp_path)), load_pretrained=False)


def test_tokens_are_forwards_tokens_without_the_upsampler() -> None:
    enc, _ = build_image_encoder(_cnn_config())
    x = torch.rand(2, 3, 16, 24)
    full, tokens = enc(x), enc.tokens(x)
    assert set(tokens) == {"patch_map", "global_token"}
    for k in tokens:
        torch.testing.assert_close(tokens[k], full[k])
