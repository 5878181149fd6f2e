"""The VAE reconstruction view: the shape VAE's reconstruction of the first shape, beside it in
the 3D view. The tiny random test model's occupancy may have no surface at all, so most tests
replace ``Tango3D._occupancy_field`` by an analytic ball (logit = radius - |xyz|, canonical
frame), whose reconstruction is known."""

from __future__ import annotations

import dataclasses
import re
import time

import numpy as np
import pytest
import torch
import trimesh

from app.explorer import Explorer, Limits, UserError
from app.reconstruction import RESOLUTION, reconstruct, tango3d_model
from app.viewer import SLOT_GAP, SlotContent, Viewer
from tango3d_core.models.tango3d import Tango3D
from tango3d_core.providers import BackprojectionProvider

LIMITS = Limits(num_points=1024, timeout_s=60.0, max_sessions=4)
RADIUS = 0.2  # canonical units (the bounding-box diagonal is 1)


@pytest.fixture
def ball(monkeypatch):
    """Replace the VAE's occupancy by a ball of radius ``RADIUS`` about the bounding-box centre;
    returns the ``num_latents`` of every encoding asked for."""
    calls: list[int] = []

    def field(self, mesh, *, num_points, num_latents, seed):
        calls.append(num_latents)
        lo, hi = torch.tensor(np.asarray(mesh.bounds), dtype=torch.float32)
        return (lambda xyz: RADIUS - xyz.norm(dim=-1)), (lo + hi) / 2, 1.0 / float((hi - lo).norm())

    monkeypatch.setattr(Tango3D, "_occupancy_field", field)
    return calls


def _load(ex, s, name):
    index = next(i for i, e in enumerate(ex.examples) if e.name == name)
    ex.load_example(s, index)


def _backprojection(provider, name="backprojection"):
    return BackprojectionProvider(provider.encode_image, name=name, num_views=2, view_size=32)


# ------------------------------------------------------------------------ the view

def test_reconstruction_is_shown_left_of_the_shape_in_its_frame(make_explorer, provider, ball):
    ex = make_explorer(provider)
    s = ex.open_session("a")
    _load(ex, s, "chair")
    status = ex.vae_reconstruction(s)
    tokens = provider.model.reconstruction_tokens
    cfg = provider.model.config.shape
    assert tokens == min(4 * cfg.num_latents, cfg.encoder_points) and ball == [tokens]
    assert re.match(rf"VAE reconstruction: {tokens} tokens, [\d,]+ faces, \d+\.\d s \(tango3d;", status)
    assert s.status == status and s.reconstruction_shown

    rec = s.reconstruction
    assert rec.tokens == tokens and rec.resolution == RESOLUTION and f"{rec.faces:,} faces" in status
    # The reconstruction is in the mesh's own frame: the ball about the bounding-box centre.
    lo, hi = np.asarray(s.mesh.bounds)
    diag = float(np.linalg.norm(hi - lo))
    np.testing.assert_allclose(rec.mesh.bounds.mean(axis=0), (lo + hi) / 2, atol=0.01 * diag)
    np.testing.assert_allclose(rec.mesh.extents, 2 * RADIUS * diag, rtol=0.03)

    # Drawn with the input's display frame (same centre and scale), moved left of it.
    slot, shown, frame, verts = s.viewer.reconstruction()
    assert slot == 0 and shown is rec.mesh
    f0 = s.viewer._slots[0][1]
    np.testing.assert_array_equal(frame.centre, f0.centre)
    assert frame.scale == f0.scale and frame.offset[1] == frame.offset[2] == 0
    np.testing.assert_allclose(verts, frame.to_display(rec.mesh.vertices).astype(np.float32), atol=1e-6)
    input_left = f0.to_display(lo)[0]
    assert verts[:, 0].max() == pytest.approx(input_left - SLOT_GAP, abs=1e-5)
    np.testing.assert_allclose(verts.max(0) - verts.min(0), rec.mesh.extents * f0.scale, rtol=1e-4)
    # The camera takes both in.
    cam = np.asarray(s.viewer.server.initial_camera.look_at)
    assert frame.offset[0] < cam[0] < f0.offset[0]


def test_toggling_uses_the_cache_until_the_shape_changes(make_explorer, provider, ball):
    ex = make_explorer(provider, make_provider=lambda name: _backprojection(provider, name),
                       compare=["backprojection"])
    s = ex.open_session("a")
    _load(ex, s, "chair")
    ex.vae_reconstruction(s)
    rec = s.reconstruction
    assert s.viewer.reconstruction() is not None and len(ball) == 1

    assert "hidden" in ex.vae_reconstruction(s)
    assert s.viewer.reconstruction() is None and not s.reconstruction_shown and s.reconstruction is rec

    t0 = time.perf_counter()
    status = ex.vae_reconstruction(s)
    assert time.perf_counter() - t0 < 0.5 and len(ball) == 1                  # not computed again
    assert "from the cache" in status and s.viewer.reconstruction()[1] is rec.mesh

    # Another view beside the first (comparison) rebuilds the slots: the reconstruction stays put.
    frame = s.viewer.reconstruction()[2]
    ex.set_compare(s, "backprojection")
    assert s.viewer.slots() == [0, 1]
    np.testing.assert_array_equal(s.viewer.reconstruction()[2].offset, frame.offset)

    # A new first shape drops it, from the view and from the cache.
    _load(ex, s, "mug")
    assert s.reconstruction is None and not s.reconstruction_shown and s.viewer.reconstruction() is None
    ex.vae_reconstruction(s)
    assert len(ball) == 2 and s.reconstruction is not rec
    np.testing.assert_allclose(s.reconstruction.mesh.bounds.mean(axis=0), np.asarray(s.mesh.bounds).mean(axis=0),
                               atol=0.01 * float(np.linalg.norm(s.mesh.extents)))


# ---------------------------------------------------------------- what can go wrong

def test_a_provider_without_a_shape_vae_says_so(make_explorer, provider):
    bp = _backprojection(provider)
    assert tango3d_model(bp) is None and tango3d_model(object()) is None and tango3d_model(provider) is provider.model
    ex = make_explorer(bp)
    s = ex.open_session("a")
    with pytest.raises(UserError, match="needs a Tango3D model with a shape VAE; the provider 'backprojection' has"):
        ex.vae_reconstruction(s)
    _load(ex, s, "chair")
    status = s.status
    with pytest.raises(UserError, match="'backprojection' has none"):
        ex.vae_reconstruction(s)
    assert s.status == status and s.reconstruction is None and s.viewer.reconstruction() is None
    assert s.viewer.slots() == [0]
    ex.click_pixel(s, (160, 150))                                       # the rest still works
    assert s.last_query[0] == "pixel"


def test_no_surface_is_a_message_and_loses_nothing(make_explorer, provider, monkeypatch):
    monkeypatch.setattr(Tango3D, "_occupancy_field",
                        lambda self, mesh, **kw: ((lambda xyz: -torch.ones(len(xyz))), torch.zeros(3), 1.0))
    ex = make_explorer(provider)
    s = ex.open_session("a")
    _load(ex, s, "chair")
    ex.set_overlay(s, matching="features")
    ex.click_pixel(s, (160, 150))
    query, colors, status, mesh = s.last_query, s.viewer.colors(0).copy(), s.status, s.mesh
    with pytest.raises(UserError, match=r"The VAE could not reconstruct 'chair.*no surface.*outside"):
        ex.vae_reconstruction(s)
    assert s.last_query == query and s.status == status and s.mesh is mesh
    np.testing.assert_array_equal(s.viewer.colors(0), colors)
    assert s.reconstruction is None and not s.reconstruction_shown and s.viewer.reconstruction() is None
    assert ex.session("a") is s and not s.viewer.closed
    ex.click_pixel(s, (100, 100))                                       # the session carries on
    assert s.last_query[1] == (100, 100)


def test_no_shape_loaded(make_explorer, provider):
    ex = make_explorer(provider)
    s = ex.open_session("a")
    with pytest.raises(UserError, match="Load a shape first"):
        ex.vae_reconstruction(s)
    assert s.reconstruction is None and s.viewer.reconstruction() is None


def test_the_reconstruction_is_bounded_in_time(make_explorer, provider, monkeypatch):
    def slow(self, mesh, **kw):
        time.sleep(1.0)
        return trimesh.creation.box()

    ex = make_explorer(provider)
    s = ex.open_session("a")
    _load(ex, s, "chair")
    monkeypatch.setattr(Tango3D, "reconstruct", slow)
    ex.limits = dataclasses.replace(LIMITS, timeout_s=0.2)
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="The VAE reconstruction took longer than 0.2 s"):
        ex.vae_reconstruction(s)
    assert time.perf_counter() - t0 < 0.9
    assert s.reconstruction is None and s.viewer.reconstruction() is None


def test_a_shape_loaded_meanwhile_wins(make_explorer, provider, ball, monkeypatch):
    ex = make_explorer(provider)
    s = ex.open_session("a")
    _load(ex, s, "chair")
    real = Tango3D.reconstruct

    def racing(self, mesh, **kw):
        _load(ex, s, "mug")  # another event of the same tab, while the reconstruction runs
        return real(self, mesh, **kw)

    monkeypatch.setattr(Tango3D, "reconstruct", racing)
    with pytest.raises(UserError, match="shape changed"):
        ex.vae_reconstruction(s)
    assert s.mesh_name.startswith("mug") and s.reconstruction is None and s.viewer.reconstruction() is None


def test_without_the_viser_view(make_explorer, provider, ball):
    for viewer in ("fallback", False):
        ex = make_explorer(provider, viewer=viewer)
        s = ex.open_session("a")
        _load(ex, s, "chair")
        with pytest.raises(UserError, match="interactive 3D view"):
            ex.vae_reconstruction(s)
        assert s.reconstruction is None and not ball


def test_reconstruct_times_the_model_call(provider, ball):
    mesh = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    rec = reconstruct(provider.model, mesh, key="k", resolution=16, num_points=512)
    assert rec.key == "k" and rec.resolution == 16 and rec.tokens == provider.model.reconstruction_tokens
    assert rec.seconds > 0 and rec.faces == len(rec.mesh.faces) > 0
    assert rec.summary() == f"{rec.tokens} tokens, {rec.faces:,} faces, {rec.seconds:.1f} s"


# ------------------------------------------------------------------- the viewer

def test_viewer_keeps_the_reconstruction_with_its_shape():
    mesh = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    rec = trimesh.creation.icosphere(radius=0.4)
    pts, fid = trimesh.sample.sample_surface(mesh, 50, seed=0)
    content = SlotContent(mesh=mesh, points=pts, normals=mesh.face_normals[fid], base=np.zeros((50, 3), np.uint8),
                          label="x")
    v = Viewer()
    try:
        assert v.show_reconstruction(0, rec, "VAE") is None and v.reconstruction() is None  # no slot 0 yet
        v.show(0, content)
        frame = v.show_reconstruction(0, rec, "VAE")
        handle = v._recon[4]["mesh"]
        v.show(0, content)                                   # the same shape again: left untouched
        assert v._recon[4]["mesh"] is handle and v.reconstruction()[2] == frame
        v.clear_reconstruction()
        assert v.reconstruction() is None
        v.show_reconstruction(0, rec, "VAE")
        other = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
        v.show(0, dataclasses.replace(content, mesh=other))  # another shape: its reconstruction goes
        assert v.reconstruction() is None
        v.show_reconstruction(0, rec, "VAE")
        v.clear(0)
        assert v.reconstruction() is None
    finally:
        v.close()
