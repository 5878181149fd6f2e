"""Tango3D: the composition of both branches, the shared-space heads and the public API.

Module names (parameter prefixes, used by the training stages to freeze / train parts)::

    image_encoder.backbone     ViT or DINOv2 trunk
    image_encoder.upsampler    dense upsampling head (stride 16 -> 4)
    geometry_head              depth / normal / xyz (stage 0)
    dense_head                 2D dense features -> shared D space
    image_global_head          CLS + mean patch -> global G space
    shape_vae                  3D VAE (encoder, KL, decoder, occupancy query decoder)
    point_head                 3D per-point query decoder -> shared D space
    shape_global_head          pooled latents -> global G space
    text_projection            optional trainable map on the frozen text embedding
    logit_scale_dense, logit_scale_global   learnable, clamped contrastive scales

Training entry points take a collated batch in the layout of ``tango3d_core.data.dataset (its "Example format")``:
``forward_geometry``, ``forward_vae``, ``forward_align`` return predictions plus named loss
terms; ``forward(batch, losses={...})`` computes any combination with shared encoder passes and
returns scalars only (``total`` first), which is what an optimisation loop (and DDP) wants.

Inference (``encode_image``, ``encode_shape``, ``encode_text``, ``match_pixel``) follows
CONTRACT.md: every embedding is L2-normalised float32, on the CPU unless ``device`` is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import trimesh
from PIL import Image
from torch import Tensor, nn

from ..config import TEXT_EMBED_DIM, Tango3DConfig, get_preset
from ..losses.dense import DENSE_SIGMA, DenseTarget, pixel_point_infonce
from ..losses.geometry import NormalFrame, XyzMode, geometry_loss
from ..losses.global_ import global_alignment_loss
from ..losses.vae import vae_loss
from .features import ImageFeatures, ImageGeometry, ShapeFeatures, as_coords
from .heads import (
    DenseProjectionHead,
    ForegroundHead,
    GeometryHead,
    ImageGlobalHead,
    LogitScale,
    PointFeatureHead,
    ShapeGlobalHead,
    TextProjection,
)
from .image_encoder import build_image_encoder, pil_to_tensor
from .ops import rotate_z, sample_map_at_pixels, sample_masked_pixels
from .pose import alpha_foreground, estimate_foreground
from .shape_vae import ShapeVAE
from .text import FrozenTextEncoder, check_texts
from .volume import grid_box, grid_logits

__all__ = ["Tango3D", "build_model", "ImageFeatures", "ShapeFeatures", "LOSS_NAMES"]

LossName = Literal["geometry", "vae", "dense", "global", "foreground"]
LOSS_NAMES: tuple[str, ...] = ("geometry", "vae", "dense", "global", "foreground")
DeviceLike = str | torch.device | None
# Pixels whose foreground logit exceeds this count as the object in ``ImageGeometry.foreground``:
# below 0, because the pose search gains more from covering the object (recall 0.95) than it
# loses to background pixels (precision 0.73; validation split, docs/experiments/pose_matching.md).
FOREGROUND_LOGIT = -1.0


class Tango3D(nn.Module):
    """Both encoders, their heads, and the shared dense (D) and global (G) spaces.

    ``load_pretrained`` only matters for a DINOv2 backbone with ``hf_path``: True reads its
    weights from that directory; False builds the architecture with random weights (used when
    a Tango3D checkpoint is about to overwrite them).
    """

    def __init__(self, config: Tango3DConfig, *, load_pretrained: bool = True) -> None:
        super().__init__()
        image_encoder, image_cfg = build_image_encoder(config.image, load_pretrained=load_pretrained)
        self.config: Tango3DConfig = dataclasses.replace(config, image=image_cfg)
        c = self.config
        cd = c.image.dense_width
        self.image_encoder = image_encoder
        self.geometry_head = GeometryHead(cd)
        self.dense_head = DenseProjectionHead(cd, c.dense_dim, hidden=c.head_hidden)
        self.image_global_head = ImageGlobalHead(image_encoder.width, c.global_dim, hidden=c.head_hidden)
        self.shape_vae = ShapeVAE(c.shape)
        self.point_head = PointFeatureHead(c.shape, c.dense_dim, hidden=c.head_hidden)
        self.shape_global_head = ShapeGlobalHead(c.shape.width, c.global_dim, hidden=c.head_hidden)
        self.text_projection = (
            TextProjection(TEXT_EMBED_DIM, c.global_dim) if c.text_projection == "linear" else None
        )
        self.logit_scale_dense = LogitScale(c.logit_scale_init, max_log=c.logit_scale_max)
        self.logit_scale_global = LogitScale(c.logit_scale_init, max_log=c.logit_scale_max)
        # Built last, so adding it leaves every other module's random initialisation unchanged.
        self.foreground_head = ForegroundHead(cd) if c.foreground_head else None
        self.init_point_head_from_vae()
        self._text_encoder: FrozenTextEncoder | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dense_dim(self) -> int:
        return self.config.dense_dim

    @property
    def global_dim(self) -> int:
        return self.config.global_dim

    def num_parameters(self, prefix: str = "") -> int:
        """Number of parameters whose name starts with ``prefix`` (all by default)."""
        return sum(p.numel() for n, p in self.named_parameters() if n.startswith(prefix))

    def init_point_head_from_vae(self) -> None:
        """Copy the VAE's occupancy query decoder into the point head (warm start after stage 0)."""
        self.point_head.init_from(self.shape_vae.occ_decoder)

    @property
    def text_encoder(self) -> FrozenTextEncoder:
        """The frozen MiniLM wrapper; created on first use, the model itself loads on first encode."""
        if self._text_encoder is None:
            self._text_encoder = FrozenTextEncoder(device=str(self.device))
        return self._text_encoder

    def set_text_encoder(self, encoder: Any) -> None:
        """Replace the text encoder (anything with ``encode(list[str]) -> [B, 384]``), e.g. in tests."""
        self._text_encoder = encoder

    # --------------------------------------------------------- batched passes
    def image_forward(self, image: Tensor, *, geometry: bool = False) -> dict[str, Tensor]:
        """image [B, 3, H, W] RGB in [0, 1], H and W multiples of the patch size.

        Returns the :class:`ImageEncoder` outputs (``patch_map``, ``global_token``,
        ``dense_features``) plus
            dense   [B, D, ceil(H/s), ceil(W/s)]  unit length along D
            global  [B, G]                        unit length
        and with ``geometry``: ``depth`` [B, H, W], ``normal`` [B, H, W, 3], ``xyz`` [B, H, W, 3]
        (upsampled to the input size).
        """
        out = self.image_encoder(image)
        out.update(self.dense_head(out["dense_features"]))
        out.update(self.image_global_head(out["global_token"], out["patch_map"]))
        if geometry:
            out.update(self.geometry_head(out["dense_features"], out_size=tuple(image.shape[-2:])))
        return out

    def shape_forward(self, points: Tensor, normals: Tensor, *, sample_posterior: bool = False,
                      generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """points, normals [B, N, 3] in the canonical frame (N >= num_latents).

        Returns the :meth:`ShapeVAE.encode` outputs (``mean``, ``logvar``, ``z``, ``query_index``,
        ``anchors``, ``frame_yaw``) plus ``tokens`` [B, L, W] (decoded from ``z``) and ``global`` [B, G] (unit length).
        """
        out = self.shape_vae.encode(points, normals, sample_posterior=sample_posterior, generator=generator)
        out["tokens"] = self.shape_vae.decode(out["z"])
        out.update(self.shape_global_head(out["tokens"]))
        return out

    def point_features(self, tokens: Tensor, xyz: Tensor, *, anchors: Tensor | None = None,
                       frame_yaw: Tensor | None = None) -> Tensor:
        """tokens [B, L, W], anchors [B, L, 3] and frame_yaw [B] from :meth:`shape_forward`, xyz
        [B, M, 3] canonical, in the input's frame -> [B, M, D] unit length (``anchors`` may be
        omitted with the "attention" query decoder, ``frame_yaw`` with ``yaw_frame="input"``)."""
        return self.point_head(tokens, self.shape_vae.to_frame(xyz, frame_yaw), anchors=anchors)["point_features"]

    def text_forward(self, texts: Sequence[str] | None = None, *, embeddings: Tensor | None = None) -> Tensor:
        """Global text embeddings [B, G] (unit length) from strings or precomputed MiniLM [B, 384]."""
        if embeddings is None:
            if texts is None:
                raise ValueError("text_forward needs texts or embeddings")
            embeddings = self.text_encoder.encode(check_texts(texts))
        emb = embeddings.to(self.device, torch.float32)
        if self.text_projection is not None:
            return self.text_projection(emb)["global"]
        return F.normalize(emb, dim=-1, eps=1e-6)

    # -------------------------------------------------------------- training
    def forward_geometry(self, batch: Mapping[str, Any], *, depth_mode: Literal["shift_invariant", "absolute"]
                         = "shift_invariant", xyz_mode: XyzMode = "canonical",
                         normal_frame: NormalFrame = "canonical",
                         weights: Mapping[str, float] | None = None) -> dict[str, Tensor]:
        """Stage 0, 2D: geometric heads on the dense features.

        Uses batch ``image``, ``mask``, ``depth``, ``xyz`` and ``normal`` (object frame) or, with
        ``normal_frame="camera"``, ``normal_camera``. Returns predictions ``depth`` [B, H, W],
        ``normal`` / ``xyz`` [B, H, W, 3] and scalar terms ``loss``, ``loss_depth``,
        ``loss_normal``, ``loss_xyz`` (see :func:`geometry_loss`, also for ``xyz_mode``).
        """
        img = self.image_forward(_get(batch, "image", self.device), geometry=True)
        return self._geometry_terms(batch, img, depth_mode=depth_mode, xyz_mode=xyz_mode, normal_frame=normal_frame,
                                    weights=weights)

    def forward_vae(self, batch: Mapping[str, Any], *, kl_weight: float = 1e-3, sample_posterior: bool = True,
                    generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Stage 0, 3D: autoencode ``points``/``normals`` and classify ``occ_points`` by ``occ_labels``.

        Returns ``logits`` [B, M], ``mean`` / ``logvar`` [B, L, Cl] and scalar terms ``loss``,
        ``loss_occupancy``, ``loss_kl``, ``occ_accuracy``, ``occ_iou`` (see :func:`vae_loss`).
        """
        dev = self.device
        enc = self.shape_vae.encode(_get(batch, "points", dev), _get(batch, "normals", dev),
                                    sample_posterior=sample_posterior, generator=generator)
        return self._vae_terms(batch, enc, kl_weight=kl_weight)

    def forward_align(self, batch: Mapping[str, Any], *, num_pixels: int = 256, ignore_radius: float = 0.02,
                      dense_target: DenseTarget = "exact", dense_sigma: float = DENSE_SIGMA,
                      use_text: bool = True, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Stages 1-3: dense pixel-point InfoNCE and global image/shape/text contrast.

        Samples ``num_pixels`` masked pixels per image; each pixel's feature is bilinearly
        sampled from the dense map, and its point feature is queried at R_z(yaw) @ xyz[pixel]
        on the (rotated) shape; ``dense_target`` / ``dense_sigma`` choose the one-hot or the
        Gaussian soft target of ``losses.dense.pixel_point_infonce``. Text comes from
        ``text_embedding`` [B, 384] when the batch has it, else from ``caption`` through the
        frozen text model.

        Returns ``pixel_features`` / ``point_features`` [B, P, D], ``valid`` [B, P], the sampled
        ``pixel_xy`` [B, P, 2] (x, y) and the rotated ``point_xyz`` [B, P, 3] they were queried at,
        ``image_global`` / ``shape_global`` / ``text_global`` [B, G] and scalar terms
        ``loss`` (dense + global), ``loss_dense``, ``loss_global``, ``dense_accuracy``, ``dense_accuracy_sigma``,
        ``global_image_shape`` / ``global_image_text`` / ``global_shape_text``,
        ``logit_scale_dense``, ``logit_scale_global``.
        """
        img = self.image_forward(_get(batch, "image", self.device))
        shp = self.shape_forward(_get(batch, "points", self.device), _get(batch, "normals", self.device))
        out = self._dense_terms(batch, img, shp, num_pixels=num_pixels, ignore_radius=ignore_radius,
                                target=dense_target, sigma=dense_sigma, generator=generator)
        out.update(self._global_terms(batch, img, shp, use_text=use_text))
        out["loss"] = out["loss_dense"] + out["loss_global"]
        return out

    def forward(self, batch: Mapping[str, Any], *, losses: Mapping[str, float],
                kl_weight: float = 1e-3, depth_mode: Literal["shift_invariant", "absolute"] = "shift_invariant",
                xyz_mode: XyzMode = "canonical", normal_frame: NormalFrame = "canonical", num_pixels: int = 256,
                ignore_radius: float = 0.02, dense_target: DenseTarget = "exact", dense_sigma: float = DENSE_SIGMA,
                use_text: bool = True, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Weighted sum of the named losses, sharing the encoder passes between them.

        losses  {name: weight} with names from ``LOSS_NAMES`` ("geometry", "vae", "dense",
                "global", "foreground"); a name that is absent (or weighted 0) is not computed.
        Returns scalars only: ``total`` and, for each computed loss, ``<name>`` plus its
        diagnostics (``geometry_depth``, ``vae_kl``, ``dense_accuracy``, ...).
        """
        unknown = sorted(set(losses) - set(LOSS_NAMES))
        if unknown:
            raise ValueError(f"unknown loss name(s) {unknown}; choose from {list(LOSS_NAMES)}")
        active = {k: float(v) for k, v in losses.items() if float(v) != 0.0}
        if not active:
            raise ValueError("no loss has a non-zero weight")
        dev = self.device
        scalars: dict[str, Tensor] = {}
        if "foreground" in active and self.foreground_head is None:
            raise ValueError("the 'foreground' loss needs a model built with foreground_head=True")
        need_image = bool({"geometry", "dense", "global", "foreground"} & set(active))
        need_shape = bool({"vae", "dense", "global"} & set(active))
        img = self.image_forward(_get(batch, "image", dev), geometry="geometry" in active) if need_image else None
        enc = None
        if need_shape:
            enc = self.shape_vae.encode(_get(batch, "points", dev), _get(batch, "normals", dev),
                                        sample_posterior="vae" in active, generator=generator)
        if "geometry" in active:
            g = self._geometry_terms(batch, img, depth_mode=depth_mode, xyz_mode=xyz_mode, normal_frame=normal_frame)
            scalars.update(geometry=g["loss"], geometry_depth=g["loss_depth"], geometry_normal=g["loss_normal"],
                           geometry_xyz=g["loss_xyz"])
        if "foreground" in active:
            assert img is not None and self.foreground_head is not None
            mask = _get(batch, "mask", dev)
            logits = self.foreground_head(img["dense_features"])["foreground"]
            logits = F.interpolate(logits[:, None], size=tuple(mask.shape[-2:]), mode="bilinear",
                                   align_corners=False)[:, 0]
            scalars["foreground"] = F.binary_cross_entropy_with_logits(logits, mask.float())
            with torch.no_grad():
                pred = logits > 0
                scalars["foreground_iou"] = (pred & mask).sum() / (pred | mask).sum().clamp_min(1)
        if "vae" in active:
            v = self._vae_terms(batch, enc, kl_weight=kl_weight)
            scalars.update(vae=v["loss"], vae_occupancy=v["loss_occupancy"], vae_kl=v["loss_kl"],
                           vae_iou=v["occ_iou"])
        if "dense" in active or "global" in active:
            assert enc is not None and img is not None
            # Alignment reads the posterior mean: the VAE sample is noise for the VAE's own sake.
            shp = {"tokens": self.shape_vae.decode(enc["mean"]), "anchors": enc["anchors"],
                   "frame_yaw": enc["frame_yaw"]}
            shp.update(self.shape_global_head(shp["tokens"]))
            if "dense" in active:
                d = self._dense_terms(batch, img, shp, num_pixels=num_pixels, ignore_radius=ignore_radius,
                                      target=dense_target, sigma=dense_sigma, generator=generator)
                scalars.update(dense=d["loss_dense"], dense_accuracy=d["dense_accuracy"],
                               dense_accuracy_sigma=d["dense_accuracy_sigma"],
                               logit_scale_dense=d["logit_scale_dense"])
            if "global" in active:
                gl = self._global_terms(batch, img, shp, use_text=use_text)
                scalars.update({"global": gl["loss_global"], "logit_scale_global": gl["logit_scale_global"]})
                scalars.update({k: v for k, v in gl.items() if k.startswith("global_")})
        total = sum(w * scalars[name] for name, w in active.items())
        return {"total": total, **scalars}  # type: ignore[dict-item]

    def _geometry_terms(self, batch: Mapping[str, Any], img: dict[str, Tensor], *,
                        depth_mode: Literal["shift_invariant", "absolute"] = "shift_invariant",
                        xyz_mode: XyzMode = "canonical", normal_frame: NormalFrame = "canonical",
                        weights: Mapping[str, float] | None = None) -> dict[str, Tensor]:
        dev = self.device
        if normal_frame not in ("camera", "canonical"):
            raise ValueError(f"normal_frame must be 'camera' or 'canonical', got {normal_frame!r}")
        target = {k: _get(batch, k, dev) for k in ("depth", "xyz")}
        target["normal"] = _get(batch, "normal_camera" if normal_frame == "camera" else "normal", dev)
        terms = geometry_loss({k: img[k] for k in ("depth", "normal", "xyz")}, target, _get(batch, "mask", dev),
                              depth_mode=depth_mode, xyz_mode=xyz_mode, weights=weights)
        out = {k: img[k] for k in ("depth", "normal", "xyz")}
        out.update({"loss": terms["loss"], "loss_depth": terms["depth"], "loss_normal": terms["normal"],
                    "loss_xyz": terms["xyz"]})
        return out

    def _vae_terms(self, batch: Mapping[str, Any], enc: dict[str, Tensor], *, kl_weight: float) -> dict[str, Tensor]:
        dev = self.device
        tokens = self.shape_vae.decode(enc["z"])
        occ = self.shape_vae.query_occupancy(tokens, _get(batch, "occ_points", dev), anchors=enc["anchors"],
                                             frame_yaw=enc["frame_yaw"])
        terms = vae_loss(occ["logits"], _get(batch, "occ_labels", dev), enc["mean"], enc["logvar"], kl_weight=kl_weight)
        return {"logits": occ["logits"], "mean": enc["mean"], "logvar": enc["logvar"], "loss": terms["loss"],
                "loss_occupancy": terms["occupancy"], "loss_kl": terms["kl"], "occ_accuracy": terms["accuracy"],
                "occ_iou": terms["iou"]}

    def _dense_terms(self, batch: Mapping[str, Any], img: dict[str, Tensor], shp: dict[str, Tensor], *,
                     num_pixels: int, ignore_radius: float, target: DenseTarget = "exact", sigma: float = DENSE_SIGMA,
                     generator: torch.Generator | None) -> dict[str, Tensor]:
        dev = self.device
        mask = _get(batch, "mask", dev).bool()
        xyz_map = _get(batch, "xyz", dev)
        b, h, w = mask.shape
        rc, valid = sample_masked_pixels(mask, min(num_pixels, h * w), generator=generator)
        xy = rc.flip(-1).to(torch.float32)  # (row, col) -> (x, y)
        pix = F.normalize(sample_map_at_pixels(img["dense"], xy, (w, h)), dim=-1, eps=1e-6)
        canonical = xyz_map[torch.arange(b, device=dev)[:, None], rc[..., 0], rc[..., 1]]  # [B, P, 3]
        query = rotate_z(canonical, _get(batch, "yaw", dev).reshape(b))
        if batch.get("shape_center") is not None:
            # the 3D input was re-normalised after the yaw (see data.dataset); follow it
            query = (query - _get(batch, "shape_center", dev).reshape(b, 1, 3)) * _get(
                batch, "shape_scale", dev).reshape(b, 1, 1)
        pts = self.point_features(shp["tokens"], query, anchors=shp["anchors"], frame_yaw=shp["frame_yaw"])
        scale = self.logit_scale_dense()
        shape_ids = batch.get("shape_index")
        terms = pixel_point_infonce(pix, pts, logit_scale=scale, valid=valid, positions=canonical,
                                    shape_ids=None if shape_ids is None else torch.as_tensor(shape_ids, device=dev).reshape(b),
                                    ignore_radius=ignore_radius, target=target, sigma=sigma)
        return {"pixel_features": pix, "point_features": pts, "valid": valid, "pixel_xy": xy, "point_xyz": query,
                "loss_dense": terms["loss"],
                "dense_accuracy": terms["accuracy"], "dense_accuracy_sigma": terms["accuracy_sigma"],
                "logit_scale_dense": scale.detach()}

    def _global_terms(self, batch: Mapping[str, Any], img: dict[str, Tensor], shp: dict[str, Tensor], *,
                      use_text: bool) -> dict[str, Tensor]:
        dev = self.device
        b = img["global"].shape[0]
        text, text_ids = None, None
        if use_text:
            if batch.get("text_embedding") is not None:
                emb = torch.as_tensor(batch["text_embedding"], device=dev, dtype=torch.float32)
                text = self.text_forward(embeddings=emb)
                text_ids = torch.unique(emb, dim=0, return_inverse=True)[1]
            elif batch.get("caption") is not None:
                captions = list(batch["caption"])
                text = self.text_forward(captions)
                index: dict[str, int] = {}
                text_ids = torch.tensor([index.setdefault(c, len(index)) for c in captions], device=dev)
            else:
                raise KeyError("global alignment with use_text=True needs batch 'text_embedding' or 'caption'")
        shape_ids = batch.get("shape_index")
        shape_ids = None if shape_ids is None else torch.as_tensor(shape_ids, device=dev).reshape(b)
        scale = self.logit_scale_global()
        terms = global_alignment_loss(img["global"], shp["global"], text, logit_scale=scale,
                                      shape_ids=shape_ids, text_ids=text_ids)
        out = {"image_global": img["global"], "shape_global": shp["global"], "loss_global": terms.pop("loss"),
               "logit_scale_global": scale.detach()}
        if text is not None:
            out["text_global"] = text
        out.update({f"global_{k}": v for k, v in terms.items()})
        return out

    # ------------------------------------------------------------- inference
    def encode_image(self, image: Image.Image, *, device: DeviceLike = None) -> ImageFeatures:
        """Encode one PIL image of any size or mode.

        The image is converted to RGB (alpha composited over white) and resized, keeping its
        aspect ratio, so that its longest side is ``config.image.image_size`` (both sides
        rounded to the patch size). ``ImageFeatures.sample`` takes pixels of the INPUT image.
        """
        if not isinstance(image, Image.Image):
            raise TypeError(f"encode_image expects a PIL.Image.Image, got {type(image).__name__}")
        size = self.image_encoder.input_size(image.width, image.height)
        x = pil_to_tensor(image, size)[None].to(self.device)
        with torch.inference_mode():
            out = self.image_forward(x)
            # At the dense-feature resolution: the head's upsampling adds nothing a bilinear
            # lookup at the query pixels does not.
            g = self.geometry_head(out["dense_features"])
            # The image's own alpha first; then the foreground head; the colour heuristic only
            # for models without one (it would be computed for nothing on every encode).
            fg, source = alpha_foreground(image, size), "alpha"
            if fg is None and self.foreground_head is not None:
                logit = self.foreground_head(out["dense_features"])["foreground"]
                fg = F.interpolate(logit[:, None], size=(size[1], size[0]), mode="bilinear",
                                   align_corners=False)[0, 0].cpu() > FOREGROUND_LOGIT
                source = "predicted"
            elif fg is None:
                fg, source = estimate_foreground(image, size)
            # Pixels on the silhouette mix object and background in the predicted maps.
            eroded = ~F.max_pool2d((~fg)[None, None].float(), 5, stride=1, padding=2)[0, 0].bool()
            geometry = ImageGeometry(xyz=_out(g["xyz"][0].permute(2, 0, 1), device), depth=_out(g["depth"][0], device),
                                     foreground=eroded if eroded.sum() >= 64 else fg, foreground_source=source)
            return ImageFeatures(dense=_out(out["dense"][0], device), global_embedding=_out(out["global"][0], device),
                                 image_size=(image.width, image.height), model_size=size, geometry=geometry)

    def encode_shape(self, mesh: Any, *, num_points: int = 8192, seed: int = 0,
                     device: DeviceLike = None) -> ShapeFeatures:
        """Encode a Z-up ``trimesh.Trimesh``: sample ``num_points`` surface points (deterministic
        for a given ``seed``), normalise them to the canonical frame (bounding-box centre at the
        origin, diagonal 1) for the network, and return per-point features.
        ``ShapeFeatures.points`` stay in the mesh's own coordinates.
        """
        points, normals, center, scale, enc_points, enc_normals = self._surface_input(
            mesh, num_points, seed=seed, min_points=self.config.shape.num_latents)
        canonical = (points - center) * scale
        dev = self.device
        with torch.inference_mode():
            shp = self.shape_forward(enc_points[None].to(dev), enc_normals[None].to(dev))
            tokens, anchors, frame_yaw = shp["tokens"], shp["anchors"], shp["frame_yaw"]
            dense = self.point_features(tokens, canonical[None].to(dev), anchors=anchors, frame_yaw=frame_yaw)[0]

            def query(xyz_canonical: Tensor) -> Tensor:
                with torch.inference_mode():
                    return _out(self.point_features(tokens, xyz_canonical[None].to(dev), anchors=anchors,
                                                    frame_yaw=frame_yaw)[0],
                                device)

            return ShapeFeatures(points=_out(points, device), normals=_out(normals, device), dense=_out(dense, device),
                                 global_embedding=_out(shp["global"][0], device), center=center, scale=scale,
                                 _query=query)

    def _surface_input(self, mesh: Any, num_points: int, *, seed: int, min_points: int
                       ) -> tuple[Tensor, Tensor, Tensor, float, Tensor, Tensor]:
        """Surface samples of a mesh and what the encoder reads of them.

        Returns ``points``, ``normals`` [N, 3] (mesh units), ``center`` [3] and ``scale`` (1 /
        bounding-box diagonal) of the canonical frame, and the encoder's input ``enc_points``,
        ``enc_normals`` [K, 3] (canonical): the first ``encoder_points`` samples (they are in
        random order, so a prefix is itself a uniform sample), or, when fewer than
        ``min_points`` (the latent tokens to pick) were asked for, ``encoder_points`` samples of
        its own.
        """
        points, normals = sample_mesh_surface(mesh, num_points, seed=seed)
        lo, hi = points.new_tensor(mesh.bounds[0]), points.new_tensor(mesh.bounds[1])
        center, diag = (lo + hi) / 2, float((hi - lo).norm())
        if not diag > 0:
            raise ValueError("mesh has a zero-size bounding box; cannot normalise it")
        scale = 1.0 / diag
        cfg = self.config.shape
        k = min(num_points, cfg.encoder_points)
        enc_points, enc_normals = (points[:k] - center) * scale, normals[:k]
        if k < min_points:
            extra_p, enc_normals = sample_mesh_surface(mesh, max(cfg.encoder_points, min_points), seed=seed)
            enc_points = (extra_p - center) * scale
        return points, normals, center, scale, enc_points, enc_normals

    def occupancy(self, mesh: Any, xyz: Any, *, num_points: int = 8192, num_latents: int | None = None,
                  seed: int = 0, device: DeviceLike = None) -> Tensor:
        """Occupancy logits [M] of query positions ``xyz`` [M, 3] (the mesh's own units and
        frame), as the shape VAE reconstructs ``mesh`` from ``num_points`` surface samples
        (posterior mean; ``> 0`` means inside).

        ``num_latents``: latent tokens the shape is encoded into (None: the trained count,
        ``config.shape.num_latents``, which ``encode_shape`` uses). More tokens reconstruct
        finer: on the validation split 256 / 512 / 1024 tokens gave IoU 78.8 / 84.6 / 87.8 %
        with the bundled model (docs/experiments/vae_tokens.md); at most ``encoder_points``.
        """
        query = as_coords(xyz, dim=3, name="xyz")
        field, center, scale = self._occupancy_field(mesh, num_points=num_points, num_latents=num_latents, seed=seed)
        return _out(field((query - center) * scale), device)

    @property
    def reconstruction_tokens(self) -> int:
        """Latent tokens :meth:`reconstruct` encodes a shape into by default: four times the
        trained count, at most ``encoder_points`` (1024 for the bundled model, the vae suite's
        ``tango3d@1024`` row)."""
        cfg = self.config.shape
        return min(4 * cfg.num_latents, cfg.encoder_points)

    def reconstruct(self, mesh: Any, *, resolution: int = 64, num_latents: int | None = None,
                    num_points: int = 8192, seed: int = 0) -> trimesh.Trimesh:
        """The shape VAE's reconstruction of ``mesh``: a ``trimesh.Trimesh`` in the mesh's own
        units and frame, the zero level set of :meth:`occupancy` on a ``resolution``^3 grid over
        the bounding box (plus 5 % on every side) by marching cubes; a reconstruction that spills
        out of that box is cut open there. The grid is decoded coarse to fine
        (:func:`~tango3d_core.models.volume.grid_logits`: 20-55 % of its points are queried);
        1.8-3.1 s at resolution 64 with 1024 tokens on one core of the 2-core CPU box (1.1-1.9 s at 48).

        ``num_latents``: None gives :attr:`reconstruction_tokens`; what the features see is the
        trained count, ``num_latents=config.shape.num_latents``.

        Raises:
            ValueError: ``resolution`` outside [8, 256]; the occupancy has no zero crossing in the
                box (the VAE sees nothing inside, or only inside).
        """
        from skimage.measure import marching_cubes

        if isinstance(resolution, bool) or not isinstance(resolution, int) or not 8 <= resolution <= 256:
            raise ValueError(f"resolution must be an integer in [8, 256], got {resolution!r}")
        if num_latents is None:
            num_latents = self.reconstruction_tokens
        field, center, scale = self._occupancy_field(mesh, num_points=num_points, num_latents=num_latents, seed=seed)
        lo, hi = grid_box(mesh.bounds, center.numpy(), scale)
        logits, _ = grid_logits(field, lo, hi, resolution)
        if not (logits.max() > 0 > logits.min()):
            raise ValueError("the VAE's occupancy has no surface in the box (every query is "
                             f"{'inside' if logits.min() > 0 else 'outside'}); nothing to reconstruct")
        verts, faces, _, _ = marching_cubes(logits, level=0.0, spacing=tuple((hi - lo) / (resolution - 1)))
        verts = (verts + lo) / scale + center.numpy()
        # marching_cubes orients faces for a field that grows outwards; logits grow inwards.
        return trimesh.Trimesh(vertices=verts, faces=faces[:, ::-1], process=False)

    def _occupancy_field(self, mesh: Any, *, num_points: int, num_latents: int | None, seed: int
                         ) -> tuple[Any, Tensor, float]:
        """Encode ``mesh`` once; returns ``(logits, center, scale)``: ``logits`` maps canonical
        positions [M, 3] to occupancy logits [M] on the model's device."""
        cfg = self.config.shape
        latents = cfg.num_latents if num_latents is None else num_latents
        if isinstance(latents, bool) or not isinstance(latents, int) or latents < 1:
            raise ValueError(f"num_latents must be an integer >= 1, got {num_latents!r}")
        if latents > cfg.encoder_points:
            raise ValueError(f"num_latents={latents} exceeds the encoder's input of {cfg.encoder_points} points")
        _, _, center, scale, enc_points, enc_normals = self._surface_input(mesh, num_points, seed=seed,
                                                                           min_points=latents)
        dev = self.device
        with torch.inference_mode():
            enc = self.shape_vae.encode(enc_points[None].to(dev), enc_normals[None].to(dev), num_latents=latents)
            tokens = self.shape_vae.decode(enc["mean"])

        def logits(canonical: Tensor) -> Tensor:
            with torch.inference_mode():
                return self.shape_vae.query_occupancy(tokens, canonical[None].to(dev, torch.float32),
                                                      anchors=enc["anchors"], frame_yaw=enc["frame_yaw"])["logits"][0]

        return logits, center, scale

    def encode_text(self, texts: Sequence[str], *, device: DeviceLike = None) -> Tensor:
        """A list of B strings -> [B, G] global embeddings (the frozen MiniLM loads on first use)."""
        texts = check_texts(texts)
        with torch.inference_mode():
            return _out(self.text_forward(texts), device)

    def match_pixel(self, image: ImageFeatures, shape: ShapeFeatures, xy: Sequence[float]) -> Tensor:
        """Cosine similarity [N] of the pixel ``xy = (x, y)`` of ``image`` to every point of ``shape``."""
        if not isinstance(image, ImageFeatures):
            raise TypeError(f"image must be ImageFeatures (from encode_image), got {type(image).__name__}")
        if not isinstance(shape, ShapeFeatures):
            raise TypeError(f"shape must be ShapeFeatures (from encode_shape), got {type(shape).__name__}")
        pix = image.sample(as_coords([list(_pair(xy))], dim=2, name="xy"))[0]
        if pix.shape[0] != shape.dense.shape[1]:
            raise ValueError(f"feature widths differ: image D={pix.shape[0]}, shape D={shape.dense.shape[1]}")
        with torch.inference_mode():
            return shape.dense @ pix.to(shape.dense.device)


def build_model(preset_or_config: str | Tango3DConfig) -> Tango3D:
    """A freshly initialised model from a preset name (``"tiny"``, ``"base"``) or a config."""
    if isinstance(preset_or_config, str):
        config = get_preset(preset_or_config)
    elif isinstance(preset_or_config, Tango3DConfig):
        config = preset_or_config
    else:
        raise TypeError(f"build_model takes a preset name or a Tango3DConfig, got {type(preset_or_config).__name__}")
    return Tango3D(config)


def sample_mesh_surface(mesh: Any, count: int, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Area-uniform surface samples of a trimesh and their face normals.

    Returns (points [count, 3], normals [count, 3]) float32, in the mesh's coordinates; the same
    mesh, count and seed give the same samples.
    """
    import trimesh  # heavy import, only needed here

    if not isinstance(mesh, trimesh.Trimesh):
        hint = " (a Scene: use t3.load_mesh, or scene.to_geometry())" if isinstance(mesh, trimesh.Scene) else ""
        raise TypeError(f"mesh must be a trimesh.Trimesh, got {type(mesh).__name__}{hint}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"num_points must be a positive integer, got {count!r}")
    if len(mesh.faces) == 0:
        raise ValueError("mesh has no faces; cannot sample its surface")
    if not np.isfinite(mesh.vertices).all():
        raise ValueError("mesh has non-finite vertex coordinates")
    if not mesh.area > 0:
        raise ValueError("mesh has zero surface area; cannot sample its surface")
    points, face_index = trimesh.sample.sample_surface(mesh, int(count), seed=int(seed))
    normals = np.asarray(mesh.face_normals)[face_index]
    return (torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(normals, dtype=np.float32)))


def _get(batch: Mapping[str, Any], key: str, device: torch.device) -> Tensor:
    if key not in batch:
        raise KeyError(f"batch has no {key!r} (see 'Example format' in tango3d_core.data.dataset); it has {sorted(batch)}")
    value = batch[key]
    t = value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    return t.to(device)


def _out(t: Tensor, device: DeviceLike) -> Tensor:
    return t.to(device=torch.device(device) if device is not None else torch.device("cpu"), dtype=torch.float32)


def _pair(xy: Any) -> tuple[float, float]:
    try:
        values = [float(v) for v in (xy.tolist() if hasattr(xy, "tolist") else xy)]
    except (TypeError, ValueError) as e:
        raise TypeError(f"xy must be a pair of numbers (x, y), got {xy!r}") from e
    if len(values) != 2:
        raise ValueError(f"xy must be one (x, y) pair, got {len(values)} values")
    return values[0], values[1]
