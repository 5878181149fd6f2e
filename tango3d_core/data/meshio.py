"""Mesh input: read one mesh file into a clean, Z-up ``trimesh.Trimesh``.

Public API (re-exported by ``tango3d_core``):

* :func:`load_mesh` reads OBJ, PLY, STL, OFF, GLB and glTF files through trimesh,
  flattens scenes into one mesh, keeps colours and textures, cleans the mesh,
  decimates it above a face cap and converts it to Z-up.
* :func:`normalize_mesh` centres a mesh's bounding box and scales its diagonal
  to 1, and returns the :class:`Similarity` that maps back to the caller's
  coordinates.
* :class:`MeshLoadError` (a ``ValueError``) is the only exception
  :func:`load_mesh` raises. Its message names the file by its base name and
  says what is wrong.

Untrusted files are the norm here (users upload them to the explorer), so a
file is checked before a parser sees it: its size against ``max_bytes``, and
the element counts in PLY, OFF, STL and glTF/GLB headers against the bytes
that are actually there. A parser therefore never allocates for a count the
file cannot hold, and its work is bounded by the file size.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import trimesh
from trimesh.resolvers import FilePathResolver
from trimesh.visual import ColorVisuals, TextureVisuals

from ._text import fmt_bytes

__all__ = [
    "LOAD_TIMEOUT_S",
    "MAX_FACES",
    "MAX_FILE_BYTES",
    "MAX_RAW_FACES",
    "MAX_TEXTURE_PIXELS",
    "SUPPORTED_EXTENSIONS",
    "MeshLoadError",
    "Similarity",
    "load_mesh",
    "normalize_mesh",
]

MAX_FILE_BYTES: Final[int] = 200 * 1024 * 1024
"""Default cap (bytes) on a file plus every buffer and texture it references."""

MAX_FACES: Final[int] = 1_000_000
"""Default face cap; a mesh with more faces is decimated down to this count."""

MAX_RAW_FACES: Final[int] = 20_000_000
"""Hard cap on faces before decimation, counting every instance in a scene.

A glTF file of a few kB can place one large mesh at thousands of nodes; past
this count the file is refused instead of expanded. Raised to ``max_faces``
when a caller asks for a larger cap.
"""

MAX_TEXTURE_PIXELS: Final[int] = 8192 * 8192
"""Cap on the pixels of any one texture image (a small PNG can decode to GBs)."""

LOAD_TIMEOUT_S: Final[float] = 120.0
"""Default wall-clock budget (seconds) of one :func:`load_mesh` call."""

SUPPORTED_EXTENSIONS: Final[tuple[str, ...]] = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")

UpAxis = Literal["z", "y"]

# Rotation about +X by +90 degrees: file +Y -> +Z, file +Z -> -Y (det +1, so no
# mirroring). glTF's "front" (+Z) therefore ends up facing -Y, our front.
_Y_UP_TO_Z_UP: Final = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)

# A face is degenerate when twice its area is below this fraction of the
# squared bounding-box diagonal: far below any visible sliver, well above the
# rounding noise (~1e-16) of a cross product of exactly collinear edges.
_DEGENERATE_REL_AREA: Final = 1e-14

# Trimesh's own default colour for uncoloured geometry, used when an uncoloured
# part is merged with coloured ones.
_DEFAULT_RGBA: Final = np.array([102, 102, 102, 255], dtype=np.uint8)

_FORMAT_NAMES: Final = {
    "obj": "Wavefront OBJ",
    "ply": "PLY",
    "stl": "STL",
    "off": "OFF",
    "glb": "GLB (binary glTF)",
    "gltf": "glTF",
}


class MeshLoadError(ValueError):
    """A mesh file cannot be used; the message says which file and why."""


def _err(name: str, what: str) -> MeshLoadError:
    return MeshLoadError(f"Cannot load mesh '{name}': {what}")


# --------------------------------------------------------------------------------------
# Similarity transform and normalisation
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Similarity:
    """A uniform scale followed by a translation: ``q = scale * p + translation``.

    ``scale`` is a positive float (unitless); ``translation`` is float64 [3] in
    output units. Maps user coordinates to normalised ones (:meth:`apply`) and
    back (:meth:`invert`).
    """

    scale: float
    translation: np.ndarray

    def __post_init__(self) -> None:
        scale = float(self.scale)
        t = np.array(self.translation, dtype=np.float64).reshape(-1)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"Similarity scale must be a positive finite number, got {self.scale!r}")
        if t.shape != (3,) or not np.isfinite(t).all():
            raise ValueError(f"Similarity translation must be 3 finite numbers, got {self.translation!r}")
        t.setflags(write=False)
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "translation", t)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map points [..., 3] from user to normalised coordinates -> float64 [..., 3]."""
        p = _as_points(points)
        return p * self.scale + self.translation

    def invert(self, points: np.ndarray) -> np.ndarray:
        """Map points [..., 3] from normalised back to user coordinates -> float64 [..., 3]."""
        p = _as_points(points)
        return (p - self.translation) / self.scale

    @property
    def matrix(self) -> np.ndarray:
        """The homogeneous 4x4 float64 matrix of :meth:`apply` (column vectors)."""
        m = np.eye(4)
        m[:3, :3] *= self.scale
        m[:3, 3] = self.translation
        return m

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Similarity):
            return NotImplemented
        return self.scale == other.scale and bool(np.array_equal(self.translation, other.translation))

    def __hash__(self) -> int:
        return hash((self.scale, tuple(self.translation.tolist())))

    def __repr__(self) -> str:
        t = ", ".join(f"{x:.6g}" for x in self.translation)
        return f"Similarity(scale={self.scale:.6g}, translation=[{t}])"


def _as_points(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim == 0 or p.shape[-1] != 3:
        raise ValueError(f"points must have shape [..., 3], got {p.shape}")
    return p


def normalize_mesh(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, Similarity]:
    """Centre ``mesh``'s bounding box at the origin and scale its diagonal to 1.

    The bounding box is taken over the vertices the faces use (all vertices if
    there are no faces). ``mesh`` itself is left untouched.

    Returns:
        ``(normalised_copy, sim)`` with ``normalised_copy.vertices ==
        sim.apply(mesh.vertices)``; ``sim.invert`` maps any result computed on
        the copy (points [..., 3]) back to ``mesh``'s coordinates.

    Raises:
        ValueError: ``mesh`` is not a Trimesh, or its extent is zero or not finite.
    """
    if not isinstance(mesh, trimesh.Trimesh):
        raise ValueError(f"normalize_mesh expects a trimesh.Trimesh, got {type(mesh).__name__}")
    v = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces)
    if len(faces):
        referenced = np.zeros(len(v), dtype=bool)
        referenced[faces.ravel()] = True
        used = v[referenced]
    else:
        used = v
    if len(used) == 0:
        raise ValueError("cannot normalise an empty mesh (it has no vertices)")
    lo, hi = used.min(axis=0), used.max(axis=0)
    with np.errstate(over="ignore", invalid="ignore"):
        diag = float(np.linalg.norm(hi - lo))
    if not (math.isfinite(diag) and diag > 0):
        raise ValueError(
            f"cannot normalise a mesh whose bounding-box diagonal is {diag} (need a finite, non-zero extent)"
        )
    scale = 1.0 / diag
    sim = Similarity(scale=scale, translation=-0.5 * (lo + hi) * scale)
    out = mesh.copy()
    # Setting vertices (rather than apply_transform) makes the copy agree bit for
    # bit with sim.apply; a positive uniform scale keeps winding and normals valid.
    out.vertices = sim.apply(v)
    return out, sim


# --------------------------------------------------------------------------------------
# load_mesh
# --------------------------------------------------------------------------------------


def load_mesh(
    path: str | os.PathLike[str],
    *,
    up_axis: UpAxis = "z",
    max_faces: int = MAX_FACES,
    max_bytes: int = MAX_FILE_BYTES,
    timeout_s: float | None = LOAD_TIMEOUT_S,
) -> trimesh.Trimesh:
    """Load one mesh file as a single clean, Z-up triangle mesh.

    Formats (by extension, case-insensitive): ``.obj .ply .stl .off .glb .gltf``.
    Referenced files (OBJ materials and textures, glTF buffers and images) are
    read only from the file's own folder and below.

    What the returned mesh holds:

    * **One mesh.** Scenes are flattened: every instance of every triangle mesh
      is placed with its scene-graph transform. Points and lines are dropped.
    * **Appearance**, where present: vertex colours, face colours, or a texture
      (``TextureVisuals`` with ``uv`` [V, 2] and its material image).

      - All parts textured: one texture. Parts sharing one material keep it
        as is; different images are packed into one atlas by trimesh.
      - Textured parts mixed with colour-only or plain parts: textures are
        *baked* to vertex colours (the texture sampled at each vertex's uv) so
        that every part keeps its look; ``metadata["texture_baked"] = True``.
      - Only face colours: face colours; otherwise vertex colours. Plain parts
        next to coloured ones get trimesh's default grey.
    * **Clean topology.** Vertices with identical position (and identical uv
      and colour, so texture seams and colour borders survive) are merged;
      faces that repeat a vertex or have zero area, and unused vertices, are
      dropped. Nothing else about the geometry changes. Counts are recorded in
      ``metadata["merged_vertices"]`` and ``metadata["removed_faces"]``.
      Vertex normals from the file are not kept (trimesh recomputes them).
    * **At most ``max_faces`` faces.** A larger mesh is simplified by quadric
      edge collapse (``fast_simplification`` if installed, else open3d's
      ``simplify_quadric_decimation``); ``metadata["decimated_from"]`` holds
      the face count before. Colours are carried over from the nearest
      original vertex (or face); a texture is baked to vertex colours first.
    * **Z up.** ``up_axis`` says which axis is up *in the file*. ``"z"`` (the
      default) keeps coordinates as they are. ``"y"`` rotates +Y to +Z by +90
      degrees about +X (a proper rotation, no mirroring: ``(x, y, z) -> (x,
      -z, y)``). glTF/GLB files are Y-up by specification, but the default is
      still ``"z"`` for every format: nothing is rotated unless the caller asks,
      so pass ``up_axis="y"`` for glTF and for most exports of Y-up tools.
      ``metadata["file_to_mesh"]`` is the 4x4 matrix applied.
    * Coordinates stay in the file's units (no normalisation; see
      :func:`normalize_mesh`).

    Args:
        path: The file to read.
        up_axis: Up axis of the file's coordinates, ``"z"`` or ``"y"``.
        max_faces: Face cap (>= 4) above which the mesh is decimated.
        max_bytes: Cap on the size of the file plus everything it references.
        timeout_s: Wall-clock budget in seconds, checked between loading
            stages (a stage already running is not interrupted; header checks
            keep each stage's work proportional to ``max_bytes``). ``None``
            disables it.

    Returns:
        ``trimesh.Trimesh`` with float64 vertices [V, 3] and int64 faces [F, 3].
        ``metadata`` also has ``file_name``, ``file_type`` and ``up_axis``.

    Raises:
        MeshLoadError: for any file that cannot be used, and for invalid
            arguments. No other exception type escapes (out-of-memory included);
            ``KeyboardInterrupt`` propagates.
    """
    name = _display_name(path)
    try:
        return _load_mesh(
            path, name, up_axis=up_axis, max_faces=max_faces, max_bytes=max_bytes, timeout_s=timeout_s
        )
    except MeshLoadError:
        raise
    except MemoryError:
        raise _err(
            name, "ran out of memory while reading it (the mesh is too large for this machine)"
        ) from None
    except RecursionError:
        raise _err(name, "its structure is nested too deeply to read (corrupt or hostile file)") from None
    except Exception as exc:  # a parser failed: the file is malformed in a way no check caught
        detail = _scrub(str(exc), path)
        kind = _FORMAT_NAMES.get(Path(str(path)).suffix.lower().lstrip("."), "mesh")
        raise _err(
            name,
            f"the file is not a readable {kind} file (corrupt, truncated or mislabelled; {type(exc).__name__}: {detail})",
        ) from exc


def _display_name(path: object) -> str:
    try:
        return os.path.basename(os.fspath(path)) or str(path)  # type: ignore[arg-type]
    except Exception:
        return repr(path)[:80]


def _scrub(text: str, path: object) -> str:
    """Remove the full path from a parser's message, keep it short."""
    try:
        full = os.fspath(path)  # type: ignore[arg-type]
        for s in {str(full), os.path.abspath(full), os.path.dirname(os.path.abspath(full))}:
            if s and s not in (os.sep, "."):
                text = text.replace(s, "")
    except Exception:
        pass
    text = " ".join(text.split())
    return text[:200] + ("..." if len(text) > 200 else "")


class _Deadline:
    def __init__(self, name: str, timeout_s: float | None) -> None:
        self.name = name
        self.timeout_s = timeout_s
        self.end = math.inf if timeout_s is None else time.monotonic() + timeout_s

    def check(self, stage: str) -> None:
        if time.monotonic() > self.end:
            raise _err(
                self.name,
                f"gave up after {self.timeout_s:g} s while {stage} (raise timeout_s= to allow more)",
            )


def _check_args(up_axis: object, max_faces: object, max_bytes: object, timeout_s: object) -> None:
    if up_axis not in ("z", "y"):
        raise MeshLoadError(f"up_axis must be 'z' or 'y', got {up_axis!r}")
    if isinstance(max_faces, bool) or not isinstance(max_faces, (int, np.integer)) or max_faces < 4:
        raise MeshLoadError(f"max_faces must be an integer >= 4, got {max_faces!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
        raise MeshLoadError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0
    ):
        raise MeshLoadError(f"timeout_s must be a positive number or None, got {timeout_s!r}")


def _load_mesh(
    path: str | os.PathLike[str],
    name: str,
    *,
    up_axis: UpAxis,
    max_faces: int,
    max_bytes: int,
    timeout_s: float | None,
) -> trimesh.Trimesh:
    _check_args(up_axis, max_faces, max_bytes, timeout_s)
    max_faces, max_bytes = int(max_faces), int(max_bytes)
    deadline = _Deadline(name, timeout_s)
    try:
        p = Path(os.fspath(path))
    except TypeError:
        raise MeshLoadError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None

    data = _read_file(p, name, max_bytes)
    fmt = p.suffix.lower().lstrip(".")
    if "." + fmt not in SUPPORTED_EXTENSIONS:
        supported = ", ".join(SUPPORTED_EXTENSIONS)
        raise _err(name, f"unsupported file type '{p.suffix or '(no extension)'}'; supported: {supported}")

    # a check may hand back repaired bytes (binary PLY with mixed polygon sizes)
    data = _PREVALIDATORS[fmt](data, name, max_bytes - len(data)) or data
    deadline.check("checking the file")

    budget = _Budget(max_bytes - len(data))
    resolver = _BudgetResolver(str(p), budget)
    try:
        scene = trimesh.load_scene(io.BytesIO(data), file_type=fmt, resolver=resolver, process=False)
    except Exception:
        if budget.exceeded is None and resolver.missing:
            raise _err(
                name,
                f"it refers to '{resolver.missing[0]}', which was not found (files it refers to must be "
                "in the same folder as the mesh or below it)",
            ) from None
        if budget.exceeded is None:
            raise
    del data
    if budget.exceeded is not None:
        raise _err(
            name,
            f"together with the files it references ({budget.exceeded}) it exceeds the "
            f"{fmt_bytes(max_bytes)} limit (pass max_bytes= to raise it)",
        )
    deadline.check("parsing the file")

    parts = _scene_parts(scene, name, max(MAX_RAW_FACES, max_faces))
    v, f, vattr, fattr, material, notes = _flatten(parts)
    del parts, scene
    deadline.check("flattening the scene")

    n_faces_read = len(f)
    v, f, vattr, fattr, merged, removed = _clean(v, f, vattr, fattr)
    if len(f) == 0:
        raise _err(
            name,
            f"all {n_faces_read:,} faces are degenerate (zero area or a repeated vertex); nothing is left to use",
        )
    metadata: dict[str, object] = {
        "file_name": name,
        "file_type": fmt,
        "up_axis": up_axis,
        "merged_vertices": merged,
        "removed_faces": removed,
    }
    metadata.update(notes)
    deadline.check("cleaning the mesh")

    if len(f) > max_faces:
        if "uv" in vattr:
            vattr = {"rgba": _bake_texture(vattr.pop("uv"), material)}
            material = None
            metadata["texture_baked"] = True
        n_before = len(f)
        v, f, vattr, fattr = _decimate_with_colours(v, f, vattr, fattr, max_faces)
        # edge collapse can leave slivers and unused vertices, not duplicates
        v, f, vattr, fattr, _, _ = _clean(v, f, vattr, fattr, merge=False)
        metadata["decimated_from"] = n_before
        deadline.check("decimating the mesh")

    transform = _Y_UP_TO_Z_UP if up_axis == "y" else np.eye(4)
    if up_axis == "y":
        v = v @ transform[:3, :3].T
    metadata["file_to_mesh"] = transform.tolist()  # a list: metadata may end up in JSON

    if "uv" in vattr:
        visual: trimesh.visual.base.Visuals | None = TextureVisuals(uv=vattr["uv"], material=material)
    elif "rgba" in vattr:
        visual = ColorVisuals(vertex_colors=vattr["rgba"])
    elif "rgba" in fattr:
        visual = ColorVisuals(face_colors=fattr["rgba"])
    else:
        visual = None
    mesh = trimesh.Trimesh(vertices=v, faces=f, visual=visual, process=False, validate=False)
    mesh.metadata.update(metadata)
    return mesh


# --------------------------------------------------------------------------------------
# Reading bytes, resolving referenced files within a byte budget
# --------------------------------------------------------------------------------------


def _read_file(p: Path, name: str, max_bytes: int) -> bytes:
    try:
        st = p.stat()
    except FileNotFoundError:
        raise _err(name, "the file does not exist") from None
    except PermissionError:
        raise _err(name, "permission denied while looking at the file") from None
    except (OSError, ValueError) as exc:
        raise _err(name, f"the path cannot be used ({type(exc).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise _err(name, "it is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        # FIFOs and devices can stream forever; only plain files have a known size
        raise _err(name, "it is not a regular file")
    if st.st_size == 0:
        raise _err(name, "the file is empty (0 bytes)")
    if st.st_size > max_bytes:
        raise _err(
            name,
            f"the file is {fmt_bytes(st.st_size)}, above the {fmt_bytes(max_bytes)} limit (pass max_bytes= to raise it)",
        )
    try:
        with open(p, "rb") as fh:
            data = fh.read(max_bytes + 1)  # +1: notice a file that grew after stat
    except PermissionError:
        raise _err(name, "permission denied while reading the file") from None
    except OSError as exc:
        raise _err(name, f"the file could not be read ({type(exc).__name__})") from None
    if len(data) == 0:
        raise _err(name, "the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise _err(
            name, f"the file is larger than the {fmt_bytes(max_bytes)} limit (pass max_bytes= to raise it)"
        )
    return data


class _BudgetExceeded(Exception):
    pass


class _Budget:
    """Bytes still allowed for files a mesh references; remembers the first overrun."""

    def __init__(self, remaining: int) -> None:
        self.remaining = remaining
        self.exceeded: str | None = None

    def charge(self, n: int, what: str) -> None:
        if n > self.remaining:
            if self.exceeded is None:
                self.exceeded = f"'{os.path.basename(what)}' is {fmt_bytes(n)}"
            # trimesh swallows some loader errors (missing textures); self.exceeded
            # lets load_mesh report the overrun even then
            raise _BudgetExceeded(os.path.basename(what))
        self.remaining -= n


class _BudgetResolver(FilePathResolver):
    """trimesh's file resolver (which refuses paths outside the file's folder),
    plus a byte budget so referenced files cannot exceed ``max_bytes``."""

    def __init__(self, source: str, budget: _Budget, missing: list[str] | None = None) -> None:
        super().__init__(source)
        self._budget = budget
        self.missing: list[str] = [] if missing is None else missing

    def namespaced(self, namespace: str) -> _BudgetResolver:
        return _BudgetResolver(os.path.join(self.parent, namespace, "_"), self._budget, self.missing)

    def get(self, name: str) -> bytes:
        candidates = (name.strip(), name.strip().lstrip("/"), os.path.split(name)[-1])
        for candidate in candidates:
            try:
                path = self.absolute(candidate)
            except ValueError:
                continue
            if path.is_file():
                self._budget.charge(path.stat().st_size, candidate)
                return path.read_bytes()
        self.missing.append(name)
        raise FileNotFoundError(f"referenced file '{os.path.basename(name)}' not found")


# --------------------------------------------------------------------------------------
# Header checks: element counts must fit the bytes present
# --------------------------------------------------------------------------------------

_PLY_TYPE_SIZES: Final = {
    "char": 1, "int8": 1, "uchar": 1, "uint8": 1,
    "short": 2, "int16": 2, "ushort": 2, "uint16": 2,
    "int": 4, "int32": 4, "uint": 4, "uint32": 4, "float": 4, "float32": 4,
    "double": 8, "float64": 8,
}  # fmt: skip
_PLY_HEADER_MAX: Final = 1 << 16


def _check_ply(data: bytes, name: str, _budget: int) -> bytes | None:
    if not data.startswith(b"ply"):
        raise _err(name, "it does not start with 'ply', so it is not a PLY file (or it is corrupt)")
    end = data.find(b"end_header", 0, _PLY_HEADER_MAX)
    if end < 0:
        raise _err(name, "the PLY header has no 'end_header' line (the file is truncated or not a PLY file)")
    newline = data.find(b"\n", end)
    start = newline + 1 if newline >= 0 else len(data)
    body = len(data) - start

    fmt: str | None = None
    # (element name, count, properties); a property is (scalar type,) or (count type, item type)
    elements: list[tuple[str, int, list[tuple[str, ...]]]] = []
    for raw in data[:end].decode("latin-1").splitlines()[1:]:
        tok = raw.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            if len(tok) < 2 or tok[1] not in ("ascii", "binary_little_endian", "binary_big_endian"):
                raise _err(name, f"unknown PLY format line '{raw.strip()[:60]}'")
            fmt = tok[1]
        elif tok[0] == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise _err(name, f"malformed PLY element line '{raw.strip()[:60]}'")
            elements.append((tok[1], int(tok[2]), []))
        elif tok[0] == "property":
            if not elements:
                raise _err(name, "the PLY header declares a property before any element")
            if len(tok) == 5 and tok[1] == "list" and tok[2] in _PLY_TYPE_SIZES and tok[3] in _PLY_TYPE_SIZES:
                elements[-1][2].append((tok[2], tok[3]))
            elif len(tok) == 3 and tok[1] in _PLY_TYPE_SIZES:
                elements[-1][2].append((tok[1],))
            else:
                raise _err(name, f"malformed or unknown PLY property line '{raw.strip()[:60]}'")
    if fmt is None:
        raise _err(name, "the PLY header has no 'format' line")

    for el_name, count, props in elements:
        if not props and count > body:
            raise _err(name, f"the PLY header declares {count:,} '{el_name}' elements with no properties")
    if fmt == "ascii":
        # every value is at least one character plus one separator
        need = sum(count * 2 * len(props) for _, count, props in elements) - 1
    else:
        # a list may be empty, but its length is always stored
        need = sum(count * sum(_PLY_TYPE_SIZES[p[0]] for p in props) for _, count, props in elements)
    if need > body:
        claims = ", ".join(f"{count:,} {el_name}" for el_name, count, _ in elements)
        raise _err(
            name,
            f"the PLY header promises {claims}, which needs at least {fmt_bytes(need)}, "
            f"but only {fmt_bytes(body)} follow the header (truncated file or corrupt header)",
        )
    if fmt != "ascii":
        return _check_ply_binary_rows(
            data, name, start, elements, "<" if fmt == "binary_little_endian" else ">"
        )
    return None


_PLY_STRUCT_CODES: Final = {
    "char": "b", "int8": "b", "uchar": "B", "uint8": "B",
    "short": "h", "int16": "h", "ushort": "H", "uint16": "H",
    "int": "i", "int32": "i", "uint": "I", "uint32": "I",
    "float": "f", "float32": "f", "double": "d", "float64": "d",
}  # fmt: skip


def _check_ply_binary_rows(
    data: bytes, name: str, start: int, elements: list[tuple[str, int, list[tuple[str, ...]]]], endian: str
) -> bytes | None:
    """trimesh reads a binary PLY assuming every list has the length of its
    element's first row: right for all-triangle meshes, wrong for mixed
    triangles and quads (Blender writes those). Check the size that assumption
    implies; on a mismatch, rewrite the one element with a variable-length list
    as fan-triangulated rows. Returns the rewritten bytes, or None if intact."""
    offset = start
    for el_name, count, props in elements:
        if count == 0:
            continue
        row = 0
        for prop in props:
            if len(prop) == 1:
                row += _PLY_TYPE_SIZES[prop[0]]
                continue
            size = _PLY_TYPE_SIZES[prop[0]]
            if offset + row + size > len(data):
                raise _err(name, f"the PLY data ends inside the first '{el_name}' element (truncated file)")
            (n,) = struct.unpack_from(endian + _PLY_STRUCT_CODES[prop[0]], data, offset + row)
            row += size + max(n, 0) * _PLY_TYPE_SIZES[prop[1]]
        offset += count * row
    if offset == len(data):
        return None
    fixed = _triangulate_ply_lists(data, start, elements, endian)
    if fixed is None:
        raise _err(
            name,
            f"its binary data is {fmt_bytes(len(data) - start)} but the header implies "
            f"{fmt_bytes(offset - start)} (truncated or corrupt file)",
        )
    return fixed


def _triangulate_ply_lists(
    data: bytes, start: int, elements: list[tuple[str, int, list[tuple[str, ...]]]], endian: str
) -> bytes | None:
    """Rewrite a binary PLY whose one variable-length list element (faces) has
    polygons of mixed sizes into triangles (fan: 0,j,j+1), copying the other
    properties of each polygon to its triangles. None if the layout is not
    that, or the data does not fit the header."""
    var = [i for i, (_, count, props) in enumerate(elements) if count and any(len(p) == 2 for p in props)]
    if len(var) != 1 or sum(len(p) == 2 for p in elements[var[0]][2]) != 1:
        return None
    k = var[0]
    el_name, count, props = elements[k]
    li = next(i for i, p in enumerate(props) if len(p) == 2)
    before = sum(_PLY_TYPE_SIZES[p[0]] for p in props[:li])
    after = sum(_PLY_TYPE_SIZES[p[0]] for p in props[li + 1 :])
    ctype, itype = props[li]
    csize, isize = _PLY_TYPE_SIZES[ctype], _PLY_TYPE_SIZES[itype]
    row_fixed = {el: c * sum(_PLY_TYPE_SIZES[p[0]] for p in ps) for el, c, ps in elements}

    el_start = start + sum(row_fixed[el] for el, _, _ in elements[:k])
    # walk the rows: each row's length depends on its own list count
    n_corners = np.empty(count, dtype=np.int64)
    row_start = np.empty(count, dtype=np.int64)
    read_count = struct.Struct(endian + _PLY_STRUCT_CODES[ctype]).unpack_from
    pos, end, step = el_start, len(data), before + csize + after
    for r in range(count):
        if pos + step > end:
            return None
        (n,) = read_count(data, pos + before)
        if n < 0:
            return None
        row_start[r] = pos
        n_corners[r] = n
        pos += step + n * isize
    tail_bytes = sum(row_fixed[el] for el, _, _ in elements[k + 1 :])
    if pos + tail_bytes != end:
        return None

    buf = np.frombuffer(data, dtype=np.uint8)
    n_tri = np.maximum(n_corners - 2, 0)
    poly = np.repeat(np.arange(count), n_tri)
    j = np.arange(len(poly)) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri) + 1  # 1..n-2
    corner0 = row_start[poly] + before + csize
    out = np.empty((len(poly), before + csize + 3 * isize + after), dtype=np.uint8)
    if before:
        out[:, :before] = buf[row_start[poly][:, None] + np.arange(before)]
    out[:, before : before + csize] = np.frombuffer(
        struct.pack(endian + _PLY_STRUCT_CODES[ctype], 3), np.uint8
    )
    for slot, corner in enumerate((np.zeros_like(j), j, j + 1)):
        col = before + csize + slot * isize
        out[:, col : col + isize] = buf[(corner0 + corner * isize)[:, None] + np.arange(isize)]
    if after:
        after_at = corner0 + n_corners[poly] * isize
        out[:, -after:] = buf[after_at[:, None] + np.arange(after)]

    header = data[:start].decode("latin-1")
    header = re.sub(
        rf"^element\s+{re.escape(el_name)}\s+\d+\s*$",
        f"element {el_name} {len(poly)}",
        header,
        count=1,
        flags=re.M,
    )
    return b"".join((header.encode("latin-1"), data[start:el_start], out.tobytes(), data[pos:]))


def _check_off(data: bytes, name: str, _budget: int) -> bytes | None:
    head = data[:_PLY_HEADER_MAX]
    tokens: list[str] = []
    pos = 0
    # the magic word and two counts, skipping comments and blank lines; counts may
    # share the magic word's line ("OFF 8 6 0") or follow it
    while pos < len(head) and len(tokens) < 3:
        nl = head.find(b"\n", pos)
        line_end = len(head) if nl < 0 else nl + 1
        tokens.extend(head[pos:line_end].split(b"#", 1)[0].decode("latin-1").split())
        pos = line_end
        if tokens and not tokens[0].upper().endswith("OFF"):
            break
        if len(tokens) >= 2 and tokens[1].upper() == "BINARY":
            raise _err(name, "binary OFF files are not supported; save it as ASCII OFF")
    if not tokens or not tokens[0].upper().endswith("OFF"):
        raise _err(name, "it does not start with 'OFF', so it is not an OFF file (or it is corrupt)")
    if tokens[0].upper() not in ("OFF", "COFF", "NOFF", "CNOFF", "STOFF", "STCOFF", "STNOFF", "STCNOFF"):
        raise _err(name, f"'{tokens[0][:20]}' files are not supported (only 3D OFF, COFF and NOFF)")
    counts = tokens[1:3]
    if len(counts) < 2 or not all(re.fullmatch(r"[+-]?\d+", c) for c in counts):
        raise _err(name, "the OFF header is missing its 'vertices faces edges' counts")
    n_v, n_f = int(counts[0]), int(counts[1])
    if n_v < 0 or n_f < 0:
        raise _err(name, f"the OFF header has negative counts ({n_v} vertices, {n_f} faces)")
    body = len(data) - pos
    # each vertex has >= 3 numbers and each face >= 4 ("3 i j k"); each number
    # is at least one character plus one separator
    need = 2 * (3 * n_v + 4 * n_f) - 1
    if need > body:
        raise _err(
            name,
            f"the OFF header promises {n_v:,} vertices and {n_f:,} faces, which needs at least "
            f"{fmt_bytes(need)}, but only {fmt_bytes(max(body, 0))} follow (truncated file or corrupt header)",
        )


def _check_stl(data: bytes, name: str, _budget: int) -> bytes | None:
    n_bytes = len(data)
    if n_bytes >= 84:
        (n_tri,) = struct.unpack_from("<I", data, 80)
        if n_bytes == 84 + 50 * n_tri:
            return  # an intact binary STL
    looks_ascii = data.lstrip()[:5].lower() == b"solid" and b"\x00" not in data[:4096]
    if looks_ascii:
        return
    if n_bytes < 84:
        raise _err(
            name, f"it is only {n_bytes} bytes, too short for a binary STL (84-byte header) and not ASCII STL"
        )
    raise _err(
        name,
        f"the binary STL header says {n_tri:,} triangles ({fmt_bytes(84 + 50 * n_tri)} expected) "
        f"but the file has {fmt_bytes(n_bytes)} (truncated file or corrupt header)",
    )


def _check_obj(data: bytes, name: str, _budget: int) -> bytes | None:
    # OBJ is text; trimesh streams it. Refuse obvious binary junk early.
    if b"\x00" in data[:4096]:
        raise _err(
            name, "it contains binary data, but OBJ is a text format (wrong extension or corrupt file)"
        )


_GLTF_COMPONENT_SIZES: Final = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
_GLTF_TYPE_COMPONENTS: Final = {
    "SCALAR": 1,
    "VEC2": 2,
    "VEC3": 3,
    "VEC4": 4,
    "MAT2": 4,
    "MAT3": 9,
    "MAT4": 16,
}


def _check_glb(data: bytes, name: str, budget: int) -> bytes | None:
    if len(data) < 12 or data[:4] != b"glTF":
        raise _err(
            name, "it does not start with the 'glTF' magic bytes, so it is not a GLB file (or it is corrupt)"
        )
    version, length = struct.unpack_from("<II", data, 4)
    if version != 2:
        raise _err(name, f"it is GLB version {version}; only glTF 2.0 is supported")
    if length > len(data):
        raise _err(
            name,
            f"the GLB header says {fmt_bytes(length)} but the file has {fmt_bytes(len(data))} (truncated)",
        )
    pos, json_chunk, bin_len = 12, None, 0
    while pos + 8 <= length:
        chunk_len, chunk_type = struct.unpack_from("<II", data, pos)
        if pos + 8 + chunk_len > length:
            raise _err(
                name, f"a GLB chunk claims {fmt_bytes(chunk_len)}, past the end of the file (truncated)"
            )
        if json_chunk is None:
            if chunk_type != 0x4E4F534A:  # "JSON"
                raise _err(name, "the first GLB chunk is not JSON (corrupt file)")
            json_chunk = data[pos + 8 : pos + 8 + chunk_len]
        elif chunk_type == 0x004E4942 and bin_len == 0:  # "BIN\0"
            bin_len = chunk_len
        pos += 8 + chunk_len
    if json_chunk is None:
        raise _err(name, "the GLB file has no JSON chunk (truncated)")
    _check_gltf_header(_parse_json(json_chunk, name), name, budget, bin_len)


def _check_gltf(data: bytes, name: str, budget: int) -> bytes | None:
    _check_gltf_header(_parse_json(data, name), name, budget, None)


def _parse_json(raw: bytes, name: str) -> dict:
    try:
        header = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        raise _err(name, "its glTF JSON is not valid JSON (corrupt or truncated)") from None
    if not isinstance(header, dict):
        raise _err(name, "its glTF JSON is not an object")
    return header


def _check_gltf_header(header: dict, name: str, budget: int, bin_len: int | None) -> None:
    """Check every claimed size in a glTF header against the bytes available.

    ``bin_len`` is the GLB binary chunk's length (``None`` for a .gltf file).
    ``budget`` is how many more bytes referenced files may add.
    """

    def bad(what: str) -> MeshLoadError:
        return _err(name, f"the glTF data is inconsistent: {what}")

    def nonneg_int(x: object) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x >= 0

    asset = header.get("asset", {})
    version = str(asset.get("version", "2.0")) if isinstance(asset, dict) else "2.0"
    if not version.startswith("2"):
        raise _err(name, f"it is glTF version {version}; only glTF 2.0 is supported")
    for key in ("buffers", "bufferViews", "accessors", "meshes", "nodes", "scenes", "images"):
        if key in header and not isinstance(header[key], list):
            raise bad(f"'{key}' is not a list")
    for ext in header.get("extensionsRequired", []) or []:
        if ext == "KHR_draco_mesh_compression":
            try:
                import DracoPy  # noqa: F401
            except ImportError:
                raise _err(
                    name, "it uses Draco mesh compression, which needs the optional 'DracoPy' package"
                ) from None

    buffer_sizes: list[int] = []
    for i, buf in enumerate(header.get("buffers", [])):
        if not isinstance(buf, dict) or not nonneg_int(buf.get("byteLength")):
            raise bad(f"buffer {i} has no valid byteLength")
        uri = buf.get("uri")
        size = buf["byteLength"]
        if uri is None:
            available = bin_len if (bin_len is not None and i == 0) else 0
            if size > available:
                raise bad(
                    f"buffer {i} claims {fmt_bytes(size)} but the binary chunk holds {fmt_bytes(available)}"
                )
        elif isinstance(uri, str) and uri.startswith("data:"):
            # base64 expands 3 bytes to 4 characters
            if size > (len(uri) * 3) // 4:
                raise bad(f"buffer {i} claims {fmt_bytes(size)} but its embedded data is shorter")
        elif size > budget:
            raise _err(
                name,
                f"buffer {i} claims {fmt_bytes(size)}, above the size limit (pass max_bytes= to raise it)",
            )
        buffer_sizes.append(size)

    view_sizes: list[int] = []
    for i, view in enumerate(header.get("bufferViews", [])):
        if not isinstance(view, dict):
            raise bad(f"bufferView {i} is not an object")
        b, offset, length = view.get("buffer"), view.get("byteOffset", 0), view.get("byteLength")
        if not (nonneg_int(b) and b < len(buffer_sizes) and nonneg_int(offset) and nonneg_int(length)):
            raise bad(f"bufferView {i} has an invalid buffer, byteOffset or byteLength")
        if offset + length > buffer_sizes[b]:
            raise bad(
                f"bufferView {i} ends at byte {offset + length:,}, past the end of buffer {b} ({buffer_sizes[b]:,} bytes)"
            )
        view_sizes.append(length)

    bufferless = 0
    limit = budget + sum(buffer_sizes)
    for i, acc in enumerate(header.get("accessors", [])):
        if not isinstance(acc, dict):
            raise bad(f"accessor {i} is not an object")
        count, ctype, atype = acc.get("count"), acc.get("componentType"), acc.get("type")
        if not nonneg_int(count) or ctype not in _GLTF_COMPONENT_SIZES or atype not in _GLTF_TYPE_COMPONENTS:
            raise bad(f"accessor {i} has an invalid count, componentType or type")
        elem = _GLTF_COMPONENT_SIZES[ctype] * _GLTF_TYPE_COMPONENTS[atype]
        view_index = acc.get("bufferView")
        if view_index is None:
            # zero-filled (sparse or compressed data): costs memory, not file bytes
            bufferless += count * elem
            if bufferless > max(limit, 1 << 20) * 16:
                raise bad(f"accessor {i} claims {count:,} elements that are not stored in the file")
            continue
        if not (nonneg_int(view_index) and view_index < len(view_sizes)):
            raise bad(f"accessor {i} refers to a bufferView that does not exist")
        views = header["bufferViews"]
        stride = views[view_index].get("byteStride") or elem
        offset = acc.get("byteOffset", 0)
        if not (nonneg_int(stride) and stride > 0 and nonneg_int(offset)):
            raise bad(f"accessor {i} has an invalid byteStride or byteOffset")
        need = offset + (count - 1) * stride + elem if count else 0
        if need > view_sizes[view_index]:
            raise bad(
                f"accessor {i} claims {count:,} elements ({fmt_bytes(need)}) "
                f"but its bufferView holds {fmt_bytes(view_sizes[view_index])}"
            )


_PREVALIDATORS: Final = {
    "ply": _check_ply,
    "off": _check_off,
    "stl": _check_stl,
    "obj": _check_obj,
    "glb": _check_glb,
    "gltf": _check_gltf,
}


# --------------------------------------------------------------------------------------
# Scene -> parts -> one mesh
# --------------------------------------------------------------------------------------


@dataclass
class _Part:
    vertices: np.ndarray  # float64 [V, 3], already in scene (world) coordinates
    faces: np.ndarray  # int64 [F, 3]
    visual: object  # the source geometry's visual


def _scene_parts(scene: trimesh.Scene, name: str, face_cap: int) -> list[_Part]:
    """Instances of triangle meshes in ``scene``, transformed, validated."""
    instances = []
    n_points = 0
    total = 0
    for node in scene.graph.nodes_geometry:
        transform, geom_name = scene.graph[node]
        geom = scene.geometry.get(geom_name)
        if isinstance(geom, trimesh.Trimesh) and len(geom.faces) > 0:
            instances.append((geom, np.asarray(transform, dtype=np.float64)))
            total += len(geom.faces)
            if total > face_cap:
                raise _err(
                    name,
                    f"the scene expands to more than {face_cap:,} faces (counting every instance), "
                    "too many to load",
                )
        elif geom is not None and hasattr(geom, "vertices"):
            n_points += len(geom.vertices)
    if not instances:
        if n_points:
            raise _err(name, f"it holds {n_points:,} points but no faces (a point cloud, not a mesh)")
        raise _err(name, "it contains no mesh geometry (no faces)")

    parts = []
    for geom, transform in instances:
        faces = np.asarray(geom.faces)
        verts = np.asarray(geom.vertices, dtype=np.float64)
        if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
            raise _err(name, f"its faces have an unexpected layout {faces.shape}")
        lo, hi = int(faces.min()), int(faces.max())
        if lo < 0 or hi >= len(verts):
            bad = lo if lo < 0 else hi
            raise _err(
                name,
                f"a face refers to vertex {bad:,}, but only {len(verts):,} vertices exist (index out of range)",
            )
        if not np.isfinite(transform).all():
            raise _err(name, "a scene node has a transform with NaN or infinite values")
        finite = np.isfinite(verts).all(axis=1)
        if not finite.all() and not finite[faces].all():
            n_bad = int((~finite[np.unique(faces)]).sum())
            raise _err(name, f"{n_bad:,} vertices used by faces have NaN or infinite coordinates")
        _check_textures(geom.visual, name)
        if not np.allclose(transform, np.eye(4)):
            verts = verts @ transform[:3, :3].T + transform[:3, 3]
            if np.linalg.det(transform[:3, :3]) < 0:
                faces = faces[:, ::-1]  # a mirroring transform flips winding; keep outward normals
        parts.append(_Part(verts, faces.astype(np.int64, copy=False), geom.visual))
    return parts


def _material_images(material: object) -> list:
    from PIL import Image

    images = []
    for attr in (
        "image",
        "baseColorTexture",
        "metallicRoughnessTexture",
        "normalTexture",
        "emissiveTexture",
        "occlusionTexture",
    ):
        try:
            img = getattr(material, attr, None)
        except Exception:
            continue
        if isinstance(img, Image.Image):
            images.append(img)
    return images


def _check_textures(visual: object, name: str) -> None:
    if not isinstance(visual, TextureVisuals):
        return
    for img in _material_images(visual.material):
        w, h = img.size
        if w * h > MAX_TEXTURE_PIXELS:
            side = int(math.isqrt(MAX_TEXTURE_PIXELS))
            raise _err(name, f"a texture image is {w}x{h} pixels, above the {side}x{side} limit")


def _base_color_image(material: object):
    """The image a texture visual shows (SimpleMaterial.image / PBR baseColorTexture)."""
    for attr in ("baseColorTexture", "image"):
        img = getattr(material, attr, None)
        if img is not None:
            return img
    return None


def _part_kind(part: _Part) -> str | None:
    vis = part.visual
    if isinstance(vis, TextureVisuals):
        uv = vis.uv
        if (
            uv is not None
            and len(uv) == len(part.vertices)
            and np.isfinite(uv).all()
            and _base_color_image(vis.material) is not None
        ):
            return "texture"
        return "material"  # a material without a usable texture: its main colour
    if isinstance(vis, ColorVisuals):
        return vis.kind  # "vertex", "face" or None
    return None


def _flatten(
    parts: list[_Part],
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], object, dict[str, object]]:
    """Concatenate parts; pick one appearance for the result (see load_mesh).

    Returns ``(vertices [V,3], faces [F,3], vertex_attrs, face_attrs, material,
    notes)``: vertex_attrs may hold ``uv`` float64 [V,2] (then ``material`` is
    the texture's material) or ``rgba`` uint8 [V,4]; face_attrs may hold
    ``rgba`` uint8 [F,4]; notes go into the mesh's metadata.
    """
    kinds = [_part_kind(p) for p in parts]
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts])
    vertices = np.concatenate([p.vertices for p in parts]) if len(parts) > 1 else parts[0].vertices
    faces = (
        np.concatenate([p.faces + off for p, off in zip(parts, offsets)])
        if len(parts) > 1
        else parts[0].faces
    )
    notes: dict[str, object] = {}
    vattr: dict[str, np.ndarray] = {}
    fattr: dict[str, np.ndarray] = {}
    material = None

    if all(k == "texture" for k in kinds):
        materials = [p.visual.material for p in parts]
        uvs = [np.asarray(p.visual.uv, dtype=np.float64) for p in parts]
        if all(m is materials[0] for m in materials):
            vattr["uv"], material = np.concatenate(uvs), materials[0]
            return vertices, faces, vattr, fattr, material, notes
        try:
            from trimesh.visual.material import pack

            material, uv = pack(materials=materials, uvs=uvs)
            vattr["uv"] = np.asarray(uv, dtype=np.float64)
            return vertices, faces, vattr, fattr, material, notes
        except Exception:
            pass  # fall through to baking every texture to vertex colours

    if "texture" in kinds:
        notes["texture_baked"] = True
    if any(k is not None for k in kinds):
        if all(k in ("face", None) for k in kinds):
            fattr["rgba"] = np.concatenate([_face_rgba(p, k) for p, k in zip(parts, kinds)])
        else:
            vattr["rgba"] = np.concatenate([_vertex_rgba(p, k) for p, k in zip(parts, kinds)])
    return vertices, faces, vattr, fattr, material, notes


def _rgba(colors: np.ndarray, n: int) -> np.ndarray:
    """trimesh colours (uint8 [n, 3|4] or one colour [3|4]) -> uint8 RGBA [n, 4]."""
    c = np.asarray(colors)
    if c.dtype != np.uint8:
        c = np.clip(np.round(c), 0, 255).astype(np.uint8)
    if c.ndim == 1:
        c = np.broadcast_to(c, (n, len(c)))
    if c.shape[1] == 3:
        c = np.concatenate([c, np.full((len(c), 1), 255, np.uint8)], axis=1)
    return np.ascontiguousarray(c[:, :4]).reshape(n, 4)


def _face_rgba(part: _Part, kind: str | None) -> np.ndarray:
    if kind == "face":
        return _rgba(part.visual.face_colors, len(part.faces))
    return np.tile(_DEFAULT_RGBA, (len(part.faces), 1))


def _vertex_rgba(part: _Part, kind: str | None) -> np.ndarray:
    n = len(part.vertices)
    vis = part.visual
    if kind == "vertex":
        return _rgba(vis.vertex_colors, n)
    if kind == "face":
        # each vertex gets the mean colour of its faces
        return _rgba(vis.vertex_colors, n)
    if kind == "texture":
        return _bake_texture(np.asarray(vis.uv, dtype=np.float64), vis.material)
    if kind == "material":
        return _rgba(np.asarray(vis.material.main_color), n)
    return np.tile(_DEFAULT_RGBA, (n, 1))


def _bake_texture(uv: np.ndarray, material: object) -> np.ndarray:
    """Sample a material's texture at each uv [V, 2] -> uint8 RGBA [V, 4]."""
    return _rgba(TextureVisuals(uv=uv, material=material).to_color().vertex_colors, len(uv))


# --------------------------------------------------------------------------------------
# Cleaning: merge duplicates, drop degenerate faces and unused vertices
# --------------------------------------------------------------------------------------


def _clean(
    v: np.ndarray,
    f: np.ndarray,
    vattr: dict[str, np.ndarray],
    fattr: dict[str, np.ndarray],
    *,
    merge: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], int, int]:
    """Merge exact duplicate vertices (same position and attributes), drop faces
    that repeat a vertex or have zero area, then drop unused vertices.

    ``v`` float64 [V, 3], ``f`` int [F, 3]; ``vattr``/``fattr`` hold per-vertex
    and per-face arrays that follow the same edits. Returns ``(v, f, vattr,
    fattr, n_merged_vertices, n_removed_faces)``.
    """
    n_faces_in = len(f)
    if not merge:
        return _drop_degenerate(v, f, vattr, fattr, n_faces_in, 0)
    # 1. exact duplicates. Bit patterns of (x + 0.0) equate -0.0 with 0.0; any NaN
    # vertex left here is unused (checked earlier) and is dropped in step 4.
    columns = [np.ascontiguousarray(v + 0.0).view(np.uint64)]
    if "uv" in vattr:
        columns.append(np.ascontiguousarray(vattr["uv"] + 0.0).view(np.uint64))
    if "rgba" in vattr:
        columns.append(vattr["rgba"].astype(np.uint64))
    key = np.concatenate(columns, axis=1)
    order = np.lexsort(key.T[::-1])
    sorted_key = key[order]
    new_group = np.empty(len(v), dtype=bool)
    new_group[:1] = True
    np.any(sorted_key[1:] != sorted_key[:-1], axis=1, out=new_group[1:])
    group_of_sorted = np.cumsum(new_group) - 1
    remap = np.empty(len(v), dtype=np.int64)
    remap[order] = group_of_sorted
    representative = order[new_group]
    n_merged = len(v) - len(representative)
    if n_merged:
        f = remap[f]
        v = v[representative]
        vattr = {k: a[representative] for k, a in vattr.items()}
    return _drop_degenerate(v, f, vattr, fattr, n_faces_in, n_merged)


def _drop_degenerate(
    v: np.ndarray,
    f: np.ndarray,
    vattr: dict[str, np.ndarray],
    fattr: dict[str, np.ndarray],
    n_faces_in: int,
    n_merged: int,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], int, int]:
    # 2. faces that repeat a vertex, 3. faces of zero area
    keep = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    used = np.zeros(len(v), dtype=bool)
    used[f[keep].ravel()] = True
    if used.any():
        lo, hi = v[used].min(axis=0), v[used].max(axis=0)
        diag2 = float(np.sum((hi - lo) ** 2))
        keep &= _twice_area_sq(v, f) > (_DEGENERATE_REL_AREA * diag2) ** 2
    if not keep.all():
        f = f[keep]
        fattr = {k: a[keep] for k, a in fattr.items()}

    # 4. unused vertices
    used = np.zeros(len(v), dtype=bool)
    used[f.ravel()] = True
    if not used.all():
        new_index = np.cumsum(used) - 1
        f = new_index[f]
        v = v[used]
        vattr = {k: a[used] for k, a in vattr.items()}
    return v, f.astype(np.int64, copy=False), vattr, fattr, n_merged, n_faces_in - len(f)


def _twice_area_sq(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Squared norm of (b - a) x (c - a) per face [F]; spelled out because
    np.cross is several times slower on [F, 3] arrays."""
    a = v[f[:, 0]]
    e1 = v[f[:, 1]] - a
    e2 = v[f[:, 2]] - a
    cx = e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1]
    cy = e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2]
    cz = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    return cx * cx + cy * cy + cz * cz


# --------------------------------------------------------------------------------------
# Decimation
# --------------------------------------------------------------------------------------

DecimationBackend = Literal["auto", "fast_simplification", "open3d"]


def _decimate(
    v: np.ndarray, f: np.ndarray, target: int, *, backend: DecimationBackend = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse simplification to about ``target`` faces.

    ``fast_simplification`` (the library behind trimesh's own decimation) is
    about 5x faster than open3d on a 1.3M-face mesh, so it is used when
    installed; open3d (a hard dependency) is the fallback.
    """
    if backend in ("auto", "fast_simplification"):
        try:
            import fast_simplification
        except ImportError:
            if backend == "fast_simplification":
                raise
        else:
            pts, tri = fast_simplification.simplify(
                np.ascontiguousarray(v, dtype=np.float64),
                np.ascontiguousarray(f, dtype=np.int32),
                target_count=target,
            )
            return np.asarray(pts, dtype=np.float64), np.asarray(tri, dtype=np.int64)
    import open3d as o3d

    om = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(np.ascontiguousarray(v, dtype=np.float64)),
        o3d.utility.Vector3iVector(np.ascontiguousarray(f, dtype=np.int32)),
    )
    out = om.simplify_quadric_decimation(target_number_of_triangles=int(target))
    return np.asarray(out.vertices, dtype=np.float64), np.asarray(out.triangles, dtype=np.int64)


def _decimate_with_colours(
    v: np.ndarray,
    f: np.ndarray,
    vattr: dict[str, np.ndarray],
    fattr: dict[str, np.ndarray],
    target: int,
    *,
    backend: DecimationBackend = "auto",
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Decimate; vertex colours come from the nearest original vertex, face
    colours from the original face with the nearest centroid."""
    from scipy.spatial import cKDTree

    v2, f2 = _decimate(v, f, target, backend=backend)
    vattr2, fattr2 = {}, {}
    if "rgba" in vattr:
        _, idx = cKDTree(v).query(v2, workers=1)
        vattr2["rgba"] = vattr["rgba"][idx]
    if "rgba" in fattr:
        _, idx = cKDTree(v[f].mean(axis=1)).query(v2[f2].mean(axis=1), workers=1)
        fattr2["rgba"] = fattr["rgba"][idx]
    return v2, f2, vattr2, fattr2
