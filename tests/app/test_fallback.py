"""The fallback 3D view (a GLB for gr.Model3D) and the server-side scene render."""

from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh

from app.fallback import FallbackViewer, render_scene, scene_glb, screenshot_png
from app.viewer import SlotContent


def _content(mesh, n=200, color=(200, 200, 200), label="tango3d"):
    pts, fid = trimesh.sample.sample_surface(mesh, n, seed=0)
    return SlotContent(mesh=mesh, points=np.asarray(pts), normals=np.asarray(mesh.face_normals[fid]),
                       base=np.tile(np.array(color, np.uint8), (n, 1)), label=label)


@pytest.fixture
def viewer(tmp_path):
    v = FallbackViewer(tmp_path)
    yield v
    v.close()


def test_slots_colours_markers_and_versions(viewer):
    sphere = trimesh.creation.icosphere(subdivisions=2)
    box = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    viewer.show(0, _content(sphere))
    viewer.show(1, _content(box))
    assert viewer.slots() == [0, 1]
    f0, f1 = (s.frame for s in viewer.scene())
    # Side by side, not overlapping: slot 1 starts right of slot 0.
    w0 = 2.0 * f0.scale
    assert f1.offset[0] - f1.scale * 1.0 > f0.offset[0] + w0 / 2 - 1e-9
    v = viewer.version
    red = np.tile(np.array([255, 0, 0], np.uint8), (200, 1))
    viewer.set_colors(1, red)
    np.testing.assert_array_equal(viewer.colors(1), red)
    viewer.set_marker(0, "best", np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(viewer.marker(0, "best"), [0, 0, 1])
    assert viewer.version > v
    viewer.set_marker(0, "best", None)
    assert viewer.marker(0, "best") is None
    with pytest.raises(ValueError):
        viewer.set_marker(0, "elsewhere", None)
    viewer.clear_from(1)
    assert viewer.slots() == [0]


def test_glb_written_only_when_the_scene_changed(viewer):
    assert viewer.glb_path() == (None, False)
    viewer.show(0, _content(trimesh.creation.icosphere(subdivisions=2), color=(0, 255, 0)))
    path, new = viewer.glb_path()
    assert new and path.suffix == ".glb" and path.name.startswith("tango3d-scene-")
    assert viewer.glb_path() == (path, False)
    viewer.set_colors(0, np.zeros((200, 3), np.uint8))
    path2, new2 = viewer.glb_path()
    assert new2 and path2 != path
    scene = trimesh.load(io.BytesIO(path2.read_bytes()), file_type="glb", process=False)
    geom = next(iter(scene.geometry.values()))
    assert np.asarray(geom.visual.vertex_colors)[:, :3].max() == 0   # the new colours
    viewer.close()
    assert viewer.closed and not path2.parent.exists()


def test_scene_glb_has_markers_and_is_y_up(viewer):
    sphere = trimesh.creation.icosphere(subdivisions=2)
    viewer.show(0, _content(sphere))
    plain = trimesh.load(io.BytesIO(scene_glb(viewer.scene())), file_type="glb", process=False)
    viewer.set_marker(0, "query", np.array([0.0, 0.0, 1.0]))
    marked = trimesh.load(io.BytesIO(scene_glb(viewer.scene())), file_type="glb", process=False)
    n_plain = sum(len(g.vertices) for g in plain.geometry.values())
    n_marked = sum(len(g.vertices) for g in marked.geometry.values())
    assert n_marked > n_plain
    verts = np.concatenate([g.vertices for g in marked.geometry.values()])
    # The marker sat on +Z (display top) and is now on +Y.
    assert verts[:, 1].max() > verts[:, 2].max() - 1e-6


def test_render_scene_colours_the_shape_like_its_points(viewer):
    assert np.asarray(render_scene([], width=40, height=30)).min() == 255
    viewer.show(0, _content(trimesh.creation.icosphere(subdivisions=3), color=(0, 0, 255)))
    img = np.asarray(render_scene(viewer.scene(), width=160, height=120)).astype(int)
    shape = (img != 255).any(axis=2)
    assert 0.05 < shape.mean() < 0.9
    assert (img[shape][:, 2] > img[shape][:, 0]).mean() > 0.95   # blue, shaded
    png = screenshot_png(viewer)                                 # no browser: server-side render
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
