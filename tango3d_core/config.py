"""Model configuration: frozen dataclasses, JSON in and out, named presets.

A configuration names an architecture only; where weights come from is the checkpoint's
business (see ``tango3d_core.models.checkpoint``). Every field has a fixed meaning and unit;
``from_dict`` refuses unknown keys so that a typo in a JSON file is an error, not a silently
ignored option.

Presets
-------
``tiny``  CPU-trainable and bundled: a residual CNN (stride 16, width 192; input 128 px when
          trained by the CLI), 256 latents of width 192 with the local query decoder, D=64.
``base``  GPU: ViT-384/16 at 224 px, 512 latents of width 384, D=128.

Both use G=384, the width of the frozen all-MiniLM-L6-v2 text space.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

__all__ = [
    "ImageEncoderConfig",
    "ShapeVAEConfig",
    "Tango3DConfig",
    "PRESETS",
    "TEXT_EMBED_DIM",
    "get_preset",
    "preset_names",
    "toy_config",
]

# all-MiniLM-L6-v2 sentence embedding width; the global space is aligned to it.
TEXT_EMBED_DIM = 384

BackboneKind = Literal["vit", "cnn", "dinov2"]


class _JsonConfig:
    """Mixin: strict dict/JSON conversion for (nested) frozen dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of JSON types (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, _JsonConfig):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, dict):
                value = json.loads(json.dumps(value))
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        """Inverse of :meth:`to_dict`. Unknown keys raise ``ValueError``; missing keys take defaults."""
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict expects a mapping, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(
                f"unknown key(s) for {cls.__name__}: {unknown}; allowed keys are {sorted(fields)}"
            )
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            hint = hints[name]
            if isinstance(hint, type) and issubclass(hint, _JsonConfig):
                value = hint.from_dict(value)
            elif _is_tuple_hint(hint) and isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))


def _is_tuple_hint(hint: Any) -> bool:
    if typing.get_origin(hint) is tuple:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(typing.get_origin(a) is tuple for a in typing.get_args(hint))
    return False


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


@dataclass(frozen=True)
class ImageEncoderConfig(_JsonConfig):
    """2D branch: backbone (ViT or DINOv2) plus an upsampling head giving dense features.

    backbone      "vit": our own ViT (fields width/depth/num_heads/mlp_ratio/patch_size apply).
                  "cnn": a residual conv net (fields width/conv_channels/conv_blocks apply):
                  one stride-2 stage per entry of ``conv_channels`` plus a last one of
                  ``width`` channels, so ``patch_size`` must be 2 ** (len(conv_channels) + 1).
                  On the small procedural training set it learns the geometry heads much
                  faster than a ViT from scratch (docs/experiments/conv_backbone.md).
                  "dinov2": a transformers ``Dinov2Model``; its architecture comes from
                  ``hf_config`` (or the config.json under ``hf_path``) and the ViT fields
                  width/depth/num_heads/mlp_ratio/patch_size are ignored.
    image_size    longest side in pixels that an input image is resized to for inference;
                  the other side keeps the aspect ratio (rounded to a multiple of the patch).
    dense_stride  output stride of the dense map (4 -> H/4 x W/4); 2 or 4.
    dense_width   channels of the upsampling head output.
    hf_path       DINOv2 only: local directory read with ``from_pretrained(local_files_only=True)``
                  when the model is built fresh (not when loading a Tango3D checkpoint).
    hf_config     DINOv2 only: ``Dinov2Config.to_dict()``; filled in at build time so that a
                  checkpoint can be rebuilt without the directory.
    conv_channels   CNN only: channels of the stride-2, 4, 8, ... stages before the last.
    conv_blocks     CNN only: residual blocks per stage.
    pixel_mean/std  RGB normalisation applied to [0, 1] images (ImageNet statistics).
    """

    backbone: BackboneKind = "vit"
    image_size: int = 224
    patch_size: int = 16
    width: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 4.0
    dense_stride: int = 4
    dense_width: int = 96
    hf_path: str | None = None
    hf_config: dict[str, Any] | None = None
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    conv_channels: tuple[int, ...] = (16, 32, 64)
    conv_blocks: int = 2

    def __post_init__(self) -> None:
        _check(self.backbone in ("vit", "cnn", "dinov2"),
               f"backbone must be 'vit', 'cnn' or 'dinov2', got {self.backbone!r}")
        _check(self.image_size >= 16, f"image_size must be >= 16, got {self.image_size}")
        _check(self.dense_stride in (2, 4), f"dense_stride must be 2 or 4, got {self.dense_stride}")
        _check(self.dense_width > 0, "dense_width must be positive")
        _check(len(self.pixel_mean) == 3 and len(self.pixel_std) == 3, "pixel_mean/std need 3 values")
        if self.backbone == "vit":
            _check(self.patch_size >= 2, f"patch_size must be >= 2, got {self.patch_size}")
            _check(self.width % self.num_heads == 0,
                   f"width {self.width} must be divisible by num_heads {self.num_heads}")
            _check(self.depth >= 1, "depth must be >= 1")
        elif self.backbone == "cnn":
            _check(len(self.conv_channels) >= 1 and all(int(c) >= 8 and int(c) % 8 == 0 for c in self.conv_channels),
                   f"conv_channels must be >= 1 multiples of 8 (GroupNorm groups), got {self.conv_channels}")
            _check(self.width >= 8 and self.width % 8 == 0, f"width must be a multiple of 8 for 'cnn', got {self.width}")
            _check(self.conv_blocks >= 0, f"conv_blocks must be >= 0, got {self.conv_blocks}")
            stride = 2 ** (len(self.conv_channels) + 1)
            _check(self.patch_size == stride,
                   f"a 'cnn' with {len(self.conv_channels)} conv_channels has stride {stride}; "
                   f"set patch_size={stride} (got {self.patch_size})")
        else:
            _check(self.hf_path is not None or self.hf_config is not None,
                   "backbone 'dinov2' needs hf_path (a local directory) or hf_config")
        if self.backbone != "dinov2":  # a DINOv2's patch comes from its own config
            _check(self.image_size % self.patch_size == 0,
                   f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")


@dataclass(frozen=True)
class ShapeVAEConfig(_JsonConfig):
    """3D branch: 3DShape2VecSet / Hunyuan3D ShapeVAE style latent-set VAE.

    num_latents      latent tokens, chosen by farthest-point sampling of the input points.
    width            token width of the encoder/decoder transformers.
    latent_channels  channels of the KL bottleneck per token.
    num_freqs        Fourier frequencies 2^0 .. 2^(num_freqs-1) (times pi if include_pi).
    enc_self_layers  self-attention blocks after the single cross-attention block.
    dec_self_layers  self-attention blocks of the decoder over the latents.
    query_mlp_ratio  MLP ratio of the query (occupancy / feature) cross-attention blocks; kept
                     small because these run once per query point.
    encoder_points   surface points the encoder reads when encoding a mesh for inference
                     (features are still returned for every requested point); >= num_latents.
    query_decoder    how a query xyz reads the decoded tokens (occupancy and point features):
                     "attention" cross-attends to all L tokens from the absolute Fourier position
                     (3DShape2VecSet); "local" reads the ``local_neighbors`` tokens whose anchors
                     (the farthest-point-sampled input points) are nearest, each through the
                     Fourier-embedded offset from its anchor. "local" breaks the occupancy plateau
                     within a few hundred CPU steps where "attention" needs thousands
                     (docs/experiments/local_decoder.md). Configs without the key are "attention".
    local_neighbors  k of the "local" decoder (clamped to num_latents).
    local_width      channel width of the "local" decoder's per-neighbour features.
    local_freqs      Fourier frequencies of the "local" decoder's offset embedding.
    yaw_frame        the horizontal frame the encoder and every query see: "input" takes the
                     input's own x and y; "principal" first turns the cloud about +Z into its
                     principal-axis frame (``models.ops.principal_yaw``), and every query xyz
                     with it, so features no longer depend on which way the input faces.
                     Configs without the key are "input".
    """

    num_latents: int = 256
    width: int = 192
    num_heads: int = 3
    latent_channels: int = 32
    num_freqs: int = 8
    include_pi: bool = True
    enc_self_layers: int = 1
    dec_self_layers: int = 3
    mlp_ratio: float = 4.0
    query_mlp_ratio: float = 2.0
    encoder_points: int = 4096
    query_decoder: Literal["attention", "local"] = "attention"
    local_neighbors: int = 4
    local_width: int = 64
    local_freqs: int = 6
    yaw_frame: Literal["input", "principal"] = "input"

    def __post_init__(self) -> None:
        _check(self.query_decoder in ("attention", "local"),
               f"query_decoder must be 'attention' or 'local', got {self.query_decoder!r}")
        _check(self.yaw_frame in ("input", "principal"),
               f"yaw_frame must be 'input' or 'principal', got {self.yaw_frame!r}")
        _check(self.local_neighbors >= 1, "local_neighbors must be >= 1")
        _check(self.local_width >= 1, "local_width must be >= 1")
        _check(self.local_freqs >= 0, "local_freqs must be >= 0")
        _check(self.num_latents >= 1, "num_latents must be >= 1")
        _check(self.width % self.num_heads == 0,
               f"width {self.width} must be divisible by num_heads {self.num_heads}")
        _check(self.latent_channels >= 1, "latent_channels must be >= 1")
        _check(self.num_freqs >= 0, "num_freqs must be >= 0")
        _check(self.enc_self_layers >= 0 and self.dec_self_layers >= 0, "layer counts must be >= 0")
        _check(self.query_mlp_ratio >= 0, "query_mlp_ratio must be >= 0")
        _check(self.encoder_points >= self.num_latents,
               f"encoder_points ({self.encoder_points}) must be >= num_latents ({self.num_latents})")


@dataclass(frozen=True)
class Tango3DConfig(_JsonConfig):
    """Whole model: both branches, the shared dense space (D) and the global space (G).

    dense_dim        D, width of the shared pixel/point feature space (L2-normalised).
    global_dim       G, width of the global space; must equal the text width (384) unless a
                     text projection is used.
    head_hidden      hidden width of the projection heads.
    text_projection  "none": the frozen MiniLM embedding is the text embedding.
                     "linear": a trainable G x 384 projection on top (identity-initialised).
    logit_scale_init / logit_scale_max  log of the initial / largest contrastive logit scale
                     (1/temperature); the scale is clamped in [1, exp(logit_scale_max)].
    foreground_head  a per-pixel object / background head on the 2D dense features, trained
                     last (stage 4, encoders frozen); pose-verified matching (``models.pose``)
                     finds the object with it. Configs without the key have none.
    name             preset name or "custom"; informational.
    """

    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    shape: ShapeVAEConfig = field(default_factory=ShapeVAEConfig)
    dense_dim: int = 64
    global_dim: int = TEXT_EMBED_DIM
    head_hidden: int = 256
    text_projection: Literal["none", "linear"] = "none"
    logit_scale_init: float = 2.6592600369644165  # log(1 / 0.07), as in CLIP
    logit_scale_max: float = 4.605170185988092  # log(100)
    foreground_head: bool = False
    name: str = "custom"

    def __post_init__(self) -> None:
        _check(isinstance(self.image, ImageEncoderConfig), "image must be an ImageEncoderConfig")
        _check(isinstance(self.shape, ShapeVAEConfig), "shape must be a ShapeVAEConfig")
        _check(self.dense_dim >= 2, "dense_dim must be >= 2")
        _check(self.head_hidden >= 1, "head_hidden must be >= 1")
        _check(self.text_projection in ("none", "linear"),
               f"text_projection must be 'none' or 'linear', got {self.text_projection!r}")
        if self.text_projection == "none":
            _check(self.global_dim == TEXT_EMBED_DIM,
                   f"global_dim must be {TEXT_EMBED_DIM} (the text width) when text_projection='none'")
        _check(0.0 <= self.logit_scale_init <= self.logit_scale_max,
               "need 0 <= logit_scale_init <= logit_scale_max")


PRESETS: dict[str, Tango3DConfig] = {
    "tiny": Tango3DConfig(
        image=ImageEncoderConfig(
            backbone="cnn", image_size=224, patch_size=16, width=192, conv_channels=(16, 32, 64), conv_blocks=2,
            dense_width=64,
        ),
        shape=ShapeVAEConfig(
            num_latents=256, width=192, num_heads=3, latent_channels=32,
            enc_self_layers=1, dec_self_layers=3, query_mlp_ratio=1.0, encoder_points=4096, query_decoder="local",
            yaw_frame="principal",
        ),
        dense_dim=64,
        head_hidden=128,
        foreground_head=True,
        name="tiny",
    ),
    "base": Tango3DConfig(
        image=ImageEncoderConfig(
            image_size=224, patch_size=16, width=384, depth=12, num_heads=6, dense_width=128
        ),
        shape=ShapeVAEConfig(
            num_latents=512, width=384, num_heads=6, latent_channels=64,
            enc_self_layers=2, dec_self_layers=6, query_mlp_ratio=2.0, encoder_points=8192, query_decoder="local",
            yaw_frame="principal",
        ),
        dense_dim=128,
        head_hidden=512,
        foreground_head=True,
        name="base",
    ),
}


def toy_config(size: Literal["micro", "small"] = "micro", *, name: str | None = None, **overrides: Any
               ) -> Tango3DConfig:
    """A model with every component of the real one, small enough that an encode takes
    milliseconds: for tests (yours too, e.g. of a new feature provider) and examples. Its
    weights are random; it learns nothing useful.

    ``micro``: 32 px images, 8 latents, D = 8, G = 12 (a few thousand parameters).
    ``small``: 64 px images, 16 latents, D = 16, G = 24 (tens of milliseconds per encode).
    ``overrides`` replace top-level :class:`Tango3DConfig` fields.
    """
    # (image side, patch, width, dense width, latents, encoder points, D, G, head hidden)
    sizes = {"micro": (32, 8, 16, 8, 8, 64, 8, 12, 16), "small": (64, 16, 32, 16, 16, 256, 16, 24, 32)}
    if size not in sizes:
        raise ValueError(f"size must be 'micro' or 'small', got {size!r}")
    side, patch, width, dense_width, latents, enc_points, d, g, hidden = sizes[size]
    image = ImageEncoderConfig(image_size=side, patch_size=patch, width=width, depth=1, num_heads=2,
                               dense_width=dense_width)
    shape = ShapeVAEConfig(num_latents=latents, width=width, num_heads=2, latent_channels=4, num_freqs=4,
                           enc_self_layers=1, dec_self_layers=1, mlp_ratio=2.0, query_mlp_ratio=1.0,
                           encoder_points=enc_points)
    dims = dict(dense_dim=d, global_dim=g, head_hidden=hidden)
    base: dict[str, Any] = dict(image=image, shape=shape, text_projection="linear", name=name or size, **dims)
    base.update(overrides)
    return Tango3DConfig(**base)


def preset_names() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> Tango3DConfig:
    """The named preset; ``ValueError`` listing the valid names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {preset_names()}") from None
