"""models/shape_vae.py: output keys/shapes, FPS queries, posterior sampling, chunked queries."""

from __future__ import annotations

import pytest
import torch

import dataclasses

from tango3d_core.config import ShapeVAEConfig
from tango3d_core.models.heads import PointFeatureHead
from tango3d_core.models.ops import farthest_point_sample, gather_points, principal_yaw, rotate_z
from tango3d_core.models.shape_vae import LocalQueryDecoder, QueryDecoder, ShapeVAE, make_query_decoder

CFG = ShapeVAEConfig(num_latents=8, width=16, num_heads=2, latent_channels=4, num_freqs=4,
                     enc_self_layers=1, dec_self_layers=1, mlp_ratio=2.0, query_mlp_ratio=1.0, encoder_points=8)


def _cloud(b: int = 2, n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(b, n, 3, generator=g) - 0.5
    return pts, torch.nn.functional.normalize(pts, dim=-1)


def test_encode_keys_shapes_and_fps_queries() -> None:
    vae = ShapeVAE(CFG)
    pts, nrm = _cloud()
    out = vae.encode(pts, nrm)
    assert set(out) == {"mean", "logvar", "z", "query_index", "anchors", "frame_yaw"}
    assert torch.equal(out["frame_yaw"], torch.zeros(2))  # yaw_frame="input"
    assert out["mean"].shape == out["logvar"].shape == out["z"].shape == (2, 8, 4)
    assert torch.equal(out["query_index"], farthest_point_sample(pts, 8))
    assert torch.equal(out["anchors"], gather_points(pts, out["query_index"]))
    assert torch.equal(out["z"], out["mean"])


def test_encode_any_number_of_latent_tokens() -> None:
    vae = ShapeVAE(dataclasses.replace(CFG, query_decoder="local"))
    pts, nrm = _cloud()
    default = vae.encode(pts, nrm)
    assert torch.equal(vae.encode(pts, nrm, num_latents=8)["mean"], default["mean"])
    out = vae.encode(pts, nrm, num_latents=20)
    assert out["mean"].shape == (2, 20, 4) and out["anchors"].shape == (2, 20, 3)
    assert torch.equal(out["query_index"], farthest_point_sample(pts, 20))
    # The first 8 farthest-point samples are the default's, so the extra tokens only add anchors.
    assert torch.equal(out["query_index"][:, :8], default["query_index"])
    logits = vae.query_occupancy(vae.decode(out["mean"]), torch.rand(2, 6, 3) - 0.5, anchors=out["anchors"])["logits"]
    assert logits.shape == (2, 6) and torch.isfinite(logits).all()
    for bad, match in ((0, "integer >= 1"), (2.0, "integer >= 1"), (True, "integer >= 1"), (41, "at least num_latents=41")):
        with pytest.raises(ValueError, match=match):
            vae.encode(pts, nrm, num_latents=bad)


def test_posterior_sampling_is_reproducible_and_noisy() -> None:
    vae = ShapeVAE(CFG)
    pts, nrm = _cloud()
    a = vae.encode(pts, nrm, sample_posterior=True, generator=torch.Generator().manual_seed(1))["z"]
    b = vae.encode(pts, nrm, sample_posterior=True, generator=torch.Generator().manual_seed(1))["z"]
    c = vae.encode(pts, nrm, sample_posterior=True, generator=torch.Generator().manual_seed(2))["z"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_forward_decode_and_query_shapes() -> None:
    vae = ShapeVAE(CFG)
    pts, nrm = _cloud()
    out = vae(pts, nrm, torch.rand(2, 11, 3) - 0.5)
    assert out["tokens"].shape == (2, 8, 16)
    assert out["logits"].shape == (2, 11)
    assert out["features"].shape == (2, 11, 16)


def test_query_chunking_matches_single_pass_and_is_equivariant() -> None:
    vae = ShapeVAE(CFG)
    tokens = torch.randn(2, 8, 16)
    xyz = torch.rand(2, 23, 3) - 0.5
    full = vae.query_occupancy(tokens, xyz)["logits"]
    chunked = vae.query_occupancy(tokens, xyz, chunk_size=5)["logits"]
    assert torch.allclose(full, chunked, atol=1e-6)
    perm = torch.randperm(23)
    assert torch.allclose(vae.query_occupancy(tokens, xyz[:, perm])["logits"], full[:, perm], atol=1e-6)
    assert vae.query_occupancy(tokens, xyz[:, :0])["logits"].shape == (2, 0)


def test_all_parameters_receive_gradients() -> None:
    vae = ShapeVAE(CFG)
    pts, nrm = _cloud()
    out = vae(pts, nrm, torch.rand(2, 5, 3), sample_posterior=True)
    (out["logits"].sum() + out["logvar"].sum()).backward()
    assert [n for n, p in vae.named_parameters() if p.grad is None] == []


def test_bad_inputs() -> None:
    vae = ShapeVAE(CFG)
    pts, nrm = _cloud(n=5)
    with pytest.raises(ValueError, match="at least num_latents=8"):
        vae.encode(pts, nrm)
    pts, nrm = _cloud()
    with pytest.raises(ValueError, match="differ"):
        vae.encode(pts, nrm[:, :-1])
    with pytest.raises(ValueError, match=r"\[B, N, 3\]"):
        vae.encode(pts[0], nrm[0])
    with pytest.raises(ValueError, match="tokens"):
        QueryDecoder(width=16, num_heads=2, num_freqs=2, include_pi=True, mlp_ratio=1.0)(
            torch.rand(2, 3, 3), torch.rand(3, 4, 16))


# ------------------------------------------------------------------ the "local" query decoder
LOCAL = dataclasses.replace(CFG, query_decoder="local", local_neighbors=3, local_width=6, local_freqs=2)


def _local(seed: int = 0) -> LocalQueryDecoder:
    torch.manual_seed(seed)
    dec = make_query_decoder(LOCAL)
    assert isinstance(dec, LocalQueryDecoder)
    return dec


def _naive_local(dec: LocalQueryDecoder, xyz: torch.Tensor, tokens: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """One query and one neighbour at a time, neighbours found by sorting all distances."""
    beta = dec.log_beta.exp()
    rows = []
    for b in range(xyz.shape[0]):
        for m in range(xyz.shape[1]):
            x = xyz[b, m]
            order = sorted(range(anchors.shape[1]), key=lambda j: float((x - anchors[b, j]).norm()))
            hs, scores = [], []
            for j in order[:min(dec.neighbors, anchors.shape[1])]:
                off = x - anchors[b, j]
                t = tokens[b, j]
                h = dec.token_proj(t) + dec.offset_proj(dec.fourier(off)) * (1 + dec.token_gate(t))
                h = h + dec.mlp(dec.norm(h))
                hs.append(h)
                scores.append(dec.score(h)[0] - beta * off.dot(off))
            w = torch.softmax(torch.stack(scores), dim=0)
            pooled = (w[:, None] * torch.stack(hs)).sum(0)
            rows.append(dec.norm_out(dec.out(dec.out_norm(pooled))))
    return torch.stack(rows).view(xyz.shape[0], xyz.shape[1], -1)


def _local_inputs(seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(2, 7, 3, generator=g, dtype=dtype) - 0.5, torch.randn(2, 8, 16, generator=g, dtype=dtype),
            torch.rand(2, 8, 3, generator=g, dtype=dtype) - 0.5)


def test_local_decoder_matches_naive_reference_and_chunks() -> None:
    dec = _local()
    xyz, tokens, anchors = _local_inputs()
    fast = dec(xyz, tokens, anchors=anchors)
    assert fast.shape == (2, 7, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast, _naive_local(dec, xyz, tokens, anchors), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(dec(xyz, tokens, anchors=anchors, chunk_size=2), fast)
        perm = torch.randperm(7)
        torch.testing.assert_close(dec(xyz[:, perm], tokens, anchors=anchors), fast[:, perm])
        assert dec(xyz[:, :0], tokens, anchors=anchors).shape == (2, 0, 16)
        # More neighbours than tokens: every token is read.
        big = make_query_decoder(dataclasses.replace(LOCAL, local_neighbors=50))
        big.load_state_dict(dec.state_dict())
        assert big(xyz, tokens, anchors=anchors).shape == (2, 7, 16)


def test_local_decoder_reads_only_the_nearest_tokens() -> None:
    dec = _local()
    xyz, tokens, anchors = _local_inputs()
    xyz = xyz[:, :1]
    base = dec(xyz, tokens, anchors=anchors)
    dist = torch.cdist(xyz, anchors)[0, 0]
    far, near = int(dist.argmax()), int(dist.argmin())
    changed = tokens.clone()
    changed[0, far] += 10.0
    torch.testing.assert_close(dec(xyz, changed, anchors=anchors)[0], base[0])  # k=3 of 8: far is unread
    changed = tokens.clone()
    changed[0, near] += 10.0
    assert not torch.allclose(dec(xyz, changed, anchors=anchors)[0], base[0], atol=1e-3)


def test_local_decoder_gradients() -> None:
    dec = _local().double()
    xyz, tokens, anchors = _local_inputs(dtype=torch.float64)
    xyz.requires_grad_(True)
    tokens.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, t: dec(x, t, anchors=anchors), (xyz, tokens), eps=1e-6, atol=1e-5)


def test_local_vae_all_parameters_receive_gradients_and_occupancy_is_learnable() -> None:
    vae = ShapeVAE(dataclasses.replace(LOCAL, local_width=16))
    pts, nrm = _cloud()
    out = vae(pts, nrm, torch.rand(2, 5, 3) - 0.5, sample_posterior=True)
    (out["logits"].sum() + out["logvar"].sum()).backward()
    assert [n for n, p in vae.named_parameters() if p.grad is None] == []
    # Inside = below the plane z = 0: one local rule the decoder must fit in a few steps.
    torch.manual_seed(0)
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    q = torch.rand(2, 64, 3) - 0.5
    lab = (q[..., 2] < 0).float()
    losses = []
    for _ in range(60):
        logits = vae(pts, nrm, q)["logits"]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, lab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.3 * losses[0], losses


def test_local_decoder_bad_inputs_and_config() -> None:
    vae = ShapeVAE(LOCAL)
    pts, nrm = _cloud()
    tokens = torch.randn(2, 8, 16)
    with pytest.raises(ValueError, match="anchors"):
        vae.query_occupancy(tokens, torch.rand(2, 3, 3))
    with pytest.raises(ValueError, match="do not match"):
        vae.query_occupancy(tokens, torch.rand(2, 3, 3), anchors=torch.rand(2, 5, 3))
    with pytest.raises(ValueError, match="query_decoder"):
        dataclasses.replace(CFG, query_decoder="knn")
    with pytest.raises(ValueError, match="local_neighbors"):
        dataclasses.replace(LOCAL, local_neighbors=0)
    # Old configs (no key) keep the attention decoder.
    assert ShapeVAEConfig.from_dict({k: v for k, v in CFG.to_dict().items() if k != "query_decoder"}) == CFG
    head = PointFeatureHead(LOCAL, 4, hidden=8)
    with pytest.raises(TypeError, match="LocalQueryDecoder from a QueryDecoder"):
        head.init_from(ShapeVAE(CFG).occ_decoder)


def _long_skewed_cloud(b: int = 2, n: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Clouds with a well-defined principal frame (a long, one-sided horizontal axis)."""
    g = torch.Generator().manual_seed(3)
    pts = torch.randn(b, n, 3, generator=g) * torch.tensor([0.25, 0.08, 0.05])
    pts[..., 0] = pts[..., 0] + 2.0 * pts[..., 0].square()
    return pts, torch.nn.functional.normalize(torch.randn(b, n, 3, generator=g), dim=-1)


@pytest.mark.parametrize("decoder", ["attention", "local"])
def test_principal_frame_makes_occupancy_independent_of_the_input_yaw(decoder: str) -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(CFG, query_decoder=decoder, local_neighbors=3, local_width=6, local_freqs=2,
                              yaw_frame="principal")
    vae, plain = ShapeVAE(cfg).eval(), ShapeVAE(dataclasses.replace(cfg, yaw_frame="input")).eval()
    plain.load_state_dict(vae.state_dict())
    pts, nrm = _long_skewed_cloud()
    queries = torch.rand(2, 17, 3) - 0.5
    yaw = torch.tensor([0.7, -2.0])

    def logits(model: ShapeVAE, turn: torch.Tensor) -> torch.Tensor:
        p, n, q = rotate_z(pts, turn), rotate_z(nrm, turn), rotate_z(queries, turn)
        return model(p, n, q, sample_posterior=False)["logits"]

    ref = logits(vae, torch.zeros(2))
    assert torch.allclose(logits(vae, yaw), ref, atol=1e-4)
    # Without the principal frame the same weights do depend on the yaw: the check above can fail.
    assert not torch.allclose(logits(plain, yaw), logits(plain, torch.zeros(2)), atol=1e-3)
    enc = vae.encode(rotate_z(pts, yaw), rotate_z(nrm, yaw))
    assert torch.allclose(enc["frame_yaw"], principal_yaw(rotate_z(pts, yaw)))
    # Anchors are in the encoder's frame: the same for every input yaw.
    assert torch.allclose(enc["anchors"], vae.encode(pts, nrm)["anchors"], atol=1e-5)


def test_principal_frame_needs_frame_yaw_for_queries() -> None:
    vae = ShapeVAE(dataclasses.replace(CFG, yaw_frame="principal"))
    pts, nrm = _long_skewed_cloud()
    enc = vae.encode(pts, nrm)
    tokens = vae.decode(enc["z"])
    with pytest.raises(ValueError, match="frame_yaw"):
        vae.query_occupancy(tokens, pts[:, :5], anchors=enc["anchors"])
    assert vae.query_occupancy(tokens, pts[:, :5], anchors=enc["anchors"], frame_yaw=enc["frame_yaw"])[
        "logits"].shape == (2, 5)
    with pytest.raises(ValueError, match="yaw_frame"):
        dataclasses.replace(CFG, yaw_frame="pca")
