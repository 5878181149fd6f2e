"""Colour maps, 3D point colours and image heat maps, against naive numpy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from app.overlay import COLORMAPS, OverlaySettings, colormap_lut, draw_marker, heat_image, point_colors
from tango3d_core.models import ImageFeatures


def _naive_colors(sims: np.ndarray, base: np.ndarray, st: OverlaySettings) -> np.ndarray:
    lut = colormap_lut(st.colormap).numpy()
    t = (sims + 1) / 2 if st.scale == "absolute" else (sims - sims.min()) / max(sims.max() - sims.min(), 1e-6)
    heat = lut[np.clip((np.clip(t, 0, 1) * 255 + 0.5).astype(int), 0, 255)]
    if st.mode == "all":
        w = np.ones_like(sims)
    elif st.mode == "top-k":
        w = np.zeros_like(sims)
        w[np.argsort(-sims, kind="stable")[: st.k]] = 1
    else:
        w = (sims >= st.threshold).astype(float)
    a = st.opacity * w[:, None]
    return np.clip(np.floor((base * (1 - a) + heat * a) * 255 + 0.5), 0, 255).astype(np.uint8)


def test_luts_start_and_end_at_their_anchors():
    for name, anchors in COLORMAPS.items():
        lut = colormap_lut(name)
        assert lut.shape == (256, 3)
        first = [int(anchors[0][i:i + 2], 16) / 255 for i in (1, 3, 5)]
        last = [int(anchors[-1][i:i + 2], 16) / 255 for i in (1, 3, 5)]
        torch.testing.assert_close(lut[0], torch.tensor(first), atol=1e-6, rtol=0)
        torch.testing.assert_close(lut[-1], torch.tensor(last), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="unknown colormap"):
        colormap_lut("jet")


@pytest.mark.parametrize("settings", [
    OverlaySettings(),
    OverlaySettings(colormap="viridis", mode="top-k", k=37, opacity=0.6),
    OverlaySettings(colormap="magma", mode="threshold", threshold=0.2, opacity=1.0, scale="absolute"),
    OverlaySettings(colormap="gray", mode="all", opacity=0.0),
])
def test_point_colors_match_naive_reference(settings):
    rng = np.random.default_rng(3)
    sims = rng.uniform(-1, 1, 500).astype(np.float32)
    base = rng.uniform(0, 1, (500, 3)).astype(np.float32)
    colors, best = point_colors(torch.from_numpy(sims), torch.from_numpy(base), settings)
    assert best == int(np.argmax(sims))
    assert colors.dtype == np.uint8 and colors.shape == (500, 3)
    ref = _naive_colors(sims, base, settings)
    assert np.abs(colors.astype(int) - ref.astype(int)).max() <= 1


def test_point_colors_selection_keeps_surface_colour_elsewhere():
    sims = torch.linspace(-1, 1, 100)
    base = torch.full((100, 3), 0.5)
    colors, _ = point_colors(sims, base, OverlaySettings(mode="top-k", k=10, opacity=1.0))
    assert (colors[:90] == 128).all()
    assert not (colors[90:] == 128).all(axis=1).any()


def test_point_colors_shape_errors():
    with pytest.raises(ValueError, match="sims"):
        point_colors(torch.zeros(4), torch.zeros(5, 3), OverlaySettings())


def test_heat_image_agrees_with_imagefeatures_sample():
    """The heat map's best pixel is where ImageFeatures.sample gives the highest similarity."""
    g = torch.Generator().manual_seed(0)
    dense = F.normalize(torch.randn(8, 6, 9, generator=g), dim=0)
    img = Image.new("RGB", (45, 30), (10, 200, 10))
    feats = ImageFeatures(dense=dense, global_embedding=torch.zeros(4), image_size=(45, 30), model_size=(45, 30))
    query = F.normalize(torch.randn(8, generator=g), dim=0)
    out, best = heat_image(img, dense, query, OverlaySettings(opacity=1.0))
    assert out.size == img.size
    xs, ys = np.meshgrid(np.arange(45), np.arange(30))
    xy = torch.tensor(np.stack([xs.ravel(), ys.ravel()], 1), dtype=torch.float32)
    # sample() normalises the interpolated feature; the heat map uses the raw dot product, whose
    # argmax can differ only through that normalisation -- compare with the unnormalised map.
    from tango3d_core.models.ops import sample_map_at_pixels

    raw = sample_map_at_pixels(dense[None], xy[None], (45, 30))[0] @ query
    i = int(raw.argmax())
    assert best == (int(xy[i, 0]), int(xy[i, 1]))
    assert feats.sample([list(best)]).shape == (1, 8)


def test_heat_image_threshold_and_opacity_zero_keep_the_image():
    dense = F.normalize(torch.randn(4, 3, 3), dim=0)
    img = Image.new("RGB", (12, 12), (40, 50, 60))
    out, _ = heat_image(img, dense, dense[:, 0, 0], OverlaySettings(opacity=0.0))
    assert np.array_equal(np.asarray(out), np.asarray(img))
    out, _ = heat_image(img, dense, dense[:, 0, 0], OverlaySettings(mode="threshold", threshold=1.0, opacity=1.0))
    # Only pixels reaching cosine 1 (none after interpolation, or at most the corner) change.
    changed = (np.asarray(out) != np.asarray(img)).any(axis=2)
    assert changed.sum() <= 4


def test_draw_marker_is_centred_and_leaves_the_input_alone():
    img = Image.new("RGB", (100, 80), (255, 255, 255))
    out = draw_marker(img, (30, 50), color=(255, 0, 0))
    a = np.asarray(out)
    assert np.asarray(img).min() == 255  # input untouched
    ys, xs = np.nonzero((a != 255).any(axis=2))
    assert abs(xs.mean() - 30) < 1.5 and abs(ys.mean() - 50) < 1.5


@pytest.mark.parametrize("bad", [dict(colormap="jet"), dict(mode="some"), dict(k=0), dict(threshold=2.0),
                                 dict(opacity=-0.1), dict(scale="log")])
def test_settings_validation(bad):
    with pytest.raises(ValueError):
        OverlaySettings(**bad)
