"""The feature view's PCA: against numpy's SVD, one projection shared by several blocks,
deterministic signs, robust colour ranges."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from app.pca import fit_pca, image_pca_rgb


def _data(seed=0, n=600, d=16):
    rng = np.random.default_rng(seed)
    # Three strong directions plus noise, so the components are well separated.
    basis = np.linalg.qr(rng.normal(size=(d, 3)))[0].T
    coeff = rng.normal(size=(n, 3)) * np.array([5.0, 3.0, 1.5])
    return torch.tensor(coeff @ basis + 0.1 * rng.normal(size=(n, d)), dtype=torch.float32)


def test_components_match_numpy_svd():
    x = _data()
    proj = fit_pca([x])
    xc = x.double().numpy() - x.double().numpy().mean(0)
    _, sv, vt = np.linalg.svd(xc, full_matrices=False)
    for i in range(3):
        # Same direction up to sign.
        assert abs(abs(float(np.dot(proj.components[i].numpy(), vt[i]))) - 1.0) < 1e-4
    np.testing.assert_allclose(proj.explained.numpy(), (sv[:3] ** 2) / (sv**2).sum(), rtol=1e-4)
    np.testing.assert_allclose(proj.project(x).numpy(), (x.numpy() - proj.mean.numpy()) @ proj.components.numpy().T,
                               atol=1e-4)


def test_signs_are_deterministic_and_rgb_is_in_range():
    x = _data(1)
    a, b = fit_pca([x]), fit_pca([x.flip(0)])          # same rows, another order
    np.testing.assert_allclose(a.components.numpy(), b.components.numpy(), atol=1e-5)
    for row in a.components.numpy():
        assert row[np.argmax(np.abs(row))] > 0
    rgb = a.to_rgb(x)
    assert rgb.shape == (len(x), 3) and float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
    u8 = a.to_u8(x)
    assert u8.dtype == np.uint8 and u8.shape == (len(x), 3)


def test_robust_range_ignores_outliers():
    x = _data(2)
    spiked = torch.cat([x, x[:3] * 1000.0])
    proj = fit_pca([spiked], low=0.01, high=0.99)
    rgb = proj.to_rgb(x)
    # Without a robust range the three outliers would squash everything into one colour.
    assert float(rgb[:, 0].std()) > 0.1


def test_one_projection_is_shared_by_every_block():
    x = _data(3)
    img_rows, pts = x[:400], x[400:]
    proj = fit_pca([img_rows, pts])
    # The same feature gets the same colour whichever block it comes from.
    np.testing.assert_array_equal(proj.to_u8(img_rows[:5]), proj.to_u8(img_rows[:5].clone()))
    joint = fit_pca([torch.cat([img_rows, pts])], max_rows=10_000)
    both = fit_pca([img_rows, pts], max_rows=10_000)
    np.testing.assert_allclose(joint.components.numpy(), both.components.numpy(), atol=1e-5)


def test_each_block_has_a_say_in_the_fit():
    big = torch.zeros(30_000, 8)
    big[:, 0] = torch.randn(30_000)
    small = torch.zeros(200, 8)
    small[:, 1] = torch.randn(200) * 3
    proj = fit_pca([big, small], max_rows=400)  # 200 rows per block
    top2 = {int(np.argmax(np.abs(c))) for c in proj.components[:2].numpy()}
    assert top2 == {0, 1}


def test_image_colours_have_the_image_size_and_fade_the_background():
    d, h, w = 8, 6, 10
    dense = torch.nn.functional.normalize(torch.randn(d, h, w), dim=0)
    proj = fit_pca([dense.reshape(d, -1).T])
    fg = np.zeros((60, 100), bool)
    fg[20:40, 30:70] = True
    img = image_pca_rgb(proj, dense, (100, 60), dim_mask=fg)
    assert isinstance(img, Image.Image) and img.size == (100, 60)
    arr = np.asarray(img).astype(int)
    assert arr[~fg].mean() > arr[fg].mean()   # faded towards white


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least one"):
        fit_pca([])
    with pytest.raises(ValueError, match="one D"):
        fit_pca([torch.zeros(3, 4), torch.zeros(3, 5)])
    with pytest.raises(ValueError, match="low < high"):
        fit_pca([torch.randn(10, 4)], low=0.9, high=0.1)


def test_fewer_dims_than_channels():
    x = torch.randn(50, 2)
    proj = fit_pca([x])
    assert proj.components.shape == (3, 2) and float(proj.components[2].abs().sum()) == 0.0
    assert proj.to_rgb(x).shape == (50, 3)
