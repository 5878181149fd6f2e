"""Bundled examples: deterministic files, a textured Y-up GLB, and the index."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from app.examples import ensure_examples, load_examples, textured_bottle, write_examples
from tango3d_core import load_mesh


def test_examples_are_byte_identical_across_runs(examples_dir, tmp_path):
    write_examples(tmp_path)
    names = sorted(p.name for p in examples_dir.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for n in names:
        assert (examples_dir / n).read_bytes() == (tmp_path / n).read_bytes(), n


def test_index_lists_loadable_examples(examples_dir):
    index = json.loads((examples_dir / "index.json").read_text())
    examples = load_examples(examples_dir)
    assert len(examples) == len(index["examples"]) >= 4
    for ex in examples:
        img = Image.open(ex.image_path(examples_dir))
        assert img.size == (320, 320) and img.mode == "RGB"
        # The rendered view shows the object: not a blank frame.
        assert np.asarray(img).std() > 10
        mesh = load_mesh(ex.mesh_path(examples_dir), up_axis=ex.up_axis)
        assert len(mesh.faces) > 1000
        assert ex.caption


def test_textured_example_is_a_yup_glb_with_a_texture(examples_dir):
    ex = next(e for e in load_examples(examples_dir) if e.mesh.endswith(".glb"))
    assert ex.up_axis == "y"
    mesh = load_mesh(ex.mesh_path(examples_dir), up_axis="y")
    assert mesh.visual.kind == "texture"
    extents = mesh.bounds[1] - mesh.bounds[0]
    assert np.argmax(extents) == 2  # the bottle stands along +Z once loaded with up_axis="y"
    ref = textured_bottle()
    np.testing.assert_allclose(np.sort(mesh.vertices, axis=0), np.sort(ref.vertices, axis=0), atol=1e-6)
    # Loaded as Z-up (wrongly), it lies along Y instead: the up-axis choice matters.
    lying = load_mesh(ex.mesh_path(examples_dir), up_axis="z")
    assert np.argmax(lying.bounds[1] - lying.bounds[0]) == 1


def test_bottle_uv_seam_is_duplicated_not_wrapped():
    b = textured_bottle(sections=16, rings=8)
    uv = b.visual.uv[b.faces]                      # [F, 3, 2]
    assert (np.ptp(uv[:, :, 0], axis=1) <= 1.0 / 16 + 1e-9).sum() >= 2 * 16 * 7  # side quads span one section


def test_ensure_examples_writes_when_missing_and_falls_back(tmp_path):
    folder, found = ensure_examples(tmp_path / "a")
    assert folder == tmp_path / "a" and len(found) >= 4
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    folder, found = ensure_examples(blocked / "sub", fallback=tmp_path / "fb")
    assert folder == tmp_path / "fb" and found
    with pytest.raises(OSError):
        ensure_examples(blocked / "sub")
