"""Masks: the editor's strokes, uploaded mask files (bounded), the foreground guess, and the
region transfer against a naive reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from app.masks import (MaskError, draw_mask, foreground_mask, mask_from_editor, mask_prototypes, mask_to_layer,
                       read_mask_file, region_scores)
from tango3d_core.models.features import ImageFeatures

BOUNDS = {"max_bytes": 1_000_000, "max_pixels": 1_000_000}


def _layer(h, w, box=None):
    a = np.zeros((h, w, 4), np.uint8)
    if box is not None:
        y0, y1, x0, x1 = box
        a[y0:y1, x0:x1] = (255, 140, 0, 255)
    return a


def test_editor_strokes_become_the_mask():
    value = {"background": np.full((40, 60, 4), 255, np.uint8), "layers": [_layer(40, 60, (5, 15, 10, 30))],
             "composite": None}
    m = mask_from_editor(value, (60, 40))
    assert m.shape == (40, 60) and m.sum() == 10 * 20 and m[5:15, 10:30].all()
    # A canvas at another scale (same aspect) is resized to the image.
    m2 = mask_from_editor({"layers": [_layer(80, 120, (10, 30, 20, 60))]}, (60, 40))
    assert m2.shape == (40, 60) and m2[5:15, 10:30].all() and m2.sum() == 200
    # Strokes on several layers are joined.
    two = {"layers": [_layer(40, 60, (0, 5, 0, 5)), _layer(40, 60, (30, 35, 50, 55))]}
    assert mask_from_editor(two, (60, 40)).sum() == 50


def test_editor_without_strokes_is_none():
    assert mask_from_editor(None, (10, 10)) is None
    assert mask_from_editor({"background": None, "layers": [], "composite": None}, (10, 10)) is None
    assert mask_from_editor({"layers": [_layer(10, 10)]}, (10, 10)) is None


def test_editor_with_another_shape_is_refused():
    with pytest.raises(MaskError, match="image's shape"):
        mask_from_editor({"layers": [_layer(40, 40, (0, 5, 0, 5))]}, (60, 40))


def test_mask_files(tmp_path):
    m = np.zeros((40, 60), np.uint8)
    m[10:20, 5:25] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    got = read_mask_file(tmp_path / "m.png", (60, 40), **BOUNDS)
    assert got.sum() == 200 and got[10:20, 5:25].all()
    # A cut-out: opaque = inside, whatever the colour.
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[0:4, 0:6, 3] = 255
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    assert read_mask_file(tmp_path / "cut.png", (60, 40), **BOUNDS).sum() == 24
    # Scaled (same aspect): resized to the image.
    Image.fromarray(m).resize((120, 80), Image.NEAREST).save(tmp_path / "big.png")
    assert read_mask_file(tmp_path / "big.png", (60, 40), **BOUNDS).sum() == 200


@pytest.mark.parametrize("make,match", [
    (lambda p: p.write_bytes(b"not an image"), "not a readable"),
    (lambda p: Image.new("L", (60, 40)).save(p, format="GIF"), "Unsupported mask format"),
    (lambda p: Image.new("L", (60, 40)).save(p, format="PNG"), "empty"),
    (lambda p: Image.new("L", (40, 40), 255).save(p, format="PNG"), "image's shape"),
    (lambda p: Image.new("L", (3000, 2000), 255).save(p, format="PNG"), "megapixels"),
])
def test_bad_mask_files(tmp_path, make, match):
    path = tmp_path / "mask.png"
    make(path)
    with pytest.raises(MaskError, match=match):
        read_mask_file(path, (60, 40), **BOUNDS)


def test_mask_file_byte_bound(tmp_path):
    noise = (np.random.default_rng(0).random((200, 300)) * 255).astype(np.uint8)
    Image.fromarray(noise).save(tmp_path / "noisy.png")
    with pytest.raises(MaskError, match="MB; the limit"):
        read_mask_file(tmp_path / "noisy.png", (300, 200), max_bytes=10_000, max_pixels=10**7)


def test_foreground_of_a_render_and_of_a_photo_like_image():
    img = np.full((50, 80, 3), 255, np.uint8)
    img[10:40, 20:60] = (120, 30, 30)
    fg = foreground_mask(Image.fromarray(img))
    assert fg.sum() == 30 * 40 and fg[10:40, 20:60].all()
    noisy = (np.random.default_rng(0).random((50, 80, 3)) * 255).astype(np.uint8)
    assert foreground_mask(Image.fromarray(noisy)).all()   # no plain background: everything


def _features(d=8, h=6, w=10, size=(60, 40), seed=0):
    g = torch.Generator().manual_seed(seed)
    dense = F.normalize(torch.randn(d, h, w, generator=g), dim=0)
    return ImageFeatures(dense=dense, global_embedding=F.normalize(torch.randn(d, generator=g), dim=0),
                         image_size=size, model_size=size)


def test_prototypes_and_scores_match_a_naive_loop():
    feats = _features()
    mask = np.zeros((40, 60), bool)
    mask[5:15, 10:25] = True
    fg = np.zeros((40, 60), bool)
    fg[0:30, 0:50] = True
    inside, outside = mask_prototypes(feats, mask, fg)
    # Naive: sample every pixel one at a time.
    ins = [feats.sample([[x, y]])[0] for y in range(40) for x in range(60) if mask[y, x]]
    outs = [feats.sample([[x, y]])[0] for y in range(40) for x in range(60) if fg[y, x] and not mask[y, x]]
    ref_in = F.normalize(torch.stack(ins).mean(0), dim=0)
    ref_out = F.normalize(torch.stack(outs).mean(0), dim=0)
    assert torch.allclose(inside, ref_in, atol=1e-5) and torch.allclose(outside, ref_out, atol=1e-5)
    pts = F.normalize(torch.randn(50, 8), dim=1)
    score = region_scores(pts, inside, outside)
    ref = torch.tensor([float(p @ ref_in) - float(p @ ref_out) for p in pts])
    assert torch.allclose(score, ref, atol=1e-5)


def test_points_like_the_masked_pixels_score_highest():
    feats = _features(seed=1)
    mask = np.zeros((40, 60), bool)
    mask[:, :30] = True
    inside, outside = mask_prototypes(feats, mask)
    left = feats.sample([[x, y] for y in range(0, 40, 4) for x in range(0, 28, 4)])
    right = feats.sample([[x, y] for y in range(0, 40, 4) for x in range(32, 60, 4)])
    assert float(region_scores(left, inside, outside).mean()) > float(region_scores(right, inside, outside).mean())


def test_full_mask_has_no_outside_and_empty_mask_is_refused():
    feats = _features()
    inside, outside = mask_prototypes(feats, np.ones((40, 60), bool))
    assert outside is None
    pts = F.normalize(torch.randn(5, 8), dim=1)
    assert torch.allclose(region_scores(pts, inside, None), pts @ inside)
    with pytest.raises(MaskError, match="empty"):
        mask_prototypes(feats, np.zeros((40, 60), bool))


def test_drawing_helpers():
    img = Image.new("RGB", (60, 40), (255, 255, 255))
    mask = np.zeros((40, 60), bool)
    mask[10:20, 10:20] = True
    out = np.asarray(draw_mask(img, mask)).astype(int)
    assert (out[15, 15] != 255).any() and (out[35, 50] == 255).all()
    layer = mask_to_layer(mask)
    assert layer.shape == (40, 60, 4) and (layer[..., 3] > 0).sum() == 100
    assert mask_from_editor({"layers": [layer]}, (60, 40)).sum() == 100   # round trip


def test_editor_layers_are_bounded():
    with pytest.raises(MaskError, match="megapixels"):
        mask_from_editor({"layers": [_layer(400, 600, (0, 5, 0, 5))]}, (60, 40), max_pixels=10_000)
