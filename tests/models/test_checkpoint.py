"""models/checkpoint.py: safetensors round trip, strict loading, refusing pickles, bundled default."""

from __future__ import annotations

import json

import pytest
import torch
import trimesh
from PIL import Image
from safetensors.torch import load_file, save_file

from tango3d_core.models import CheckpointError, Tango3D, load_model, save_checkpoint
from tango3d_core.models.checkpoint import BUILD_COMMAND, read_checkpoint_config

from .conftest import micro_config


@pytest.fixture
def model() -> Tango3D:
    torch.manual_seed(0)
    return Tango3D(micro_config())


def _outputs(m: Tango3D) -> tuple[torch.Tensor, ...]:
    img = m.encode_image(Image.new("RGB", (30, 20), (30, 90, 150)))
    shp = m.encode_shape(trimesh.creation.icosphere(subdivisions=1), num_points=64, seed=1)
    return img.dense, img.global_embedding, shp.dense, shp.global_embedding


def test_round_trip_identical_outputs(model: Tango3D, tmp_path) -> None:
    path = save_checkpoint(model, tmp_path / "ckpt", extra={"stage": "joint", "step": 12})
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(path)
    assert loaded.config == model.config and not loaded.training
    for a, b in zip(_outputs(model), _outputs(loaded)):
        assert torch.equal(a, b)
    meta = json.loads((path / "config.json").read_text())
    assert meta["version"] == 1 and meta["extra"] == {"stage": "joint", "step": 12}
    assert meta["num_parameters"] == model.num_parameters()
    cfg, meta2 = read_checkpoint_config(path)
    assert cfg == model.config and meta2 == meta
    # The weights file itself is also accepted as the path.
    assert load_model(path / "model.safetensors").config == model.config


def test_float16_storage(model: Tango3D, tmp_path) -> None:
    full = save_checkpoint(model, tmp_path / "f32")
    half = save_checkpoint(model, tmp_path / "f16", dtype=torch.float16)
    s32, s16 = ((p / "model.safetensors").stat().st_size for p in (full, half))
    assert s16 < 0.6 * s32
    loaded = load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for a, b in zip(_outputs(model), _outputs(loaded)):
        assert torch.allclose(a, b, atol=5e-2)


def _tamper(path, fn) -> None:
    state = load_file(str(path / "model.safetensors"))
    fn(state)
    save_file(state, str(path / "model.safetensors"))


def test_strict_missing_unexpected_and_mismatched(model: Tango3D, tmp_path) -> None:
    path = save_checkpoint(model, tmp_path / "c")
    _tamper(path, lambda s: s.pop("dense_head.fc2.bias"))
    with pytest.raises(CheckpointError, match=r"missing 1 key.*dense_head\.fc2\.bias"):
        load_model(path)
    path = save_checkpoint(model, tmp_path / "d")
    _tamper(path, lambda s: s.__setitem__("extra.weight", torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"unexpected 1 key.*extra\.weight"):
        load_model(path)
    path = save_checkpoint(model, tmp_path / "e")
    _tamper(path, lambda s: s.__setitem__("dense_head.fc2.bias", torch.zeros(3)))
    with pytest.raises(CheckpointError, match=r"shape mismatch.*dense_head\.fc2\.bias"):
        load_model(path)


def test_refuses_pickle_weights(tmp_path) -> None:
    pt = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(1)}, pt)
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(pt)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save({"a": torch.zeros(1)}, legacy / "pytorch_model.bin")
    (legacy / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="pickle.*safetensors"):
        load_model(legacy)


def test_corrupt_or_foreign_files(model: Tango3D, tmp_path) -> None:
    path = save_checkpoint(model, tmp_path / "c")
    (path / "model.safetensors").write_bytes(b"\x00not a safetensors file")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(path)
    path = save_checkpoint(model, tmp_path / "v")
    meta = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(CheckpointError, match="version 99"):
        load_model(path)
    meta["model_config"]["dense_dimension"] = 4
    (path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="dense_dimension"):
        load_model(path)
    (path / "config.json").write_text(json.dumps({"hidden_size": 3}))
    with pytest.raises(CheckpointError, match="not a Tango3D"):
        load_model(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_model(tmp_path / "notes.txt")


def test_default_checkpoint_missing_says_how_to_build(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TANGO3D_CHECKPOINT", str(tmp_path / "absent"))
    with pytest.raises(CheckpointError) as info:
        load_model()
    assert BUILD_COMMAND in str(info.value)


def test_default_checkpoint_is_used(model: Tango3D, tmp_path, monkeypatch) -> None:
    save_checkpoint(model, tmp_path / "bundled")
    monkeypatch.setenv("TANGO3D_CHECKPOINT", str(tmp_path / "bundled"))
    assert load_model().config == model.config


def test_extra_must_be_json(model: Tango3D, tmp_path) -> None:
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(model, tmp_path / "x", extra={"bad": object()})
    with pytest.raises(TypeError):
        save_checkpoint(torch.nn.Linear(2, 2), tmp_path / "y")  # type: ignore[arg-type]


def test_dinov2_checkpoint_rebuilds_without_the_hf_directory(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    import shutil

    from tango3d_core.config import ImageEncoderConfig

    hf_dir = tmp_path / "dinov2"
    transformers.Dinov2Model(transformers.Dinov2Config(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, patch_size=14,
        image_size=28)).save_pretrained(hf_dir)
    cfg = micro_config(image=ImageEncoderConfig(backbone="dinov2", hf_path=str(hf_dir), image_size=28, dense_width=8))
    torch.manual_seed(0)
    model = Tango3D(cfg)
    feats = model.encode_image(Image.new("RGB", (37, 91), (200, 10, 10)))
    assert feats.model_size == (14, 28) and feats.dense.shape == (8, 7, 4)
    assert torch.allclose(feats.sample([[0.0, 0.0], [36.0, 90.0]]).norm(dim=1), torch.ones(2), atol=1e-5)
    path = save_checkpoint(model, tmp_path / "ckpt")
    shutil.rmtree(hf_dir)
    loaded = load_model(path)
    again = loaded.encode_image(Image.new("RGB", (37, 91), (200, 10, 10)))
    assert torch.equal(feats.dense, again.dense)


def test_readme_quotes_the_build_command() -> None:
    # the error for a missing checkpoint and the README's training section must name one command
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert BUILD_COMMAND in readme
