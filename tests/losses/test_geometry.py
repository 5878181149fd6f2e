"""losses/geometry.py: masked depth / normal / xyz losses on hand-made cases."""

from __future__ import annotations

import math

import pytest
import torch

from tango3d_core.losses.geometry import geometry_loss


def _target(b: int = 2, h: int = 3, w: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "depth": torch.rand(b, h, w, generator=g) + 1.0,
        "normal": torch.nn.functional.normalize(torch.randn(b, h, w, 3, generator=g), dim=-1),
        "xyz": torch.rand(b, h, w, 3, generator=g) - 0.5,
    }


def test_perfect_prediction_is_zero() -> None:
    t = _target()
    out = geometry_loss(t, t, torch.ones(2, 3, 4, dtype=torch.bool))
    assert all(float(out[k]) < 1e-6 for k in ("depth", "normal", "xyz", "loss"))


def test_depth_shift_invariance() -> None:
    t = _target()
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    shifted = {"depth": t["depth"] + torch.tensor([5.0, -2.0])[:, None, None]}
    assert float(geometry_loss(shifted, t, mask)["depth"]) < 1e-5
    absolute = geometry_loss(shifted, t, mask, depth_mode="absolute")["depth"]
    assert math.isclose(float(absolute), 3.5, rel_tol=1e-5)
    with pytest.raises(ValueError, match="depth_mode"):
        geometry_loss(shifted, t, mask, depth_mode="scale")  # type: ignore[arg-type]


def test_normal_and_xyz_values() -> None:
    t = _target()
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    assert math.isclose(float(geometry_loss({"normal": -t["normal"]}, t, mask)["normal"]), 2.0, rel_tol=1e-5)
    off = t["xyz"].clone()
    off[..., 0] += 0.3
    assert math.isclose(float(geometry_loss({"xyz": off}, t, mask)["xyz"]), 0.1, rel_tol=1e-5)


def test_mask_excludes_background_and_empty_mask_is_zero() -> None:
    t = _target()
    pred = {k: v.clone() for k, v in t.items()}
    mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    mask[:, :2] = True
    pred["xyz"][:, 2] += 10.0  # wrong only off the mask
    pred["normal"][:, 2] *= -1
    pred["depth"][:, 2] += 7.0  # also moves nothing on the mask in shift-invariant mode
    out = geometry_loss(pred, t, mask)
    assert all(float(out[k]) < 1e-5 for k in ("depth", "normal", "xyz"))
    empty = geometry_loss(pred, t, torch.zeros(2, 3, 4, dtype=torch.bool))
    assert all(torch.isfinite(v) and float(v) == 0.0 for v in empty.values())


def test_weights_and_missing_terms() -> None:
    t = _target()
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    pred = {"normal": -t["normal"], "xyz": t["xyz"] + 0.3}
    out = geometry_loss(pred, t, mask, weights={"normal": 0.5, "xyz": 2.0})
    assert "depth" not in out
    assert math.isclose(float(out["loss"]), 0.5 * 2.0 + 2.0 * 0.3, rel_tol=1e-5)
    with pytest.raises(ValueError, match="none of"):
        geometry_loss({}, t, mask)
    with pytest.raises(ValueError, match=r"\[B, H, W\]"):
        geometry_loss(t, t, mask[0])


def _yaw(xyz: torch.Tensor, t: float) -> torch.Tensor:
    c, s = math.cos(t), math.sin(t)
    x, y, z = xyz.unbind(-1)
    return torch.stack([c * x - s * y, s * x + c * y, z], -1)


def test_yaw_invariant_xyz_matches_a_naive_loop() -> None:
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(3, 5, 4, 3, generator=g), torch.randn(3, 5, 4, 3, generator=g)
    mask = torch.rand(3, 5, 4, generator=g) > 0.3
    got = geometry_loss({"xyz": pred}, {"xyz": target}, mask, xyz_mode="yaw_invariant", yaw_steps=12)["xyz"]
    total = 0.0
    for b in range(3):
        best = min(
            sum(float((_yaw(pred[b, i, j], 2 * math.pi * k / 12) - target[b, i, j]).abs().mean())
                for i in range(5) for j in range(4) if mask[b, i, j])
            for k in range(12))
        total += best
    assert float(got) == pytest.approx(total / int(mask.sum()), rel=1e-5)


def test_yaw_invariant_xyz_forgives_the_facing_direction_only() -> None:
    g = torch.Generator().manual_seed(4)
    target = torch.randn(2, 6, 6, 3, generator=g)
    mask = torch.ones(2, 6, 6, dtype=torch.bool)
    turned = torch.stack([_yaw(target[0], math.pi / 2), _yaw(target[1], -2 * math.pi / 3)])
    inv = geometry_loss({"xyz": turned}, {"xyz": target}, mask, xyz_mode="yaw_invariant")["xyz"]
    canon = geometry_loss({"xyz": turned}, {"xyz": target}, mask)["xyz"]
    assert float(inv) < 1e-5 < float(canon)
    # The collapse it is meant to avoid (x = y = 0 everywhere) is not forgiven ...
    flat = target.clone()
    flat[..., :2] = 0
    assert float(geometry_loss({"xyz": flat}, {"xyz": target}, mask, xyz_mode="yaw_invariant")["xyz"]) > 0.2
    # ... nor is a wrong height, nor a mirror image (not a rotation).
    mirrored = target * torch.tensor([-1.0, 1.0, 1.0])
    assert float(geometry_loss({"xyz": mirrored}, {"xyz": target}, mask, xyz_mode="yaw_invariant")["xyz"]) > 0.1


def test_yaw_invariant_xyz_gradient() -> None:
    g = torch.Generator().manual_seed(5)
    pred = torch.randn(2, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 3, 3, 3, generator=g, dtype=torch.float64)
    mask = torch.ones(2, 3, 3, dtype=torch.bool)
    mask[0, 0] = False
    fn = lambda p: geometry_loss({"xyz": p}, {"xyz": target}, mask, xyz_mode="yaw_invariant", yaw_steps=8)["xyz"]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (pred,), eps=1e-6, atol=1e-5)


def test_yaw_invariant_xyz_bad_options() -> None:
    x = torch.zeros(1, 2, 2, 3)
    m = torch.ones(1, 2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="yaw_steps"):
        geometry_loss({"xyz": x}, {"xyz": x}, m, xyz_mode="yaw_invariant", yaw_steps=0)
    with pytest.raises(ValueError, match="xyz_mode"):
        geometry_loss({"xyz": x}, {"xyz": x}, m, xyz_mode="nocs")  # type: ignore[arg-type]
