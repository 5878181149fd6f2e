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
