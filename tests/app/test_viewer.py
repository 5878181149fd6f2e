"""The viser side: display frame, ray picking, in-place colour updates, per-session servers."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from app.viewer import DisplayFrame, SlotContent, Viewer, intersect_ray


def _content(mesh: trimesh.Trimesh, n: int = 200, label: str = "test") -> SlotContent:
    pts, fid = trimesh.sample.sample_surface(mesh, n, seed=0)
    return SlotContent(mesh=mesh, points=pts, normals=mesh.face_normals[fid],
                       base=np.full((n, 3), 100, np.uint8), label=label)


@pytest.fixture
def viewer():
    clicks = []
    v = Viewer(on_click=lambda slot, p: clicks.append((slot, p)))
    v.clicks = clicks  # type: ignore[attr-defined]
    yield v
    v.close()


def test_display_frame_round_trip_and_normalisation():
    mesh = trimesh.creation.box(extents=(2.0, 4.0, 6.0))
    mesh.apply_translation((10.0, -3.0, 1.0))
    f = DisplayFrame.for_mesh(mesh, offset=np.array([1.5, 0, 0]))
    disp = f.to_display(mesh.vertices)
    lo, hi = disp.min(0), disp.max(0)
    np.testing.assert_allclose(np.linalg.norm(hi - lo), 1.0, atol=1e-9)
    np.testing.assert_allclose((lo + hi) / 2, [1.5, 0, 0], atol=1e-9)
    np.testing.assert_allclose(f.to_mesh(disp), mesh.vertices, atol=1e-9)


def test_intersect_ray_matches_analytic_sphere():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=2.0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        origin = rng.normal(size=3)
        origin = origin / np.linalg.norm(origin) * 6.0
        target = rng.normal(size=3) * 0.3
        d = (target - origin) / np.linalg.norm(target - origin)
        hit = intersect_ray(sphere, origin, d)
        # Analytic first intersection with the sphere of radius 2 (the mesh is within 0.3%).
        b = np.dot(origin, d)
        t = -b - np.sqrt(b * b - (origin @ origin - 4.0))
        assert hit is not None
        np.testing.assert_allclose(hit[1], t, atol=0.02)
        np.testing.assert_allclose(hit[0], origin + t * d, atol=0.02)
    assert intersect_ray(sphere, np.array([0, 0, 10.0]), np.array([1.0, 0, 0])) is None
    assert intersect_ray(sphere, np.array([0, 0, 10.0]), np.array([0.0, 0, 0])) is None


def test_set_colors_updates_the_same_handle(viewer):
    mesh = trimesh.creation.icosphere(subdivisions=2)
    viewer.show(0, _content(mesh))
    handle = viewer._slots[0][2]["overlay"]
    new = np.zeros((200, 3), np.uint8)
    new[:, 0] = 255
    viewer.set_colors(0, new)
    assert viewer._slots[0][2]["overlay"] is handle
    np.testing.assert_array_equal(viewer.colors(0), new)


def test_markers_are_placed_in_mesh_coordinates(viewer):
    mesh = trimesh.creation.box(extents=(3.0, 1.0, 1.0))
    mesh.apply_translation((5.0, 0, 0))
    viewer.show(0, _content(mesh))
    assert viewer.marker(0, "best") is None
    viewer.set_marker(0, "best", np.array([6.0, 0.5, 0.1]))
    np.testing.assert_allclose(viewer.marker(0, "best"), [6.0, 0.5, 0.1], atol=1e-3)
    viewer.set_marker(0, "best", None)
    assert viewer.marker(0, "best") is None
    with pytest.raises(ValueError):
        viewer.set_marker(0, "other", None)


def test_pick_finds_the_slot_and_the_point(viewer):
    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    viewer.show(0, _content(mesh, label="a"))
    viewer.show(1, _content(mesh, label="b"))
    f0, f1 = viewer._slots[0][1], viewer._slots[1][1]
    assert f1.offset[0] > 0.5  # side by side
    # A ray straight down onto the middle of slot 1's top face.
    top1 = f1.to_display(np.array([0.2, 0.1, 0.5]))
    slot, p = viewer.pick(top1 + np.array([0, 0, 2.0]), np.array([0, 0, -1.0]))
    assert slot == 1
    np.testing.assert_allclose(p, [0.2, 0.1, 0.5], atol=1e-4)
    slot, p = viewer.pick(f0.to_display(np.array([-0.3, 0.0, 0.5])) + [0, 0, 1.0], np.array([0, 0, -1.0]))
    assert slot == 0 and abs(p[0] + 0.3) < 1e-4
    assert viewer.pick(np.array([0, 0, 5.0]), np.array([0, 0, 1.0])) is None


def test_click_event_reaches_callback(viewer):
    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    viewer.show(0, _content(mesh))

    class Event:
        ray_origin = (0.0, -3.0, 0.0)
        ray_direction = (0.0, 1.0, 0.0)

    viewer._handle_click(Event())
    assert len(viewer.clicks) == 1
    slot, p = viewer.clicks[0]
    assert slot == 0
    np.testing.assert_allclose(p, [0.0, -0.5, 0.0], atol=1e-4)


def test_two_viewers_have_separate_scenes_and_ports():
    a, b = Viewer(), Viewer()
    try:
        assert a.port != b.port
        mesh = trimesh.creation.icosphere(subdivisions=1)
        a.show(0, _content(mesh))
        assert a.slots() == [0] and b.slots() == []
        a.set_colors(0, np.zeros((200, 3), np.uint8))
        assert b.colors(0) is None
    finally:
        a.close()
        b.close()
    assert a.closed
    a.set_colors(0, np.zeros((200, 3), np.uint8))  # after close: ignored, no error


def test_clear_slot(viewer):
    viewer.show(1, _content(trimesh.creation.icosphere(subdivisions=1)))
    viewer.clear(1)
    assert viewer.slots() == [] and viewer.colors(1) is None


def test_large_meshes_are_simplified_for_display_only(viewer):
    from app import viewer as viewer_module

    mesh = trimesh.creation.icosphere(subdivisions=5)  # 20480 faces
    light = viewer_module._display_mesh(mesh, 2000)
    assert 1500 <= len(light.faces) <= 2000
    assert viewer_module._display_mesh(mesh, 2000) is light  # computed once per mesh
    assert viewer_module._display_mesh(mesh, 30_000) is mesh  # under the cap: sent as is
    viewer.show(0, _content(mesh))
    # Picking still uses the full mesh: a ray hits the exact sphere surface.
    slot, p = viewer.pick(np.array([0.0, -3.0, 0.0]) * viewer._slots[0][1].scale, np.array([0.0, 1.0, 0.0]))
    np.testing.assert_allclose(np.linalg.norm(p), 1.0, atol=2e-3)


def test_slots_sit_side_by_side_without_overlap(viewer):
    from app.viewer import SLOT_GAP, slot_frame

    wide = trimesh.creation.box(extents=(4.0, 1.0, 1.0))     # display width ~0.94
    thin = trimesh.creation.box(extents=(0.5, 1.0, 3.0))     # display width ~0.15
    f0, w0 = slot_frame(wide, 0, None)
    f1, w1 = slot_frame(thin, 1, (f0, w0))
    np.testing.assert_allclose(f1.offset[0], w0 / 2 + SLOT_GAP + w1 / 2)
    assert slot_frame(thin, 3, None)[0].offset[0] == pytest.approx(3 * (1 + SLOT_GAP))
    viewer.show(0, _content(wide))
    viewer.show(1, _content(thin))
    viewer.show(2, _content(wide))
    xs = [s.frame.offset[0] for s in viewer.scene()]
    assert xs[0] < xs[1] < xs[2]
    lo2 = viewer.scene()[2].frame.to_display(wide.vertices)[:, 0].min()
    hi1 = viewer.scene()[1].frame.to_display(thin.vertices)[:, 0].max()
    assert lo2 - hi1 == pytest.approx(SLOT_GAP)
    viewer.set_marker(1, "best", thin.vertices[0])
    scene = viewer.scene()
    assert set(scene[1].markers) == {"best"} and scene[0].markers == {}
    assert scene[1].colors.shape == (200, 3)
    viewer.clear_from(1)
    assert viewer.slots() == [0]
    assert viewer.screenshot() is None        # no browser connected


def test_close_wait_stops_the_server_before_returning(capfd):
    import socket
    import threading

    from app.viewer import STOP_THREAD_NAME

    v = Viewer()
    port = v.port
    v.close(wait=True)
    assert not [t for t in threading.enumerate() if t.name == STOP_THREAD_NAME and t.is_alive()]
    # viser's "Server stopped" has been printed by now, not later into another test's output
    assert "Server stopped" in capfd.readouterr().out
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
