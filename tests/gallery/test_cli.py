"""``python -m tango3d_core.gallery``: the contract's build and query lines, info, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tango3d_core.gallery import embed as embed_module
from tango3d_core.gallery.__main__ import main
from tango3d_core.gallery.store import GalleryStore


@pytest.fixture
def fake_text_model(monkeypatch, fake_text):
    """load_embedder as the CLI calls it, with the stand-in text encoder (no MiniLM download)."""
    real = embed_module.load_embedder

    def load(**kw):
        e = real(**kw)
        e.provider.model.set_text_encoder(fake_text())
        return e

    monkeypatch.setattr(embed_module, "load_embedder", load)


def test_build_query_info(mesh_dir, tmp_path, checkpoint_dir, capsys, fake_text_model):
    out = tmp_path / "gallery"
    assert main(["build", str(mesh_dir), "--out", str(out), "--checkpoint", str(checkpoint_dir),
                 "--num-points", "256", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "5 entries" in text and "2 files skipped" in text and "broken.obj" in text

    assert main(["query", str(out), "--text", "a round ball", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and all({"path", "score"} <= set(h) for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)

    store = GalleryStore(out)
    q = np.asarray(store.vectors[2])
    np.save(tmp_path / "q.npy", q)
    assert main(["query", str(out), "--vector", str(tmp_path / "q.npy"), "-k", "2", "--json",
                 "--category", "boxes", "--max-faces", "1000"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["path"] == store.display_path(store.entry(2)) and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert all(h["category"] == "boxes" for h in hits)

    assert main(["query", str(out), "--vector", str(tmp_path / "q.npy"), "--min-score", "0.9999"]) == 0
    assert "boxes/" in capsys.readouterr().out

    assert main(["info", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 5 and info["model"]["settings"]["num_points"] == 256

    # The image query uses the gallery's own model by default.
    from PIL import Image

    Image.new("RGB", (50, 40), (0, 120, 200)).save(tmp_path / "q.png")
    assert main(["query", str(out), "--image", str(tmp_path / "q.png"), "-k", "1", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1


def test_errors_exit_2(mesh_dir, tmp_path, checkpoint_dir, capsys):
    assert main(["query", str(tmp_path / "nope"), "--vector", "x.npy"]) == 2
    assert "not a gallery" in capsys.readouterr().err
    assert main(["build", str(tmp_path / "none"), "--out", str(tmp_path / "g"), "--checkpoint",
                 str(checkpoint_dir), "--quiet"]) == 2
    assert "not a directory" in capsys.readouterr().err
    out = tmp_path / "g"
    assert main(["build", str(mesh_dir), "--out", str(out), "--checkpoint", str(checkpoint_dir),
                 "--num-points", "128", "--quiet", "--no-thumbnails"]) == 0
    capsys.readouterr()
    # Another model (the bundled checkpoint) against this gallery: refused, with the way out.
    from tango3d_core.models.checkpoint import default_checkpoint_dir

    assert main(["query", str(out), "--text", "a box", "--checkpoint", str(default_checkpoint_dir())]) == 2
    assert "embedded with model" in capsys.readouterr().err
    (tmp_path / "img.png").write_bytes(b"not an image")
    assert main(["query", str(out), "--image", str(tmp_path / "img.png")]) == 2
    assert "not a readable image" in capsys.readouterr().err
    np.save(tmp_path / "q.npy", np.ones(5, np.float32))
    assert main(["query", str(out), "--vector", str(tmp_path / "q.npy")]) == 2
    assert "width" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["query", str(out)])  # one of --text / --image / --vector is required


def test_module_entry_point_help():
    r = subprocess.run([sys.executable, "-m", "tango3d_core.gallery", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0
    for cmd in ("build", "query", "info", "procedural", "embed-ray", "ingest"):
        assert cmd in r.stdout
