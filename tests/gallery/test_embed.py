"""Embedders: unit vectors out, clear errors, the provider adapter (tiny real model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from tango3d_core.gallery.embed import FunctionEmbedder, ProviderEmbedder, load_embedder, unit_vector


def test_unit_vector():
    v = unit_vector([3.0, 4.0])
    np.testing.assert_allclose(v, [0.6, 0.8], rtol=1e-6)
    assert v.dtype == np.float32
    np.testing.assert_allclose(unit_vector(torch.tensor([[0.0, 2.0]])), [0.0, 1.0])
    for bad, msg in (([0.0, 0.0], "all zeros"), ([np.nan, 1.0], "NaN"), ([], "empty")):
        with pytest.raises(ValueError, match=msg):
            unit_vector(bad)


def test_function_embedder():
    e = FunctionEmbedder(lambda m: [len(m.faces), 1.0], fingerprint="f1", text=lambda t: [[1.0, 0.0]] * len(t))
    out = e.embed_shape(trimesh.creation.box())
    assert out.dense is None and np.linalg.norm(out.vector) == pytest.approx(1.0)
    assert e.embed_text(["a", "b"]).shape == (2, 2)
    with pytest.raises(ValueError, match="no image encoder"):
        e.embed_image(None)
    with pytest.raises(ValueError, match="no dense"):
        e.embed_shape(trimesh.creation.box(), dense=True)
    with pytest.raises(ValueError, match="fingerprint"):
        FunctionEmbedder(lambda m: [1.0], fingerprint="")
    with pytest.raises(TypeError, match="callable"):
        FunctionEmbedder("nope", fingerprint="x")  # type: ignore[arg-type]


def test_provider_embedder_matches_the_model(checkpoint_dir):
    from PIL import Image

    e = load_embedder(checkpoint=str(checkpoint_dir), num_points=512)
    mesh = trimesh.creation.icosphere(subdivisions=2)
    out = e.embed_shape(mesh, dense=True)
    ref = e.provider.encode_shape(mesh, num_points=512, seed=0).global_embedding
    np.testing.assert_allclose(out.vector, torch.nn.functional.normalize(ref, dim=0).numpy(), atol=1e-6)
    assert out.dense is not None and out.dense.points.shape == (512, 3) and out.dense.dense.shape == (512, 16)
    assert e.settings == {"num_points": 512, "seed": 0}
    assert e.fingerprint == e.provider.fingerprint
    assert e.source == {"provider": "tango3d", "checkpoint": str(checkpoint_dir.resolve())}
    img = e.embed_image(Image.new("RGB", (40, 30), (200, 10, 10)))
    assert img.shape == (24,) and np.linalg.norm(img) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="num_points"):
        ProviderEmbedder(e.provider, num_points=0)
    with pytest.raises(TypeError, match="lacks"):
        ProviderEmbedder(object())
