"""models/features.py: the pixel convention of ImageFeatures.sample, input validation, query frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tango3d_core.models.features import ImageFeatures, ShapeFeatures, as_coords


def _features(dense: torch.Tensor, image_size: tuple[int, int]) -> ImageFeatures:
    return ImageFeatures(dense=dense, global_embedding=torch.ones(4) / 2, image_size=image_size,
                         model_size=image_size)


def test_sample_full_resolution_map_is_pixel_lookup() -> None:
    # W=7 columns, H=5 rows: (x, y) = (column, row), (0, 0) the top-left pixel centre.
    dense = F.normalize(torch.randn(6, 5, 7), dim=0)
    feats = _features(dense, (7, 5))
    xy = torch.tensor([[0, 0], [6, 0], [0, 4], [6, 4], [3, 1]], dtype=torch.float32)
    out = feats.sample(xy)
    assert out.shape == (5, 6) and out.dtype == torch.float32
    for (x, y), row in zip(xy.long().tolist(), out):
        assert torch.allclose(row, dense[:, y, x], atol=1e-6)


def test_sample_recovers_position_from_coarse_map() -> None:
    # A 37x91 image covered by a 10x23 map whose features encode the (x, y) of each cell centre as
    # (x, y, c) / norm; bilinear interpolation of that linear map, re-normalised, still gives back
    # x = c * f0 / f2 and y = c * f1 / f2 at any interior position.
    w_img, h_img, w, h, c = 37, 91, 10, 23, 1000.0
    xs = (torch.arange(w) + 0.5) * w_img / w - 0.5
    ys = (torch.arange(h) + 0.5) * h_img / h - 0.5
    raw = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w), torch.full((h, w), c)])
    # Storing unnormalised values keeps the map linear; ``sample`` normalises after interpolation.
    feats = _features(raw, (w_img, h_img))
    g = torch.Generator().manual_seed(0)
    xy = torch.stack([torch.rand(40, generator=g) * (w_img - 1 - 2 * 1.85) + 1.85,
                      torch.rand(40, generator=g) * (h_img - 1 - 2 * 1.98) + 1.98], dim=-1)
    out = feats.sample(xy)
    assert torch.allclose(out.norm(dim=1), torch.ones(40), atol=1e-5)
    assert torch.allclose(c * out[:, :2] / out[:, 2:], xy, atol=1e-3)


def test_sample_accepts_numpy_and_lists() -> None:
    feats = _features(F.normalize(torch.randn(3, 4, 4), dim=0), (4, 4))
    a = feats.sample(np.array([[1.0, 2.0]]))
    b = feats.sample([[1, 2]])
    assert torch.allclose(a, b)


@pytest.mark.parametrize(
    "xy, err, match",
    [
        (torch.zeros(0, 2), ValueError, "empty"),
        (torch.zeros(3, 3), ValueError, r"\[M, 2\]"),
        (torch.zeros(2), ValueError, r"\[M, 2\]"),
        ([["a", "b"]], TypeError, "numeric"),
        ("1,2", TypeError, "tensor or array"),
        (torch.tensor([[float("nan"), 1.0]]), ValueError, "NaN"),
        (torch.tensor([[4.6, 1.0]]), ValueError, "outside"),
        (torch.tensor([[1.0, -0.6]]), ValueError, "outside"),
    ],
)
def test_sample_bad_inputs(xy, err, match) -> None:
    feats = _features(torch.randn(3, 4, 5), (5, 4))
    with pytest.raises(err, match=match):
        feats.sample(xy)


def test_sample_edges_are_inside() -> None:
    feats = _features(torch.randn(3, 4, 5), (5, 4))
    assert feats.sample([[-0.5, -0.5], [4.5, 3.5]]).shape == (2, 3)


def test_shape_query_maps_to_canonical_frame() -> None:
    seen = []

    def fake_query(xyz: torch.Tensor) -> torch.Tensor:
        seen.append(xyz)
        return F.normalize(torch.ones(xyz.shape[0], 2), dim=-1)

    shp = ShapeFeatures(points=torch.zeros(3, 3), normals=torch.zeros(3, 3), dense=torch.zeros(3, 2),
                        global_embedding=torch.zeros(4), center=torch.tensor([1.0, 2.0, 3.0]), scale=0.5,
                        _query=fake_query)
    out = shp.query([[3.0, 2.0, 1.0]])
    assert out.shape == (1, 2)
    assert torch.allclose(seen[0], torch.tensor([[1.0, 0.0, -1.0]]))
    with pytest.raises(ValueError, match=r"\[M, 3\]"):
        shp.query([[1.0, 2.0]])


def test_as_coords_casts_ints() -> None:
    t = as_coords(torch.tensor([[1, 2]]), dim=2, name="xy")
    assert t.dtype == torch.float32
