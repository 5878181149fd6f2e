"""The content-addressed LRU cache and the digests that key it."""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from app.session import LRUCache, Session, file_digest, image_digest


def test_lru_evicts_least_recently_used():
    c: LRUCache[str, int] = LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1          # a is now the most recent
    c.put("c", 3)                   # evicts b
    assert c.keys() == ["a", "c"] and c.get("b") is None and len(c) == 2


def test_get_or_compute_runs_once_for_concurrent_callers():
    c: LRUCache[str, int] = LRUCache(4)
    calls = []

    def slow() -> int:
        calls.append(1)
        time.sleep(0.2)
        return 42

    results = []
    threads = [threading.Thread(target=lambda: results.append(c.get_or_compute("k", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(r[1] for r in results) == [False, False, False, True]
    assert all(r[0] == 42 for r in results)


def test_get_or_compute_error_is_not_cached():
    c: LRUCache[str, int] = LRUCache(4)

    def boom() -> int:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        c.get_or_compute("k", boom)
    assert c.get_or_compute("k", lambda: 5) == (5, True)


def test_lru_rejects_zero_size():
    with pytest.raises(ValueError):
        LRUCache(0)


def test_file_digest_is_content_only(tmp_path):
    a, b = tmp_path / "one.ply", tmp_path / "other-name.obj"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    assert file_digest(a) == file_digest(b)
    b.write_bytes(b"changed")
    assert file_digest(a) != file_digest(b)


def test_image_digest_depends_on_pixels_not_file():
    im = Image.new("RGB", (4, 3), (1, 2, 3))
    assert image_digest(im) == image_digest(im.copy())
    other = im.copy()
    other.putpixel((0, 0), (9, 9, 9))
    assert image_digest(other) != image_digest(im)
    assert image_digest(Image.new("RGB", (3, 4), (1, 2, 3))) != image_digest(im)


def test_sessions_do_not_share_mutable_state():
    a, b = Session(id="a"), Session(id="b")
    a.panels[0] = Image.new("RGB", (1, 1))
    a.best_points["x"] = 1
    assert b.panels == [None, None] and b.best_points == {} and a.lock is not b.lock
