"""Exports: coloured, labelled PLY / GLB round trips, the .npy of scores, server-chosen names,
the bound on files and the clean-up."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import trimesh

from app.export import ExportDir, mesh_bytes, nearest_point_index, png_bytes, values_npy_bytes


@pytest.fixture
def data():
    mesh = trimesh.creation.icosphere(subdivisions=2)
    rng = np.random.default_rng(0)
    points, _ = trimesh.sample.sample_surface(mesh, 300, seed=1)
    colors = rng.integers(0, 256, (len(points), 3)).astype(np.uint8)
    scores = rng.normal(size=len(points)).astype(np.float32)
    labels = scores > 0.5
    return mesh, np.asarray(points), colors, labels, scores


def test_nearest_point_index_matches_brute_force():
    rng = np.random.default_rng(0)
    pts, q = rng.normal(size=(200, 3)), rng.normal(size=(50, 3))
    ref = np.argmin(((q[:, None] - pts[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(nearest_point_index(q, pts), ref)


def test_ply_round_trip_keeps_colours_labels_and_scores(data):
    mesh, points, colors, labels, scores = data
    blob = mesh_bytes(mesh, points, colors, labels, scores, fmt="ply")
    back = trimesh.load(io.BytesIO(blob), file_type="ply", process=False)
    assert len(back.vertices) == len(mesh.vertices) and len(back.faces) == len(mesh.faces)
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-6)      # Z up, own units
    idx = nearest_point_index(mesh.vertices, points)
    np.testing.assert_array_equal(np.asarray(back.visual.vertex_colors)[:, :3], colors[idx])
    raw = back.metadata["_ply_raw"]["vertex"]["data"]
    np.testing.assert_array_equal(raw["label"], labels[idx].astype(np.uint8))
    np.testing.assert_allclose(raw["similarity"], scores[idx], atol=1e-6)


def test_glb_is_y_up_with_custom_attributes(data):
    mesh, points, colors, labels, scores = data
    blob = mesh_bytes(mesh, points, colors, labels, scores, fmt="glb")
    n = struct.unpack("<I", blob[12:16])[0]
    gltf = json.loads(blob[20:20 + n])
    attrs = gltf["meshes"][0]["primitives"][0]["attributes"]
    assert {"POSITION", "COLOR_0", "_LABEL", "_SIMILARITY"} <= set(attrs)
    scene = trimesh.load(io.BytesIO(blob), file_type="glb", process=False)
    geom = next(iter(scene.geometry.values()))
    # (x, y, z) -> (x, z, -y)
    v = np.asarray(mesh.vertices)
    y_up = np.stack([v[:, 0], v[:, 2], -v[:, 1]], 1)
    np.testing.assert_allclose(np.sort(geom.vertices, axis=0), np.sort(y_up, axis=0), atol=1e-5)
    idx = nearest_point_index(mesh.vertices, points)
    got = sorted(np.asarray(geom.vertex_attributes["_LABEL"]).ravel().tolist())
    assert got == sorted(labels[idx].astype(float).tolist())


def test_bad_shapes_are_refused(data):
    mesh, points, colors, labels, scores = data
    with pytest.raises(ValueError, match="need colours"):
        mesh_bytes(mesh, points, colors[:5], labels, scores, fmt="ply")
    with pytest.raises(ValueError, match="format"):
        mesh_bytes(mesh, points, colors, labels, scores, fmt="obj")  # type: ignore[arg-type]


def test_npy_holds_points_and_scores(data):
    _, points, _, _, scores = data
    arr = np.load(io.BytesIO(values_npy_bytes(points, scores)), allow_pickle=False)
    assert arr.dtype == np.float32 and arr.shape == (len(points), 4)
    np.testing.assert_allclose(arr[:, :3], points, atol=1e-6)
    np.testing.assert_allclose(arr[:, 3], scores)


def test_export_dir_names_by_content_bounds_files_and_cleans_up(tmp_path):
    d = ExportDir(tmp_path, max_files=3)
    a = d.write("heat", "ply", b"one")
    assert a.parent.parent == tmp_path and a.name.startswith("tango3d-heat-") and a.suffix == ".ply"
    assert d.write("heat", "ply", b"one") == a               # same content, same file
    for i in range(5):
        d.write("region", "npy", f"more {i}".encode())
    assert len(d.files()) == 3
    with pytest.raises(ValueError):
        d.write("../evil", "ply", b"x")
    with pytest.raises(ValueError):
        d.write("heat", "p/y", b"x")
    d.cleanup()
    assert not d.path.exists()
    with pytest.raises(RuntimeError):
        d.write("heat", "ply", b"late")


def test_png_bytes():
    from PIL import Image

    blob = png_bytes(np.zeros((4, 5, 3), np.uint8))
    assert Image.open(io.BytesIO(blob)).size == (5, 4)
