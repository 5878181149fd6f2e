"""Limits that keep a long-running public server up: size caps before any decoder runs,
bounded caches and work folder over many uploads, flat memory, and room for 20+ tabs."""

from __future__ import annotations

import io
import random

import numpy as np
import PIL.Image
import pytest
import trimesh
from PIL import Image, ImageFile

import tango3d_core.data.meshio as meshio
from app.explorer import Limits, UserError

from .conftest import EXAMPLES


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def test_upload_caps_are_enforced_before_decoding(make_explorer, tmp_path, monkeypatch):
    """An over-cap image, mask or mesh is refused from its size alone: no image decoder, mesh
    parser or hash of the content runs, and nothing is stored."""
    ex = make_explorer(limits=Limits(num_points=256, max_image_bytes=4096, max_mesh_bytes=4096))
    s = ex.open_session("a")
    # A small image and shape first, so the mask and second-shape uploads reach their own checks.
    Image.new("RGB", (16, 16), (200, 10, 10)).save(tmp_path / "small.png")
    (tmp_path / "small.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n")
    ex.load_image(s, tmp_path / "small.png")
    ex.load_mesh_file(s, tmp_path / "small.obj")
    stored_before = sorted((ex.work_dir / "uploads").iterdir())

    calls: list[str] = []
    real_open, real_load = PIL.Image.open, ImageFile.ImageFile.load
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: calls.append("Image.open") or real_open(*a, **k))
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: calls.append("load") or real_load(self))
    monkeypatch.setattr(meshio, "load_mesh", lambda *a, **k: calls.append("load_mesh"))
    monkeypatch.setattr(trimesh, "load_scene", lambda *a, **k: calls.append("load_scene"))
    monkeypatch.setattr("app.explorer.file_digest", lambda *a, **k: calls.append("digest") or "0" * 64)

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    (tmp_path / "big.png").write_bytes(buf.getvalue())
    trimesh.creation.icosphere(subdivisions=3).export(tmp_path / "big.ply")
    assert (tmp_path / "big.png").stat().st_size > 4096 and (tmp_path / "big.ply").stat().st_size > 4096

    for call, fragment in [
        (lambda: ex.load_image(s, tmp_path / "big.png"), "limit"),
        (lambda: ex.mask_from_file(s, tmp_path / "big.png"), "limit"),
        (lambda: ex.load_mesh_file(s, tmp_path / "big.ply"), "limit"),
        (lambda: ex.load_second_file(s, tmp_path / "big.ply"), "limit"),
    ]:
        with pytest.raises(UserError, match=fragment):
            call()
    assert calls == []
    assert sorted((ex.work_dir / "uploads").iterdir()) == stored_before


def _distinct_png(rng: random.Random) -> bytes:
    arr = np.full((48, 48, 3), [rng.randrange(256) for _ in range(3)], np.uint8)
    arr[rng.randrange(40):, rng.randrange(40):] = [rng.randrange(256) for _ in range(3)]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _distinct_mesh(rng: random.Random) -> bytes:
    m = trimesh.creation.icosphere(subdivisions=1)
    m.vertices *= [rng.uniform(0.5, 1.5) for _ in range(3)]
    return m.export(file_type="ply")


def _files_under(folder) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_memory_caches_and_files_stay_bounded_over_many_uploads(make_explorer, tmp_path):
    """200 distinct uploads (100 images, 100 meshes) from 6 tabs, more than the session limit:
    every cache stays at its size, the work folder does not grow with the uploads, and resident
    memory after the first 50 uploads stays flat (the full 1000-upload run with the real model
    is ``benchmarks/load_test.py``)."""
    ex = make_explorer(limits=Limits(num_points=256, max_sessions=4), shape_cache=4, image_cache=8, many_cache=4)
    rng = random.Random(0)
    sessions = [ex.open_session(f"tab{i}") for i in range(6)]
    rss = {}
    for i in range(100):
        s = ex.session(f"tab{i % 6}") or ex.open_session(f"tab{i % 6}")
        (tmp_path / "u.png").write_bytes(_distinct_png(rng))
        (tmp_path / "u.ply").write_bytes(_distinct_mesh(rng))
        ex.load_image(s, tmp_path / "u.png")
        ex.load_mesh_file(s, tmp_path / "u.ply", display_name=f"u{i}.ply")
        ex.click_pixel(s, (10, 10))
        assert len(ex.image_cache) <= 8 and len(ex.meshes) <= 4 and len(ex.shape_cache) <= 4
        assert len(ex.sessions()) <= 4
        if i + 1 in (25, 100):
            import gc

            gc.collect()
            rss[2 * (i + 1)] = _rss_mb()
    assert ex.image_cache.misses >= 100 and ex.shape_cache.misses >= 100  # all distinct: no cache hits
    files = _files_under(ex.work_dir)
    print(f"\n200 uploads: RSS {rss[50]:.0f} MB after 50, {rss[200]:.0f} MB after 200; "
          f"{files} files in the work folder")
    assert files <= 40, f"{files} files kept under the work folder after 100 mesh uploads"
    assert rss[200] - rss[50] < 150, rss
    del sessions


def test_twenty_four_tabs_fit_with_the_default_limits(make_explorer):
    """The public demo must hold 20+ concurrent users: with the default limits none of 24 open
    tabs is closed to make room for another, and every one can still click."""
    ex = make_explorer(limits=Limits(num_points=256))
    tabs = [ex.open_session(f"tab{i}") for i in range(24)]
    for s in tabs:
        ex.load_image(s, EXAMPLES / "mug.png")
    for s in tabs:
        ex.load_mesh_file(s, EXAMPLES / "mug.ply")
    for s in tabs:
        assert not s.closed
        ex.click_pixel(s, (100, 100))
    assert len(ex.sessions()) == 24


def test_old_temporary_files_are_swept(tmp_path):
    """Gradio deletes uploads but not the images it sends back: the server sweeps its temporary
    folder by age (files, then the emptied folders that are as old; new ones are kept)."""
    import os
    import time

    from app.main import TempSweeper, sweep_old_files

    long_ago = time.time() - 7200
    old, new = tmp_path / "a" / "image.jpeg", tmp_path / "b" / "image.jpeg"
    for p in (old, new):
        p.parent.mkdir()
        p.write_bytes(b"x")
    (tmp_path / "empty_old").mkdir()
    (tmp_path / "empty_new").mkdir()
    for p in (old, old.parent, tmp_path / "empty_old"):
        os.utime(p, (long_ago, long_ago))
    assert sweep_old_files(tmp_path, max_age_s=3600) == 1
    assert not old.exists() and not old.parent.exists() and not (tmp_path / "empty_old").exists()
    assert new.exists() and (tmp_path / "empty_new").exists() and tmp_path.exists()
    assert sweep_old_files(tmp_path / "missing", max_age_s=1) == 0

    os.utime(new, (long_ago, long_ago))
    sweeper = TempSweeper(tmp_path, max_age_s=3600, every_s=0.05)
    try:
        deadline = time.monotonic() + 10
        while new.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not new.exists()
    finally:
        sweeper.stop()
