"""Stage 5: the global heads refit on cached features (tango3d_core.train.refit)."""

from __future__ import annotations

import pytest
import torch

from tango3d_core.config import toy_config
from tango3d_core.data import dataset as D
from tango3d_core.data import shapes
from tango3d_core.data.dataset import ShardDataset
from tango3d_core.losses.global_ import contrastive_loss
from tango3d_core.models import Tango3D
from tango3d_core.train.refit import cache_global_features, cached_batches, refit_loss
from tango3d_core.train.stages import default_schedule

CATS = shapes.CATEGORIES[:2]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("refit-shards")
    D.build_shards(out, split="train", shapes_per_category=2, views_per_shape=2, resolution=32,
                   points_per_shape=512, occ_per_shape=64, shard_size=4, categories=CATS, seed=0, workers=1,
                   progress=False)
    return out


@pytest.fixture
def model(fake_text) -> Tango3D:
    torch.manual_seed(0)
    m = Tango3D(toy_config("micro"))
    m.set_text_encoder(fake_text())
    return m


def _dataset(root) -> ShardDataset:
    return ShardDataset(root, "train", augment=True, num_points=256, num_occ=8)


def test_cache_matches_encoding_each_example_by_hand(shards, model):
    ds = _dataset(shards)
    cache = cache_global_features(model, ds, passes=2, batch_size=3, workers=0, progress=False)
    n = 2 * len(ds)
    assert cache["global_token"].shape == (n, model.image_encoder.width)
    assert cache["patch_mean"].shape == (n, model.image_encoder.width)
    assert cache["shape_pooled"].shape == (n, model.config.shape.width)
    assert cache["text"].shape == (n, model.config.global_dim)
    # Naive reference: the second pass's third view, encoded on its own with that pass's draws.
    ds.set_epoch(10_001)
    ex = ds[2]
    with torch.no_grad():
        img = model.image_encoder(ex["image"][None])
        enc = model.shape_vae.encode(ds[2 - 2 % ds.views_per_shape]["points"][None],
                                     ds[2 - 2 % ds.views_per_shape]["normals"][None], sample_posterior=False)
        pooled = model.shape_vae.decode(enc["mean"])[0].mean(dim=0)
    row = len(ds) + 2
    torch.testing.assert_close(cache["global_token"][row], img["global_token"][0])
    torch.testing.assert_close(cache["patch_mean"][row], img["patch_map"][0].mean(dim=(1, 2)))
    torch.testing.assert_close(cache["shape_pooled"][row], pooled, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cache["text"][row], model.text_forward([ex["caption"]])[0])
    assert int(cache["shape_ids"][row]) == int(ex["shape_index"])
    # One shape embedding per shape and pass: its views share it; another pass draws a new yaw.
    ids = cache["shape_ids"]
    for p in range(2):
        rows = slice(p * len(ds), (p + 1) * len(ds))
        for s in ids[rows].unique():
            same = cache["shape_pooled"][rows][ids[rows] == s]
            assert torch.equal(same, same[:1].expand_as(same))
    assert not torch.allclose(cache["shape_pooled"][: len(ds)], cache["shape_pooled"][len(ds):])
    # The same caption has the same text id, and the text rows follow it.
    for t in cache["text_ids"].unique():
        rows = cache["text"][cache["text_ids"] == t]
        assert torch.equal(rows, rows[:1].expand_as(rows))


def test_cache_rejects_no_passes(shards, model):
    with pytest.raises(ValueError, match="passes"):
        cache_global_features(model, _dataset(shards), passes=0, progress=False)


def test_refit_loss_equals_the_heads_on_full_inputs_and_trains_only_those_heads(model):
    g = torch.Generator().manual_seed(0)
    b, c, w = 6, model.image_encoder.width, model.config.shape.width
    patch_map = torch.randn(b, c, 4, 4, generator=g)
    token = torch.randn(b, c, generator=g)
    tokens = torch.randn(b, 5, w, generator=g)
    full = model.image_global_head(token, patch_map)["global"]
    cached = model.image_global_head(token, patch_map.mean(dim=(2, 3))[:, :, None, None])["global"]
    torch.testing.assert_close(cached, full)
    full_shape = model.shape_global_head(tokens)["global"]
    torch.testing.assert_close(model.shape_global_head(tokens.mean(dim=1, keepdim=True))["global"], full_shape)

    text = torch.nn.functional.normalize(torch.randn(b, model.config.global_dim, generator=g), dim=-1)
    batch = {"global_token": token, "patch_mean": patch_map.mean(dim=(2, 3)), "shape_pooled": tokens.mean(dim=1),
             "text": text, "shape_ids": torch.tensor([0, 0, 1, 2, 3, 4]), "text_ids": torch.tensor([0, 0, 1, 2, 3, 3])}
    spec = [s for s in default_schedule("tiny") if s.name == "global_refit"][0]
    groups = spec.configure(model)
    assert [g["lr_scale"] for g in groups] == [1.0, spec.slow_lr_scale] and spec.slow_lr_scale < 1
    out = refit_loss(model, batch)
    assert set(out) == {"total", "global_image_shape", "global_image_text", "global_shape_text"}
    # Naive reference: the three terms from the full inputs.
    scale = model.logit_scale_global().detach()
    ref = {"global_image_shape": contrastive_loss(full, full_shape, logit_scale=scale, ids=batch["shape_ids"]),
           "global_image_text": contrastive_loss(full, text, logit_scale=scale, ids=batch["text_ids"]),
           "global_shape_text": contrastive_loss(full_shape, text, logit_scale=scale, ids=batch["text_ids"])}
    for k, v in ref.items():
        torch.testing.assert_close(out[k], v)
    torch.testing.assert_close(out["total"], sum(ref.values()) / 3)
    out["total"].backward()
    for name, p in model.named_parameters():
        if name.startswith(("image_global_head.", "shape_global_head.")):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_cached_batches_visit_every_row_once_per_epoch():
    cache = {"shape_ids": torch.arange(10), "x": torch.arange(10) * 2}
    it = cached_batches(cache, batch_size=3, seed=0)
    epoch = [next(it) for _ in range(3)]  # 3 batches of 3; the tenth row waits for the next order
    seen = torch.cat([b["shape_ids"] for b in epoch])
    assert len(seen.unique()) == 9
    assert all(torch.equal(b["x"], b["shape_ids"] * 2) for b in epoch)
    with pytest.raises(ValueError, match="exceeds"):
        next(cached_batches(cache, batch_size=11, seed=0))


def test_schedule_has_the_refit_last_and_can_leave_it_out():
    sched = default_schedule("tiny")
    last = sched[-1]
    assert (last.name, last.extra["index"], last.trainable, last.slow) == (
        "global_refit", 5, ("image_global_head.",), ("shape_global_head.",))
    assert last.extra["cached_passes"] >= 1
    assert "global_refit" not in [s.name for s in default_schedule("tiny", global_refit=False)]
    assert "global_refit" not in [s.name for s in default_schedule("tiny", kind="single-stage")]
