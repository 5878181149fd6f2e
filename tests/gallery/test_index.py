"""Vector indexes: the exact index equals float32 brute force (its certificate is sound), the
approximate one reaches its recall target, masks and thresholds are honoured, bad input fails."""

from __future__ import annotations

import numpy as np
import pytest

from tango3d_core.gallery.index import (
    _read_rows,
    ApproxIndex,
    ApproxParams,
    ExactIndex,
    brute_force,
    brute_force_batch,
    build_index,
    load_index,
    recall_at_k,
)

from .conftest import clustered, uniform


def naive_top(vectors, q, k, rows=None, min_score=None):
    """The obvious reference: score every row in float64, sort, cut."""
    rows = np.arange(len(vectors)) if rows is None else np.asarray(rows)
    s = vectors[rows].astype(np.float64) @ q.astype(np.float64)
    keep = np.ones(len(rows), bool) if min_score is None else s >= min_score
    order = np.argsort(-s[keep], kind="stable")[:k]
    return rows[keep][order], s[keep][order]


def assert_same_top(ids, scores, ref_ids, ref_scores, atol=1e-5):
    """Same scores; same ids except where two reference scores tie within float32 rounding."""
    np.testing.assert_allclose(scores, ref_scores, atol=atol)
    assert len(ids) == len(ref_ids)
    for i, (a, b) in enumerate(zip(ids, ref_ids)):
        if a != b:
            near = np.abs(ref_scores - ref_scores[i]) < atol
            assert a in set(ref_ids[near]), f"rank {i}: {a} vs {b}"


def test_brute_force_matches_naive():
    x = uniform(3000, 16, seed=0)
    q = uniform(5, 16, seed=1)
    rows = np.sort(np.random.default_rng(2).choice(3000, 700, replace=False))
    for qq in q:
        for kw in ({}, {"rows": rows}, {"min_score": 0.3}, {"rows": rows, "min_score": 0.2}):
            s, i = brute_force(x, qq, 12, **kw)
            ri, rs = naive_top(x, qq, 12, **kw)
            assert_same_top(i, s, ri, rs)
            assert np.all(np.diff(s) <= 0)


def test_brute_force_batch_matches_naive():
    x = clustered(300_000, 8, seed=20)  # more rows than one chunk
    q = clustered(6, 8, seed=21)
    scores, ids = brute_force_batch(x, q, 7)
    assert scores.shape == ids.shape == (6, 7)
    for qq, s, i in zip(q, scores, ids):
        assert_same_top(i, s, *naive_top(x, qq, 7))
    s, i = brute_force_batch(x[:3], q[:2], 5)
    assert s.shape == (2, 3)


@pytest.mark.parametrize("data", ["clustered", "uniform"])
@pytest.mark.parametrize("dim", [24, 64])  # 24 is padded to 32 codes
def test_exact_index_equals_brute_force(data, dim):
    make = clustered if data == "clustered" else uniform
    x = make(6000, dim, seed=0)
    q = make(25, dim, seed=1)
    index = ExactIndex(x)
    for qq in q:
        for k in (1, 10, 50):
            res = index.search(qq, k, candidates=256)
            assert res.stats["certified"]
            ri, rs = naive_top(x, qq, k)
            assert_same_top(res.ids, res.scores, ri, rs)


def test_error_bound_holds_for_every_row():
    """The certificate's premise: |q.x - D/t| <= bound for all rows, computed independently."""
    x = clustered(4000, 48, seed=3)
    index = ExactIndex(x)
    codes = index.codes[:, :48].astype(np.float64) - 128.0
    for qq in clustered(20, 48, seed=4):
        u, t, bound = index._fold(qq)
        approx = codes @ u[:48].astype(np.float64) / t
        exact = x.astype(np.float64) @ qq.astype(np.float64)
        assert np.abs(approx - exact).max() <= bound
        assert bound == pytest.approx(index.error_bound(qq))
        assert bound < 0.1  # tight enough to be useful


def test_exact_index_second_pass_and_fallback_stay_exact():
    rng = np.random.default_rng(5)
    # Many rows almost equally similar: the first scan cannot certify, the range search does.
    base = uniform(1, 32, seed=6)[0]
    near = base + 0.02 * rng.standard_normal((3000, 32))
    x = np.concatenate([near / np.linalg.norm(near, axis=1, keepdims=True), uniform(3000, 32, seed=7)])
    x = x.astype(np.float32)
    index = ExactIndex(x)
    methods = set()
    for qq in (base + 0.05 * rng.standard_normal((10, 32))).astype(np.float32):
        res = index.search(qq, 10, candidates=10)
        methods.add(res.stats["method"])
        ri, rs = naive_top(x, qq, 10)
        assert_same_top(res.ids, res.scores, ri, rs)
    assert methods & {"scan+range", "brute_force"}


def test_exact_index_mask_threshold_and_shards():
    x = clustered(30_000, 32, seed=8)
    q = clustered(8, 32, seed=9)
    rng = np.random.default_rng(10)
    wide = rng.random(30_000) < 0.7        # scanned with a faiss selector
    narrow = rng.random(30_000) < 0.01     # few rows: brute force over them
    one, three = ExactIndex(x, shards=1), ExactIndex(x, shards=3)
    for qq in q:
        for mask in (None, wide, narrow):
            for min_score in (None, 0.5):
                rows = None if mask is None else np.flatnonzero(mask)
                ri, rs = naive_top(x, qq, 20, rows=rows, min_score=min_score)
                for index in (one, three):
                    res = index.search(qq, 20, mask=mask, min_score=min_score)
                    assert_same_top(res.ids, res.scores, ri, rs)
                    if mask is not None:
                        assert mask[res.ids].all()
                    if min_score is not None:
                        assert (res.scores >= min_score).all()
    empty = np.zeros(30_000, bool)
    assert len(one.search(q[0], 5, mask=empty).ids) == 0
    assert len(one.search(q[0], 5, min_score=0.999999).ids) <= 1


def test_exact_index_small_and_k_beyond_n():
    x = uniform(7, 8, seed=11)
    index = ExactIndex(x)
    res = index.search(x[3], 20)
    assert sorted(res.ids.tolist()) == list(range(7))
    assert res.ids[0] == 3 and res.scores[0] == pytest.approx(1.0, abs=1e-6)


def test_exact_index_save_load(tmp_path):
    x = clustered(2000, 32, seed=12)
    index = ExactIndex(x)
    index.save(tmp_path / "idx")
    again = load_index(tmp_path / "idx", x, shards=2)
    assert isinstance(again, ExactIndex)
    for qq in clustered(5, 32, seed=13):
        a, b = index.search(qq, 10), again.search(qq, 10)
        np.testing.assert_array_equal(a.ids, b.ids)
    with pytest.raises(ValueError, match="rebuild the index"):
        load_index(tmp_path / "idx", x[:100])
    with pytest.raises(FileNotFoundError, match="not built"):
        load_index(tmp_path / "nothing", x)


def test_bad_inputs():
    x = uniform(100, 16, seed=14)
    index = ExactIndex(x)
    with pytest.raises(ValueError, match="width"):
        index.search(np.ones(15, np.float32), 3)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.full(16, np.nan, np.float32), 3)
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            index.search(x[0], k)
    with pytest.raises(ValueError, match="mask"):
        index.search(x[0], 3, mask=np.ones(99, bool))
    with pytest.raises(ValueError, match="mask"):
        index.search(x[0], 3, mask=np.ones(100, np.int8))
    with pytest.raises(ValueError, match="float32"):
        ExactIndex(x.astype(np.float64))
    with pytest.raises(ValueError, match="2-D"):
        ExactIndex(x[0])
    bad = x.copy()
    bad[5, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        ExactIndex(bad)
    with pytest.raises(ValueError, match="shards"):
        ExactIndex(x, shards=0)


def test_recall_at_k():
    assert recall_at_k(np.array([[1, 2, 3]]), np.array([[3, 2, 1]])) == 1.0
    assert recall_at_k(np.array([[1, 2, -1], [5, 6, 7]]), np.array([[1, 9, 8], [5, 6, 9]])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="queries"):
        recall_at_k(np.zeros((2, 3)), np.zeros((3, 3)))


def test_approx_index_reaches_recall_and_honours_masks(tmp_path):
    x = clustered(20_000, 32, seed=15, clusters=200)
    tune_q, test_q = clustered(40, 32, seed=16, clusters=200), clustered(60, 32, seed=17, clusters=200)
    index = ApproxIndex(x, seed=0)
    params, r = index.tune(tune_q, k=10, target=0.95)
    assert r >= 0.95
    truth = np.stack([naive_top(x, qq, 10)[0] for qq in test_q])
    found = np.stack([index.search(qq, 10).ids for qq in test_q])
    assert recall_at_k(found, truth) >= 0.9
    # Scores are the float32 inner products of the returned rows, best first.
    res = index.search(test_q[0], 10)
    np.testing.assert_allclose(res.scores, x[res.ids] @ test_q[0], atol=1e-6)
    assert np.all(np.diff(res.scores) <= 0)
    mask = np.random.default_rng(18).random(20_000) < 0.5
    assert mask[index.search(test_q[1], 10, mask=mask).ids].all()
    small = np.zeros(20_000, bool)
    small[:30] = True
    res = index.search(test_q[1], 10, mask=small)
    assert_same_top(res.ids, res.scores, *naive_top(x, test_q[1], 10, rows=np.arange(30)))
    index.save(tmp_path / "ivf")
    again = load_index(tmp_path / "ivf", x)
    assert isinstance(again, ApproxIndex) and again.params == params
    np.testing.assert_array_equal(again.search(test_q[2], 10).ids, index.search(test_q[2], 10).ids)
    with pytest.raises(ValueError, match="at least 1000"):
        ApproxIndex(x[:500])
    assert index.search(test_q[0], 5, params=ApproxParams(nprobe=1, k_factor=1)).ids.shape == (5,)


def test_build_index_picks_by_size():
    x = clustered(3000, 16, seed=19)
    assert isinstance(build_index(x), ExactIndex)
    assert isinstance(build_index(x, exact_limit=1000), ApproxIndex)
    assert isinstance(build_index(x, kind="exact", exact_limit=1000), ExactIndex)
    with pytest.raises(ValueError, match="kind"):
        build_index(x, kind="fast")  # type: ignore[arg-type]


def test_memmapped_vectors_are_read_not_mapped(tmp_path):
    x = clustered(5000, 24, seed=22)
    np.save(tmp_path / "v.npy", x)
    mm = np.load(tmp_path / "v.npy", mmap_mode="r")
    for a, b in ((0, 10), (4990, 6000), (123, 4567), (10, 10)):
        got = _read_rows(mm, a, b)
        assert not isinstance(got, np.memmap)
        np.testing.assert_array_equal(got, x[a:b])
    np.testing.assert_array_equal(_read_rows(mm[100:], 5, 9), x[105:109])  # a view: sliced, not read
    q = clustered(3, 24, seed=23)
    for qq in q:
        np.testing.assert_array_equal(ExactIndex(mm).search(qq, 5).ids, ExactIndex(x).search(qq, 5).ids)
        np.testing.assert_array_equal(brute_force_batch(mm, qq, 5)[1][0], brute_force(x, qq, 5)[1])
