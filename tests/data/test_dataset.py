"""Tests of tango3d_core.data.dataset (shards, datasets, eval reader) and its CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from tango3d_core.data import dataset as D
from tango3d_core.data import shapes
from tango3d_core.data.__main__ import main as cli_main

PREFERRED = ["table", "chair", "humanoid", "quadruped"]
CATS = [c for c in PREFERRED if c in shapes.CATEGORIES][:2] or shapes.CATEGORIES[:2]

TINY = dict(
    split="train",
    shapes_per_category=2,
    views_per_shape=2,
    resolution=32,
    points_per_shape=2048,
    occ_per_shape=512,
    shard_size=3,  # 4 shapes -> shards of 3 and 1
    categories=CATS,
    seed=0,
    progress=False,
)

pytestmark = pytest.mark.skipif(len(CATS) < 2, reason="needs two registered shape categories")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    D.build_shards(out, workers=1, **TINY)
    return out


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# ------------------------------------------------------------------ building


def test_build_writes_shards_index_and_manifest(built: Path):
    assert sorted(p.name for p in built.iterdir()) == [
        "manifest.json",
        "train-00000.npz",
        "train-00001.npz",
        "train-index.json",
    ]
    index = json.loads((built / "train-index.json").read_text())
    assert index["num_shapes"] == 4 and [s["num_shapes"] for s in index["shards"]] == [3, 1]
    assert index["shards"][0]["categories"] == [CATS[0], CATS[1], CATS[0]]
    assert index["shards"][0]["seeds"] == [0, 0, 1]
    manifest = json.loads((built / "manifest.json").read_text())
    cfg = manifest["splits"]["train"]
    assert cfg["resolution"] == 32 and cfg["categories"] == CATS and cfg["config_hash"] == index["config_hash"]
    assert manifest["split_offset"] == {"train": 0, "val": 100_000, "test": 200_000}


def test_shards_load_without_pickle_and_have_compact_dtypes(built: Path):
    a = _arrays(built / "train-00000.npz")
    assert a["caption"].dtype.kind == "U" and a["caption"].shape == (3,)
    assert a["category"].tolist() == [CATS[0], CATS[1], CATS[0]]
    assert a["part_names"].dtype.kind == "U" and a["part_names"].ndim == 2
    assert a["shape_index"].tolist() == [0, 1, 2]
    expect = {
        "s0000.points": (np.float32, (2048, 3)),
        "s0000.normals": (np.int8, (2048, 3)),
        "s0000.point_parts": (np.int8, (2048,)),
        "s0000.occ_points": (np.float16, (512, 3)),
        "s0000.occ_labels": (np.uint8, (512,)),
        "s0000.cam_K": (np.float64, (2, 3, 3)),
        "s0000.v01.rgb": (np.uint8, (32, 32, 3)),
        "s0000.v01.mask": (np.bool_, (32, 32)),
        "s0000.v01.xyz": (np.float16, (32, 32, 3)),
        "s0000.v01.normal": (np.int8, (32, 32, 3)),
        "s0000.v01.part_id": (np.int8, (32, 32)),
    }
    for k, (dt, shape) in expect.items():
        assert a[k].dtype == dt and a[k].shape == shape, k
    m = a["s0000.v01.mask"]
    assert m.any() and not m.all()
    assert (a["s0000.v01.part_id"][~m] == -1).all() and (a["s0000.v01.part_id"][m] >= 0).all()
    assert (a["s0000.v01.xyz"][~m] == 0).all()
    occ = a["s0000.occ_labels"]
    assert 0 < occ.mean() < 1


@pytest.mark.slow
def test_build_is_deterministic_across_worker_counts(built: Path, tmp_path: Path):
    D.build_shards(tmp_path, workers=2, **TINY)
    for name in ("train-00000.npz", "train-00001.npz"):
        a, b = _arrays(built / name), _arrays(tmp_path / name)
        assert a.keys() == b.keys()
        for k in a:
            assert np.array_equal(a[k], b[k]), (name, k)
        # numpy writes zip members with a fixed date, so even the bytes agree.
        assert (built / name).read_bytes() == (tmp_path / name).read_bytes()
    assert (built / "train-index.json").read_text() == (tmp_path / "train-index.json").read_text()


def test_resume_rebuilds_only_missing_or_broken_shards(built: Path, tmp_path: Path):
    out = tmp_path / "copy"
    shutil.copytree(built, out)
    kept = out / "train-00000.npz"
    before = kept.stat().st_mtime_ns
    original = _arrays(out / "train-00001.npz")
    (out / "train-00001.npz").unlink()
    (out / "train-00003.tmp999.npz").write_bytes(b"half a shard")  # leftover of a killed run
    res = D.build_shards(out, workers=1, **TINY)
    assert res.built == [1] and res.skipped == [0]
    assert kept.stat().st_mtime_ns == before
    assert not list(out.glob("*.tmp*"))
    rebuilt = _arrays(out / "train-00001.npz")
    assert all(np.array_equal(original[k], rebuilt[k]) for k in original)
    # A truncated shard is not valid: it is rebuilt.
    data = kept.read_bytes()
    kept.write_bytes(data[: len(data) // 2])
    res = D.build_shards(out, workers=1, **TINY)
    assert res.built == [0] and res.skipped == [1]
    # Nothing to do: nothing is rewritten.
    res = D.build_shards(out, workers=1, **TINY)
    assert res.built == [] and res.skipped == [0, 1]


def test_a_changed_config_rebuilds_everything(built: Path, tmp_path: Path):
    out = tmp_path / "copy"
    shutil.copytree(built, out)
    res = D.build_shards(out, workers=1, **{**TINY, "seed": 1})
    assert res.built == [0, 1]
    a, b = _arrays(built / "train-00000.npz"), _arrays(out / "train-00000.npz")
    assert np.array_equal(a["seed"], b["seed"])  # same shapes ...
    assert not np.array_equal(a["s0000.cam_R"], b["s0000.cam_R"])  # ... other cameras


def test_splits_use_disjoint_seed_ranges(tmp_path: Path):
    for split in ("val", "test"):
        D.build_shards(
            tmp_path, **{**TINY, "split": split, "shapes_per_category": 1, "views_per_shape": 1, "resolution": 16}
        )
    idx = {s: json.loads((tmp_path / f"{s}-index.json").read_text()) for s in ("val", "test")}
    assert idx["val"]["shards"][0]["seeds"] == [100_000, 100_000]
    assert idx["test"]["shards"][0]["seeds"] == [200_000, 200_000]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["splits"]) == {"val", "test"}


def test_build_rejects_bad_arguments(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown categories"):
        D.build_shards(tmp_path, **{**TINY, "categories": ["no_such_thing"]})
    with pytest.raises(ValueError, match="shapes_per_category"):
        D.build_shards(tmp_path, **{**TINY, "shapes_per_category": 0})
    with pytest.raises(ValueError, match="splits stay disjoint"):
        D.build_shards(tmp_path, **{**TINY, "shapes_per_category": D.SPLIT_SIZE + 1})
    with pytest.raises(ValueError, match="split must be one of"):
        D.build_shards(tmp_path, **{**TINY, "split": "dev"})
    with pytest.raises(ValueError, match="workers"):
        D.build_shards(tmp_path, workers=0, **TINY)
    with pytest.raises(ValueError, match="resolution"):
        D.build_shards(tmp_path, **{**TINY, "resolution": 4})
    with pytest.raises(ValueError, match="duplicates"):
        D.build_shards(tmp_path, **{**TINY, "categories": [CATS[0], CATS[0]]})
    with pytest.raises(TypeError, match="not one string"):
        D.build_shards(tmp_path, **{**TINY, "categories": CATS[0]})
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ ShardDataset

FORMAT = {
    "image": (torch.float32, lambda H, N, M: (3, H, H)),
    "mask": (torch.bool, lambda H, N, M: (H, H)),
    "depth": (torch.float32, lambda H, N, M: (H, H)),
    "xyz": (torch.float32, lambda H, N, M: (H, H, 3)),
    "normal": (torch.float32, lambda H, N, M: (H, H, 3)),
    "normal_camera": (torch.float32, lambda H, N, M: (H, H, 3)),
    "part_id": (torch.int64, lambda H, N, M: (H, H)),
    "points": (torch.float32, lambda H, N, M: (N, 3)),
    "normals": (torch.float32, lambda H, N, M: (N, 3)),
    "point_parts": (torch.int64, lambda H, N, M: (N,)),
    "yaw": (torch.float32, lambda H, N, M: ()),
    "shape_center": (torch.float32, lambda H, N, M: (3,)),
    "shape_scale": (torch.float32, lambda H, N, M: ()),
    "occ_points": (torch.float32, lambda H, N, M: (M, 3)),
    "occ_labels": (torch.float32, lambda H, N, M: (M,)),
    "shape_index": (torch.int64, lambda H, N, M: ()),
    "category_index": (torch.int64, lambda H, N, M: ()),
}


def test_examples_follow_sample_format(built: Path):
    ds = D.ShardDataset(built, "train", num_points=1024, num_occ=256, image_size=24)
    assert len(ds) == 8
    ex = ds[5]
    assert set(ex) == set(FORMAT) | {"caption", "category"}
    for k, (dt, shape) in FORMAT.items():
        assert ex[k].dtype == dt, k
        assert tuple(ex[k].shape) == shape(24, 1024, 256), k
    assert isinstance(ex["caption"], str) and ex["category"] in CATS
    assert int(ex["shape_index"]) == 2 and shapes.CATEGORIES[int(ex["category_index"])] == ex["category"]
    m = ex["mask"]
    assert 0 <= float(ex["image"].min()) and float(ex["image"].max()) <= 1
    assert (ex["depth"][~m] == 0).all() and (ex["depth"][m] > 0).all()
    assert (ex["xyz"][~m] == 0).all() and (ex["normal"][~m] == 0).all() and (ex["part_id"][~m] == -1).all()
    assert torch.allclose(ex["normal"][m].norm(dim=-1), torch.ones(()), atol=1e-4)
    assert set(ex["occ_labels"].unique().tolist()) <= {0.0, 1.0}
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 24, 24) and len(batch["caption"]) == 4


def test_camera_normals_are_the_normals_rotated_into_the_view_and_face_it(built: Path):
    ds = D.ShardDataset(built, "train", num_points=256, num_occ=64, with_camera=True)  # crop jitter on
    for i in range(len(ds)):
        ex = ds[i]
        m = ex["mask"]
        R = ex["world_to_cam"][:3, :3].double()
        t = ex["world_to_cam"][:3, 3].double()
        n_cam = ex["normal_camera"].double()
        torch.testing.assert_close(n_cam[m], ex["normal"][m].double() @ R.T, atol=1e-5, rtol=0)
        assert (n_cam[~m] == 0).all()
        # Every visible surface faces the camera: the normal points against the viewing ray.
        p_cam = ex["xyz"][m].double() @ R.T + t
        facing = ((n_cam[m] * p_cam).sum(-1) < 0).double().mean()
        assert facing > 0.97, (i, float(facing))


def test_shard_dataset_in_dataloader_workers(built: Path):
    ds = D.ShardDataset(built, "train", num_points=256, num_occ=64)
    ds[0]  # open a shard in the parent: workers must not reuse its file handle
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    seen = torch.cat([b["shape_index"] for b in loader])
    assert sorted(seen.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    # Same draws as in the main process: augmentation is keyed by (seed, epoch, index).
    first = next(iter(torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)))
    assert torch.equal(first["points"][1], ds[1]["points"])


def test_correspondence_holds_after_augmentation(built: Path):
    ds = D.ShardDataset(built, "train", num_points=2048, num_occ=64)
    assert ds.aug.yaw == "random" and ds.aug.crop_jitter and ds.aug.color_jitter
    good, control = [], []
    for i in range(len(ds)):
        ex = ds[i]
        yaw = float(ex["yaw"])
        pts = ex["points"].numpy()
        tree = cKDTree(pts)
        xyz = ex["xyz"][ex["mask"]].numpy().astype(np.float64)
        c, k = ex["shape_center"].numpy(), float(ex["shape_scale"])
        good.append(tree.query((xyz @ D.rotation_z(yaw).T - c) * k)[0])
        control.append(tree.query((xyz @ D.rotation_z(yaw + 0.6).T - c) * k)[0])
        # points/normals/occ share the rotation: normals stay unit and the occupancy
        # queries keep the stored z.
        assert np.allclose(np.linalg.norm(ex["normals"].numpy(), axis=1), 1, atol=1e-4)
    good, control = np.concatenate(good), np.concatenate(control)
    # 2048 exterior samples on a diag-1 shape are ~0.02 apart.
    assert np.quantile(good, 0.95) < 0.04
    # A wrong rotation leaves a large tail of far points (thin legs, overhangs).
    assert np.quantile(control, 0.9) > 3 * np.quantile(good, 0.9)


def test_points_are_the_stored_pool_rotated(built: Path):
    rec = D.load_split(built, "train")[1]
    ds = D.ShardDataset(built, "train", augment=False, yaw=0.7, num_points=2048, num_occ=512)
    ex = ds[2]  # shape 1, view 0
    R = D.rotation_z(0.7)
    assert float(ex["yaw"]) == pytest.approx(0.7)
    # rotated, then re-normalised to the rotated pool's own bbox (centre 0, diagonal 1)
    pool = rec.points @ R.T
    lo, hi = pool.min(0), pool.max(0)
    c, k = (lo + hi) / 2, 1 / np.linalg.norm(hi - lo)
    np.testing.assert_allclose(ex["shape_center"].numpy(), c, atol=1e-6)
    assert float(ex["shape_scale"]) == pytest.approx(k, rel=1e-6)
    assert np.allclose(ex["points"].numpy(), (pool - c) * k, atol=1e-5)
    assert np.allclose(ex["normals"].numpy(), rec.normals @ R.T, atol=1e-6)
    assert np.allclose(ex["occ_points"].numpy(), (rec.occ_points @ R.T - c) * k, atol=1e-5)
    assert np.array_equal(ex["occ_labels"].numpy(), rec.occ_labels)
    # The image side is untouched by the yaw: canonical xyz, as stored.
    assert np.array_equal(ex["xyz"].numpy(), rec.views[0].xyz)


def test_crop_jitter_keeps_maps_aligned_with_the_image(built: Path):
    recs = D.load_split(built, "train")
    ds = D.ShardDataset(
        built, "train", augment=False, crop_jitter=True, crop_scale=(0.6, 0.8), with_camera=True, image_size=40,
        num_occ=64,
    )
    errs, colour, colour_ctrl = [], [], []
    for i in range(len(ds)):
        ex = ds[i]
        view = recs[i // 2].views[i % 2]
        m = ex["mask"].numpy()
        K, w2c = ex["intrinsics"].numpy().astype(np.float64), ex["world_to_cam"].numpy().astype(np.float64)
        xyz = ex["xyz"].numpy()[m].astype(np.float64)
        cam = xyz @ w2c[:3, :3].T + w2c[:3, 3]
        uv = cam @ K.T
        uv = uv[:, :2] / uv[:, 2:]
        rows, cols = np.nonzero(m)
        errs.append(np.abs(uv - np.stack([cols, rows], 1)).max(1))
        assert np.allclose(ex["depth"].numpy()[m], cam[:, 2], atol=1e-5)
        # The image pixel shows the colour the original render shows at that point.
        src = np.round(view.camera.project(xyz)).astype(int)
        img = ex["image"].numpy().transpose(1, 2, 0)[m]
        colour.append(np.abs(img - view.rgb[src[:, 1], src[:, 0]] / 255.0).mean(1))
        shifted = np.clip(src + 3, 0, view.rgb.shape[0] - 1)
        colour_ctrl.append(np.abs(img - view.rgb[shifted[:, 1], shifted[:, 0]] / 255.0).mean(1))
    errs = np.concatenate(errs)
    # Nearest-neighbour resampling moves a map value by at most half a source pixel,
    # i.e. 0.5 * out / crop_side < 0.5 * 40 / (0.6 * 32) ~ 1.04 output pixels.
    assert errs.max() < 1.1 and np.median(errs) < 0.6
    assert np.median(np.concatenate(colour)) < 0.5 * np.median(np.concatenate(colour_ctrl))


def test_eval_mode_is_deterministic_and_unaugmented(built: Path):
    ds = D.ShardDataset(built, "train", augment=False, num_points=512, num_occ=128)
    a, b = ds[3], ds[3]
    ds.set_epoch(5)
    c = ds[3]
    for k in FORMAT:
        assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]), k
    rec = D.load_split(built, "train")[1]
    assert np.allclose(a["image"].numpy().transpose(1, 2, 0), rec.views[1].rgb / 255.0)
    # One fixed yaw per shape (both views agree), different between shapes.
    assert float(ds[2]["yaw"]) == float(ds[3]["yaw"]) != float(ds[4]["yaw"])
    # Training draws change with the epoch.
    tr = D.ShardDataset(built, "train", num_points=512, num_occ=128)
    y0 = float(tr[3]["yaw"])
    tr.set_epoch(1)
    assert float(tr[3]["yaw"]) != y0


def test_dataset_rejects_bad_options(built: Path, tmp_path: Path):
    ok = dict(num_points=64, num_occ=64)
    with pytest.raises(ValueError, match="num_points=4096 exceeds"):
        D.ShardDataset(built, "train", num_points=4096, num_occ=64)
    with pytest.raises(ValueError, match="num_occ=2048 exceeds the 512"):
        D.ShardDataset(built, "train", num_points=64)
    with pytest.raises(ValueError, match="yaw must be"):
        D.ShardDataset(built, "train", yaw="sideways", **ok)
    with pytest.raises(ValueError, match="crop_scale"):
        D.ShardDataset(built, "train", crop_scale=(0.9, 0.5), **ok)
    with pytest.raises(FileNotFoundError, match="val-index.json"):
        D.ShardDataset(built, "val", **ok)
    with pytest.raises(TypeError):
        D.ShardDataset(built, "train", no_such_option=True, **ok)
    with pytest.raises(IndexError):
        D.ShardDataset(built, "train", **ok)[8]
    # A shard listed in the index but gone is reported by name.
    broken = tmp_path / "b"
    shutil.copytree(built, broken)
    (broken / "train-00001.npz").unlink()
    with pytest.raises(FileNotFoundError, match="train-00001.npz"):
        D.ShardDataset(broken, "train", **ok)


# ------------------------------------------------------------------ eval reader


def test_load_split_records(built: Path):
    recs = D.load_split(built, "train")
    assert len(recs) == 4
    r = recs[3]
    assert (r.shape_index, r.seed, r.category) == (3, 1, CATS[1])
    assert r.caption and r.part_names == shapes.generate(CATS[1], 1).part_names
    assert r.points.shape == (2048, 3) and r.points.dtype == np.float32
    assert len(r.views) == 2
    v = r.views[0]
    # Stored views agree with a fresh render of the same shape and camera.
    fresh = D.render.render_view(shapes.generate(CATS[1], 1), v.camera)
    assert np.array_equal(fresh.mask, v.mask) and np.array_equal(fresh.part_id, v.part_id)
    assert np.abs(fresh.xyz[v.mask] - v.xyz[v.mask]).max() < 5e-4  # float16 storage
    assert np.abs(fresh.depth[v.mask] - v.depth[v.mask]).max() < 1e-3
    # Part labels of the surface samples come from the generator.
    assert set(np.unique(r.point_parts)) <= set(range(len(r.part_names)))


# ------------------------------------------------------------------ on the fly


def test_on_the_fly_matches_the_shards(built: Path):
    kw = {k: TINY[k] for k in ("views_per_shape", "resolution", "points_per_shape", "occ_per_shape", "seed")}
    fly = D.OnTheFlyDataset(
        split="train", shapes_per_category=2, categories=CATS, augment=False, num_points=512, num_occ=128, **kw
    )
    shard = D.ShardDataset(built, "train", augment=False, num_points=512, num_occ=128)
    assert len(fly) == len(shard) == 8
    loader = torch.utils.data.DataLoader(fly, batch_size=None, num_workers=2)
    got = list(loader)
    assert len(got) == 8
    by_key = {(int(e["shape_index"]), e["image"].numpy().tobytes()): e for e in got}
    assert len(by_key) == 8  # every (shape, view) exactly once across both workers
    for i in range(len(shard)):
        ref = shard[i]
        e = by_key[(int(ref["shape_index"]), ref["image"].numpy().tobytes())]
        for k in FORMAT:
            assert torch.equal(e[k], ref[k]), k


def test_on_the_fly_endless_stream_deals_shapes_to_workers():
    fly = D.OnTheFlyDataset(
        categories=CATS, views_per_shape=1, resolution=16, points_per_shape=256, occ_per_shape=64,
        num_points=128, num_occ=32, shuffle_buffer=1,
    )
    with pytest.raises(TypeError, match="no length"):
        len(fly)
    it = fly._shape_indices(1, 3)
    assert [next(it) for _ in range(3)] == [1, 4, 7]
    ex = next(iter(fly))
    assert tuple(ex["points"].shape) == (128, 3)


# ------------------------------------------------------------------ CLI


def test_cli_build_watertight_preview(tmp_path: Path, capsys):
    rc = cli_main([
        "build", str(tmp_path / "s"), "--split", "val", "--shapes-per-category", "1", "--views", "1",
        "--resolution", "16", "--points", "64", "--occ", "64", "--workers", "1", "--no-progress",
        "--categories", ",".join(CATS),
    ])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["val"]["shapes"] == 2 and (tmp_path / "s" / "val-00000.npz").is_file()
    assert cli_main(["watertight", "--seeds", "2", "--categories", CATS[0], "--json"]) == 0
    wt = json.loads(capsys.readouterr().out)
    assert set(wt["per_category"]) == {CATS[0]} and 0 <= wt["overall"] <= 1
    assert cli_main(["preview", str(tmp_path / "p.png"), "--per-category", "2", "--resolution", "32",
                     "--categories", ",".join(CATS)]) == 0
    from PIL import Image

    assert Image.open(tmp_path / "p.png").size == (64, 2 * (32 + 18))
    with pytest.raises(SystemExit):
        cli_main(["build", str(tmp_path / "x"), "--shapes-per-category", "0"])
    with pytest.raises(SystemExit, match="unknown categories"):
        cli_main(["watertight", "--categories", "nope"])
