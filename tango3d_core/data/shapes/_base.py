"""Shared machinery for the procedural shape families.

A family is a function ``(rng: np.random.Generator) -> ShapeBuilder`` registered
with :func:`register`. It adds primitive meshes (or one labelled implicit mesh)
part by part; :meth:`ShapeBuilder.build` then merges them, puts the result in the
canonical pose and paints per-part materials as vertex colours.

Canonical pose (every family, every seed):
    * Z is up; the object stands on (or hovers just above) the plane z = min z.
    * The object's front faces -Y (a chair's seat opens towards -Y, a car drives
      towards -Y, an animal looks towards -Y).
    * Centred on its bounding-box centre, scaled to a bounding-box diagonal of 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import numpy as np
import trimesh

MaterialKind = Literal["solid", "stripes", "checks", "wood", "noise"]

# Named colours so captions can say what they show. Every part draws from the
# same palette, so colour alone never reveals which part a pixel belongs to.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40),
    "orange": (230, 130, 30),
    "yellow": (230, 200, 50),
    "green": (60, 160, 70),
    "teal": (40, 150, 150),
    "blue": (50, 90, 200),
    "purple": (130, 70, 170),
    "pink": (230, 130, 170),
    "brown": (130, 85, 45),
    "beige": (215, 195, 160),
    "white": (235, 235, 230),
    "grey": (140, 140, 140),
    "black": (40, 40, 45),
}


@dataclass(frozen=True)
class Material:
    """A procedural solid texture, evaluated at 3D points (mesh units, canonical pose).

    ``kind`` picks the pattern; ``base``/``accent`` are palette names; ``scale`` is
    the pattern period as a fraction of the bounding-box diagonal; ``axis`` is the
    unit direction stripes and wood rings vary along.
    """

    kind: MaterialKind
    base: str
    accent: str
    scale: float = 0.08
    axis: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def colors(self, points: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """Colour ``points`` [N, 3] -> uint8 [N, 4] RGBA."""
        p = np.asarray(points, dtype=np.float64)
        base = np.array(PALETTE[self.base], dtype=np.float64)
        accent = np.array(PALETTE[self.accent], dtype=np.float64)
        axis = np.asarray(self.axis, dtype=np.float64)
        axis = axis / (np.linalg.norm(axis) + 1e-12)
        s = max(self.scale, 1e-3)
        if self.kind == "solid":
            t = np.zeros(len(p))
        elif self.kind == "stripes":
            t = (np.floor(p @ axis / s) % 2).astype(np.float64)
        elif self.kind == "checks":
            t = (np.floor(p / s).astype(np.int64).sum(axis=1) % 2).astype(np.float64)
        elif self.kind == "wood":
            # Rings around `axis`, perturbed by low-frequency noise, then sharpened.
            radial = np.linalg.norm(p - np.outer(p @ axis, axis), axis=1)
            ring = radial / s + 0.6 * _value_noise(p / (3 * s), seed)
            t = 0.5 + 0.5 * np.sin(2 * np.pi * ring)
            t = t**3
        elif self.kind == "noise":
            t = np.clip(_value_noise(p / s, seed) * 0.5 + 0.5, 0, 1)
        else:  # pragma: no cover - Literal guards this
            raise ValueError(f"unknown material kind {self.kind!r}")
        rgb = base[None] * (1 - t[:, None]) + accent[None] * t[:, None]
        out = np.empty((len(p), 4), dtype=np.uint8)
        out[:, :3] = np.clip(rgb, 0, 255).astype(np.uint8)
        out[:, 3] = 255
        return out


def _value_noise(p: np.ndarray, seed: int) -> np.ndarray:
    """Smooth 3D value noise in [-1, 1] at points ``p`` [N, 3] (lattice period 1)."""
    i = np.floor(p).astype(np.int64)
    f = p - i
    f = f * f * (3 - 2 * f)

    def h(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray) -> np.ndarray:
        x = (ix * 73856093) ^ (iy * 19349663) ^ (iz * 83492791) ^ (seed * 2654435761)
        x = (x ^ (x >> 13)) * 1274126177
        return ((x & 0xFFFF) / 0xFFFF) * 2 - 1

    out = np.zeros(len(p))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (
                    (f[:, 0] if dx else 1 - f[:, 0])
                    * (f[:, 1] if dy else 1 - f[:, 1])
                    * (f[:, 2] if dz else 1 - f[:, 2])
                )
                out += w * h(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz)
    return out


def random_material(rng: np.random.Generator, *, kinds: Sequence[MaterialKind] | None = None) -> Material:
    """Draw a material whose colours are independent of the part it will paint."""
    kinds = list(kinds) if kinds is not None else ["solid", "solid", "stripes", "checks", "wood", "noise"]
    kind = kinds[rng.integers(len(kinds))]
    names = list(PALETTE)
    base = names[rng.integers(len(names))]
    accent = names[rng.integers(len(names))]
    while accent == base:
        accent = names[rng.integers(len(names))]
    axes = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    return Material(
        kind=kind,
        base=base,
        accent=accent,
        scale=float(rng.uniform(0.04, 0.12)),
        axis=axes[rng.integers(3)],
    )


@dataclass(frozen=True)
class Shape:
    """One generated object.

    Attributes:
        mesh: Z-up, front towards -Y, bbox-centred, bbox diagonal 1.0; vertex
            colours carry the materials. ``mesh.metadata["face_parts"]`` mirrors
            ``face_parts`` so the renderer can read part ids from the mesh alone.
        face_parts: int64 [F], index into ``part_names`` for every face.
        part_names: the category's full part vocabulary (``PARTS[category]``);
            a part absent from this instance simply labels no face.
        category: family name, one of ``CATEGORIES``.
        caption: one English sentence built from the attributes.
        seed: the seed that produced this shape.
        attributes: what the caption was built from (colour, size, parts present, ...).
    """

    mesh: trimesh.Trimesh
    face_parts: np.ndarray
    part_names: list[str]
    category: str
    caption: str
    seed: int
    attributes: dict = field(default_factory=dict)


class ShapeBuilder:
    """Accumulates labelled parts of one shape, then normalises and paints them.

    Args:
        category: family name.
        part_names: the category's part vocabulary, in a fixed order.
        rng: the generator of this (category, seed); families draw every random
            choice from it so output is deterministic.
        max_edge: target longest edge after normalisation (diagonal = 1); primitive
            parts are subdivided uniformly (which keeps them watertight) until
            their edges are this short, so vertex-colour textures have resolution.
    """

    def __init__(
        self,
        category: str,
        part_names: Sequence[str],
        rng: np.random.Generator,
        *,
        max_edge: float = 0.05,
    ) -> None:
        self.category = category
        self.part_names = list(part_names)
        self.rng = rng
        self.max_edge = max_edge
        self._meshes: list[trimesh.Trimesh] = []
        self._face_labels: list[np.ndarray] = []
        self._materials: dict[str, Material] = {}
        self.attributes: dict = {}

    def material(self, part: str) -> Material:
        """The material of ``part``, drawn on first use (so one part = one material)."""
        if part not in self._materials:
            self._materials[part] = random_material(self.rng)
        return self._materials[part]

    def set_material(self, part: str, material: Material) -> None:
        self._materials[part] = material

    def add(self, part: str, mesh: trimesh.Trimesh) -> None:
        """Add a primitive (ideally closed) mesh that belongs entirely to ``part``."""
        if part not in self.part_names:
            raise KeyError(f"{part!r} is not a part of {self.category} ({self.part_names})")
        self._meshes.append(mesh)
        self._face_labels.append(np.full(len(mesh.faces), self.part_names.index(part), dtype=np.int64))

    def add_labelled(self, mesh: trimesh.Trimesh, face_parts: np.ndarray) -> None:
        """Add one mesh whose faces carry their own part indices (e.g. a marching-cubes body)."""
        face_parts = np.asarray(face_parts, dtype=np.int64)
        if face_parts.shape != (len(mesh.faces),):
            raise ValueError("face_parts must have one entry per face")
        self._meshes.append(mesh)
        self._face_labels.append(face_parts)

    def parts_present(self) -> list[str]:
        used = np.unique(np.concatenate(self._face_labels)) if self._face_labels else []
        return [self.part_names[i] for i in used]

    def build(self, *, seed: int, caption: str) -> Shape:
        if not self._meshes:
            raise RuntimeError("a shape needs at least one part")
        # Normalise first so `max_edge` and material scales are in canonical units.
        allv = np.concatenate([m.vertices for m in self._meshes])
        lo, hi = allv.min(0), allv.max(0)
        centre, diag = (lo + hi) / 2, float(np.linalg.norm(hi - lo))
        meshes, labels = [], []
        for m, lab in zip(self._meshes, self._face_labels):
            v = (np.asarray(m.vertices, dtype=np.float64) - centre) / diag
            f = np.asarray(m.faces, dtype=np.int64)
            if len(np.unique(lab)) == 1:
                for _ in range(6):
                    edges = np.linalg.norm(v[f[:, [1, 2, 0]]] - v[f], axis=-1)
                    if edges.max() <= self.max_edge or len(f) > 20000:
                        break
                    v, f = trimesh.remesh.subdivide(v, f)
                lab = np.full(len(f), lab[0], dtype=np.int64)
            meshes.append((v, f))
            labels.append(lab)
        verts, faces, face_parts, colors = [], [], [], []
        offset = 0
        for (v, f), lab in zip(meshes, labels):
            # A vertex takes the material of the part of its first face; every
            # vertex gets exactly one colour, so seams follow part boundaries.
            vpart = np.full(len(v), lab[0], dtype=np.int64)
            vpart[f[:, 0]] = lab
            vpart[f[:, 1]] = lab
            vpart[f[:, 2]] = lab
            col = np.zeros((len(v), 4), dtype=np.uint8)
            for pi in np.unique(vpart):
                sel = vpart == pi
                col[sel] = self.material(self.part_names[pi]).colors(v[sel], seed=int(pi))
            verts.append(v)
            faces.append(f + offset)
            face_parts.append(lab)
            colors.append(col)
            offset += len(v)
        mesh = trimesh.Trimesh(
            vertices=np.concatenate(verts),
            faces=np.concatenate(faces),
            vertex_colors=np.concatenate(colors),
            process=False,
        )
        fp = np.concatenate(face_parts)
        mesh.metadata["face_parts"] = fp
        mesh.metadata["part_names"] = list(self.part_names)
        attrs = dict(self.attributes)
        attrs.setdefault("parts_present", self.parts_present())
        attrs.setdefault("materials", {k: (m.kind, m.base, m.accent) for k, m in self._materials.items()})
        return Shape(
            mesh=mesh,
            face_parts=fp,
            part_names=list(self.part_names),
            category=self.category,
            caption=caption,
            seed=int(seed),
            attributes=attrs,
        )


# ---------------------------------------------------------------- registry

Family = Callable[[np.random.Generator, int], Shape]
FAMILIES: dict[str, Family] = {}
PARTS: dict[str, list[str]] = {}
ORGANIC: set[str] = set()


def register(category: str, parts: Sequence[str], *, organic: bool = False) -> Callable[[Family], Family]:
    """Register ``fn(rng, seed) -> Shape`` as the generator of ``category``."""

    def deco(fn: Family) -> Family:
        if category in FAMILIES:
            raise ValueError(f"category {category!r} registered twice")
        FAMILIES[category] = fn
        PARTS[category] = list(parts)
        if organic:
            ORGANIC.add(category)
        return fn

    return deco


# ---------------------------------------------------------------- captions

SIZE_WORDS = ("small", "compact", "medium-sized", "large", "tall", "wide", "long", "slender")


def caption(
    category: str,
    rng: np.random.Generator,
    *,
    colour: str,
    size: str | None = None,
    features: Sequence[str] = (),
) -> str:
    """A one-sentence caption, e.g. "a tall red chair with armrests and four legs".

    ``category`` may be written with spaces; ``features`` are short noun phrases
    ("armrests", "a curved handle"). The template is drawn from ``rng``.
    """
    noun = category.replace("_", " ")
    adj = " ".join(w for w in (size, colour) if w)
    head = f"{adj} {noun}".strip()
    article = "an" if head[0] in "aeiou" else "a"
    feats = list(features)
    tail = ""
    if feats:
        tail = feats[0] if len(feats) == 1 else ", ".join(feats[:-1]) + " and " + feats[-1]
    templates = [
        "{a} {h} with {t}",
        "{a} {h} that has {t}",
        "a 3D model of {a} {h} with {t}",
    ] if tail else ["{a} {h}", "a 3D model of {a} {h}"]
    tpl = templates[rng.integers(len(templates))]
    return tpl.format(a=article, h=head, t=tail)


# ---------------------------------------------------------------- primitives
# Small helpers that every family uses; all return closed (watertight) meshes.


def box(extents: Sequence[float], center: Sequence[float]) -> trimesh.Trimesh:
    m = trimesh.creation.box(extents=np.asarray(extents, dtype=np.float64))
    m.apply_translation(np.asarray(center, dtype=np.float64))
    return m


def cylinder(radius: float, p0: Sequence[float], p1: Sequence[float], *, sections: int = 24) -> trimesh.Trimesh:
    """A closed cylinder from ``p0`` to ``p1``."""
    return trimesh.creation.cylinder(
        radius=radius, segment=np.array([p0, p1], dtype=np.float64), sections=sections
    )


def sphere(radius: float, center: Sequence[float], *, subdivisions: int = 2) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    m.apply_translation(np.asarray(center, dtype=np.float64))
    return m


def ellipsoid(radii: Sequence[float], center: Sequence[float], *, subdivisions: int = 2) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    m.apply_scale(np.asarray(radii, dtype=np.float64))
    m.apply_translation(np.asarray(center, dtype=np.float64))
    return m


def torus(major: float, minor: float, center: Sequence[float], *, axis: Sequence[float] = (0, 0, 1)) -> trimesh.Trimesh:
    m = trimesh.creation.torus(major_radius=major, minor_radius=minor, major_sections=32, minor_sections=12)
    z = np.array([0.0, 0.0, 1.0])
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    if not np.allclose(a, z):
        m.apply_transform(trimesh.geometry.align_vectors(z, a))
    m.apply_translation(np.asarray(center, dtype=np.float64))
    return m


def colour_word(builder: ShapeBuilder, part: str) -> str:
    """The palette name to use in a caption for ``part`` (its base colour)."""
    return builder.material(part).base


# ---------------------------------------------------------------- resolution-aware primitives
# The helpers below take ``res``, a target edge length in the caller's units, and
# build closed meshes whose edges are already about that long. ShapeBuilder only
# knows uniform subdivision, which also splits the short edges (the rim of a thin
# leg, say) and wastes faces; a family that estimates its final bounding-box
# diagonal ``d`` and passes ``res = 0.02 * d`` gets even triangles and never
# triggers that subdivision. Every helper returns a watertight, consistently
# wound mesh with outward normals (positive volume).


def _signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _ring_mesh(
    rings: np.ndarray,
    *,
    start: np.ndarray | None = None,
    end: np.ndarray | None = None,
    closed: bool = False,
) -> trimesh.Trimesh:
    """Stitch a sequence of rings [R, S, 3] into a closed surface.

    Consecutive rings are joined by quads; ``start``/``end`` [3] are pole vertices
    fanned onto the first/last ring (a tube with two caps), or ``closed=True``
    joins the last ring back to the first (torus topology). Orientation is fixed
    afterwards so that the volume is positive.
    """
    rings = np.asarray(rings, dtype=np.float64)
    n_r, n_s = rings.shape[:2]
    if n_s < 3 or n_r < 1:
        raise ValueError("need at least one ring of at least 3 points")
    if not closed and (start is None or end is None):
        raise ValueError("an open ring sequence needs both poles")
    verts = [rings.reshape(-1, 3)]
    j = np.arange(n_s)
    jn = (j + 1) % n_s
    faces = []
    n_pairs = n_r if closed else n_r - 1
    for i in range(n_pairs):
        i2 = (i + 1) % n_r
        a, b = i * n_s + j, i * n_s + jn
        c, d = i2 * n_s + jn, i2 * n_s + j
        faces.append(np.stack([a, b, c], 1))
        faces.append(np.stack([a, c, d], 1))
    if not closed:
        p0 = n_r * n_s
        p1 = p0 + 1
        verts.append(np.asarray(start, dtype=np.float64)[None])
        verts.append(np.asarray(end, dtype=np.float64)[None])
        # Fans traverse the ring edges opposite to the neighbouring quads.
        faces.append(np.stack([np.full(n_s, p0), jn, j], 1))
        last = (n_r - 1) * n_s
        faces.append(np.stack([np.full(n_s, p1), last + j, last + jn], 1))
    v = np.concatenate(verts)
    f = np.concatenate(faces).astype(np.int64)
    if _signed_volume(v, f) < 0:
        f = f[:, ::-1].copy()
    return trimesh.Trimesh(vertices=v, faces=f, process=False)


def _resample(points: np.ndarray, res: float, *, closed: bool = False, ndim: int | None = None) -> np.ndarray:
    """Insert points so no segment is longer than ``res``.

    ``points`` [K, C]; segment lengths are measured on the first ``ndim`` columns
    (all by default), the other columns (e.g. a radius) are interpolated along.
    """
    p = np.asarray(points, dtype=np.float64)
    ndim = p.shape[1] if ndim is None else ndim
    nxt = np.roll(p, -1, axis=0) if closed else p[1:]
    cur = p if closed else p[:-1]
    out = []
    for a, b in zip(cur, nxt):
        length = float(np.linalg.norm(b[:ndim] - a[:ndim]))
        if length < 1e-12:
            continue
        n = max(1, int(np.ceil(length / res)))
        t = np.arange(n)[:, None] / n
        out.append(a[None] * (1 - t) + b[None] * t)
    if not closed:
        out.append(p[-1:])
    return np.concatenate(out) if out else p[:1].copy()


def _frame_to(mesh: trimesh.Trimesh, axis: Sequence[float], origin: Sequence[float]) -> trimesh.Trimesh:
    """Rotate +Z onto ``axis`` and move the local origin to ``origin`` (in place)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    if not np.allclose(a, (0.0, 0.0, 1.0)):
        mesh.apply_transform(trimesh.geometry.align_vectors(np.array([0.0, 0.0, 1.0]), a))
    mesh.apply_translation(np.asarray(origin, dtype=np.float64))
    return mesh


def revolve(
    profile: Sequence[Sequence[float]] | np.ndarray,
    *,
    res: float,
    sections: int | None = None,
    closed: bool = False,
    axis: Sequence[float] = (0.0, 0.0, 1.0),
    origin: Sequence[float] = (0.0, 0.0, 0.0),
) -> trimesh.Trimesh:
    """Surface of revolution of a (radius, height) profile about ``axis``.

    Args:
        profile: [K, 2] points ``(r, z)`` with ``r >= 0``, in the caller's units.
            Open profiles (``closed=False``) are closed on the axis: an end with
            ``r > 0`` gets a flat cap, so a profile from the axis, up the outside
            and back down the inside to the axis gives a hollow cup. Interior
            points must have ``r > 0``. A ``closed`` profile is a loop off the
            axis and gives a ring (tyre, lamp shade wall, apron ring).
        res: target edge length (caller's units).
        sections: points per ring; default from the largest circumference.
        axis, origin: the local +Z axis and origin in the output frame.
    """
    p = np.asarray(profile, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) < 2:
        raise ValueError("profile must be [K, 2] (r, z) with K >= 2")
    if not np.isfinite(p).all() or (p[:, 0] < 0).any():
        raise ValueError("profile radii must be finite and >= 0")
    if res <= 0:
        raise ValueError("res must be > 0")
    eps = 1e-9
    if closed:
        pts = _resample(p, res, closed=True)
        if (pts[:, 0] <= eps).any():
            raise ValueError("a closed profile must stay off the axis (r > 0)")
        start = end = None
    else:
        if p[0, 0] > eps:
            p = np.concatenate([[[0.0, p[0, 1]]], p])
        if p[-1, 0] > eps:
            p = np.concatenate([p, [[0.0, p[-1, 1]]]])
        pts = _resample(p, res)
        start, end = np.array([0.0, 0.0, pts[0, 1]]), np.array([0.0, 0.0, pts[-1, 1]])
        pts = pts[1:-1]
        if len(pts) == 0 or (pts[:, 0] <= eps).any():
            raise ValueError("an open profile may touch the axis only at its ends")
    if sections is None:
        sections = int(np.clip(np.ceil(2 * np.pi * pts[:, 0].max() / res), 12, 128))
    phi = np.linspace(0, 2 * np.pi, sections, endpoint=False)
    rings = np.stack(
        [pts[:, :1] * np.cos(phi)[None], pts[:, :1] * np.sin(phi)[None], np.repeat(pts[:, 1:2], sections, 1)],
        axis=-1,
    )
    return _frame_to(_ring_mesh(rings, start=start, end=end, closed=closed), axis, origin)


def _fillet(path: np.ndarray, corner: float, steps: int = 8) -> np.ndarray:
    """Replace each interior corner of ``path`` [K, C] by a quadratic Bezier arc."""
    if corner <= 0 or len(path) < 3:
        return path
    out = [path[0]]
    for i in range(1, len(path) - 1):
        a, p, b = path[i - 1], path[i], path[i + 1]
        la, lb = np.linalg.norm(p[:3] - a[:3]), np.linalg.norm(b[:3] - p[:3])
        ca = min(corner, 0.49 * la) / max(la, 1e-12)
        cb = min(corner, 0.49 * lb) / max(lb, 1e-12)
        q0, q1 = p + (a - p) * ca, p + (b - p) * cb
        t = np.linspace(0, 1, steps)[:, None]
        out.extend((1 - t) ** 2 * q0 + 2 * t * (1 - t) * p + t**2 * q1)
    out.append(path[-1])
    return np.asarray(out)


def tube(
    path: Sequence[Sequence[float]] | np.ndarray,
    radius: float | Sequence[float] | np.ndarray,
    *,
    res: float,
    sections: int | None = None,
    corner: float = 0.0,
) -> trimesh.Trimesh:
    """A round tube swept along a polyline, with flat end caps.

    Args:
        path: [K, 3] centre line, K >= 2.
        radius: scalar, or [K] radius per path point (tapered legs, handles).
        res: target edge length.
        sections: points per ring; default from the largest circumference.
        corner: fillet radius applied at interior path corners (0 keeps them sharp).
    """
    path = np.asarray(path, dtype=np.float64)
    if path.ndim != 2 or path.shape[1] != 3 or len(path) < 2:
        raise ValueError("path must be [K, 3] with K >= 2")
    r = np.broadcast_to(np.asarray(radius, dtype=np.float64), (len(path),))
    if (r <= 0).any():
        raise ValueError("tube radius must be > 0")
    pr = _fillet(np.concatenate([path, r[:, None]], 1), corner)
    pr = _resample(pr, res, ndim=3)
    if len(pr) < 2:
        raise ValueError("tube path has zero length")
    pts, rad = pr[:, :3], pr[:, 3]
    tan = np.gradient(pts, axis=0)
    tan /= np.linalg.norm(tan, axis=1, keepdims=True) + 1e-12
    # Parallel transport keeps the rings from twisting along the path.
    ref = np.array([0.0, 0.0, 1.0]) if abs(tan[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    n = ref - (ref @ tan[0]) * tan[0]
    normals = []
    for t in tan:
        n = n - (n @ t) * t
        n /= np.linalg.norm(n) + 1e-12
        normals.append(n)
    nrm = np.asarray(normals)
    bin_ = np.cross(tan, nrm)
    if sections is None:
        sections = int(np.clip(np.ceil(2 * np.pi * rad.max() / res), 12, 64))
    phi = np.linspace(0, 2 * np.pi, sections, endpoint=False)
    cs, sn = np.cos(phi), np.sin(phi)

    def ring(c: np.ndarray, rr: float, nn: np.ndarray, bb: np.ndarray) -> np.ndarray:
        return c[None] + rr * (cs[:, None] * nn[None] + sn[:, None] * bb[None])

    rings = [ring(pts[i], rad[i], nrm[i], bin_[i]) for i in range(len(pts))]
    m0 = max(1, int(np.ceil(rad[0] / res)))
    m1 = max(1, int(np.ceil(rad[-1] / res)))
    cap0 = [ring(pts[0], rad[0] * k / m0, nrm[0], bin_[0]) for k in range(1, m0)]
    cap1 = [ring(pts[-1], rad[-1] * k / m1, nrm[-1], bin_[-1]) for k in range(m1 - 1, 0, -1)]
    return _ring_mesh(np.asarray(cap0 + rings + cap1), start=pts[0], end=pts[-1])


def capsule(radius: float, p0: Sequence[float], p1: Sequence[float], *, res: float) -> trimesh.Trimesh:
    """A cylinder of ``radius`` from ``p0`` to ``p1`` closed by hemispheres centred on ``p0`` and ``p1``."""
    p0a, p1a = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    length = float(np.linalg.norm(p1a - p0a))
    if length < 1e-12:
        raise ValueError("capsule end points coincide")
    k = max(4, int(np.ceil(np.pi * radius / 2 / res)))
    a = np.linspace(-np.pi / 2, 0, k + 1)
    lower = np.stack([radius * np.cos(a), radius * np.sin(a)], 1)
    upper = np.stack([radius * np.cos(a[::-1]), length - radius * np.sin(a[::-1])], 1)
    prof = np.concatenate([lower, upper])
    return revolve(prof, res=res, axis=p1a - p0a, origin=p0a)


def loft(
    loops: Sequence[np.ndarray],
    *,
    res: float,
    cap: bool = True,
    closed: bool = False,
) -> trimesh.Trimesh:
    """A skin through closed loops (wing sections, car body sections, a tabletop).

    Args:
        loops: L loops, each [S, 3] with the same S and corresponding points;
            consecutive loops are blended linearly so no gap exceeds ``res``.
        res: target edge length between loops and on the caps.
        cap: close the first and last loop with flat caps fanned from the loop
            centroid in rings (each end loop must be star-shaped about its centroid).
        closed: join the last loop back to the first instead of capping.
    """
    ls = [np.asarray(x, dtype=np.float64) for x in loops]
    if not ls or any(x.ndim != 2 or x.shape[1] != 3 for x in ls) or len({len(x) for x in ls}) != 1:
        raise ValueError("loops must be a list of [S, 3] arrays with the same S")
    seq = [ls[0]]
    pairs = list(zip(ls, ls[1:] + ([ls[0]] if closed else [])))
    for i, (a, b) in enumerate(pairs):
        n = max(1, int(np.ceil(np.linalg.norm(b - a, axis=1).max() / res)))
        last = closed and i == len(pairs) - 1
        for k in range(1, n if last else n + 1):
            t = k / n
            seq.append(a * (1 - t) + b * t)
    if closed:
        return _ring_mesh(np.asarray(seq), closed=True)
    if not cap:
        raise ValueError("an open loft must be capped to be closed")
    c0, c1 = seq[0].mean(0), seq[-1].mean(0)
    m0 = max(1, int(np.ceil(np.linalg.norm(seq[0] - c0, axis=1).max() / res)))
    m1 = max(1, int(np.ceil(np.linalg.norm(seq[-1] - c1, axis=1).max() / res)))
    cap0 = [c0 + (seq[0] - c0) * k / m0 for k in range(1, m0)]
    cap1 = [c1 + (seq[-1] - c1) * k / m1 for k in range(m1 - 1, 0, -1)]
    return _ring_mesh(np.asarray(cap0 + seq + cap1), start=c0, end=c1)


def superellipse(a: float, b: float, *, count: int, exponent: float = 2.0, start: float = 0.0) -> np.ndarray:
    """[count, 2] points of ``|x/a|^e + |y/b|^e = 1``, evenly spaced by arc length.

    ``exponent`` 2 is an ellipse; larger values approach a rectangle with rounded
    corners. Points run counter-clockwise from angle ``start`` (radians), so loops
    of different size built with the same ``count`` correspond point by point.
    """
    t = np.linspace(0, 2 * np.pi, 16 * count, endpoint=False) + start
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / exponent
    dense = np.stack([a * np.sign(c) * np.abs(c) ** e, b * np.sign(s) * np.abs(s) ** e], 1)
    seg = np.linalg.norm(np.roll(dense, -1, 0) - dense, axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    want = np.linspace(0, arc[-1], count, endpoint=False)
    closed_pts = np.concatenate([dense, dense[:1]])
    return np.stack([np.interp(want, arc, closed_pts[:, 0]), np.interp(want, arc, closed_pts[:, 1])], 1)


def rounded_box(
    extents: Sequence[float],
    center: Sequence[float] = (0.0, 0.0, 0.0),
    *,
    res: float,
    radius: float = 0.0,
) -> trimesh.Trimesh:
    """An axis-aligned box with edges rounded by ``radius`` (0 = sharp), evenly meshed.

    ``radius`` is clipped to just under half the smallest extent.
    """
    ext = np.asarray(extents, dtype=np.float64)
    if ext.shape != (3,) or (ext <= 0).any():
        raise ValueError("extents must be three positive lengths")
    h = ext / 2
    r = float(np.clip(radius, 0.0, 0.999 * h.min()))
    coords = []
    for hk in h:
        flat_n = max(1, int(np.ceil(2 * (hk - r) / res)))
        flat = np.linspace(-(hk - r), hk - r, flat_n + 1)
        if r > 0:
            # tan-spaced offsets map onto equal angles of the rounding arc.
            m = max(2, int(np.ceil(np.pi / 4 * r / res)) + 1)
            off = r * np.tan(np.linspace(0, np.pi / 4, m))[1:]
            grid = np.concatenate([-(hk - r) - off[::-1], flat, (hk - r) + off])
        else:
            grid = flat
        coords.append(np.unique(np.round(grid, 12)))
    nx, ny, nz = (len(c) for c in coords)
    idx = -np.ones((nx, ny, nz), dtype=np.int64)
    surf = np.zeros_like(idx, dtype=bool)
    surf[[0, -1]] = surf[:, [0, -1]] = surf[:, :, [0, -1]] = True
    idx[surf] = np.arange(surf.sum())
    gi = np.argwhere(surf)
    verts = np.stack([coords[0][gi[:, 0]], coords[1][gi[:, 1]], coords[2][gi[:, 2]]], 1)
    faces = []
    dims = (nx, ny, nz)
    for ax in range(3):
        bx, cx = (ax + 1) % 3, (ax + 2) % 3
        for side in (0, dims[ax] - 1):
            ii, jj = np.meshgrid(np.arange(dims[bx] - 1), np.arange(dims[cx] - 1), indexing="ij")
            ii, jj = ii.ravel(), jj.ravel()

            def at(di: int, dj: int) -> np.ndarray:
                sel = [None, None, None]
                sel[ax] = np.full_like(ii, side)
                sel[bx], sel[cx] = ii + di, jj + dj
                return idx[sel[0], sel[1], sel[2]]

            q = np.stack([at(0, 0), at(1, 0), at(1, 1), at(0, 1)], 1)
            if side == 0:
                q = q[:, ::-1]
            faces.append(q[:, [0, 1, 2]])
            faces.append(q[:, [0, 2, 3]])
    f = np.concatenate(faces)
    if r > 0:
        inner = np.clip(verts, -(h - r), h - r)
        d = verts - inner
        verts = inner + r * d / np.linalg.norm(d, axis=1, keepdims=True)
    m = trimesh.Trimesh(vertices=verts + np.asarray(center, dtype=np.float64), faces=f, process=False)
    return m


def beam(
    p0: Sequence[float],
    p1: Sequence[float],
    width: float,
    depth: float | None = None,
    *,
    res: float,
    radius: float = 0.0,
) -> trimesh.Trimesh:
    """A (rounded) box of cross-section ``width`` x ``depth`` running from ``p0`` to ``p1``.

    The cross-section's width lies along the horizontal direction perpendicular
    to the beam (along +X for a vertical beam), its depth completes the frame.
    """
    a, b = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    d = b - a
    length = float(np.linalg.norm(d))
    if length < 1e-12:
        raise ValueError("beam end points coincide")
    d /= length
    ref = np.array([1.0, 0.0, 0.0]) if abs(d[2]) > 0.9 else np.array([0.0, 0.0, 1.0])
    if abs(d[2]) > 0.9:
        u = ref - (ref @ d) * d
    else:
        u = np.cross(d, ref)
    u /= np.linalg.norm(u)
    v = np.cross(d, u)
    m = rounded_box((width, depth if depth is not None else width, length), res=res, radius=radius)
    tf = np.eye(4)
    tf[:3, :3] = np.stack([u, v, d], 1)
    tf[:3, 3] = (a + b) / 2
    m.apply_transform(tf)
    return m


def transformed(mesh: trimesh.Trimesh, *, rotate: Sequence[Sequence[float]] | None = None,
                translate: Sequence[float] = (0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    """``mesh`` rotated by the 3x3 matrix ``rotate`` (about the origin), then translated (in place)."""
    if rotate is not None:
        tf = np.eye(4)
        tf[:3, :3] = np.asarray(rotate, dtype=np.float64)
        mesh.apply_transform(tf)
    mesh.apply_translation(np.asarray(translate, dtype=np.float64))
    return mesh


def rot(axis: Literal["x", "y", "z"], angle: float) -> np.ndarray:
    """3x3 right-handed rotation by ``angle`` radians about a coordinate axis."""
    c, s = np.cos(angle), np.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    raise ValueError(f"axis must be 'x', 'y' or 'z', got {axis!r}")


def ball(radius: float, center: Sequence[float], *, res: float) -> trimesh.Trimesh:
    """A sphere meshed at edge length ``res`` (a revolved half circle, poles on local Z)."""
    if radius <= 0:
        raise ValueError("ball radius must be > 0")
    n = max(6, int(np.ceil(np.pi * radius / res)))
    a = np.linspace(-np.pi / 2, np.pi / 2, n + 1)[1:-1]
    prof = np.concatenate([[[0.0, -radius]], np.stack([radius * np.cos(a), radius * np.sin(a)], 1), [[0.0, radius]]])
    return revolve(prof, res=res, origin=center)


# ---------------------------------------------------------------- family helpers
# Shared by the rigid families (_furniture, _objects).

# Target edge length as a fraction of the estimated bounding-box diagonal; about
# 5k-30k faces per shape and fine enough for the procedural textures.
RES_FRAC = 0.014

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight"}


def _res(*extents: float, frac: float = RES_FRAC) -> float:
    return frac * float(np.linalg.norm(extents))


def _pick(rng: np.random.Generator, options: Sequence, p: Sequence[float] | None = None):
    """One of ``options`` (weights ``p``), drawn from ``rng``."""
    if p is not None:
        w = np.asarray(p, dtype=np.float64)
        return options[int(rng.choice(len(options), p=w / w.sum()))]
    return options[int(rng.integers(len(options)))]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))
