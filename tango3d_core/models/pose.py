"""Pose-verified matching: put the image's predicted surface into the shape's frame, then match.

Cosine similarity alone confuses mirror-image parts (the left and the right wing look alike to
a pixel and to a point; docs/experiments/point_features.md §9). The 2D encoder's geometry head
also predicts, for every pixel, the object-centred surface point it sees (``xyz``: canonical
units, bounding-box centre at the origin and diagonal 1, in the object's own frame up to an
unknown turn about +Z) and the relative depth. One turn about +Z, shared by every pixel of the
image, takes that predicted surface onto the shape. :func:`estimate_pose` searches that turn:

    for each candidate yaw t (``yaw_steps`` of them):
      1. turn the shape's points by -t into the image's object frame and re-normalise them to
         their own bounding box there (centre 0, diagonal 1): the frame the xyz head predicts in;
      2. keep the points that face the camera (the viewing direction comes from an affine
         camera fitted to the foreground pixels and their predicted xyz, its sign from the
         predicted depth);
      3. score = -(truncated chamfer distance between the predicted foreground surface and
         those visible points, both ways) + ``feature_weight`` x the mean over foreground
         pixels of max_j (cos_ij / temperature - d_ij^2 / (2 sigma^2)).

:func:`pose_match` then scores every pixel-point pair by ``cos - temperature * d^2 / (2
sigma^2)`` (cosine units; the same ranking as ``cos / temperature - d^2 / (2 sigma^2)``), with
``d`` the distance between the pixel's predicted surface point and the point, in the image's
object frame (units of the bounding-box diagonal): features choose the part, the pose chooses
which of the look-alike parts.

Needs an :class:`~tango3d_core.models.features.ImageFeatures` with ``geometry`` (the Tango3D
model's ``encode_image`` fills it; other backbones leave it ``None``) and a foreground: the
image's alpha channel, the model's foreground head (stage 4), a plain background (see
:func:`estimate_foreground`) or a ``mask`` from the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .features import ImageFeatures, ImageGeometry, ShapeFeatures, as_coords
from .ops import rotate_z

__all__ = ["PoseEstimate", "alpha_foreground", "estimate_foreground", "estimate_pose", "pose_heatmap", "pose_match"]

# Defaults chosen on the validation split (seeds 100000+), never on the test split:
# docs/experiments/pose_matching.md.
TEMPERATURE = 0.1
SIGMA = 0.05
FEATURE_WEIGHT = 0.02
CHAMFER_TRUNCATION = 0.1
# A point faces the camera when its normal points against the viewing direction by more than this.
FACING_COS = 0.05


def alpha_foreground(image: Image.Image, size: tuple[int, int]) -> Tensor | None:
    """bool [H', W'] (alpha >= 128) at ``size = (W', H')`` when the image has an alpha channel
    that hides something, else None."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA").getchannel("A").resize(tuple(size), Image.Resampling.BILINEAR))
        if alpha.min() < 128:
            return torch.from_numpy(alpha >= 128)
    return None


def estimate_foreground(image: Image.Image, size: tuple[int, int], *, tolerance: float = 0.06
                        ) -> tuple[Tensor, str]:
    """Which pixels show the object, without a segmentation network.

    image      any PIL image
    size       (W', H') of the returned mask
    tolerance  a pixel is background when every channel is within this (in [0, 1]) of the
               median colour of the image border
    returns    (bool [H', W'], source): source "alpha" when the image has a non-trivial alpha
               channel (alpha >= 128 is foreground), "border" when the border is a plain colour
               (>= 60 % of border pixels within ``tolerance`` of its median), else "none" and
               an all-True mask (a photo on a busy background: give estimate_pose a ``mask``).
    """
    w, h = size
    alpha = alpha_foreground(image, size)
    if alpha is not None:
        return alpha, "alpha"
    rgb = np.asarray(image.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])  # [2W + 2H, 3]
    bg = np.median(border, axis=0)
    if np.mean(np.abs(border - bg).max(-1) <= tolerance) < 0.6:
        return torch.ones(h, w, dtype=torch.bool), "none"
    return torch.from_numpy(np.abs(rgb - bg).max(-1) > tolerance), "border"


@dataclass(frozen=True, eq=False)
class PoseEstimate:
    """Where the image's object frame lies in the shape's canonical frame.

    yaw         radians about +Z taking the image's object frame to the shape's canonical frame
    center      [3] and ``scale``: a shape point in canonical coordinates ``q`` lies at
                ``(R_z(-yaw) q - center) * scale`` in the image's object frame
    view_dir    [3] unit direction the camera looks along, in the shape's canonical frame
    yaws        [T] the yaws searched (radians, ascending) and ``scores`` [T] their scores
                (higher is better)
    num_pixels  foreground pixels the estimate used
    """

    yaw: float
    center: Tensor
    scale: float
    view_dir: Tensor
    yaws: Tensor
    scores: Tensor
    num_pixels: int

    def to_image_frame(self, canonical: Tensor) -> Tensor:
        """[N, 3] points in the shape's canonical frame -> [N, 3] in the image's object frame."""
        yaw = torch.full((1,), -self.yaw, dtype=canonical.dtype, device=canonical.device)
        return (rotate_z(canonical[None], yaw)[0] - self.center.to(canonical)) * self.scale

    @property
    def score(self) -> float:
        """The best yaw's score: how well the image's predicted surface fits the shape (higher is
        better; what image->shape retrieval re-ranks by)."""
        return float(self.scores.max())

    @property
    def margin(self) -> float:
        """Best score minus the best score of a yaw more than 45 degrees away from it: near 0 when
        the shape looks alike from two sides (a table, a vase) and the choice is a coin toss."""
        d = torch.remainder(self.yaws - self.yaw + math.pi, 2 * math.pi) - math.pi
        far = self.scores[d.abs() > math.pi / 4]
        return float(self.scores.max() - far.max()) if len(far) else float("inf")


def _require_geometry(image: ImageFeatures) -> None:
    if not isinstance(image, ImageFeatures):
        raise TypeError(f"image must be ImageFeatures (from encode_image), got {type(image).__name__}")
    if image.geometry is None:
        raise ValueError("pose matching needs the image's predicted geometry (xyz, depth); these features have "
                         "none: encode the image with a Tango3D model (other backbones have no geometry head)")


def _canonical(shape: ShapeFeatures, xyz: Tensor | None = None) -> Tensor:
    """[N, 3] positions ``xyz`` in the mesh's coordinates (default: the shape's points) in the
    frame the network saw (bounding-box centre at 0, diagonal 1), float32."""
    pts = shape.points if xyz is None else xyz
    return ((pts - shape.center.to(pts)) * shape.scale).float()


def _pose_and_geometry(image: ImageFeatures, shape: ShapeFeatures, pose: PoseEstimate | None, temperature: float,
                       sigma: float) -> tuple[PoseEstimate, ImageGeometry]:
    """The matching functions' shared checks: the pose to use (estimated when None) and the
    image's geometry."""
    if not (temperature > 0 and sigma > 0):
        raise ValueError("temperature and sigma must be > 0")
    if pose is None:
        pose = estimate_pose(image, shape, temperature=temperature, sigma=sigma)
    assert image.geometry is not None
    return pose, image.geometry


def _foreground_pixels(image: ImageFeatures, mask: Tensor | np.ndarray | None, count: int, seed: int) -> Tensor:
    """[K, 2] float (x, y) input-image pixels on the foreground, K <= count, deterministic."""
    if mask is None:
        fg = image.geometry.foreground  # type: ignore[union-attr]
        scale_x = image.width / fg.shape[1]
        scale_y = image.height / fg.shape[0]
    else:
        fg = torch.as_tensor(np.asarray(mask)).bool()
        if tuple(fg.shape) != (image.height, image.width):
            raise ValueError(f"mask must be [H, W] = [{image.height}, {image.width}] like the input image, "
                             f"got {tuple(fg.shape)}")
        scale_x = scale_y = 1.0
    rows, cols = torch.nonzero(fg, as_tuple=True)
    if len(rows) == 0:
        raise ValueError("no foreground pixels: the image looks empty (or give a mask)")
    gen = torch.Generator().manual_seed(int(seed))
    pick = torch.randperm(len(rows), generator=gen)[:count]
    # pixel centres of the mask's grid, in input-image pixels
    x = (cols[pick].float() + 0.5) * scale_x - 0.5
    y = (rows[pick].float() + 0.5) * scale_y - 0.5
    return torch.stack([x, y], dim=-1)


def _view_direction(xy: Tensor, xyz: Tensor, depth: Tensor) -> Tensor:
    """Affine camera fit ``xy ~ A xyz + b`` -> [3] unit viewing direction in the xyz frame,
    pointing away from the camera (towards increasing predicted depth)."""
    x = torch.cat([xyz.double(), torch.ones(len(xyz), 1, dtype=torch.float64)], dim=1)
    sol = torch.linalg.lstsq(x, xy.double()).solution  # [4, 2]
    a = sol[:3].T  # [2, 3]: rows are the image x and y directions expressed in the xyz frame
    d = torch.linalg.cross(a[0], a[1])
    d = d / d.norm().clamp_min(1e-12)
    proj = xyz.double() @ d
    dep = depth.double()
    if float(((proj - proj.mean()) * (dep - dep.mean())).sum()) < 0:
        d = -d
    return d.float()


def _frames(canonical: Tensor, yaws: Tensor) -> tuple[Tensor, Tensor]:
    """For each yaw t: the bounding-box centre [T, 3] and 1/diagonal [T] of R_z(-t) canonical."""
    turned = rotate_z(canonical[None].expand(len(yaws), -1, -1), -yaws)  # [T, N, 3]
    lo, hi = turned.min(dim=1).values, turned.max(dim=1).values
    return (lo + hi) / 2, 1.0 / (hi - lo).norm(dim=-1).clamp_min(1e-9)


def _yaw_scores(yaws: Tensor, pred: Tensor, view: Tensor, canonical: Tensor, pts: Tensor, nrm: Tensor, cos: Tensor, *,
                feature_weight: float, temperature: float, sigma: float) -> tuple[Tensor, Tensor, Tensor]:
    """Score each candidate yaw [T] (module docstring); returns (scores [T], centres [T, 3],
    scales [T]). pred [K, 3], view [3] in the image's object frame; canonical [N, 3] every shape
    point (for the bounding box), pts / nrm [M, 3] the scored subset, cos [K, M]."""
    centers, scales = _frames(canonical, yaws)
    scores = torch.empty(len(yaws))
    p2 = pred.square().sum(-1)  # [K]
    big = 1e6  # a squared distance no truncation or Gaussian lets through
    for lo in range(0, len(yaws), 12):
        t = yaws[lo:lo + 12]
        q = (rotate_z(pts[None].expand(len(t), -1, -1), -t) - centers[lo:lo + 12, None]) * scales[lo:lo + 12, None, None]
        facing = rotate_z(nrm[None].expand(len(t), -1, -1), -t) @ view < -FACING_COS  # [t, M]
        # squared distances [t, K, M] by one batched product; hidden points pushed out of reach
        q2 = q.square().sum(-1) + (~facing) * big  # [t, M]
        d2 = torch.baddbmm(q2[:, None, :] + p2[None, :, None], pred[None].expand(len(t), -1, -1), q.transpose(1, 2),
                           alpha=-2.0).clamp_min_(0.0)
        trunc2 = CHAMFER_TRUNCATION**2
        to_shape = d2.min(dim=2).values.clamp(max=trunc2).sqrt().mean(dim=1)
        n_vis = facing.sum(dim=1)
        from_shape = (d2.min(dim=1).values.clamp(max=trunc2).sqrt() * facing).sum(dim=1) / n_vis.clamp_min(1)
        s = -(to_shape + from_shape)
        if feature_weight > 0:
            # max_j (cos/temperature - d2/(2 sigma^2)), computed in place on d2
            fused = d2.mul_(-1.0 / (2 * sigma**2)).add_(cos[None] / temperature).max(dim=2).values.mean(dim=1)
            s = s + feature_weight * fused
        scores[lo:lo + 12] = torch.where(n_vis >= 8, s, torch.full_like(s, -float("inf")))
    return scores, centers, scales


def _search_inputs(image: ImageFeatures, shape: ShapeFeatures, *, mask: Tensor | np.ndarray | None,
                   max_pixels: int, max_points: int, seed: int) -> tuple[Tensor, ...]:
    """What every candidate yaw is scored on (all on the CPU): foreground pixels xy [K, 2], their
    predicted xyz [K, 3], the viewing direction [3] (image object frame), every shape point in
    canonical coordinates [N, 3], the scored subset's points and normals [M, 3], cos [K, M]."""
    geo = image.geometry
    assert geo is not None
    xy = _foreground_pixels(image, mask, max_pixels, seed)
    if len(xy) < 8:
        raise ValueError(f"only {len(xy)} foreground pixels: too few to estimate a pose")
    pred = geo.xyz_at(image.image_size, xy).float().cpu()
    view = _view_direction(xy, pred, geo.depth_at(image.image_size, xy).cpu())
    canonical = _canonical(shape).cpu()
    sub = torch.randperm(len(canonical), generator=torch.Generator().manual_seed(int(seed)))[:max_points]
    cos = (image.sample(xy).float() @ shape.dense[sub].float().T.to(image.dense.device)).cpu()
    return xy, pred, view, canonical, canonical[sub], shape.normals[sub].float().cpu(), cos


def estimate_pose(image: ImageFeatures, shape: ShapeFeatures, *, mask: Tensor | np.ndarray | None = None,
                  yaw_steps: int = 72, max_pixels: int = 512, max_points: int = 2048,
                  feature_weight: float = FEATURE_WEIGHT, temperature: float = TEMPERATURE, sigma: float = SIGMA,
                  seed: int = 0) -> PoseEstimate:
    """The turn about +Z that lays the image's predicted surface onto the shape (module docstring).

    mask        optional bool [H, W] foreground of the input image (default: the one
                ``encode_image`` estimated: alpha channel or plain background)
    yaw_steps   resolution of the search: the best of ``yaw_steps / 3`` evenly spaced yaws and
                of the three best of them, refined on the fine grid of ``yaw_steps`` around each
    max_pixels  foreground pixels used (a deterministic random subset, ``seed``)
    max_points  shape points used (a deterministic random subset, ``seed``)
    Takes about 0.5 s on one CPU thread at the defaults.
    """
    _require_geometry(image)
    if not isinstance(shape, ShapeFeatures):
        raise TypeError(f"shape must be ShapeFeatures (from encode_shape), got {type(shape).__name__}")
    if yaw_steps < 1 or max_pixels < 1 or max_points < 1:
        raise ValueError("yaw_steps, max_pixels and max_points must be >= 1")
    if not (temperature > 0 and sigma > 0 and feature_weight >= 0):
        raise ValueError("temperature and sigma must be > 0, feature_weight >= 0")
    with torch.inference_mode():
        xy, pred, view, canonical, pts, nrm, cos = _search_inputs(image, shape, mask=mask, max_pixels=max_pixels,
                                                                  max_points=max_points, seed=seed)
        opts = dict(feature_weight=feature_weight, temperature=temperature, sigma=sigma)
        # Coarse to fine: every third yaw of the fine grid, then the fine neighbours of the 3 best.
        fine = torch.arange(yaw_steps, dtype=torch.float32) * (2 * math.pi / yaw_steps)
        stride = 3 if yaw_steps >= 12 else 1
        coarse_idx = torch.arange(0, yaw_steps, stride)
        scores = torch.full((yaw_steps,), -float("inf"))
        centers = torch.zeros(yaw_steps, 3)
        scales = torch.ones(yaw_steps)
        sc, ce, sl = _yaw_scores(fine[coarse_idx], pred, view, canonical, pts, nrm, cos, **opts)
        scores[coarse_idx], centers[coarse_idx], scales[coarse_idx] = sc, ce, sl
        if stride > 1:
            top = coarse_idx[sc.topk(min(3, len(sc))).indices]
            near = torch.unique(torch.cat([(top + o) % yaw_steps for o in range(1 - stride, stride) if o]))
            near = near[~torch.isin(near, coarse_idx)]
            if len(near):
                sc, ce, sl = _yaw_scores(fine[near], pred, view, canonical, pts, nrm, cos, **opts)
                scores[near], centers[near], scales[near] = sc, ce, sl
        if not torch.isfinite(scores).any():
            raise ValueError("no candidate yaw leaves enough of the shape facing the camera")
        best = int(scores.argmax())
        yaw = float(fine[best])
        view_canonical = rotate_z(view[None, None], torch.tensor([yaw]))[0, 0]
    keep = scores > -float("inf")
    return PoseEstimate(yaw=yaw, center=centers[best], scale=float(scales[best]), view_dir=view_canonical,
                        yaws=fine[keep], scores=scores[keep], num_pixels=len(xy))


def pose_match(image: ImageFeatures, shape: ShapeFeatures, xy: object, *, pose: PoseEstimate | None = None,
               points: object | None = None, temperature: float = TEMPERATURE, sigma: float = SIGMA) -> Tensor:
    """Pose-verified similarity of pixels ``xy`` [M, 2] (input-image pixels) to 3D points.

    points  optional [P, 3] positions in the mesh's own coordinates (their features come from
            ``shape.query``); default: the shape's own N surface points
    returns [M, N] (or [M, P]) float32 on the CPU, in cosine units: ``cos - temperature * d^2 /
            (2 sigma^2)`` (at most 1; ``argmax`` along the points is a pixel's match, along the
            pixels a point's), ``d`` the distance between the pixel's predicted surface point
            and the point, in bounding-box diagonals, in the image's object frame. ``pose``
            defaults to :func:`estimate_pose` (image, shape).
    """
    _require_geometry(image)
    pts = as_coords(xy, dim=2, name="xy")
    pose, geo = _pose_and_geometry(image, shape, pose, temperature, sigma)
    with torch.inference_mode():
        if points is None:
            feats, canonical = shape.dense, _canonical(shape)
        else:
            xyz = as_coords(points, dim=3, name="points")
            feats, canonical = shape.query(xyz), _canonical(shape, xyz)
        cos = (image.sample(pts).float() @ feats.float().T.to(image.dense.device)).cpu()
        pred = geo.xyz_at(image.image_size, pts).float().cpu()
        d2 = torch.cdist(pred, pose.to_image_frame(canonical.cpu())).square()
        return cos - d2 * (temperature / (2 * sigma**2))


def pose_heatmap(image: ImageFeatures, shape: ShapeFeatures, point: object, *, pose: PoseEstimate | None = None,
                 feature: Tensor | None = None, temperature: float = TEMPERATURE, sigma: float = SIGMA) -> Tensor:
    """Where a 3D point lies in the image: :func:`pose_match`'s score of every pixel of the
    dense grid against one ``point`` [3] (mesh coordinates).

    feature  the point's [D] feature when the caller already has it (``shape.query``'s answer,
             queried here otherwise)
    returns [h, w] float32 on the CPU at the dense features' resolution (covering the whole
            input image, like ``ImageFeatures.dense``), in cosine units; ``pose`` defaults to
            :func:`estimate_pose` (image, shape).
    """
    _require_geometry(image)
    try:
        row = point.detach().reshape(1, -1) if isinstance(point, Tensor) else np.asarray(point, np.float64).reshape(1, -1)
    except (TypeError, ValueError) as e:
        raise TypeError(f"point must be three numbers (x, y, z), got {point!r:.80}") from e
    xyz = as_coords(row, dim=3, name="point")
    pose, geo = _pose_and_geometry(image, shape, pose, temperature, sigma)
    with torch.inference_mode():
        feat = (shape.query(xyz)[0] if feature is None else feature.reshape(-1)).float().cpu()
        cos = torch.einsum("dhw,d->hw", image.dense.float().cpu(), feat)
        q = pose.to_image_frame(_canonical(shape, xyz))[0]
        d2 = (geo.xyz.float().cpu() - q[:, None, None]).square().sum(0)
        return cos - d2 * (temperature / (2 * sigma**2))
