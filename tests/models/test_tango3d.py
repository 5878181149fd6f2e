"""models/tango3d.py: training forwards and the public inference API on a micro config."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from tango3d_core.models import ImageFeatures, ShapeFeatures, Tango3D, build_model
from tango3d_core.models.ops import rotate_z

from .conftest import micro_config


@pytest.fixture(params=["attention", "local"])
def model(fake_text, request) -> Tango3D:
    """The micro model with each query decoder (every forward and API test runs with both)."""
    torch.manual_seed(0)
    cfg = micro_config()
    m = Tango3D(dataclasses.replace(cfg, shape=dataclasses.replace(cfg.shape, query_decoder=request.param)))
    m.set_text_encoder(fake_text())
    return m


def make_batch(b: int = 2, h: int = 32, w: int = 32, n: int = 64, m: int = 20, seed: int = 0) -> dict:
    """A random batch in the layout of tango3d_core.data.dataset (its "Example format")."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(b, h, w, dtype=torch.bool)
    mask[:, 8:24, 6:20] = True
    xyz = (torch.rand(b, h, w, 3, generator=g) - 0.5) * mask[..., None]
    normal = torch.nn.functional.normalize(torch.randn(b, h, w, 3, generator=g), dim=-1) * mask[..., None]
    yaw = torch.rand(b, generator=g) * 2 * math.pi
    canonical = torch.rand(b, n, 3, generator=g) - 0.5
    return {
        "image": torch.rand(b, 3, h, w, generator=g),
        "mask": mask,
        "depth": torch.rand(b, h, w, generator=g) * mask,
        "xyz": xyz,
        "normal": normal,
        "normal_camera": normal.flip(-1),  # any other unit field: the tests only tell the two apart
        "points": rotate_z(canonical, yaw),
        "normals": rotate_z(torch.nn.functional.normalize(canonical, dim=-1), yaw),
        "yaw": yaw,
        "occ_points": torch.rand(b, m, 3, generator=g) - 0.5,
        "occ_labels": (torch.rand(b, m, generator=g) > 0.5).float(),
        "shape_index": torch.arange(b),
        "caption": [f"shape {i}" for i in range(b)],
    }


def _grads(model: Tango3D) -> set[str]:
    return {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_build_model_presets_and_errors() -> None:
    tiny = build_model("tiny")
    assert tiny.config.name == "tiny" and tiny.dense_dim == 64 and tiny.global_dim == 384
    with pytest.raises(ValueError, match="unknown preset"):
        build_model("huge")
    with pytest.raises(TypeError):
        build_model({"dense_dim": 3})  # type: ignore[arg-type]


def test_point_head_starts_as_occupancy_decoder(model: Tango3D) -> None:
    a = model.point_head.query.state_dict()
    b = model.shape_vae.occ_decoder.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_forward_geometry(model: Tango3D) -> None:
    out = model.forward_geometry(make_batch())
    assert out["depth"].shape == (2, 32, 32) and out["normal"].shape == out["xyz"].shape == (2, 32, 32, 3)
    assert {"loss", "loss_depth", "loss_normal", "loss_xyz"} <= set(out)
    out["loss"].backward()
    assert {"image_encoder", "geometry_head"} <= _grads(model)
    assert "shape_vae" not in _grads(model)


def test_forward_geometry_yaw_invariant_xyz(model: Tango3D) -> None:
    batch = make_batch()
    canon = model.forward_geometry(batch)
    inv = model.forward_geometry(batch, xyz_mode="yaw_invariant")
    # Yaw 0 is one of the rotations tried, so the invariant term can only be smaller.
    assert float(inv["loss_xyz"]) <= float(canon["loss_xyz"]) + 1e-6
    assert float(inv["loss_depth"]) == pytest.approx(float(canon["loss_depth"]))
    total = model(batch, losses={"geometry": 1.0}, xyz_mode="yaw_invariant")
    assert float(total["geometry_xyz"]) == pytest.approx(float(inv["loss_xyz"]), rel=1e-5)


def test_forward_geometry_normal_frame_picks_the_target(model: Tango3D) -> None:
    batch = make_batch()
    with torch.no_grad():
        canon = model.forward_geometry(batch)
        cam = model.forward_geometry(batch, normal_frame="camera")
        m = batch["mask"]
        want = (1 - torch.nn.functional.cosine_similarity(cam["normal"][m], batch["normal_camera"][m], dim=-1)).mean()
        assert float(cam["loss_normal"]) == pytest.approx(float(want), rel=1e-5)
        assert float(cam["loss_normal"]) != pytest.approx(float(canon["loss_normal"]), rel=1e-3)
        assert float(cam["loss_xyz"]) == pytest.approx(float(canon["loss_xyz"]))
        total = model(batch, losses={"geometry": 1.0}, normal_frame="camera")
        assert float(total["geometry_normal"]) == pytest.approx(float(cam["loss_normal"]), rel=1e-5)
    with pytest.raises(ValueError, match="normal_frame"):
        model.forward_geometry(batch, normal_frame="world")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="normal_camera"):
        model.forward_geometry({k: v for k, v in batch.items() if k != "normal_camera"}, normal_frame="camera")


def test_forward_vae(model: Tango3D) -> None:
    out = model.forward_vae(make_batch(), generator=torch.Generator().manual_seed(0))
    assert out["logits"].shape == (2, 20) and out["mean"].shape == (2, 8, 4)
    assert {"loss", "loss_occupancy", "loss_kl", "occ_accuracy", "occ_iou"} <= set(out)
    out["loss"].backward()
    assert _grads(model) == {"shape_vae"}


def test_forward_align_shapes_and_correspondence(model: Tango3D) -> None:
    batch = make_batch()
    out = model.forward_align(batch, num_pixels=16, generator=torch.Generator().manual_seed(0))
    assert out["pixel_features"].shape == out["point_features"].shape == (2, 16, 8)
    assert out["image_global"].shape == out["shape_global"].shape == out["text_global"].shape == (2, 12)
    assert out["valid"].all()
    # The 3D query of each sampled pixel is its canonical xyz rotated by the shape's yaw.
    xy = out["pixel_xy"].long()
    for b in range(2):
        assert batch["mask"][b, xy[b, :, 1], xy[b, :, 0]].all()
        expected = rotate_z(batch["xyz"][b, xy[b, :, 1], xy[b, :, 0]][None], batch["yaw"][b:b + 1])[0]
        assert torch.allclose(out["point_xyz"][b], expected, atol=1e-6)
    for key in ("pixel_features", "point_features"):
        assert torch.allclose(out[key].norm(dim=-1), torch.ones(2, 16), atol=1e-5)
    out["loss"].backward()
    assert {"image_encoder", "dense_head", "point_head", "image_global_head", "shape_global_head",
            "text_projection", "logit_scale_dense", "logit_scale_global"} <= _grads(model)


def test_forward_align_uses_precomputed_text_embeddings(model: Tango3D, fake_text) -> None:
    batch = make_batch()
    batch["text_embedding"] = fake_text().encode(batch.pop("caption"))
    out = model.forward_align(batch, num_pixels=8)
    assert out["text_global"].shape == (2, 12)
    assert model.text_encoder.calls == []  # type: ignore[attr-defined]
    no_text = model.forward_align(make_batch(), num_pixels=8, use_text=False)
    assert "text_global" not in no_text and "global_image_text" not in no_text


def test_forward_combined_losses(model: Tango3D) -> None:
    weights = {"geometry": 1.0, "vae": 0.5, "dense": 2.0, "global": 0.25}
    out = model(make_batch(), losses=weights, generator=torch.Generator().manual_seed(0))
    assert next(iter(out)) == "total"
    assert all(v.dim() == 0 for v in out.values())  # scalars only, for the logging loop
    expected = sum(w * out[k] for k, w in weights.items())
    assert torch.allclose(out["total"], expected)
    out["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    only = model(make_batch(), losses={"dense": 1.0, "vae": 0.0})
    assert "vae" not in only and "global" not in only and torch.allclose(only["total"], only["dense"])
    with pytest.raises(ValueError, match="unknown loss"):
        model(make_batch(), losses={"dense": 1.0, "chamfer": 1.0})
    with pytest.raises(ValueError, match="non-zero"):
        model(make_batch(), losses={"dense": 0.0})


def test_forward_dense_target_choice(model: Tango3D) -> None:
    batch = make_batch()
    exact = model(batch, losses={"dense": 1.0}, generator=torch.Generator().manual_seed(0))
    soft = model(batch, losses={"dense": 1.0}, dense_target="gaussian", dense_sigma=0.3,
                 generator=torch.Generator().manual_seed(0))
    # same sampled pixels and features, different targets: the losses differ
    assert not torch.allclose(exact["dense"], soft["dense"])
    assert float(soft["dense_accuracy_sigma"]) >= float(soft["dense_accuracy"])
    with pytest.raises(ValueError, match="target"):
        model(batch, losses={"dense": 1.0}, dense_target="soft")  # type: ignore[arg-type]


def test_foreground_loss_trains_the_foreground_head(fake_text) -> None:
    torch.manual_seed(0)
    plain = Tango3D(micro_config())
    assert plain.foreground_head is None  # configs without the key have none
    with pytest.raises(ValueError, match="foreground_head"):
        plain(make_batch(), losses={"foreground": 1.0})
    m = Tango3D(dataclasses.replace(micro_config(), foreground_head=True))
    batch = make_batch()
    out = m(batch, losses={"foreground": 1.0})
    assert set(out) == {"total", "foreground", "foreground_iou"}
    # binary cross-entropy of the upsampled logits against the mask, by hand
    img = m.image_forward(batch["image"])
    logits = torch.nn.functional.interpolate(m.foreground_head(img["dense_features"])["foreground"][:, None],
                                             size=batch["mask"].shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    p = torch.sigmoid(logits)
    ref = -(batch["mask"] * p.log() + (~batch["mask"]) * (1 - p).log()).mean()
    assert torch.allclose(out["foreground"], ref, atol=1e-5)
    out["total"].backward()
    assert m.foreground_head.out.weight.grad.abs().sum() > 0
    # the head's pixels decide ImageFeatures.geometry.foreground unless the image has alpha
    rgb = Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8))
    geo = m.encode_image(rgb).geometry
    assert geo.foreground_source == "predicted" and geo.foreground.shape == (32, 32)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.pad(np.full((20, 20), 255, np.uint8), 10)))
    assert m.encode_image(rgba).geometry.foreground_source == "alpha"
    assert plain.encode_image(rgb).geometry.foreground_source in ("border", "none")


def test_missing_batch_key_is_clear(model: Tango3D) -> None:
    batch = make_batch()
    del batch["yaw"]
    with pytest.raises(KeyError, match="yaw"):
        model.forward_align(batch)


# ----------------------------------------------------------------- inference API


def _check_unit(t: torch.Tensor, dim: int) -> None:
    assert t.dtype == torch.float32 and t.device.type == "cpu"
    assert torch.allclose(t.norm(dim=dim), torch.ones(()), atol=1e-5)


@pytest.mark.parametrize("mode, size", [("RGB", (32, 32)), ("RGBA", (37, 91)), ("L", (91, 37)), ("P", (5, 3)),
                                        ("1", (1, 1)), ("CMYK", (64, 48))])
def test_encode_image_any_size_and_mode(model: Tango3D, mode: str, size: tuple[int, int]) -> None:
    rgb = Image.fromarray((np.random.default_rng(0).random((size[1], size[0], 3)) * 255).astype(np.uint8))
    feats = model.encode_image(rgb.convert(mode))
    assert isinstance(feats, ImageFeatures)
    assert feats.image_size == size and (feats.width, feats.height) == size
    mw, mh = feats.model_size
    assert mw % 8 == 0 and mh % 8 == 0 and max(mw, mh) == 32
    assert feats.dense.shape == (8, mh // 4, mw // 4)
    _check_unit(feats.dense, 0)
    _check_unit(feats.global_embedding, 0)
    assert feats.global_embedding.shape == (12,)
    xy = torch.tensor([[0.0, 0.0], [size[0] - 1.0, size[1] - 1.0], [size[0] / 2, size[1] / 3]])
    _check_unit(feats.sample(xy), 1)
    geo = feats.geometry
    assert geo.xyz.shape == (3, mh // 4, mw // 4) and geo.depth.shape == (mh // 4, mw // 4)
    assert geo.foreground.shape == (mh, mw) and geo.foreground.dtype == torch.bool
    assert geo.xyz_at(feats.image_size, xy).shape == (3, 3) and geo.depth_at(feats.image_size, xy).shape == (3,)


def test_encode_image_deterministic_and_bad_input(model: Tango3D) -> None:
    img = Image.new("RGB", (20, 30), (10, 200, 30))
    a, b = model.encode_image(img), model.encode_image(img)
    assert torch.equal(a.dense, b.dense)
    with pytest.raises(TypeError, match="PIL"):
        model.encode_image(np.zeros((8, 8, 3), dtype=np.uint8))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1x1"):
        model.encode_image(Image.new("RGB", (0, 4)))


def _box(scale: float = 1.0, offset=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents=(0.6, 0.3, 0.4))
    mesh.apply_scale(scale)
    mesh.apply_translation(offset)
    return mesh


def test_encode_shape_outputs(model: Tango3D) -> None:
    mesh = _box(3.0, (5.0, -2.0, 1.0))
    shp = model.encode_shape(mesh, num_points=300, seed=0)
    assert isinstance(shp, ShapeFeatures)
    assert shp.points.shape == shp.normals.shape == (300, 3)
    assert shp.dense.shape == (300, 8) and shp.global_embedding.shape == (12,)
    _check_unit(shp.dense, 1)
    _check_unit(shp.normals, 1)
    _check_unit(shp.global_embedding, 0)
    lo, hi = torch.tensor(mesh.bounds, dtype=torch.float32)
    assert ((shp.points >= lo - 1e-5) & (shp.points <= hi + 1e-5)).all()  # mesh's own coordinates
    assert torch.allclose(shp.query(shp.points[:10]), shp.dense[:10], atol=1e-5)
    assert shp.query([[5.0, -2.0, 1.0]]).shape == (1, 8)


def test_encode_shape_seeded_and_frame_invariant(model: Tango3D) -> None:
    a = model.encode_shape(_box(), num_points=200, seed=3)
    b = model.encode_shape(_box(), num_points=200, seed=3)
    c = model.encode_shape(_box(), num_points=200, seed=4)
    assert torch.equal(a.points, b.points) and torch.equal(a.dense, b.dense)
    assert not torch.equal(a.points, c.points)
    # Moved and scaled, the same shape gets the same features (canonical frame inside).
    moved = model.encode_shape(_box(2.5, (1.0, 2.0, 3.0)), num_points=200, seed=3)
    assert torch.allclose(moved.points, a.points * 2.5 + torch.tensor([1.0, 2.0, 3.0]), atol=1e-4)
    assert torch.allclose(moved.dense, a.dense, atol=1e-4)
    assert torch.allclose(moved.global_embedding, a.global_embedding, atol=1e-4)


@pytest.mark.parametrize("turns", [1, 2])
def test_encode_shape_principal_frame_ignores_which_way_the_mesh_faces(fake_text, turns: int) -> None:
    torch.manual_seed(0)
    cfg = micro_config()
    principal = Tango3D(dataclasses.replace(cfg, shape=dataclasses.replace(cfg.shape, query_decoder="local",
                                                                          yaw_frame="principal"))).eval()
    plain = Tango3D(dataclasses.replace(principal.config, shape=dataclasses.replace(
        principal.config.shape, yaw_frame="input"))).eval()
    plain.load_state_dict(principal.state_dict())
    # An L of two boxes: one long, one-sided horizontal axis, so the principal frame is well defined.
    mesh = trimesh.util.concatenate([trimesh.creation.box(extents=(3.0, 0.6, 0.5)),
                                     trimesh.creation.box(extents=(0.6, 0.6, 1.5),
                                                          transform=trimesh.transformations.translation_matrix(
                                                              (1.2, 0.0, 0.5)))])
    mesh.apply_translation(-mesh.bounds.mean(axis=0))
    # Quarter turns keep the bounding box's centre and diagonal, so the canonical points turn exactly.
    turned = mesh.copy()
    turned.apply_transform(trimesh.transformations.rotation_matrix(turns * math.pi / 2, (0, 0, 1)))
    for m, same in ((principal, True), (plain, False)):
        a = m.encode_shape(mesh, num_points=300, seed=1)
        b = m.encode_shape(turned, num_points=300, seed=1)
        assert torch.allclose(b.points, rotate_z(a.points[None], torch.tensor([turns * math.pi / 2]))[0], atol=1e-4)
        assert torch.allclose(b.dense, a.dense, atol=1e-4) is same
        assert torch.allclose(b.query(b.points[:7]), a.query(a.points[:7]), atol=1e-4) is same


def test_encode_shape_fewer_points_than_latents(model: Tango3D) -> None:
    shp = model.encode_shape(_box(), num_points=3)
    assert shp.dense.shape == (3, 8)


@pytest.mark.parametrize(
    "mesh, kwargs, err, match",
    [
        ("not a mesh", {}, TypeError, "Trimesh"),
        (trimesh.Scene(), {}, TypeError, "Scene"),
        (trimesh.Trimesh(), {}, ValueError, "no faces"),
        (trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [2, 0, 0]], faces=[[0, 1, 2]]), {}, ValueError, "area"),
        (None, {"num_points": 0}, ValueError, "positive integer"),
        (None, {"num_points": 2.5}, ValueError, "positive integer"),
    ],
)
def test_encode_shape_bad_input(model: Tango3D, mesh, kwargs, err, match) -> None:
    with pytest.raises(err, match=match):
        model.encode_shape(_box() if mesh is None else mesh, **kwargs)


def _naive_occupancy(model: Tango3D, mesh: trimesh.Trimesh, xyz: np.ndarray, num_latents: int) -> torch.Tensor:
    """The VAE's logits by hand: sample, normalise by the bounding box, encode, decode, query."""
    from tango3d_core.models.tango3d import sample_mesh_surface

    pts, nrm = sample_mesh_surface(mesh, 500, seed=2)
    lo, hi = torch.tensor(mesh.bounds, dtype=torch.float32)
    center, scale = (lo + hi) / 2, 1 / float((hi - lo).norm())
    k = model.config.shape.encoder_points
    with torch.no_grad():
        enc = model.shape_vae.encode(((pts[:k] - center) * scale)[None], nrm[:k][None], num_latents=num_latents)
        q = ((torch.as_tensor(xyz, dtype=torch.float32) - center) * scale)[None]
        return model.shape_vae.query_occupancy(model.shape_vae.decode(enc["mean"]), q, anchors=enc["anchors"],
                                               frame_yaw=enc["frame_yaw"])["logits"][0]


def test_occupancy_matches_naive_reference_at_any_token_count(model: Tango3D) -> None:
    model.eval()
    mesh = _box(2.0, (1.0, -1.0, 0.5))
    xyz = np.random.default_rng(0).uniform(mesh.bounds[0] - 0.2, mesh.bounds[1] + 0.2, size=(30, 3))
    trained = model.config.shape.num_latents
    default = model.occupancy(mesh, xyz, num_points=500, seed=2)
    assert default.shape == (30,) and default.dtype == torch.float32
    assert torch.allclose(default, _naive_occupancy(model, mesh, xyz, trained), atol=1e-5)
    more = model.occupancy(mesh, xyz, num_points=500, seed=2, num_latents=trained + 8)
    assert torch.allclose(more, _naive_occupancy(model, mesh, xyz, trained + 8), atol=1e-5)
    assert not torch.allclose(more, default)


@pytest.mark.parametrize("kwargs, xyz, match", [
    ({"num_latents": 0}, [[0.0, 0.0, 0.0]], "integer >= 1"),
    ({"num_latents": 1.5}, [[0.0, 0.0, 0.0]], "integer >= 1"),
    ({"num_latents": 10**6}, [[0.0, 0.0, 0.0]], "exceeds the encoder's input"),
    ({}, [[0.0, 0.0]], r"\[M, 3\]"),
    ({}, [[0.0, float("nan"), 0.0]], "NaN"),
])
def test_occupancy_bad_input(model: Tango3D, kwargs, xyz, match) -> None:
    with pytest.raises(ValueError, match=match):
        model.occupancy(_box(), xyz, **kwargs)


def test_reconstruct_extracts_the_zero_level_set_in_the_mesh_frame(model: Tango3D, monkeypatch) -> None:
    mesh = _box(2.0, (1.0, -1.0, 0.5))  # 1.2 x 0.6 x 0.8, centred at (1, -1, 0.5)
    center = torch.tensor([1.0, -1.0, 0.5])
    scale = 1.0 / float(np.linalg.norm([1.2, 0.6, 0.8]))
    radius = 0.18  # canonical units: a ball of radius 0.18 / scale = 0.28 inside the box (y half-extent 0.3)

    asked = []

    def ball(m, mesh_, *, num_points, num_latents, seed):
        asked.append(num_latents)
        return (lambda xyz: radius - xyz.norm(dim=-1)), center, scale  # logit > 0 inside

    monkeypatch.setattr(Tango3D, "_occupancy_field", ball)
    rec = model.reconstruct(mesh, resolution=48)
    cfg = model.config.shape
    assert asked == [model.reconstruction_tokens] and model.reconstruction_tokens == min(
        4 * cfg.num_latents, cfg.encoder_points)
    r = radius / scale
    assert np.allclose(rec.bounds.mean(axis=0), center.numpy(), atol=0.02)
    assert np.allclose(rec.extents, 2 * r, rtol=0.03)
    assert rec.is_watertight and rec.volume > 0  # faces point outwards
    assert abs(rec.volume - 4 / 3 * math.pi * r**3) < 0.03 * rec.volume

    monkeypatch.setattr(Tango3D, "_occupancy_field",
                        lambda m, mesh_, **kw: ((lambda xyz: -torch.ones(len(xyz))), center, scale))
    with pytest.raises(ValueError, match="no surface.*outside"):
        model.reconstruct(mesh, resolution=16)


@pytest.mark.parametrize("resolution", [4, 300, 32.0, True])
def test_reconstruct_bad_resolution(model: Tango3D, resolution) -> None:
    with pytest.raises(ValueError, match="resolution"):
        model.reconstruct(_box(), resolution=resolution)


def test_encode_text(model: Tango3D) -> None:
    emb = model.encode_text(["a chair", "a table"])
    assert emb.shape == (2, 12)
    _check_unit(emb, 1)
    with pytest.raises(TypeError, match="single str"):
        model.encode_text("a chair")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        model.encode_text([])


def test_match_pixel(model: Tango3D) -> None:
    img = model.encode_image(Image.new("RGB", (40, 24), (120, 60, 200)))
    shp = model.encode_shape(_box(), num_points=50)
    sims = model.match_pixel(img, shp, (3.0, 7.0))
    assert sims.shape == (50,) and sims.dtype == torch.float32
    assert torch.allclose(sims, shp.dense @ img.sample([[3.0, 7.0]])[0], atol=1e-6)
    assert float(sims.abs().max()) <= 1.0 + 1e-5
    assert torch.allclose(model.match_pixel(img, shp, np.array([3, 7])), sims)
    with pytest.raises(TypeError, match="ImageFeatures"):
        model.match_pixel(shp, img, (0, 0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one"):
        model.match_pixel(img, shp, (1.0, 2.0, 3.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside"):
        model.match_pixel(img, shp, (40.0, 0.0))


def test_output_device_argument(model: Tango3D) -> None:
    img = model.encode_image(Image.new("RGB", (16, 16)), device="cpu")
    assert img.dense.device.type == "cpu"
    assert model.encode_text(["x"], device=torch.device("cpu")).device.type == "cpu"


def test_all_losses_decrease_when_overfitting_one_batch(model: Tango3D) -> None:
    torch.manual_seed(0)
    batch = make_batch()
    weights = {"geometry": 1.0, "vae": 1.0, "dense": 1.0, "global": 1.0}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(25):
        out = model(batch, losses=weights, generator=torch.Generator().manual_seed(0))
        opt.zero_grad()
        out["total"].backward()
        opt.step()
        history.append({k: float(out[k].detach()) for k in weights})
    for name in weights:
        assert history[-1][name] < 0.9 * history[0][name], (name, history[0][name], history[-1][name])


def test_dense_query_follows_renormalisation(model):
    """With shape_center/shape_scale in the batch, the 3D query is (R_z xyz - c) * k."""
    batch = make_batch()
    b = batch["image"].shape[0]
    batch["shape_center"] = torch.tensor([[0.1, -0.05, 0.02]] * b)
    batch["shape_scale"] = torch.full((b,), 1.25)
    out = model.forward_align(batch, num_pixels=16, use_text=False)
    xy = out["pixel_xy"].long()
    for i in range(b):
        canon = batch["xyz"][i, xy[i, :, 1], xy[i, :, 0]]
        expected = (rotate_z(canon[None], batch["yaw"][i:i + 1])[0] - batch["shape_center"][i]) * 1.25
        valid = out["valid"][i]
        torch.testing.assert_close(out["point_xyz"][i][valid], expected[valid])
