"""2D branch: a backbone (our ViT or residual CNN, or DINOv2 from transformers) plus an upsampling head.

The encoder maps an RGB image in [0, 1] to
- a global token (the CLS token; the CNN's is a projection of its mean-pooled last map),
- patch tokens on the backbone grid (stride = patch size),
- dense features at stride 4 (or 2), obtained by upsampling the patch tokens and fusing them
  with a small convolutional stem that sees the full-resolution image (so edges stay sharp).

It is resolution-agnostic: any H, W that are multiples of the patch size work, with the
position embeddings interpolated. "Geometry-aware" comes from training (stage 0): the dense
features feed a ``GeometryHead`` supervised with per-pixel depth, normal and object xyz.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from ..config import ImageEncoderConfig
from .layers import SelfAttentionBlock

__all__ = [
    "ViTBackbone",
    "ConvBackbone",
    "Dinov2Backbone",
    "DenseUpsampler",
    "ImageEncoder",
    "build_image_encoder",
    "load_dinov2_config",
    "model_input_size",
    "pil_to_tensor",
]


class ViTBackbone(nn.Module):
    """Plain pre-norm ViT with a CLS token and interpolated position embeddings.

    ``image_size`` only sets the native position-embedding grid; other sizes are interpolated.
    """

    def __init__(self, *, image_size: int, patch_size: int, width: int, depth: int, num_heads: int,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.width = width
        self.grid = image_size // patch_size
        self.patch_embed = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, width))
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(width, num_heads, mlp_ratio=mlp_ratio) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def _pos_embed(self, h: int, w: int) -> Tensor:
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (h, w) != (self.grid, self.grid):
            g = self.grid
            patch_pos = patch_pos.reshape(1, g, g, self.width).permute(0, 3, 1, 2)
            patch_pos = F.interpolate(patch_pos, size=(h, w), mode="bicubic", align_corners=False)
            patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, h * w, self.width)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x [B, 3, H, W] normalised, H and W multiples of the patch size.

        Returns ``patch_map`` [B, C, H/p, W/p] and ``global_token`` [B, C] (both after the final
        LayerNorm).
        """
        _check_multiple(x, self.patch_size)
        tokens = self.patch_embed(x)  # [B, C, h, w]
        b, c, h, w = tokens.shape
        tokens = tokens.flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1) + self._pos_embed(h, w)
        for block in self.blocks:
            tokens = block(tokens)
        tokens = self.norm(tokens)
        patch_map = tokens[:, 1:].transpose(1, 2).reshape(b, c, h, w)
        return {"patch_map": patch_map, "global_token": tokens[:, 0]}


class _ResBlock(nn.Module):
    """Pre-norm residual block: x + conv(gelu(norm(conv(gelu(norm(x))))))."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(ch), ch)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(ch), ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.gelu(self.norm2(self.conv1(F.gelu(self.norm1(x))))))


class ConvBackbone(nn.Module):
    """Residual CNN behind the ``ViTBackbone`` interface.

    Stages of (stride-2 3x3 conv, ``blocks`` residual blocks) with ``channels`` and finally
    ``width`` channels, so the "patch" map has stride ``2 ** (len(channels) + 1)``. The global
    token is a linear map of the mean-pooled last map. Convolutions share weights across the
    image, which is what lets dense geometry be learnt from a few thousand renders; a ViT
    from scratch needs far more data (docs/experiments/conv_backbone.md).
    """

    def __init__(self, *, width: int, channels: tuple[int, ...], blocks: int) -> None:
        super().__init__()
        self.width = width
        self.patch_size = 2 ** (len(channels) + 1)
        layers: list[nn.Module] = []
        c_in = 3
        for c in (*channels, width):
            layers.append(nn.Conv2d(c_in, c, 3, stride=2, padding=1))
            layers.extend(_ResBlock(c) for _ in range(blocks))
            c_in = c
        self.body = nn.Sequential(*layers)
        self.norm = nn.GroupNorm(_groups(width), width)
        self.global_proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Same contract as :meth:`ViTBackbone.forward`."""
        _check_multiple(x, self.patch_size)
        patch_map = self.norm(self.body(x))
        return {"patch_map": patch_map, "global_token": self.global_proj(patch_map.mean(dim=(2, 3)))}


class Dinov2Backbone(nn.Module):
    """A transformers ``Dinov2Model`` behind the ``ViTBackbone`` interface."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.patch_size = int(model.config.patch_size)
        self.width = int(model.config.hidden_size)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Same contract as :meth:`ViTBackbone.forward`."""
        _check_multiple(x, self.patch_size)
        b, _, hh, ww = x.shape
        h, w = hh // self.patch_size, ww // self.patch_size
        hidden = self.model(pixel_values=x).last_hidden_state  # [B, 1 + h*w, C], layer-normed
        patch_map = hidden[:, 1:].transpose(1, 2).reshape(b, self.width, h, w)
        return {"patch_map": patch_map, "global_token": hidden[:, 0]}


def _check_multiple(x: Tensor, patch: int) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"image batch must be [B, 3, H, W], got {tuple(x.shape)}")
    if x.shape[-1] % patch or x.shape[-2] % patch:
        raise ValueError(f"image H, W = {tuple(x.shape[-2:])} must be multiples of the patch size {patch}")


class _FuseStage(nn.Module):
    """Upsample ``x`` to the skip's size, add the projected skip, refine with a residual 3x3 conv.

    One conv per stage (not two) keeps the whole upsampler near the cost of one ViT block.
    """

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.inp = nn.Conv2d(in_ch, out_ch, 1)
        self.skip = nn.Conv2d(skip_ch, out_ch, 1)
        self.norm = nn.GroupNorm(_groups(out_ch), out_ch)
        self.conv = nn.Conv2d(out_ch, out_ch, 3, padding=1)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        x = self.inp(x) + self.skip(skip)
        return x + self.conv(F.gelu(self.norm(x)))


def _groups(ch: int) -> int:
    for g in (8, 4, 2):
        if ch % g == 0:
            return g
    return 1


class DenseUpsampler(nn.Module):
    """Patch tokens + image -> dense features at stride ``out_stride`` (2 or 4).

    A stride-2 convolutional stem gives image features at strides 2, 4, 8; the token map is
    upsampled through strides 8 -> 4 (-> 2), fusing the stem feature of each stride. Works for
    any patch size (14 for DINOv2, 16 for ours) because every step resizes to the stem's size.
    """

    def __init__(self, token_dim: int, out_dim: int, *, out_stride: int = 4) -> None:
        super().__init__()
        if out_stride not in (2, 4):
            raise ValueError(f"out_stride must be 2 or 4, got {out_stride}")
        self.out_stride = out_stride
        c2, c4, c8 = max(out_dim // 4, 8), max(out_dim // 2, 8), out_dim
        self.stem = nn.ModuleList([
            nn.Conv2d(3, c2, 3, stride=2, padding=1),   # -> stride 2
            nn.Conv2d(c2, c4, 3, stride=2, padding=1),  # -> stride 4
            nn.Conv2d(c4, c8, 3, stride=2, padding=1),  # -> stride 8
        ])
        width8 = 2 * out_dim
        self.stage8 = _FuseStage(token_dim, c8, width8)
        self.stage4 = _FuseStage(width8, c4, out_dim)
        self.stage2 = _FuseStage(out_dim, c2, out_dim) if out_stride == 2 else None
        self.out_norm = nn.GroupNorm(_groups(out_dim), out_dim)

    def forward(self, patch_map: Tensor, image: Tensor) -> Tensor:
        """patch_map [B, C, h, w], image [B, 3, H, W] normalised -> [B, out_dim, ceil(H/s), ceil(W/s)]."""
        skips = []
        y = image
        for conv in self.stem:
            y = F.gelu(conv(y))
            skips.append(y)
        x = self.stage8(patch_map, skips[2])
        x = self.stage4(x, skips[1])
        if self.stage2 is not None:
            x = self.stage2(x, skips[0])
        return self.out_norm(x)


class ImageEncoder(nn.Module):
    """Backbone + dense upsampler. Input images are RGB in [0, 1]; normalisation is internal."""

    pixel_mean: Tensor
    pixel_std: Tensor

    def __init__(self, config: ImageEncoderConfig, backbone: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.patch_size = int(backbone.patch_size)
        self.width = int(backbone.width)
        self.upsampler = DenseUpsampler(self.width, config.dense_width, out_stride=config.dense_stride)
        self.register_buffer("pixel_mean", torch.tensor(config.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.pixel_std).view(1, 3, 1, 1), persistent=False)

    @property
    def dense_stride(self) -> int:
        return self.config.dense_stride

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        """image [B, 3, H, W] RGB in [0, 1]; H, W multiples of ``patch_size``.

        Returns a dict:
            patch_map       [B, C, H/p, W/p]   backbone patch tokens
            global_token    [B, C]             CLS token
            dense_features  [B, Cd, ceil(H/s), ceil(W/s)]  Cd = config.dense_width, s = dense_stride
        """
        x = (image - self.pixel_mean) / self.pixel_std
        out = self.backbone(x)
        out["dense_features"] = self.upsampler(out["patch_map"], x)
        return out

    def tokens(self, image: Tensor) -> dict[str, Tensor]:
        """``patch_map`` and ``global_token`` of :meth:`forward` without the dense upsampler
        (a third of the CNN's time), for what reads only the tokens: the global head."""
        return self.backbone((image - self.pixel_mean) / self.pixel_std)

    def input_size(self, width: int, height: int) -> tuple[int, int]:
        """Model input size (W', H') for an input image of ``width`` x ``height`` pixels."""
        return model_input_size(width, height, longest=self.config.image_size, multiple=self.patch_size)


def model_input_size(width: int, height: int, *, longest: int, multiple: int) -> tuple[int, int]:
    """Keep-aspect resize: the longest side becomes ``longest`` (rounded to ``multiple``), the
    other side is scaled alike and rounded to the nearest multiple (at least one)."""
    if width < 1 or height < 1:
        raise ValueError(f"image must be at least 1x1 pixels, got {width}x{height}")
    scale = longest / max(width, height)

    def snap(v: float) -> int:
        return max(multiple, int(round(v / multiple)) * multiple)

    return snap(width * scale), snap(height * scale)


def pil_to_tensor(image: Image.Image, size: tuple[int, int]) -> Tensor:
    """Any PIL image -> float32 [3, H', W'] RGB in [0, 1], resized (bicubic) to ``size = (W', H')``.

    Transparent images are composited over white (the alpha channel usually hides arbitrary
    colours); greyscale and palette images are expanded to RGB; 16-bit and float greyscale
    images are rescaled to [0, 1] first.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL.Image.Image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"image must be at least 1x1 pixels, got {image.width}x{image.height}")
    image = _to_rgb(image)
    if image.size != tuple(size):
        image = image.resize(tuple(size), Image.Resampling.BICUBIC)
    arr = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        arr = np.asarray(image, dtype=np.float64)
        peak = float(arr.max(initial=0.0))
        if mode.startswith("I;16"):
            full_scale = 65535.0
        elif mode == "F":
            full_scale = 1.0 if peak <= 1.0 else 255.0
        else:  # 32-bit integer: 8-bit data stored wide is common, otherwise assume 16-bit
            full_scale = 255.0 if peak <= 255.0 else 65535.0
        arr = np.clip(arr / full_scale, 0.0, 1.0)
        return Image.fromarray((arr * 255.0 + 0.5).astype(np.uint8)).convert("RGB")
    if mode == "RGB":
        return image
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_dinov2_config(path: str) -> dict[str, Any]:
    """The ``Dinov2Config`` of a local transformers directory, as a dict (no weights read)."""
    from transformers import AutoConfig  # lazy: transformers is an optional dependency

    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    if cfg.model_type != "dinov2":
        raise ValueError(f"{path} holds a {cfg.model_type!r} model, expected 'dinov2'")
    return cfg.to_dict()


def build_image_encoder(config: ImageEncoderConfig, *, load_pretrained: bool = True
                        ) -> tuple[ImageEncoder, ImageEncoderConfig]:
    """Build the 2D branch. Returns the module and the resolved config.

    For ``backbone="dinov2"``: with ``load_pretrained`` and ``hf_path`` set, weights come from
    ``AutoModel.from_pretrained(hf_path, local_files_only=True, use_safetensors=True)`` (pickled
    ``pytorch_model.bin`` weights are never read); otherwise the architecture
    from ``hf_config`` is built with random weights (a checkpoint then fills them in). The
    resolved config always carries ``hf_config`` and the backbone's patch size / width.
    """
    if config.backbone == "vit":
        backbone: nn.Module = ViTBackbone(
            image_size=config.image_size, patch_size=config.patch_size, width=config.width,
            depth=config.depth, num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
        )
        return ImageEncoder(config, backbone), config
    if config.backbone == "cnn":
        backbone = ConvBackbone(width=config.width, channels=tuple(config.conv_channels), blocks=config.conv_blocks)
        return ImageEncoder(config, backbone), config

    try:
        from transformers import AutoModel, Dinov2Config, Dinov2Model
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("backbone 'dinov2' needs transformers: pip install 'tango3d[hf]'") from e
    if load_pretrained and config.hf_path is not None:
        model = AutoModel.from_pretrained(config.hf_path, local_files_only=True, use_safetensors=True)
        if not isinstance(model, Dinov2Model):
            raise ValueError(f"{config.hf_path} did not load as a Dinov2Model (got {type(model).__name__})")
        hf_config = model.config.to_dict()
    else:
        hf_config = config.hf_config if config.hf_config is not None else load_dinov2_config(config.hf_path)  # type: ignore[arg-type]
        model = Dinov2Model(Dinov2Config.from_dict(hf_config))
    backbone = Dinov2Backbone(model)
    patch = backbone.patch_size
    # image_size must be a multiple of the backbone's patch; round to the nearest one.
    image_size = max(patch, int(round(config.image_size / patch)) * patch)
    resolved = _replace(config, hf_config=hf_config, patch_size=patch, width=backbone.width,
                        image_size=image_size, depth=int(model.config.num_hidden_layers),
                        num_heads=int(model.config.num_attention_heads))
    return ImageEncoder(resolved, backbone), resolved


def _replace(config: ImageEncoderConfig, **changes: Any) -> ImageEncoderConfig:
    # Round-trip hf_config through JSON types so the resolved config equals its reloaded self.
    if changes.get("hf_config") is not None:
        changes["hf_config"] = json.loads(json.dumps(changes["hf_config"]))
    return dataclasses.replace(config, **changes)
