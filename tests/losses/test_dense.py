"""losses/dense.py: pixel-point InfoNCE against hand-computed cases and a naive reference."""

from __future__ import annotations

import math

import pytest
import torch

from tango3d_core.losses.dense import pixel_point_infonce


def test_identity_2x2_hand_computed() -> None:
    s = 3.0
    eye = torch.eye(2)[None]  # B=1, P=2, D=2: pixel i matches point i, orthogonal to the other
    out = pixel_point_infonce(eye, eye, logit_scale=s)
    expected = math.log(1 + math.exp(-s))  # -log(e^s / (e^s + e^0))
    for key in ("loss", "pixel_to_point", "point_to_pixel"):
        assert math.isclose(float(out[key]), expected, rel_tol=1e-6)
    assert float(out["accuracy"]) == 1.0


def test_negatives_come_from_other_shapes_too() -> None:
    # B=2, P=1: the only negative of each pixel is the other shape's point.
    pix = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    pts = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])  # shape 1's point looks like shape 0's
    out = pixel_point_infonce(pix, pts, logit_scale=1.0)
    # pixel 0: logits [1, 1] -> log 2; pixel 1: logits [0, 0] -> log 2.
    assert math.isclose(float(out["pixel_to_point"]), math.log(2), rel_tol=1e-6)
    # point 0 vs pixels: [1, 0] -> log(1 + e^-1); point 1: [1, 0], target 1 -> log(1 + e^1).
    assert math.isclose(float(out["point_to_pixel"]), 0.5 * (math.log(1 + math.e ** -1) + math.log(1 + math.e)), rel_tol=1e-6)


def _naive(pix, pts, scale, valid, pos, ids, radius):
    rows = [(b, i) for b in range(pix.shape[0]) for i in range(pix.shape[1]) if valid[b, i]]
    def ce(query, keys_fn):
        total = 0.0
        for a, (b, i) in enumerate(rows):
            logits = []
            for c, (b2, j) in enumerate(rows):
                near = a != c and ids[b] == ids[b2] and float((pos[b, i] - pos[b2, j]).norm()) < radius
                if not near:
                    logits.append((c, scale * float(query(b, i) @ keys_fn(b2, j))))
            m = max(v for _, v in logits)
            lse = m + math.log(sum(math.exp(v - m) for _, v in logits))
            total += lse - dict(logits)[a]
        return total / len(rows)
    p2q = ce(lambda b, i: pix[b, i], lambda b, j: pts[b, j])
    q2p = ce(lambda b, i: pts[b, i], lambda b, j: pix[b, j])
    return p2q, q2p


def _random_batch(seed: int):
    """Unit features [3, 5, 4], a random validity mask, positions, and items 0 and 2 the same shape."""
    g = torch.Generator().manual_seed(seed)
    b, p, d = 3, 5, 4
    pix = torch.nn.functional.normalize(torch.randn(b, p, d, generator=g), dim=-1)
    pts = torch.nn.functional.normalize(torch.randn(b, p, d, generator=g), dim=-1)
    valid = torch.rand(b, p, generator=g) > 0.25
    pos = torch.rand(b, p, 3, generator=g)
    return pix, pts, valid, pos, torch.tensor([7, 3, 7])


def test_matches_naive_reference_with_mask_and_ignore_radius() -> None:
    pix, pts, valid, pos, ids = _random_batch(0)
    out = pixel_point_infonce(pix, pts, logit_scale=5.0, valid=valid, positions=pos, shape_ids=ids, ignore_radius=0.5)
    p2q, q2p = _naive(pix, pts, 5.0, valid, pos, ids, 0.5)
    assert math.isclose(float(out["pixel_to_point"]), p2q, rel_tol=1e-5)
    assert math.isclose(float(out["point_to_pixel"]), q2p, rel_tol=1e-5)


def test_coincident_same_shape_points_are_not_negatives() -> None:
    feats = torch.nn.functional.normalize(torch.ones(1, 2, 3), dim=-1)  # identical features
    pos = torch.zeros(1, 2, 3)  # the same surface point twice
    out = pixel_point_infonce(feats, feats, logit_scale=10.0, positions=pos, ignore_radius=0.01)
    assert float(out["loss"]) == 0.0
    plain = pixel_point_infonce(feats, feats, logit_scale=10.0)
    assert math.isclose(float(plain["loss"]), math.log(2), rel_tol=1e-6)


def test_invalid_rows_are_dropped_and_empty_is_zero() -> None:
    g = torch.Generator().manual_seed(1)
    pix = torch.randn(2, 3, 4, generator=g)
    pts = torch.randn(2, 3, 4, generator=g)
    valid = torch.tensor([[True, False, True], [False, True, False]])
    out = pixel_point_infonce(pix, pts, logit_scale=2.0, valid=valid)
    ref = pixel_point_infonce(pix[valid][None], pts[valid][None], logit_scale=2.0)
    assert torch.allclose(out["loss"], ref["loss"])
    pix.requires_grad_(True)
    empty = pixel_point_infonce(pix, pts, logit_scale=2.0, valid=torch.zeros(2, 3, dtype=torch.bool))
    assert float(empty["loss"].detach()) == 0.0
    empty["loss"].backward()  # still differentiable, gradient zero
    assert torch.equal(pix.grad, torch.zeros_like(pix))


def test_gradient_reaches_scale_and_features() -> None:
    log_scale = torch.tensor(1.0, requires_grad=True)
    pix = torch.randn(2, 4, 3, requires_grad=True)
    pts = torch.randn(2, 4, 3, requires_grad=True)
    pixel_point_infonce(pix, pts, logit_scale=log_scale.exp())["loss"].backward()
    assert log_scale.grad is not None and pix.grad.abs().sum() > 0 and pts.grad.abs().sum() > 0


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"\[B, P, D\]"):
        pixel_point_infonce(torch.randn(2, 3, 4), torch.randn(2, 3, 5), logit_scale=1.0)
    with pytest.raises(ValueError, match="positions"):
        pixel_point_infonce(torch.randn(1, 3, 4), torch.randn(1, 3, 4), logit_scale=1.0, ignore_radius=0.1)
    with pytest.raises(ValueError, match="target"):
        pixel_point_infonce(torch.randn(1, 3, 4), torch.randn(1, 3, 4), logit_scale=1.0, target="soft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positions and sigma"):
        pixel_point_infonce(torch.randn(1, 3, 4), torch.randn(1, 3, 4), logit_scale=1.0, target="gaussian")
    with pytest.raises(ValueError, match="positions and sigma"):
        pixel_point_infonce(torch.randn(1, 3, 4), torch.randn(1, 3, 4), logit_scale=1.0, target="gaussian",
                            positions=torch.zeros(1, 3, 3), sigma=0.0)


def _naive_gaussian(pix, pts, scale, valid, pos, ids, sigma):
    """Soft-target cross-entropy, one row at a time: target_j ~ exp(-d_ij^2 / 2 sigma^2) on the same shape."""
    rows = [(b, i) for b in range(pix.shape[0]) for i in range(pix.shape[1]) if valid[b, i]]
    def ce(query, keys):
        total = 0.0
        for b, i in rows:
            logits = [scale * float(query[b, i] @ keys[b2, j]) for b2, j in rows]
            m = max(logits)
            lse = m + math.log(sum(math.exp(v - m) for v in logits))
            w = [math.exp(-float((pos[b, i] - pos[b2, j]).norm()) ** 2 / (2 * sigma**2)) if ids[b] == ids[b2] else 0.0
                 for b2, j in rows]
            total += sum(wj / sum(w) * (lse - lj) for wj, lj in zip(w, logits))
        return total / len(rows)
    return ce(pix, pts), ce(pts, pix)


def test_gaussian_target_matches_naive_reference() -> None:
    pix, pts, valid, pos, ids = _random_batch(2)
    out = pixel_point_infonce(pix, pts, logit_scale=5.0, valid=valid, positions=pos, shape_ids=ids,
                              target="gaussian", sigma=0.3)
    p2q, q2p = _naive_gaussian(pix, pts, 5.0, valid, pos, ids, 0.3)
    assert math.isclose(float(out["pixel_to_point"]), p2q, rel_tol=1e-5)
    assert math.isclose(float(out["point_to_pixel"]), q2p, rel_tol=1e-5)


def test_gaussian_target_narrow_sigma_is_the_one_hot_loss() -> None:
    g = torch.Generator().manual_seed(3)
    pix = torch.randn(2, 4, 3, generator=g)
    pts = torch.randn(2, 4, 3, generator=g)
    pos = torch.rand(2, 4, 3, generator=g)  # distinct points, far apart relative to sigma
    soft = pixel_point_infonce(pix, pts, logit_scale=2.0, positions=pos, target="gaussian", sigma=1e-4)
    hard = pixel_point_infonce(pix, pts, logit_scale=2.0)
    assert torch.allclose(soft["loss"], hard["loss"], atol=1e-6)


def test_gaussian_target_rewards_a_near_miss_and_counts_it() -> None:
    # Three orthogonal point features; point 1 lies 0.01 from point 0, point 2 is far away.
    pts = torch.eye(3)[None]
    pos = torch.tensor([[[0.0, 0.0, 0.0], [0.01, 0.0, 0.0], [0.5, 0.0, 0.0]]])

    def pixel_0_looks_like(j: int) -> torch.Tensor:
        pix = torch.eye(3)[None].clone()
        pix[0, 0] = torch.eye(3)[j]
        return pix

    near, far = pixel_0_looks_like(1), pixel_0_looks_like(2)
    hard = [pixel_point_infonce(x, pts, logit_scale=10.0, positions=pos)["pixel_to_point"] for x in (near, far)]
    assert torch.allclose(hard[0], hard[1])  # the one-hot target cannot tell a near miss from a far one
    soft = [pixel_point_infonce(x, pts, logit_scale=10.0, positions=pos, target="gaussian", sigma=0.05)
            for x in (near, far)]
    assert float(soft[0]["pixel_to_point"]) < float(soft[1]["pixel_to_point"]) - 1.0
    assert math.isclose(float(soft[0]["accuracy"]), 2 / 3, rel_tol=1e-6)  # pixel 0's best is point 1, not 0
    assert float(soft[0]["accuracy_sigma"]) == 1.0  # ... which is within sigma
    assert math.isclose(float(soft[1]["accuracy_sigma"]), 2 / 3, rel_tol=1e-6)


def test_gaussian_target_gradient_matches_finite_differences() -> None:
    g = torch.Generator().manual_seed(4)
    pix = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    pts = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    pos = torch.rand(2, 3, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda a, c: pixel_point_infonce(a, c, logit_scale=3.0, positions=pos, target="gaussian", sigma=0.4)["loss"],
        (pix, pts))
