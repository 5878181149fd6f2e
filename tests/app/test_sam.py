"""Segment Anything is optional: the status names what is missing; with a (fake) package and a
checkpoint file, a click proposes the best-scoring mask."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from PIL import Image

from app.sam import SAM_ENV, SamSegmenter, find_checkpoint, model_type, sam_status


@pytest.fixture(autouse=True)
def no_env(monkeypatch):
    monkeypatch.delenv(SAM_ENV, raising=False)


def test_status_names_what_is_missing(tmp_path, monkeypatch):
    import app.sam

    monkeypatch.setattr(app.sam, "_has_package", lambda: False)
    ok, msg = sam_status(tmp_path)
    assert not ok and "segment-anything package" in msg and "SAM checkpoint" in msg and str(tmp_path / "sam") in msg
    monkeypatch.setattr(app.sam, "_has_package", lambda: True)
    ok, msg = sam_status(tmp_path)
    assert not ok and "package" not in msg and "SAM checkpoint" in msg
    (tmp_path / "sam").mkdir()
    (tmp_path / "sam" / "sam_vit_l_0b3195.pth").write_bytes(b"x")  # pickles are never picked up
    assert not sam_status(tmp_path)[0]
    (tmp_path / "sam" / "sam_vit_l_0b3195.safetensors").write_bytes(b"x")
    ok, msg = sam_status(tmp_path)
    assert ok and "vit_l" in msg


def test_checkpoint_lookup(tmp_path, monkeypatch):
    assert find_checkpoint(tmp_path) is None and find_checkpoint(None) is None
    (tmp_path / "sam").mkdir()
    (tmp_path / "sam" / "sam_vit_b_01ec64.pth").write_bytes(b"x")
    assert find_checkpoint(tmp_path) is None
    ck = tmp_path / "sam" / "sam_vit_b_01ec64.safetensors"
    ck.write_bytes(b"x")
    assert find_checkpoint(tmp_path) == ck and model_type(ck) == "vit_b"
    other = tmp_path / "mine.safetensors"
    other.write_bytes(b"y")
    monkeypatch.setenv(SAM_ENV, str(other))
    assert find_checkpoint(tmp_path) == other and model_type(other) == "vit_h"
    monkeypatch.setenv(SAM_ENV, str(tmp_path / "missing.safetensors"))
    assert find_checkpoint(tmp_path) is None


def _fake_sam(monkeypatch, calls):
    mod = types.ModuleType("segment_anything")

    class Predictor:
        def __init__(self, model):
            calls.append(("predictor", model))

        def set_image(self, arr):
            calls.append(("set_image", arr.shape))

        def predict(self, point_coords, point_labels, multimask_output):
            x, y = point_coords[0]
            h, w = 40, 60
            masks = np.zeros((3, h, w), bool)
            masks[0, :5, :5] = True
            masks[1, int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = True
            masks[2, :, :] = True
            return masks, np.array([0.1, 0.9, 0.5]), None

    class Model:
        def to(self, device):
            return self

        def load_state_dict(self, state, strict):
            calls.append(("load", sorted(state), strict))

    def build(checkpoint=None):
        calls.append(("build", checkpoint))
        return Model()

    mod.SamPredictor = Predictor
    mod.sam_model_registry = {"vit_b": build, "vit_h": build, "vit_l": build, "default": build}
    monkeypatch.setitem(sys.modules, "segment_anything", mod)


def test_propose_uses_the_best_mask_and_embeds_each_image_once(tmp_path, monkeypatch):
    calls = []
    _fake_sam(monkeypatch, calls)
    import torch
    from safetensors.torch import save_file

    ck = tmp_path / "sam_vit_b.safetensors"
    save_file({"image_encoder.w": torch.zeros(2)}, str(ck))
    seg = SamSegmenter(ck)
    img = Image.new("RGB", (60, 40))
    m = seg.propose(img, "k1", (30, 20))
    assert m.dtype == bool and m.shape == (40, 60) and m[20, 30] and m.sum() == 25
    seg.propose(img, "k1", (10, 10))
    seg.propose(img, "k2", (10, 10))
    assert [c[0] for c in calls] == ["build", "load", "predictor", "set_image", "set_image"]
    assert calls[0][1] is None and calls[1][1:] == (["image_encoder.w"], True)  # no file given to torch.load


def test_pickled_sam_checkpoints_are_refused(tmp_path, monkeypatch):
    calls = []
    _fake_sam(monkeypatch, calls)
    ck = tmp_path / "sam_vit_b_01ec64.pth"
    ck.write_bytes(b"x")
    with pytest.raises(ValueError, match="only .safetensors"):
        SamSegmenter(ck).propose(Image.new("RGB", (8, 8)), "k", (1, 1))
    assert calls == []
