"""Export: the current heat map or transferred region as a coloured, labelled mesh; the
similarity values as ``.npy``; a screenshot as PNG.

Values live on the N feature points; a mesh export carries them on its vertices, each vertex
taking the values of its nearest feature point. Per-vertex data written:

=========  ==========================  ==========================================
PLY        ``red green blue alpha``    uchar, the colours shown in the viewer
           ``label``                   uchar, 1 inside the region / selection
           ``similarity``              float, the score shown (cosine, or the mask score)
GLB        ``COLOR_0``                 normalised ubyte RGBA
           ``_LABEL``, ``_SIMILARITY`` float scalars (glTF application attributes)
=========  ==========================  ==========================================

The PLY keeps the mesh's own coordinates (Z up); the GLB is rotated to glTF's Y-up convention
(x, y, z) -> (x, z, -y), so glTF viewers show it upright. The ``.npy`` file is float32
[N, 4]: columns x, y, z (mesh coordinates) and the score of each feature point.

Files are written by :class:`ExportDir`, named by the server from the content hash and the
kind (``tango3d-heat-3f2a...c1.ply``); no user-supplied name ever becomes a path.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Literal

import numpy as np
import trimesh
from PIL import Image

__all__ = ["ExportDir", "MeshFormat", "Y_UP", "mesh_bytes", "nearest_point_index", "png_bytes", "values_npy_bytes"]

MeshFormat = Literal["ply", "glb"]
# Z-up (this project) -> Y-up (glTF): x stays, y <- z, z <- -y.
Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def nearest_point_index(queries: np.ndarray, points: np.ndarray) -> np.ndarray:
    """int64 [V]: index of the nearest of ``points`` [N, 3] to each of ``queries`` [V, 3]."""
    from scipy.spatial import cKDTree

    _, idx = cKDTree(np.asarray(points, np.float64)).query(np.asarray(queries, np.float64), k=1)
    return np.asarray(idx, np.int64)


def mesh_bytes(mesh: trimesh.Trimesh, points: np.ndarray, colors: np.ndarray, labels: np.ndarray,
               scores: np.ndarray, *, fmt: MeshFormat) -> bytes:
    """``mesh`` with per-vertex colours, labels and scores taken from the nearest feature point.

    points  [N, 3] feature points (mesh coordinates)
    colors  uint8 [N, 3];  labels  bool [N];  scores  float [N]
    """
    n = len(points)
    if colors.shape != (n, 3) or labels.shape != (n,) or scores.shape != (n,):
        raise ValueError(f"need colours [N, 3], labels [N], scores [N] for N = {n} points, got "
                         f"{colors.shape}, {labels.shape}, {scores.shape}")
    if fmt not in ("ply", "glb"):
        raise ValueError(f"format must be 'ply' or 'glb', got {fmt!r}")
    idx = nearest_point_index(mesh.vertices, points)
    rgba = np.concatenate([colors[idx], np.full((len(idx), 1), 255, np.uint8)], axis=1)
    verts = np.asarray(mesh.vertices, np.float64)
    if fmt == "glb":
        verts = verts @ Y_UP.T
    out = trimesh.Trimesh(vertices=verts, faces=np.asarray(mesh.faces), vertex_colors=rgba, process=False)
    if fmt == "ply":
        out.vertex_attributes["label"] = labels[idx].astype(np.uint8)
        out.vertex_attributes["similarity"] = scores[idx].astype(np.float32)
        return out.export(file_type="ply")
    # glTF has no integer scalar attributes trimesh can write; labels go as float 0/1.
    out.vertex_attributes["LABEL"] = labels[idx].astype(np.float32)
    out.vertex_attributes["SIMILARITY"] = scores[idx].astype(np.float32)
    return out.export(file_type="glb")


def values_npy_bytes(points: np.ndarray, scores: np.ndarray) -> bytes:
    """``.npy`` bytes of float32 [N, 4]: x, y, z, score."""
    arr = np.concatenate([np.asarray(points, np.float32), np.asarray(scores, np.float32)[:, None]], axis=1)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def png_bytes(image: Image.Image | np.ndarray) -> bytes:
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


class ExportDir:
    """One session's private export folder, removed by :meth:`cleanup` (on unload).

    root      parent folder (the app's work dir); the session's folder is a fresh temp dir in it
    max_files older exports beyond this many are deleted (bounds the disk a tab can fill)
    """

    def __init__(self, root: str | Path, *, max_files: int = 24) -> None:
        Path(root).mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix="export-", dir=root))
        self.max_files = int(max_files)
        self._lock = threading.Lock()
        self._closed = False

    def write(self, kind: str, suffix: str, data: bytes) -> Path:
        """Write ``data`` as ``tango3d-<kind>-<sha256[:16]>.<suffix>`` and return its path."""
        if not kind.isidentifier() or not suffix.isalnum():
            raise ValueError(f"bad export kind/suffix {kind!r}/{suffix!r}")
        name = f"tango3d-{kind}-{hashlib.sha256(data).hexdigest()[:16]}.{suffix}"
        with self._lock:
            if self._closed:
                raise RuntimeError("the session's export folder was removed")
            path = self.path / name
            if not path.is_file():
                tmp = path.with_name(f".{name}.part")
                tmp.write_bytes(data)
                tmp.replace(path)
            files = sorted((p for p in self.path.iterdir() if p.is_file() and not p.name.startswith(".")),
                           key=lambda p: p.stat().st_mtime)
            for old in files[:-self.max_files] if len(files) > self.max_files else []:
                if old != path:
                    old.unlink(missing_ok=True)
            return path

    def files(self) -> list[Path]:
        with self._lock:
            return sorted(p for p in self.path.iterdir() if p.is_file()) if self.path.is_dir() else []

    def cleanup(self) -> None:
        with self._lock:
            self._closed = True
            shutil.rmtree(self.path, ignore_errors=True)
