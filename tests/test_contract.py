"""The names in ../shared/CONTRACT.md, called exactly as written there.

Outside acceptance checks call these; this file fails first if one drifts.
"""

import numpy as np
import pytest
import trimesh

import tango3d_core as t3
from tango3d_core.data import render, shapes


def test_package_import_is_lazy():
    import subprocess
    import sys

    code = "import sys, tango3d_core; print('torch' in sys.modules, 'open3d' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_data_engine_names():
    assert isinstance(shapes.CATEGORIES, list) and len(shapes.CATEGORIES) >= 12
    s = shapes.generate(shapes.CATEGORIES[0], 0)
    assert isinstance(s.mesh, trimesh.Trimesh)
    assert s.face_parts.shape == (len(s.mesh.faces),)
    assert s.face_parts.max() < len(s.part_names)
    assert isinstance(s.category, str) and isinstance(s.caption, str)
    lo, hi = s.mesh.bounds
    np.testing.assert_allclose((lo + hi) / 2, 0, atol=1e-6)
    assert np.linalg.norm(hi - lo) == pytest.approx(1.0, abs=1e-6)

    cam = render.Camera.look_at((0.0, -2.0, 0.5), (0, 0, 0), up=(0, 0, 1), fov_deg=40.0, width=64, height=48)
    v = render.render_view(s.mesh, cam)
    assert v.rgb.shape == (48, 64, 3) and v.rgb.dtype == np.uint8
    assert v.mask.shape == (48, 64) and v.mask.dtype == bool and v.mask.any()
    assert v.xyz.shape == (48, 64, 3) and v.xyz.dtype == np.float32
    assert np.isnan(v.xyz[~v.mask]).all() and np.isfinite(v.xyz[v.mask]).all()
    assert (v.face_id[~v.mask] == -1).all() and (v.face_id[v.mask] >= 0).all()
    assert v.depth.shape == (48, 64) and v.depth.dtype == np.float32
    ys, xs = np.nonzero(v.mask)
    xy = cam.project(v.xyz[ys, xs])
    assert xy.shape == (len(ys), 2)
    np.testing.assert_allclose(xy, np.stack([xs, ys], 1), atol=0.5)


def test_same_category_and_seed_identical():
    a, b = shapes.generate("chair", 7), shapes.generate("chair", 7)
    assert np.array_equal(a.mesh.vertices, b.mesh.vertices) and a.caption == b.caption


def test_load_mesh_and_error_type(tmp_path):
    p = tmp_path / "box.obj"
    trimesh.creation.box().export(p)
    m = t3.load_mesh(p, up_axis="z")
    assert isinstance(m, trimesh.Trimesh) and len(m.faces) == 12
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\nend_header\n")
    with pytest.raises(t3.MeshLoadError) as e:
        t3.load_mesh(bad)
    assert isinstance(e.value, ValueError) and "bad.ply" in str(e.value)


def test_load_image_and_error_type(tmp_path):
    from PIL import Image

    p = tmp_path / "grey16.png"
    Image.fromarray(np.full((6, 9), 65535, dtype=np.uint16)).save(p)
    img = t3.load_image(p)
    assert img.mode == "RGB" and img.size == (9, 6) and img.getpixel((0, 0)) == (255, 255, 255)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(t3.ImageLoadError) as e:
        t3.load_image(bad)
    assert isinstance(e.value, ValueError) and "notes.png" in str(e.value)
