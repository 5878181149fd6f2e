"""Fixtures of the gallery tests: a cheap geometric embedder (no model), small mesh folders,
clustered synthetic embeddings, and a tiny random Tango3D checkpoint for the few tests that
need the real model interface."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from tango3d_core.config import Tango3DConfig, toy_config
from tango3d_core.gallery.embed import FunctionEmbedder

DIM = 32
_PROJ = np.random.default_rng(1234).standard_normal((8, DIM)).astype(np.float32)


def geometric_features(mesh: trimesh.Trimesh) -> np.ndarray:
    """A deterministic [DIM] vector from sizes and counts: equal meshes get equal vectors."""
    ext = np.sort(np.asarray(mesh.extents, dtype=np.float64))
    f = np.array([*ext, np.log1p(len(mesh.faces)), np.log1p(len(mesh.vertices)), mesh.area,
                  float(mesh.is_watertight), 1.0], dtype=np.float32)
    return f @ _PROJ


class CountingEmbedder(FunctionEmbedder):
    """:class:`FunctionEmbedder` over :func:`geometric_features` that records every mesh it embeds
    (by face count) and can be told to raise on its ``fail_at``-th call (0-based, once)."""

    def __init__(self, fingerprint: str = "geom-v1", *, fail_at: int | None = None,
                 fail_with: type[BaseException] = KeyboardInterrupt) -> None:
        super().__init__(self._embed, fingerprint=fingerprint, text=self._text)
        self.calls: list[int] = []
        self.attempts = 0
        self.fail_at, self.fail_with = fail_at, fail_with

    def _embed(self, mesh: trimesh.Trimesh) -> np.ndarray:
        self.attempts += 1
        if self.attempts - 1 == self.fail_at:
            raise self.fail_with()
        self.calls.append(len(mesh.faces))
        return geometric_features(mesh)

    @staticmethod
    def _text(texts: list[str]) -> np.ndarray:
        shapes = {"box": trimesh.creation.box(), "ball": trimesh.creation.icosphere(subdivisions=2)}
        return np.stack([geometric_features(shapes[t.split()[-1]]) for t in texts])


@pytest.fixture
def embedder() -> CountingEmbedder:
    return CountingEmbedder()


def write_meshes(root: Path) -> dict[str, trimesh.Trimesh]:
    """A small collection in every supported binary and text format, in sub-folders, plus files
    that are not meshes or are broken. Returns {relative path: mesh} of the good ones."""
    meshes = {
        "balls/ball1.ply": trimesh.creation.icosphere(subdivisions=1),
        "balls/ball2.obj": trimesh.creation.icosphere(subdivisions=2),
        "boxes/box.stl": trimesh.creation.box(extents=(1.0, 2.0, 3.0)),
        "boxes/deep/cube.off": trimesh.creation.box(),
        "cyl.glb": trimesh.creation.cylinder(radius=0.3, height=1.0, sections=24),
    }
    for rel, m in meshes.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        m.export(p)
    (root / "notes.txt").write_text("not a mesh")
    (root / "broken.obj").write_text("v 0 0 0\nthis is not an OBJ file\n")
    (root / "empty.ply").write_bytes(b"")
    return meshes


@pytest.fixture
def mesh_dir(tmp_path: Path) -> Path:
    root = tmp_path / "meshes"
    write_meshes(root)
    return root


def clustered(n: int, dim: int, *, seed: int, clusters: int = 64, spread: float = 0.3) -> np.ndarray:
    """Unit vectors [n, dim] around ``clusters`` centres (embeddings are clustered, not uniform)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(999).standard_normal((clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def uniform(n: int, dim: int, *, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def tiny_config() -> Tango3DConfig:
    """Every component of the real model at a size that encodes in tens of milliseconds."""
    return toy_config("small", name="gallery-test")


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    from tango3d_core.models import build_model, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(build_model(tiny_config()), tmp_path_factory.mktemp("ckpt"))
