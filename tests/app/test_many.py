"""Pixel -> many: the per-pixel point index of a card against the ray caster, and a query's
colours against a naive recomputation."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from app.many import ShapeCard, shaded_index_render
from app.overlay import OverlaySettings
from tango3d_core.data import shapes


class _Feats:
    def __init__(self, points, dense):
        self.points, self.dense = torch.as_tensor(points, dtype=torch.float32), dense


def _card(n=512, d=8, seed=0):
    import trimesh

    mesh = shapes.generate("mug", 3).mesh
    pts, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    dense = F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)
    return mesh, ShapeCard.build("mug-3", "mug #3", mesh, _Feats(pts, dense), size=96)


def test_index_points_at_the_nearest_sample_of_each_visible_pixel():
    mesh, card = _card()
    assert card.index.shape == (96, 96) and (card.index >= 0).mean() > 0.1
    from tango3d_core.data import render

    view = render.renderer_for(mesh).render(card.camera)
    np.testing.assert_array_equal(card.index >= 0, view.mask)
    ys, xs = np.nonzero(view.mask)
    for y, x in list(zip(ys, xs))[::97]:
        d = np.linalg.norm(card.points - view.xyz[y, x], axis=1)
        assert abs(d[card.index[y, x]] - d.min()) < 1e-6
    assert ((card.shade > 0) & (card.shade <= 1)).all()


def test_heat_colours_and_best_point_follow_the_query():
    _, card = _card()
    q = card.dense[17]
    img, best, sims = card.heat(q, OverlaySettings(mode="all", opacity=1.0))
    np.testing.assert_allclose(sims, (card.dense @ q).numpy(), atol=1e-6)
    assert abs(best - 1.0) < 1e-5                    # the point itself
    assert img.size == (96, 96)
    # Background stays white; the shape is coloured.
    arr = np.asarray(img)
    assert (arr[card.index < 0] == 255).all() or (arr[card.index < 0] >= 250).mean() > 0.95
    grey = np.asarray(card.heat(q, OverlaySettings(mode="threshold", threshold=1.0, opacity=1.0))[0]).astype(int)
    assert np.abs(arr.astype(int) - grey).sum() > 0


def test_shaded_index_render_of_a_simple_box():
    import trimesh

    box = trimesh.creation.box()
    pts = np.asarray(box.vertices, np.float64)
    index, shade, cam = shaded_index_render(box, pts, size=48)
    seen = np.unique(index[index >= 0])
    assert len(seen) >= 3 and index.shape == (48, 48) and shade.dtype == np.float32
