"""Tests for tango3d_core.data.meshio: load_mesh, normalize_mesh, MeshLoadError."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from tango3d_core.data import meshio
from tango3d_core.data.meshio import MeshLoadError, Similarity, load_mesh, normalize_mesh

# ------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------


def _coloured_sphere(subdivisions: int = 1, seed: int = 0) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (len(mesh.vertices), 4), dtype=np.uint8)
    colours[:, 3] = 255
    mesh.visual.vertex_colors = colours
    return mesh


def _textured_box(seed: int = 0, size: tuple[int, int] = (32, 16)) -> tuple[trimesh.Trimesh, Image.Image]:
    rng = np.random.default_rng(seed)
    box = trimesh.creation.box()
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    uv = rng.random((len(box.vertices), 2))
    box.visual = trimesh.visual.TextureVisuals(uv=uv, image=image)
    return box, image


def _triangle_set(vertices: np.ndarray, faces: np.ndarray, decimals: int = 5) -> list[tuple]:
    """Triangles as coordinate tuples, each rotated to start at its smallest
    corner (orientation kept), sorted: equal for equal oriented geometry."""
    out = []
    for tri in np.round(np.asarray(vertices)[np.asarray(faces)], decimals) + 0.0:
        corners = [tuple(c) for c in tri]
        k = corners.index(min(corners))
        out.append(tuple(corners[k:] + corners[:k]))
    return sorted(out)


def _colour_by_position(vertices: np.ndarray, colours: np.ndarray, decimals: int = 5) -> dict:
    return {tuple(np.round(p, decimals) + 0.0): tuple(int(x) for x in c) for p, c in zip(vertices, colours)}


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _ply_header(fmt: str, n_vertices: int, n_faces: int, *, face_colour: bool = False) -> bytes:
    lines = [
        "ply",
        f"format {fmt} 1.0",
        f"element vertex {n_vertices}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {n_faces}",
        "property list uchar int vertex_indices",
    ]
    if face_colour:
        lines += ["property uchar red", "property uchar green", "property uchar blue"]
    return ("\n".join(lines + ["end_header"]) + "\n").encode()


def _glb(header: dict, binary: bytes) -> bytes:
    js = json.dumps(header).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def _split_glb(data: bytes) -> tuple[dict, bytes]:
    (json_len,) = struct.unpack_from("<I", data, 12)
    header = json.loads(data[20 : 20 + json_len])
    (bin_len,) = struct.unpack_from("<I", data, 20 + json_len)
    return header, data[28 + json_len : 28 + json_len + bin_len]


def _assert_load_error(path: Path, fragment: str, **kwargs) -> MeshLoadError:
    with pytest.raises(Exception) as info:
        load_mesh(path, **kwargs)
    err = info.value
    assert type(err) is MeshLoadError, f"{type(err).__name__}: {err}"
    message = str(err)
    assert fragment.lower() in message.lower(), message
    assert path.name in message
    assert str(path.parent) not in message, "messages name the file, never its full path"
    return err


# ------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ext", "encoding", "colour_tol"),
    [
        ("ply", "binary", 0),
        ("ply", "ascii", 0),
        ("obj", None, 1),  # OBJ stores colours as floats in [0, 1]
        ("glb", None, 0),
        ("gltf", None, 0),
        ("stl", None, None),  # no colours in STL
        ("off", None, None),  # trimesh writes plain OFF
    ],
)
def test_round_trip_geometry_and_vertex_colours(tmp_path, ext, encoding, colour_tol):
    ref = _coloured_sphere()
    path = tmp_path / f"sphere.{ext}"
    if ext == "gltf":  # JSON plus .bin buffers next to it
        for file_name, blob in trimesh.exchange.gltf.export_gltf(ref).items():
            _write(tmp_path / file_name.replace("model.gltf", path.name), blob)
    elif encoding is None:
        ref.export(path)
    else:
        _write(path, trimesh.exchange.ply.export_ply(ref, encoding=encoding))

    mesh = load_mesh(path)

    assert type(mesh) is trimesh.Trimesh
    assert mesh.vertices.dtype == np.float64 and mesh.faces.dtype == np.int64
    assert len(mesh.vertices) == len(ref.vertices) and len(mesh.faces) == len(ref.faces)
    assert _triangle_set(mesh.vertices, mesh.faces) == _triangle_set(ref.vertices, ref.faces)
    assert mesh.metadata["file_name"] == path.name and mesh.metadata["file_type"] == ext
    if colour_tol is None:
        return
    assert mesh.visual.kind == "vertex"
    got = _colour_by_position(mesh.vertices, mesh.visual.vertex_colors)
    want = _colour_by_position(ref.vertices, ref.visual.vertex_colors)
    assert got.keys() == want.keys()
    diff = max(np.abs(np.subtract(got[k], want[k])).max() for k in want)
    assert diff <= colour_tol


def test_round_trip_face_colours_ply(tmp_path):
    ref = trimesh.creation.box()
    rng = np.random.default_rng(1)
    ref.visual.face_colors = rng.integers(0, 256, (len(ref.faces), 4), dtype=np.uint8)
    path = tmp_path / "box.ply"
    ref.export(path)
    mesh = load_mesh(path)
    assert mesh.visual.kind == "face"
    np.testing.assert_array_equal(mesh.faces, ref.faces)
    np.testing.assert_array_equal(mesh.visual.face_colors, ref.visual.face_colors)


def test_valid_mesh_is_not_changed(tmp_path):
    """Cleaning must leave a clean mesh bit for bit alone (order included)."""
    ref = _coloured_sphere(subdivisions=2)
    path = tmp_path / "clean.ply"
    ref.export(path)
    mesh = load_mesh(path)
    np.testing.assert_array_equal(mesh.vertices, ref.vertices.astype(np.float32))  # PLY stores float32
    np.testing.assert_array_equal(mesh.faces, ref.faces)
    assert mesh.metadata["merged_vertices"] == 0 and mesh.metadata["removed_faces"] == 0
    assert "decimated_from" not in mesh.metadata


@pytest.mark.parametrize("ext", ["obj", "glb"])
def test_textured_file_keeps_uv_and_image(tmp_path, ext):
    ref, image = _textured_box()
    path = tmp_path / f"textured.{ext}"
    ref.export(path)
    mesh = load_mesh(path)

    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    assert mesh.visual.uv is not None and mesh.visual.uv.shape == (len(mesh.vertices), 2)
    material = mesh.visual.material
    loaded = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    assert loaded is not None and loaded.size == image.size
    np.testing.assert_array_equal(np.asarray(loaded.convert("RGB")), np.asarray(image))
    # the uv of each corner survives (OBJ flips nothing; glTF's v-flip is undone by trimesh)
    got = {tuple(np.round(p, 5) + 0.0): uv for p, uv in zip(mesh.vertices, mesh.visual.uv)}
    for p, uv in zip(ref.vertices, ref.visual.uv):
        np.testing.assert_allclose(got[tuple(np.round(p, 5) + 0.0)], uv, atol=1e-6)
    assert "texture_baked" not in mesh.metadata


def test_two_geometry_glb_scene_is_flattened_with_transforms(tmp_path):
    box = trimesh.creation.box()
    box.visual.vertex_colors = [255, 0, 0, 255]
    sphere = trimesh.creation.icosphere(subdivisions=1)
    sphere.visual.vertex_colors = [0, 0, 255, 255]
    t_box = trimesh.transformations.translation_matrix([2.0, 0.0, 0.0])
    t_box2 = trimesh.transformations.translation_matrix([-2.0, 1.0, 0.0])
    t_sphere = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 0, 1]) @ np.diag([0.5, 0.5, 0.5, 1.0])
    t_sphere[:3, 3] = [0.0, 0.0, 3.0]
    scene = trimesh.Scene()
    scene.add_geometry(box, geom_name="box", transform=t_box)
    scene.add_geometry(box, geom_name="box", transform=t_box2)  # a second instance of the same mesh
    scene.add_geometry(sphere, geom_name="sphere", transform=t_sphere)
    path = tmp_path / "scene.glb"
    scene.export(path)

    mesh = load_mesh(path)

    expected = []
    for geom, t in ((box, t_box), (box, t_box2), (sphere, t_sphere)):
        expected += _triangle_set(trimesh.transform_points(geom.vertices, t), geom.faces)
    assert len(mesh.faces) == 2 * 12 + 80
    assert _triangle_set(mesh.vertices, mesh.faces) == sorted(expected)
    colours = mesh.visual.vertex_colors
    on_sphere = mesh.vertices[:, 2] > 2.0
    assert (colours[on_sphere, :3] == [0, 0, 255]).all()
    assert (colours[~on_sphere, :3] == [255, 0, 0]).all()


def test_mirroring_scene_transform_keeps_outward_normals(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box(), transform=np.diag([-1.0, 1.0, 1.0, 1.0]))
    path = tmp_path / "mirror.glb"
    scene.export(path)
    mesh = load_mesh(path)
    assert mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(1.0)  # negative if the winding had not been flipped


def test_mixed_textured_and_coloured_scene_bakes_to_vertex_colours(tmp_path):
    box, _ = _textured_box()
    green = Image.new("RGB", (8, 8), (0, 255, 0))
    box.visual = trimesh.visual.TextureVisuals(uv=box.visual.uv, image=green)
    sphere = trimesh.creation.icosphere(subdivisions=1)
    sphere.visual.vertex_colors = [255, 0, 0, 255]
    scene = trimesh.Scene()
    scene.add_geometry(box, transform=trimesh.transformations.translation_matrix([3.0, 0.0, 0.0]))
    scene.add_geometry(sphere)
    path = tmp_path / "mixed.glb"
    scene.export(path)

    mesh = load_mesh(path)

    assert mesh.visual.kind == "vertex" and mesh.metadata["texture_baked"] is True
    colours = mesh.visual.vertex_colors[:, :3]
    on_box = mesh.vertices[:, 0] > 2.0
    assert (colours[on_box] == [0, 255, 0]).all()
    assert (colours[~on_box] == [255, 0, 0]).all()


def test_scene_with_two_textures_keeps_a_texture(tmp_path):
    a, _ = _textured_box(seed=1)
    b, _ = _textured_box(seed=2, size=(8, 8))
    scene = trimesh.Scene()
    scene.add_geometry(a)
    scene.add_geometry(b, transform=trimesh.transformations.translation_matrix([3.0, 0.0, 0.0]))
    path = tmp_path / "two_textures.glb"
    scene.export(path)
    mesh = load_mesh(path)
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    assert mesh.visual.uv.shape == (len(mesh.vertices), 2)
    assert "texture_baked" not in mesh.metadata


def test_binary_ply_with_mixed_triangles_and_quads(tmp_path):
    """trimesh's binary PLY reader assumes one polygon size; load_mesh rewrites
    the faces as triangles, carrying each polygon's colour to its triangles."""
    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], dtype=np.float32)
    body = verts.tobytes()
    body += struct.pack("<B4i3B", 4, 0, 1, 2, 3, 10, 20, 30)  # quad
    body += struct.pack("<B3i3B", 3, 1, 4, 2, 40, 50, 60)  # triangle
    path = _write(tmp_path / "quads.ply", _ply_header("binary_little_endian", 5, 2, face_colour=True) + body)

    mesh = load_mesh(path)

    expected = _triangle_set(verts, [[0, 1, 2], [0, 2, 3], [1, 4, 2]])
    assert _triangle_set(mesh.vertices, mesh.faces) == expected
    assert mesh.visual.kind == "face"
    by_face = {
        t: tuple(c[:3]) for t, c in zip(_triangle_set(mesh.vertices, mesh.faces[:1]), mesh.visual.face_colors)
    }
    assert list(by_face.values())[0] in {(10, 20, 30), (40, 50, 60)}
    colours = sorted(tuple(int(x) for x in c[:3]) for c in mesh.visual.face_colors)
    assert colours == [(10, 20, 30), (10, 20, 30), (40, 50, 60)]


_UNIT_SQUARE = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
_VALID_VARIANTS = {
    "counts_on_magic_line.off": b"OFF 4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n",
    "comments.off": b"# made by hand\nOFF\n# counts next\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n",
    "quad_ascii.ply": _ply_header("ascii", 4, 1) + b"0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n",
    "relative_indices.obj": b"v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf -4 -3 -2 -1\n",
    "UPPER_CASE.OBJ": b"v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n",
    "ascii.stl": (
        b"solid square\n"
        b"facet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 0 0\nvertex 1 1 0\nendloop\nendfacet\n"
        b"facet normal 0 0 1\nouter loop\nvertex 0 0 0\nvertex 1 1 0\nvertex 0 1 0\nendloop\nendfacet\n"
        b"endsolid square\n"
    ),
}


@pytest.mark.parametrize("filename", sorted(_VALID_VARIANTS))
def test_valid_variants_load_as_a_unit_square(tmp_path, filename):
    mesh = load_mesh(_write(tmp_path / filename, _VALID_VARIANTS[filename]))
    assert len(mesh.faces) == 2 and len(mesh.vertices) == 4
    assert sorted(map(tuple, mesh.vertices.tolist())) == sorted(map(tuple, np.array(_UNIT_SQUARE, float).tolist()))
    assert mesh.area == pytest.approx(1.0)
    np.testing.assert_allclose(mesh.face_normals, [[0, 0, 1], [0, 0, 1]], atol=1e-12)


# ------------------------------------------------------------------------------------
# cleaning
# ------------------------------------------------------------------------------------


def test_stl_triangle_soup_is_merged(tmp_path):
    ref = trimesh.creation.icosphere(subdivisions=1)
    path = tmp_path / "soup.stl"
    ref.export(path)
    mesh = load_mesh(path)
    assert len(mesh.vertices) == len(ref.vertices)
    assert mesh.metadata["merged_vertices"] == 3 * len(ref.faces) - len(ref.vertices)
    assert mesh.is_watertight


def test_duplicates_merge_only_when_colours_agree(tmp_path):
    # two triangles sharing an edge geometrically, stored with separate vertices
    def ply(colours: list[tuple[int, int, int]]) -> bytes:
        pts = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
        head = (
            "ply\nformat ascii 1.0\nelement vertex 6\nproperty float x\nproperty float y\nproperty float z\n"
            "property uchar red\nproperty uchar green\nproperty uchar blue\n"
            "element face 2\nproperty list uchar int vertex_indices\nend_header\n"
        )
        rows = [f"{x} {y} {z} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(pts, colours)]
        return (head + "\n".join(rows) + "\n3 0 1 2\n3 3 4 5\n").encode()

    same = load_mesh(_write(tmp_path / "same.ply", ply([(9, 9, 9)] * 6)))
    assert len(same.vertices) == 4 and same.metadata["merged_vertices"] == 2
    split = load_mesh(_write(tmp_path / "split.ply", ply([(9, 9, 9)] * 3 + [(200, 0, 0)] * 3)))
    assert len(split.vertices) == 6, "a colour border must not be merged away"


def test_degenerate_faces_and_unused_vertices_are_dropped(tmp_path):
    obj = (
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 2 0 0\nv 5 5 5\n"
        "f 1 2 3\n"  # good
        "f 1 2 4\n"  # collinear: zero area
        "f 1 1 3\n"  # repeated vertex
    )
    mesh = load_mesh(_write(tmp_path / "degenerate.obj", obj))
    assert len(mesh.faces) == 1 and len(mesh.vertices) == 3
    assert mesh.metadata["removed_faces"] == 2
    assert _triangle_set(mesh.vertices, mesh.faces) == _triangle_set(
        np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float), [[0, 1, 2]]
    )


def test_nan_in_an_unused_vertex_is_harmless(tmp_path):
    mesh = load_mesh(_write(tmp_path / "nan_unused.obj", "v nan 0 0\nv 0 0 0\nv 1 0 0\nv 0 1 0\nf 2 3 4\n"))
    assert np.isfinite(mesh.vertices).all() and len(mesh.vertices) == 3


# ------------------------------------------------------------------------------------
# up axis
# ------------------------------------------------------------------------------------


def test_up_axis_y_is_a_proper_rotation(tmp_path):
    tri = trimesh.Trimesh([[0, 1, 0], [1, 1, 0], [0, 1, 1]], [[0, 2, 1]], process=False)
    assert np.allclose(tri.face_normals[0], [0, 1, 0])  # faces +Y in the file
    path = tmp_path / "tri.ply"
    tri.export(path)

    z_up = load_mesh(path)
    np.testing.assert_array_equal(z_up.vertices, tri.vertices)
    np.testing.assert_array_equal(z_up.metadata["file_to_mesh"], np.eye(4))

    y_up = load_mesh(path, up_axis="y")
    m = np.array(y_up.metadata["file_to_mesh"])
    rot = m[:3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    np.testing.assert_allclose(rot @ [0, 1, 0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(rot @ [0, 0, 1], [0, -1, 0], atol=1e-12)  # glTF front (+Z) -> our front (-Y)
    np.testing.assert_allclose(y_up.vertices, tri.vertices @ rot.T, atol=1e-12)
    assert [0.0, 0.0, 1.0] in y_up.vertices.tolist()  # the file's (0, 1, 0)
    np.testing.assert_allclose(y_up.face_normals[0], [0, 0, 1], atol=1e-12)


# ------------------------------------------------------------------------------------
# normalize_mesh and Similarity
# ------------------------------------------------------------------------------------


def test_normalize_mesh_matches_reference_and_round_trips():
    rng = np.random.default_rng(3)
    mesh = trimesh.creation.icosphere(subdivisions=2)
    mesh.vertices = mesh.vertices * [3.0, 1.0, 0.5] + [10.0, -4.0, 2.0]
    before = mesh.vertices.copy()

    out, sim = normalize_mesh(mesh)

    # naive reference
    lo, hi = before.min(axis=0), before.max(axis=0)
    scale = 1.0 / np.sqrt(((hi - lo) ** 2).sum())
    assert sim.scale == pytest.approx(scale, rel=1e-12)
    np.testing.assert_allclose(sim.translation, -(lo + hi) / 2 * scale, atol=1e-12)
    np.testing.assert_array_equal(mesh.vertices, before)  # the input is untouched
    assert out is not mesh
    olo, ohi = out.vertices.min(axis=0), out.vertices.max(axis=0)
    np.testing.assert_allclose((olo + ohi) / 2, 0.0, atol=1e-12)
    assert np.linalg.norm(ohi - olo) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(out.faces, mesh.faces)

    p = rng.normal(size=(5, 7, 3)) * 20
    np.testing.assert_allclose(sim.invert(sim.apply(p)), p, atol=1e-10)
    np.testing.assert_allclose(sim.apply(sim.invert(p)), p, atol=1e-10)
    homogeneous = np.concatenate([p.reshape(-1, 3), np.ones((35, 1))], axis=1)
    np.testing.assert_allclose((homogeneous @ sim.matrix.T)[:, :3], sim.apply(p).reshape(-1, 3), atol=1e-12)
    np.testing.assert_allclose(sim.apply(before), out.vertices, atol=0)


def test_normalize_mesh_ignores_unused_vertices_and_rejects_flat_input():
    mesh = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0], [100, 100, 100]], [[0, 1, 2]], process=False)
    out, _ = normalize_mesh(mesh)
    used = out.vertices[:3]
    assert np.linalg.norm(used.max(axis=0) - used.min(axis=0)) == pytest.approx(1.0)
    point = trimesh.Trimesh([[1, 1, 1]] * 3, [[0, 1, 2]], process=False)
    with pytest.raises(ValueError, match="diagonal"):
        normalize_mesh(point)
    with pytest.raises(ValueError):
        normalize_mesh("not a mesh")  # type: ignore[arg-type]


def test_similarity_is_frozen_and_validated():
    sim = Similarity(scale=2.0, translation=[1.0, 2.0, 3.0])
    assert isinstance(sim.translation, np.ndarray) and sim.translation.shape == (3,)
    with pytest.raises(AttributeError):
        sim.scale = 3.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        sim.translation[0] = 5.0
    assert sim == Similarity(2.0, np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError):
        Similarity(0.0, [0, 0, 0])
    with pytest.raises(ValueError):
        Similarity(1.0, [0, 0])
    with pytest.raises(ValueError):
        sim.apply(np.zeros((4, 2)))


# ------------------------------------------------------------------------------------
# decimation
# ------------------------------------------------------------------------------------


def _position_colours(vertices: np.ndarray) -> np.ndarray:
    rgb = np.clip((vertices + 1.0) * 127.5, 0, 255).astype(np.uint8)
    return np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)


def test_over_cap_mesh_is_decimated_with_colours(tmp_path):
    ref = trimesh.creation.icosphere(subdivisions=4)  # 5120 faces
    ref.visual.vertex_colors = _position_colours(ref.vertices)
    path = tmp_path / "dense.ply"
    ref.export(path)

    mesh = load_mesh(path, max_faces=1000)

    assert 500 <= len(mesh.faces) <= 1000
    assert mesh.metadata["decimated_from"] == len(ref.faces)
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices, axis=1), 1.0, atol=0.05)
    err = np.abs(mesh.visual.vertex_colors.astype(int) - _position_colours(mesh.vertices).astype(int))
    assert err[:, :3].max() <= 25  # colour taken from a nearby original vertex
    assert mesh.is_watertight


@pytest.mark.parametrize("backend", ["open3d", "fast_simplification"])
def test_decimation_backends(backend):
    if backend == "fast_simplification":
        pytest.importorskip("fast_simplification")
    ref = trimesh.creation.icosphere(subdivisions=4)
    centroids = ref.triangles_center
    vattr = {"rgba": _position_colours(ref.vertices)}
    fattr = {"rgba": _position_colours(centroids)}
    v, f, va, fa = meshio._decimate_with_colours(
        ref.vertices, ref.faces, vattr, fattr, 800, backend=backend  # type: ignore[arg-type]
    )
    assert 400 <= len(f) <= 800
    assert f.min() >= 0 and f.max() < len(v)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=0.05)
    assert va["rgba"].shape == (len(v), 4) and fa["rgba"].shape == (len(f), 4)
    new_centroids = v[f].mean(axis=1)
    assert np.abs(fa["rgba"][:, :3].astype(int) - _position_colours(new_centroids)[:, :3]).max() <= 40


def test_over_cap_textured_mesh_is_baked_then_decimated(tmp_path):
    ref = trimesh.creation.icosphere(subdivisions=3)  # 1280 faces
    uv = (ref.vertices[:, :2] + 1) / 2
    ref.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.new("RGB", (4, 4), (10, 200, 30)))
    path = tmp_path / "dense_textured.glb"
    ref.export(path)
    mesh = load_mesh(path, max_faces=300)
    assert len(mesh.faces) <= 300 and mesh.metadata["texture_baked"] is True
    assert mesh.visual.kind == "vertex"
    assert (mesh.visual.vertex_colors[:, :3] == [10, 200, 30]).all()


@pytest.mark.slow
def test_large_mesh_loads_fast_and_decimates(tmp_path, capsys):
    ref = trimesh.creation.icosphere(subdivisions=8)  # 1,310,720 faces
    ref.visual.vertex_colors = _position_colours(ref.vertices)
    path = tmp_path / "large.ply"
    ref.export(path)  # binary PLY, ~27 MB

    # CPU time, not wall time: CI machines are shared, and the claim is about our work.
    t0 = time.process_time()
    full = load_mesh(path, max_faces=2_000_000)
    t_full = time.process_time() - t0
    assert len(full.faces) == 1_310_720 and "decimated_from" not in full.metadata

    t0 = time.process_time()
    mesh = load_mesh(path)  # default cap: 1M faces
    t_capped = time.process_time() - t0
    with capsys.disabled():
        print(f"\n1.3M-face binary PLY: {t_full:.2f} s CPU under the cap, {t_capped:.2f} s CPU with decimation to 1M")
    assert t_full < 10.0 and t_capped < 10.0
    assert mesh.metadata["decimated_from"] == 1_310_720
    assert 900_000 <= len(mesh.faces) <= meshio.MAX_FACES
    assert mesh.visual.kind == "vertex"


# ------------------------------------------------------------------------------------
# errors: every unusable file raises MeshLoadError, nothing else
# ------------------------------------------------------------------------------------

_TRI_OBJ = "v 0 0 0\nv 1 0 0\nv 0 1 0\n"


def _binary_ply(n_vertices_claimed: int) -> bytes:
    return _ply_header("binary_little_endian", n_vertices_claimed, 1) + np.zeros(12, np.float32).tobytes()


def _valid_bytes(ext: str) -> bytes:
    data = trimesh.creation.icosphere(subdivisions=1).export(file_type=ext)
    return data.encode() if isinstance(data, str) else data


_ERROR_CASES = {
    "empty.ply": (b"", "empty"),
    "empty.obj": (b"", "empty"),
    "whitespace.obj": (b"  \n\n\t\n", "no faces"),
    "mesh.fbx": (b"Kaydara FBX Binary", "unsupported file type '.fbx'"),
    "mesh": (_TRI_OBJ.encode() + b"f 1 2 3\n", "unsupported file type"),
    "points.ply": (_ply_header("ascii", 3, 0) + b"0 0 0\n1 0 0\n0 1 0\n", "point cloud"),
    "points.obj": (_TRI_OBJ.encode(), "point cloud"),
    "degenerate.obj": (_TRI_OBJ.encode() + b"v 2 0 0\nf 1 2 4\nf 1 1 2\n", "degenerate"),
    "degenerate.stl": (b"\0" * 80 + struct.pack("<I", 1) + b"\0" * 50, "degenerate"),
    "nan.obj": (b"v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "nan or infinite"),
    "inf.ply": (_ply_header("ascii", 3, 1) + b"inf 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "nan or infinite"),
    "nan.stl": (
        b"\0" * 80 + struct.pack("<I", 1) + struct.pack("<12fH", 0, 0, 1, np.nan, 0, 0, 1, 0, 0, 0, 1, 0, 0),
        "nan or infinite",
    ),
    "index.ply": (_ply_header("ascii", 3, 1) + b"0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "out of range"),
    "negative.ply": (_ply_header("ascii", 3, 1) + b"0 0 0\n1 0 0\n0 1 0\n3 0 1 -5\n", "out of range"),
    "index.obj": (_TRI_OBJ.encode() + b"f 1 2 9\n", "out of bounds"),
    "index.off": (b"OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 5\n", "outside the range"),
    "billion.ply": (_binary_ply(4_000_000_000), "promises 4,000,000,000 vertex"),
    "billion_ascii.ply": (_ply_header("ascii", 4_000_000_000, 1) + b"0 0 0\n", "promises 4,000,000,000"),
    "billion.off": (b"OFF\n4000000000 4000000000 0\n0 0 0\n", "promises 4,000,000,000 vertices"),
    "billion.stl": (b"\0" * 80 + struct.pack("<I", 2**31) + b"\0" * 100, "2,147,483,648 triangles"),
    "short.stl": (b"\1" * 20, "too short"),
    "header_only.ply": (b"ply\nformat ascii 1.0\nelement vertex 3\n", "end_header"),
    "no_format.ply": (b"ply\nelement vertex 0\nend_header\n", "format"),
    "bad_type.ply": (
        b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float128 x\nend_header\n0\n",
        "property",
    ),
    "binary.off": (b"OFF BINARY\n3 1 0\n", "binary OFF"),
    "no_counts.off": (b"OFF\n# only a comment\n", "counts"),
    "not_json.gltf": (b"{ not json", "not valid JSON"),
    "list.gltf": (b"[1, 2, 3]", "not an object"),
    "v1.gltf": (b'{"asset": {"version": "1.0"}}', "only glTF 2.0"),
    "v1.glb": (b"glTF" + struct.pack("<II", 1, 20) + b"\0" * 8, "only glTF 2.0"),
    "truncated.glb": (b"glTF" + struct.pack("<II", 2, 5000) + b"\0" * 8, "truncated"),
    "text.stl": (b"solid broken\n facet normal 0 0 1\n outer loop\n vertex 0 0", "no faces"),
    "text.glb": (b"solid x\nendsolid x\n", "not a GLB"),
    "binary.obj": (b"\x00\x01\x02" * 100, "binary data"),
}


@pytest.mark.parametrize("filename", sorted(_ERROR_CASES))
def test_malformed_files_raise_mesh_load_error(tmp_path, filename):
    data, fragment = _ERROR_CASES[filename]
    _assert_load_error(_write(tmp_path / filename, data), fragment)


@pytest.mark.parametrize("ext", ["ply", "obj", "stl", "off", "glb", "gltf"])
def test_garbage_and_truncated_files(tmp_path, ext):
    rng = np.random.default_rng(0)
    garbage = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    _assert_load_error(_write(tmp_path / f"garbage.{ext}", garbage), "")
    if ext == "gltf":
        return
    valid = _valid_bytes(ext)
    _assert_load_error(_write(tmp_path / f"truncated.{ext}", valid[: len(valid) // 2]), "")


def test_missing_folder_fifo_and_bad_arguments(tmp_path):
    _assert_load_error(tmp_path / "missing.ply", "does not exist")
    (tmp_path / "folder.obj").mkdir()
    _assert_load_error(tmp_path / "folder.obj", "folder")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.ply")  # reading it would block forever
        _assert_load_error(tmp_path / "pipe.ply", "not a regular file")
    good = tmp_path / "good.obj"
    _write(good, _TRI_OBJ + "f 1 2 3\n")
    for kwargs in ({"up_axis": "x"}, {"max_faces": 0}, {"max_bytes": -1}, {"timeout_s": 0}):
        with pytest.raises(MeshLoadError):
            load_mesh(good, **kwargs)
    with pytest.raises(MeshLoadError):
        load_mesh(12345)  # type: ignore[arg-type]


def test_size_limits(tmp_path):
    path = tmp_path / "sphere.ply"
    _coloured_sphere().export(path)
    _assert_load_error(path, "above the", max_bytes=100)
    # referenced files count too: the texture pushes an OBJ over the limit
    box, _ = _textured_box(size=(256, 256))
    obj = tmp_path / "textured.obj"
    box.export(obj)
    png = next(tmp_path.glob("*.png"))
    small = obj.stat().st_size + (tmp_path / "material.mtl").stat().st_size + 10
    assert png.stat().st_size > 10
    _assert_load_error(obj, "exceeds", max_bytes=small)


def test_texture_pixel_limit(tmp_path, monkeypatch):
    box, _ = _textured_box(size=(32, 16))
    path = tmp_path / "textured.glb"
    box.export(path)
    monkeypatch.setattr(meshio, "MAX_TEXTURE_PIXELS", 100)
    _assert_load_error(path, "32x16 pixels")


def test_instancing_bomb_is_refused(tmp_path, monkeypatch):
    scene = trimesh.Scene()
    box = trimesh.creation.box()
    for i in range(10):
        scene.add_geometry(
            box, geom_name="box", transform=trimesh.transformations.translation_matrix([i, 0, 0])
        )
    path = tmp_path / "instances.glb"
    scene.export(path)
    monkeypatch.setattr(meshio, "MAX_RAW_FACES", 50)
    _assert_load_error(path, "more than 50 faces", max_faces=10)


def test_glb_headers_that_claim_too_much(tmp_path):
    header, binary = _split_glb(trimesh.creation.icosphere(subdivisions=1).export(file_type="glb"))
    assert type(load_mesh(_write(tmp_path / "rebuilt.glb", _glb(header, binary)))) is trimesh.Trimesh

    huge = json.loads(json.dumps(header))
    huge["accessors"][0]["count"] = 4_000_000_000
    _assert_load_error(_write(tmp_path / "huge_accessor.glb", _glb(huge, binary)), "4,000,000,000 elements")

    bufferless = json.loads(json.dumps(header))
    del bufferless["accessors"][0]["bufferView"]  # would be zero-filled: np.zeros(4e9 * 3)
    bufferless["accessors"][0]["count"] = 4_000_000_000
    _assert_load_error(
        _write(tmp_path / "bufferless.glb", _glb(bufferless, binary)), "not stored in the file"
    )

    long_view = json.loads(json.dumps(header))
    long_view["bufferViews"][0]["byteLength"] = 10**12
    _assert_load_error(_write(tmp_path / "long_view.glb", _glb(long_view, binary)), "past the end")

    big_buffer = json.loads(json.dumps(header))
    big_buffer["buffers"][0]["byteLength"] = 10**12
    _assert_load_error(_write(tmp_path / "big_buffer.glb", _glb(big_buffer, binary)), "binary chunk holds")

    escape = json.loads(json.dumps(header))
    escape["buffers"][0]["uri"] = "../outside.bin"
    (tmp_path.parent / "outside.bin").write_bytes(binary)
    sub = tmp_path / "sub"
    sub.mkdir()
    _assert_load_error(_write(sub / "escape.gltf", json.dumps(escape)), "not found")


def test_fuzzed_files_never_raise_anything_else(tmp_path):
    rng = np.random.default_rng(1234)
    for ext in ("ply", "obj", "stl", "off", "glb"):
        valid = bytearray(_valid_bytes(ext))
        for trial in range(20):
            data = bytearray(valid)
            kind = trial % 4
            if kind == 0:  # flip bytes
                idx = rng.integers(0, len(data), 8)
                data[idx[0]] ^= 0xFF
                for i in idx[1:]:
                    data[i] = int(rng.integers(0, 256))
            elif kind == 1:  # truncate
                data = data[: int(rng.integers(1, len(data)))]
            elif kind == 2:  # splice in random bytes
                at = int(rng.integers(0, len(data)))
                data[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
            else:  # overwrite a 4-byte field with a huge count
                at = int(rng.integers(0, max(1, len(data) - 4)))
                data[at : at + 4] = struct.pack("<I", 0xFFFFFFF0)
            path = _write(tmp_path / f"fuzz_{trial}.{ext}", bytes(data))
            try:
                mesh = load_mesh(path)
            except MeshLoadError:
                continue
            assert type(mesh) is trimesh.Trimesh
            assert np.isfinite(mesh.vertices).all() and len(mesh.faces) > 0
            assert mesh.faces.min() >= 0 and mesh.faces.max() < len(mesh.vertices)


def test_memory_error_and_parser_bugs_become_mesh_load_error(tmp_path, monkeypatch):
    path = _write(tmp_path / "tri.obj", _TRI_OBJ + "f 1 2 3\n")

    def raise_(exc):
        def load_scene(*args, **kwargs):
            raise exc

        return load_scene

    monkeypatch.setattr(meshio.trimesh, "load_scene", raise_(MemoryError()))
    _assert_load_error(path, "out of memory")
    monkeypatch.setattr(meshio.trimesh, "load_scene", raise_(RecursionError()))
    _assert_load_error(path, "nested too deeply")
    monkeypatch.setattr(
        meshio.trimesh, "load_scene", raise_(AttributeError("'NoneType' has no attribute 'x'"))
    )
    _assert_load_error(path, "AttributeError")
    monkeypatch.setattr(meshio.trimesh, "load_scene", raise_(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        load_mesh(path)


def test_wall_clock_guard(tmp_path, monkeypatch):
    path = _write(tmp_path / "tri.obj", _TRI_OBJ + "f 1 2 3\n")
    clock = iter([0.0, 1000.0, 2000.0, 3000.0])
    monkeypatch.setattr(meshio.time, "monotonic", lambda: next(clock))
    _assert_load_error(path, "gave up after 5 s", timeout_s=5)


def test_public_names():
    assert issubclass(MeshLoadError, ValueError)
    assert meshio.MAX_FACES == 1_000_000 and meshio.MAX_FILE_BYTES == 200 * 1024 * 1024
    for name in ("load_mesh", "normalize_mesh", "MeshLoadError", "Similarity"):
        assert name in meshio.__all__
