"""Organic families: animals and people as smooth implicit blends.

Every part is a handful of signed-distance primitives (round cones, ellipsoids,
thickened triangles, elliptical plates). All primitives are folded into one field with a polynomial
smooth minimum, the field is sampled on an isotropic grid padded so the surface
never meets the grid boundary, and marching cubes turns it into a single closed
(watertight) mesh. A face belongs to the part whose primitive has the smallest
*unblended* distance at the face centroid, so labels follow the primitives even
inside the blended fillets.

Distances are in the family's own world units (a torso is roughly one unit
long); :meth:`ShapeBuilder.build` later centres the mesh and scales it to a
bounding-box diagonal of 1. Canonical pose: Z up, the head (the front) towards -Y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import trimesh
from skimage.measure import marching_cubes

from ._base import Shape, ShapeBuilder, caption, colour_word, register

ArrayLike3 = Sequence[float] | np.ndarray

# ---------------------------------------------------------------- SDF helpers
# All take points ``p`` as float arrays [..., 3] and return distances [...]
# (negative inside). Shape parameters are plain 3-vectors / floats.


def smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial (quadratic) smooth minimum of two distance fields.

    Equals ``min(a, b)`` where ``|a - b| >= k``; elsewhere it is lower by
    ``(k - |a - b|)^2 / (4k)`` (at most ``k / 4``), which rounds the crease
    where two surfaces meet into a fillet about ``k`` wide.

    Args:
        a, b: distances, broadcastable arrays.
        k: blend width (world units), > 0.
    """
    if not k > 0:
        raise ValueError(f"smin blend width k must be > 0, got {k}")
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * (0.25 * k)


def _vec(v: ArrayLike3, name: str) -> np.ndarray:
    out = np.asarray(v, dtype=np.float64)
    if out.shape != (3,) or not np.all(np.isfinite(out)):
        raise ValueError(f"{name} must be a finite 3-vector, got {v!r}")
    return out


def _points(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    if p.shape[-1:] != (3,):
        raise ValueError(f"points must have shape [..., 3], got {p.shape}")
    return p


def sd_round_cone(p: np.ndarray, a: ArrayLike3, b: ArrayLike3, r1: float, r2: float) -> np.ndarray:
    """Exact signed distance to the convex hull of the balls (a, r1) and (b, r2).

    With ``r1 == r2`` this is a capsule. In the plane through the axis the hull's
    side is a straight line tangent to both circles; with ``s = (r1 - r2) / L``
    its outward normal is ``(s, c)``, ``c = sqrt(1 - s^2)`` in (axial, radial)
    coordinates. Projecting onto the line's direction ``(c, -s)`` tells whether a
    point is nearest to the cap at ``a``, the side, or the cap at ``b``.

    Args:
        p: points [..., 3].
        a, b: axis end points [3].
        r1, r2: radii at ``a`` and ``b`` (>= 0).
    Returns:
        [...] signed distances.
    """
    p = _points(p)
    a, b = _vec(a, "a"), _vec(b, "b")
    if r1 < 0 or r2 < 0:
        raise ValueError(f"radii must be >= 0, got {r1}, {r2}")
    ab = b - a
    length = float(np.linalg.norm(ab))
    pa = p - a
    pa2 = np.einsum("...i,...i->...", pa, pa)
    if length <= abs(r1 - r2):
        # One ball contains the other: the hull is the bigger ball.
        return (np.sqrt(pa2) - r1) if r1 >= r2 else (np.linalg.norm(p - b, axis=-1) - r2)
    axis = ab / length
    y = pa @ axis
    q = np.sqrt(np.maximum(pa2 - y * y, 0.0))
    s = (r1 - r2) / length
    c = math.sqrt(1.0 - s * s)
    u = y * c - q * s
    # |p - b|^2 from the axial/radial split, saving a second pass over p.
    d_b = np.sqrt((y - length) ** 2 + q * q) - r2
    d_side = y * s + q * c - r1
    return np.where(u < 0, np.sqrt(pa2) - r1, np.where(u > length * c, d_b, d_side))


def sd_capsule(p: np.ndarray, a: ArrayLike3, b: ArrayLike3, r: float) -> np.ndarray:
    """Exact signed distance [...] to the capsule of radius ``r`` around segment ab."""
    return sd_round_cone(p, a, b, r, r)


def sd_ellipsoid(
    p: np.ndarray,
    center: ArrayLike3,
    radii: ArrayLike3,
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Approximate signed distance [...] to an ellipsoid.

    Uses ``k0 (k0 - 1) / k1`` with ``k0 = |x / r|`` and ``k1 = |x / r^2|``
    (``x`` in the ellipsoid's frame): exact sign, exact zero set, first-order
    exact near the surface and exact for spheres; far away it stays within the
    range of the radii ratio, which is all a smooth blend needs.

    Args:
        p: points [..., 3].
        center: [3].
        radii: [3] semi-axes (> 0), along the columns of ``rotation``.
        rotation: [3, 3] orthonormal; column i is the world direction of semi-axis i.
    """
    p = _points(p)
    c = _vec(center, "center")
    r = _vec(radii, "radii")
    if np.any(r <= 0):
        raise ValueError(f"ellipsoid radii must be > 0, got {radii}")
    x = p - c
    if rotation is not None:
        x = x @ np.asarray(rotation, dtype=np.float64)
    k0 = np.linalg.norm(x / r, axis=-1)
    k1 = np.linalg.norm(x / (r * r), axis=-1)
    # At the exact centre the formula is 0/0; the true value there is -min(r).
    centre = k1 < 1e-12
    est = np.where(centre, -r.min(), k0 * (k0 - 1.0) / np.where(centre, 1.0, k1))
    # The estimate under-shoots far from an elongated ellipsoid. The signed
    # distance to its bounding box is a lower bound of the true distance that
    # never exceeds it inside, so the max keeps sign and zero set and makes the
    # value >= the distance to the box (which grid culling relies on).
    return np.maximum(est, _box_sd(x, r))


def _box_sd(x: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Exact signed distance [...] to the centred box [-half, half] at local points ``x`` [..., D]."""
    q = np.abs(x) - half
    outside = np.sqrt(np.sum(np.maximum(q, 0.0) ** 2, axis=-1))
    return outside + np.minimum(q.max(axis=-1), 0.0)


def _ellipse_dist(x: np.ndarray, y: np.ndarray, a: float, b: float) -> np.ndarray:
    """The ellipsoid estimate of :func:`sd_ellipsoid` in 2D: signed distance to the ellipse (a, b)."""
    k0 = np.sqrt((x / a) ** 2 + (y / b) ** 2)
    k1 = np.sqrt((x / (a * a)) ** 2 + (y / (b * b)) ** 2)
    centre = k1 < 1e-12
    return np.where(centre, -min(a, b), k0 * (k0 - 1.0) / np.where(centre, 1.0, k1))


def sd_plate(
    p: np.ndarray,
    center: ArrayLike3,
    radii: tuple[float, float],
    rotation: np.ndarray,
    thickness: float,
) -> np.ndarray:
    """Signed distance [...] to a flat elliptical disc thickened by ``thickness`` (rounded rim).

    Unlike a flattened ellipsoid it keeps its thickness out to the rim, so a thin
    fin or wing never gets thinner than the grid can sample.

    Args:
        p: points [..., 3].
        center: [3].
        radii: in-plane semi-axes (> 0) along columns 0 and 1 of ``rotation``.
        rotation: [3, 3] orthonormal; column 2 is the disc normal.
        thickness: half thickness (> 0).
    """
    p = _points(p)
    c = _vec(center, "center")
    ra, rb = float(radii[0]), float(radii[1])
    if ra <= 0 or rb <= 0 or thickness <= 0:
        raise ValueError(f"plate radii and thickness must be > 0, got {radii}, {thickness}")
    x = (p - c) @ np.asarray(rotation, dtype=np.float64)
    # As in sd_ellipsoid, the box bound lifts the far-field under-shoot of the estimate.
    d2 = np.maximum(_ellipse_dist(x[..., 0], x[..., 1], ra, rb), _box_sd(x[..., :2], np.array([ra, rb])))
    d2 = np.maximum(d2, 0.0)
    return np.sqrt(d2 * d2 + x[..., 2] ** 2) - thickness


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / float(ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - a - t[..., None] * ab, axis=-1)


def sd_triangle(p: np.ndarray, a: ArrayLike3, b: ArrayLike3, c: ArrayLike3, thickness: float) -> np.ndarray:
    """Signed distance [...] to a triangle thickened by ``thickness`` (a rounded plate).

    The unsigned distance to the triangle is the distance to its plane when the
    point projects inside it, otherwise the distance to the nearest edge.
    """
    p = _points(p)
    a, b, c = _vec(a, "a"), _vec(b, "b"), _vec(c, "c")
    if thickness <= 0:
        raise ValueError(f"triangle thickness must be > 0, got {thickness}")
    n = np.cross(b - a, c - a)
    nn = float(np.linalg.norm(n))
    if nn < 1e-12 * max(1.0, float(np.abs(np.stack([a, b, c])).max()) ** 2):
        raise ValueError("degenerate triangle (collinear vertices)")
    n = n / nn
    # (e x (p - v)) . n == (n x e) . (p - v): one dot product per edge.
    inside = (
        ((p - a) @ np.cross(n, b - a) >= 0)
        & ((p - b) @ np.cross(n, c - b) >= 0)
        & ((p - c) @ np.cross(n, a - c) >= 0)
    )
    d_plane = np.abs((p - a) @ n)
    d_edge = np.minimum(np.minimum(_seg_dist(p, a, b), _seg_dist(p, b, c)), _seg_dist(p, c, a))
    return np.where(inside, d_plane, d_edge) - thickness


# ---------------------------------------------------------------- frames


def _rot(axis: Literal["x", "y", "z"], deg: float) -> np.ndarray:
    """Right-handed rotation matrix [3, 3] by ``deg`` degrees about a world axis."""
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def _unit(v: ArrayLike3) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _frame(long_dir: ArrayLike3, thin_hint: ArrayLike3) -> np.ndarray:
    """Rotation [3, 3] with columns (thin, wide, long): long = ``long_dir``, thin ~ ``thin_hint``."""
    w = _unit(long_dir)
    h = np.asarray(thin_hint, dtype=np.float64)
    u = h - (h @ w) * w
    if np.linalg.norm(u) < 1e-6:  # hint parallel to the long axis: any perpendicular will do
        u = np.cross(w, [1.0, 0.0, 0.0] if abs(w[0]) < 0.9 else [0.0, 1.0, 0.0])
    u = _unit(u)
    return np.stack([u, np.cross(w, u), w], axis=1)


# ---------------------------------------------------------------- blob


@dataclass(frozen=True)
class _Prim:
    part: str
    kind: Literal["cone", "ellipsoid", "triangle", "plate"]
    args: tuple
    blend: float

    def sdf(self, p: np.ndarray) -> np.ndarray:
        if self.kind == "cone":
            return sd_round_cone(p, *self.args)
        if self.kind == "ellipsoid":
            return sd_ellipsoid(p, *self.args)
        if self.kind == "plate":
            return sd_plate(p, *self.args)
        return sd_triangle(p, *self.args)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "cone":
            a, b, r1, r2 = self.args
            return np.minimum(a - r1, b - r2), np.maximum(a + r1, b + r2)
        if self.kind == "ellipsoid":
            # Box of the local bounding box (not the tighter ellipsoid box): outside
            # it the SDF is >= the distance to it, see sd_ellipsoid.
            c, r, rot = self.args
            half = np.abs(rot if rot is not None else np.eye(3)) @ r
            return c - half, c + half
        if self.kind == "plate":
            # The rounded plate lies in the local box [ra+t, rb+t, t].
            c, (ra, rb), rot, t = self.args
            half = np.abs(rot) @ np.array([ra + t, rb + t, t])
            return c - half, c + half
        a, b, c, t = self.args
        pts = np.stack([a, b, c])
        return pts.min(0) - t, pts.max(0) + t


class Blob:
    """Labelled SDF primitives blended into one implicit solid.

    Each primitive joins the field built so far with ``smin(field, d, blend)``,
    so ``blend`` is how wide its fillet with everything added before it is.

    Args:
        part_names: the category's part vocabulary; every primitive names one.
    """

    def __init__(self, part_names: Sequence[str]) -> None:
        self.part_names = list(part_names)
        self.prims: list[_Prim] = []

    def _add(self, prim: _Prim) -> None:
        if prim.part not in self.part_names:
            raise KeyError(f"{prim.part!r} is not one of {self.part_names}")
        if not prim.blend > 0:
            raise ValueError(f"blend must be > 0, got {prim.blend}")
        self.prims.append(prim)

    def cone(self, part: str, a: ArrayLike3, b: ArrayLike3, r1: float, r2: float, *, blend: float) -> None:
        """A round cone (capsule when ``r1 == r2``) from ``a`` to ``b``."""
        if r1 < 0 or r2 < 0:
            raise ValueError(f"radii must be >= 0, got {r1}, {r2}")
        self._add(_Prim(part, "cone", (_vec(a, "a"), _vec(b, "b"), float(r1), float(r2)), float(blend)))

    def chain(
        self,
        part: str,
        points: Sequence[ArrayLike3],
        radii: Sequence[float],
        *,
        blend: float,
        joint_blend: float = 0.01,
    ) -> None:
        """Round cones through ``points`` [K, 3] with ``radii`` [K]; only the first uses ``blend``."""
        if len(points) != len(radii) or len(points) < 2:
            raise ValueError("chain needs >= 2 points and one radius per point")
        for i in range(len(points) - 1):
            self.cone(part, points[i], points[i + 1], radii[i], radii[i + 1], blend=blend if i == 0 else joint_blend)

    def ellipsoid(
        self, part: str, center: ArrayLike3, radii: ArrayLike3, *, rotation: np.ndarray | None = None, blend: float
    ) -> None:
        r = _vec(radii, "radii")
        if np.any(r <= 0):
            raise ValueError(f"ellipsoid radii must be > 0, got {radii}")
        rot = None if rotation is None else np.asarray(rotation, dtype=np.float64)
        self._add(_Prim(part, "ellipsoid", (_vec(center, "center"), r, rot), float(blend)))

    def ellipsoid_along(
        self,
        part: str,
        p0: ArrayLike3,
        p1: ArrayLike3,
        *,
        width: float,
        thickness: float,
        thin_hint: ArrayLike3,
        blend: float,
    ) -> None:
        """An ellipsoid spanning ``p0``-``p1``; semi-axes ``thickness`` (towards ``thin_hint``) and ``width``."""
        p0, p1 = _vec(p0, "p0"), _vec(p1, "p1")
        rot = _frame(p1 - p0, thin_hint)
        half = float(np.linalg.norm(p1 - p0)) / 2
        self.ellipsoid(part, (p0 + p1) / 2, (thickness, width, half), rotation=rot, blend=blend)

    def plate_along(
        self,
        part: str,
        p0: ArrayLike3,
        p1: ArrayLike3,
        *,
        width: float,
        thickness: float,
        normal_hint: ArrayLike3,
        blend: float,
    ) -> None:
        """An elliptical plate spanning ``p0``-``p1``, semi-width ``width``, normal close to ``normal_hint``."""
        p0, p1 = _vec(p0, "p0"), _vec(p1, "p1")
        half = float(np.linalg.norm(p1 - p0)) / 2
        if half <= 0 or width <= 0 or thickness <= 0:
            raise ValueError("plate needs p0 != p1 and width, thickness > 0")
        thin, wide, long = _frame(p1 - p0, normal_hint).T
        rot = np.stack([long, wide, thin], axis=1)
        self._add(_Prim(part, "plate", ((p0 + p1) / 2, (half, float(width)), rot, float(thickness)), float(blend)))

    def triangle(
        self, part: str, a: ArrayLike3, b: ArrayLike3, c: ArrayLike3, *, thickness: float, blend: float
    ) -> None:
        """A plate: triangle abc thickened by ``thickness`` on each side (rounded rim)."""
        self._add(_Prim(part, "triangle", (_vec(a, "a"), _vec(b, "b"), _vec(c, "c"), float(thickness)), float(blend)))

    # ------------------------------------------------------------ evaluation

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds (lo [3], hi [3]) of the unblended primitives."""
        if not self.prims:
            raise ValueError("the blob has no primitives")
        b = [p.bounds() for p in self.prims]
        return np.min([x[0] for x in b], axis=0), np.max([x[1] for x in b], axis=0)

    def field(self, *, cells: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Sample the blended field on a padded isotropic grid.

        Args:
            cells: grid cells along the longest axis of the primitives' bounds.
        Returns:
            (values [nx, ny, nz], origin [3], voxel size h). The outermost layer
            is forced positive, so the zero set is closed.
        """
        if cells < 8:
            raise ValueError(f"cells must be >= 8, got {cells}")
        lo, hi = self.bounds()
        h = float((hi - lo).max()) / cells
        kmax = max(p.blend for p in self.prims)
        # smin can only lower the field by k/4, so the surface grows by at most
        # that much past the primitives; 3 more voxels keep it off the boundary.
        pad = 0.25 * kmax + 3 * h
        lo, hi = lo - pad, hi + pad
        n = np.ceil((hi - lo) / h).astype(np.int64) + 1
        axes = [lo[i] + h * np.arange(n[i]) for i in range(3)]
        outside = 4 * h + kmax  # any positive value works far from every surface
        values = np.full(tuple(n), outside, dtype=np.float64)
        for prim in self.prims:
            sl = self._block(prim, lo, h, n, margin=kmax + 2 * h)
            grid = np.stack(np.meshgrid(axes[0][sl[0]], axes[1][sl[1]], axes[2][sl[2]], indexing="ij"), axis=-1)
            values[sl] = smin(values[sl], prim.sdf(grid), prim.blend)
        values[[0, -1], :, :] = outside
        values[:, [0, -1], :] = outside
        values[:, :, [0, -1]] = outside
        return values, lo, h

    @staticmethod
    def _block(prim: _Prim, lo: np.ndarray, h: float, n: np.ndarray, *, margin: float) -> tuple[slice, slice, slice]:
        """The grid block within ``margin`` of ``prim``'s box, where it may change the field.

        Every primitive's SDF is >= the distance to its box (exact SDFs by
        definition, ellipsoids and plates through their box bound), so outside
        the block it is >= margin = k_max + 2h, and ``smin`` with it is plain
        ``min`` wherever the field is near the surface (< 2h): skipping it there
        leaves the surface as if every primitive were evaluated everywhere. (Far
        primitives can still blend with each other away from the surface; the
        tests bound the effect on the near-surface field at 1% of a voxel.)
        """
        m = margin
        plo, phi = prim.bounds()
        i0 = np.clip(np.floor((plo - m - lo) / h).astype(np.int64), 0, n)
        i1 = np.clip(np.ceil((phi + m - lo) / h).astype(np.int64) + 1, 0, n)
        return tuple(slice(int(i0[i]), int(i1[i])) for i in range(3))  # type: ignore[return-value]

    def label(self, points: np.ndarray, *, reach: float | None = None) -> np.ndarray:
        """Part index [N] (into ``part_names``) of the nearest unblended primitive at ``points`` [N, 3].

        Args:
            reach: if given, a primitive is only evaluated at points within
                ``reach`` of its bounding box (others count as +inf). Exact as
                long as every point has some primitive closer than ``reach``,
                which holds on the surface for reach > k_max / 4 + voxel; points
                left with no candidate fall back to all primitives.
        """
        points = _points(points)
        best = np.full(len(points), np.inf)
        label = np.zeros(len(points), dtype=np.int64)
        # Running minimum in primitive order; strict < keeps the first primitive on ties, like argmin.
        for prim in self.prims:
            part = self.part_names.index(prim.part)
            if reach is None:
                idx = np.arange(len(points))
            else:
                lo, hi = prim.bounds()
                idx = np.flatnonzero(np.all((points >= lo - reach) & (points <= hi + reach), axis=1))
            if len(idx):
                d = prim.sdf(points[idx])
                better = d < best[idx]
                best[idx[better]] = d[better]
                label[idx[better]] = part
        lost = np.flatnonzero(~np.isfinite(best))
        if len(lost):
            label[lost] = self.label(points[lost])
        return label

    def mesh(self, *, cells: int) -> tuple[trimesh.Trimesh, np.ndarray]:
        """Marching-cubes mesh of the zero set and its face labels.

        Returns:
            (mesh, face_parts [F] int64). The mesh is closed and outward-oriented.
        """
        values, origin, h = self.field(cells=cells)
        verts, faces, _, _ = marching_cubes(values, level=0.0, spacing=(h, h, h), allow_degenerate=False)
        verts = verts.astype(np.float64) + origin
        faces = faces.astype(np.int64)
        faces = _drop_fragments(faces, len(verts))
        used = np.zeros(len(verts), dtype=bool)
        used[faces.ravel()] = True
        remap = np.cumsum(used) - 1
        verts, faces = verts[used], remap[faces]
        tri = verts[faces]
        signed_volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
        if signed_volume < 0:  # make normals point outwards
            faces = faces[:, ::-1].copy()
        mesh = trimesh.Trimesh(vertices=verts, faces=faces, process=False)
        kmax = max(p.blend for p in self.prims)
        return mesh, self.label(tri.mean(axis=1), reach=0.5 * kmax + 3 * h)


def _drop_fragments(faces: np.ndarray, n_verts: int, *, min_share: float = 0.01) -> np.ndarray:
    """Remove closed components with fewer than ``min_share`` of the faces.

    Where a tapering tip gets thinner than a voxel, the grid can sample it as a
    detached speck; such specks are sampling noise, not parts, so they go.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    # Components of the vertex graph are the closed shells (faces share vertices).
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_verts, n_verts))
    _, comp = connected_components(g, directed=False)
    fcomp = comp[faces[:, 0]]
    counts = np.bincount(fcomp)
    keep = counts[fcomp] >= max(1, min_share * len(faces))
    return faces[keep]


# ---------------------------------------------------------------- shared bits


def _features_caption(
    b: ShapeBuilder,
    rng: np.random.Generator,
    *,
    main_part: str,
    size: str | None,
    features: list[str],
    max_features: int = 3,
) -> str:
    """Caption with the main part's colour and 1..``max_features`` of ``features``, drawn at random."""
    colour = colour_word(b, main_part)
    chosen: list[str] = []
    if features:
        k = int(rng.integers(1, min(max_features, len(features)) + 1))
        idx = np.sort(rng.permutation(len(features))[:k])
        chosen = [features[i] for i in idx]
    b.attributes.update(colour=colour, size=size, features=chosen, all_features=list(features))
    return caption(b.category, rng, colour=colour, size=size, features=chosen)


def _turn_words(yaw_deg: float) -> str | None:
    # Facing -Y with +Z up, the animal's left is +X, and +yaw turns the head to +X.
    if abs(yaw_deg) < 12:
        return None
    return f"its head turned to the {'left' if yaw_deg > 0 else 'right'}"


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _pick(rng: np.random.Generator, options: Sequence[str], p: Sequence[float] | None = None) -> str:
    return str(options[int(rng.choice(len(options), p=p))])


# ---------------------------------------------------------------- quadruped

QUADRUPED_PARTS = ["torso", "neck", "head", "ear", "horn", "leg", "tail"]


@register("quadruped", QUADRUPED_PARTS, organic=True)
def quadruped(rng: np.random.Generator, seed: int) -> Shape:
    """A four-legged animal: torso, neck, head (with snout), legs, tail; ears and horns optional."""
    b = ShapeBuilder("quadruped", QUADRUPED_PARTS, rng)
    blob = Blob(QUADRUPED_PARTS)
    length = _u(rng, 0.8, 1.3)
    half_w = _u(rng, 0.13, 0.22)
    half_h = _u(rng, 0.15, 0.25)
    ry = 0.3 * length
    blob.ellipsoid("torso", (0, -0.22 * length, 0), (half_w, ry, half_h), blend=0.1)
    blob.ellipsoid(
        "torso",
        (0, 0.22 * length, _u(rng, -0.03, 0.02)),
        (half_w * _u(rng, 0.85, 1.05), ry, half_h * _u(rng, 0.85, 1.0)),
        blend=0.12,
    )

    # Legs: hip -> knee -> foot, each swung a little about X (a walking stance).
    leg_len = _u(rng, 0.3, 0.85)
    leg_r = _u(rng, 0.045, 0.08)
    hip_z = -0.4 * half_h
    for sy in (-1, 1):
        for sx in (-1, 1):
            swing = math.radians(float(rng.normal(0.0, 9.0)))
            top = np.array([sx * 0.6 * half_w, sy * 0.32 * length, hip_z])
            down = np.array([0.0, math.sin(swing), -math.cos(swing)])
            knee = top + 0.5 * leg_len * down + np.array([0.0, -sy * _u(rng, 0.0, 0.04), 0.0])
            foot = top + leg_len * down
            blob.chain("leg", [top, knee, foot], [leg_r, leg_r * 0.8, leg_r * 0.65], blend=0.06, joint_blend=0.02)
            blob.ellipsoid(
                "leg", foot + [0, -0.35 * leg_r, -0.1 * leg_r], (0.8 * leg_r, 1.2 * leg_r, 0.65 * leg_r), blend=0.03
            )

    # Neck and head; the head group may turn (yaw) about the top of the neck.
    neck_len = _u(rng, 0.1, 0.55)
    grazing = rng.random() < 0.12
    neck_angle = math.radians(_u(rng, -35, -10) if grazing else _u(rng, 20, 75))
    neck_r = _u(rng, 0.06, 0.1)
    neck_base = np.array([0.0, -0.45 * length, 0.3 * half_h])
    neck_top = neck_base + neck_len * np.array([0.0, -math.cos(neck_angle), math.sin(neck_angle)])
    blob.cone("neck", neck_base, neck_top, neck_r * 1.3, neck_r, blend=0.08)

    yaw = _u(rng, -30, 30)
    turn = _rot("z", yaw)
    hx, hy, hz = _u(rng, 0.07, 0.12), _u(rng, 0.09, 0.15), _u(rng, 0.07, 0.12)

    def head_pt(v: ArrayLike3) -> np.ndarray:
        return neck_top + turn @ np.asarray(v, dtype=np.float64)

    hc_local = np.array([0.0, -0.45 * hy, 0.35 * hz])
    blob.ellipsoid("head", head_pt(hc_local), (hx, hy, hz), rotation=turn, blend=0.06)
    snout_len = _u(rng, 0.03, 0.2)
    snout_r = _u(rng, 0.04, 0.065)
    blob.cone(
        "head",
        head_pt(hc_local + [0, -0.3 * hy, -0.2 * hz]),
        head_pt(hc_local + [0, -hy - snout_len, -0.4 * hz]),
        0.75 * min(hx, hz),
        snout_r,
        blend=0.05,
    )

    ears = "none"  # or "pointed", "floppy"
    ear_len = 0.0
    if rng.random() < 0.8:
        ears = "floppy" if rng.random() < 0.3 else "pointed"
        ear_len = _u(rng, 0.07, 0.24)
        ear_w = _u(rng, 0.04, 0.07)
        for sx in (-1, 1):
            base = hc_local + [sx * 0.55 * hx, 0.15 * hy, 0.6 * hz]
            d = [sx * 0.45, 0.25, 0.9] if ears == "pointed" else [sx * 0.8, 0.2, -0.55]
            root = base - 0.2 * ear_len * _unit(d)  # start inside the head so the ear is well attached
            tip = base + ear_len * _unit(d)
            blob.plate_along(
                "ear", head_pt(root), head_pt(tip), width=ear_w, thickness=0.022, normal_hint=turn @ [0, 1, 0],
                blend=0.03,
            )
    horns = ears != "floppy" and rng.random() < 0.3
    horn_len = 0.0
    if horns:
        horn_len = _u(rng, 0.1, 0.3)
        horn_r = _u(rng, 0.03, 0.045)
        curl = _u(rng, 0.0, 60.0)
        for sx in (-1, 1):
            base = hc_local + [sx * 0.35 * hx, -0.1 * hy, 0.75 * hz]
            pts, d = [base], _unit([sx * 0.35, 0.35, 1.0])
            for _ in range(3):
                pts.append(pts[-1] + (horn_len / 3) * d)
                d = _unit(_rot("x", curl / 2) @ d)  # curves backwards (+Y) as it climbs
            radii = [horn_r, 0.85 * horn_r, 0.7 * horn_r, 0.55 * horn_r]
            blob.chain("horn", [head_pt(p) for p in pts], radii, blend=0.03)

    # Tail, drawn in the YZ plane from the rump.
    tail = _pick(rng, ["long", "short", "bushy", "curled"])
    base = np.array([0.0, 0.47 * length, 0.25 * half_h])
    if tail == "long":
        ang, seg = math.radians(_u(rng, -10, 35)), _u(rng, 0.35, 0.7) / 4
        droop = math.radians(_u(rng, -22, -6))
        pts = [base]
        for _ in range(4):
            pts.append(pts[-1] + seg * np.array([0.0, math.cos(ang), math.sin(ang)]))
            ang += droop
        r0 = _u(rng, 0.04, 0.055)
        blob.chain("tail", pts, [r0, 0.9 * r0, 0.8 * r0, 0.72 * r0, 0.65 * r0], blend=0.05)
    elif tail == "short":
        ang = math.radians(_u(rng, 15, 55))
        end = base + _u(rng, 0.06, 0.14) * np.array([0.0, math.cos(ang), math.sin(ang)])
        blob.cone("tail", base, end, _u(rng, 0.045, 0.06), 0.035, blend=0.04)
    elif tail == "bushy":
        ang = math.radians(_u(rng, -5, 50))
        d = np.array([0.0, math.cos(ang), math.sin(ang)])
        tl = _u(rng, 0.3, 0.55)
        blob.cone("tail", base, base + 0.15 * tl * d, 0.05, 0.05, blend=0.05)
        blob.ellipsoid_along(
            "tail", base + 0.05 * tl * d, base + tl * d, width=_u(rng, 0.07, 0.12), thickness=_u(rng, 0.07, 0.12),
            thin_hint=[1, 0, 0], blend=0.04,
        )
    else:  # curled: an arc that rises and turns forward over the back
        rc = _u(rng, 0.07, 0.13)
        sweep = _u(rng, 200, 300)
        start = math.radians(_u(rng, 10, 40))
        ctr = base + rc * np.array([0.0, -math.sin(start), math.cos(start)])
        pts = []
        for t in np.linspace(0.0, math.radians(sweep), 7):
            a = start + t  # position angle around the curl centre, measured from -Z towards +Y
            pts.append(ctr + rc * np.array([0.0, math.sin(a), -math.cos(a)]))
        r0 = _u(rng, 0.035, 0.05)
        blob.chain("tail", pts, list(np.linspace(r0, 0.7 * r0, len(pts))), blend=0.04)

    mesh, fp = blob.mesh(cells=72)
    b.add_labelled(mesh, fp)

    b.attributes.update(
        tail=tail, ears=ears, ear_length=ear_len, horns=horns, horn_length=horn_len, neck_length=neck_len,
        leg_length=leg_len, torso_length=length, head_yaw_deg=yaw, grazing=grazing,
    )
    feats = [{"long": "a long tail", "short": "a short tail", "bushy": "a bushy tail", "curled": "a curled tail"}[tail]]
    if ears == "floppy":
        feats.append("floppy ears")
    elif ears == "pointed":
        feats.append("large pointed ears" if ear_len > 0.17 else "small pointed ears")
    if horns:
        feats.append("long horns" if horn_len > 0.22 else "horns")
    if neck_len > 0.42:
        feats.append("a long neck")
    if grazing:
        feats.append("its head lowered")
    if leg_len > 0.7:
        feats.append("long legs")
    elif leg_len < 0.4:
        feats.append("short legs")
    if (w := _turn_words(yaw)) is not None:
        feats.append(w)
    if leg_len > 0.7:
        size = "tall"
    elif length > 1.15 and leg_len < 0.55:
        size = "long"
    elif length < 0.95 and leg_len < 0.5:
        size = _pick(rng, ["small", "compact"])
    elif half_w < 0.15:
        size = "slender"
    else:
        size = None
    return b.build(seed=seed, caption=_features_caption(b, rng, main_part="torso", size=size, features=feats))


# ---------------------------------------------------------------- humanoid

HUMANOID_PARTS = ["head", "neck", "torso", "arm", "hand", "leg", "foot"]
ArmPose = Literal["down", "out", "up", "forward"]
_ARM_WORDS = {
    "down": "arms at its sides",
    "out": "arms stretched out",
    "up": "arms raised",
    "forward": "arms reaching forward",
}


def _arm_angles(rng: np.random.Generator, pose: ArmPose) -> tuple[float, float, float]:
    """(abduction from hanging, forward flexion, elbow bend) in degrees for one arm."""
    if pose == "down":
        return _u(rng, 14, 26), _u(rng, -10, 15), _u(rng, 0, 35)
    if pose == "out":
        return _u(rng, 70, 100), _u(rng, -10, 15), _u(rng, 0, 25)
    if pose == "up":
        return _u(rng, 140, 168), _u(rng, -10, 10), _u(rng, 0, 25)
    return _u(rng, 8, 16), _u(rng, 70, 95), _u(rng, 0, 20)


@register("humanoid", HUMANOID_PARTS, organic=True)
def humanoid(rng: np.random.Generator, seed: int) -> Shape:
    """A standing person facing -Y: head (with a nose), neck, torso, arms, hands, legs, feet."""
    b = ShapeBuilder("humanoid", HUMANOID_PARTS, rng)
    blob = Blob(HUMANOID_PARTS)
    leg_len = _u(rng, 0.65, 1.0)
    torso_h = _u(rng, 0.45, 0.65)
    sw = _u(rng, 0.15, 0.25)  # half shoulder width
    depth = _u(rng, 0.08, 0.13)  # half chest depth
    head_r = _u(rng, 0.09, 0.15)
    limb_r = _u(rng, 0.042, 0.065)
    hip_x = _u(rng, 0.075, 0.11)
    splay = _u(rng, 0.0, 12.0)

    # Legs and feet: ankle at z = 0.08, hip at ankle + leg length.
    ankle_z = 0.08
    hip_z = ankle_z + leg_len
    for sx in (-1, 1):
        a = math.radians(splay)
        hip = np.array([sx * hip_x, 0.0, hip_z])
        ankle = np.array([sx * (hip_x + leg_len * math.sin(a)), 0.0, hip_z - leg_len * math.cos(a)])
        knee = (hip + ankle) / 2 + [0.0, -_u(rng, 0.0, 0.05), 0.0]
        radii = [limb_r * 1.45, limb_r * 1.05, limb_r * 0.85]
        blob.chain("leg", [hip, knee, ankle], radii, blend=0.05, joint_blend=0.02)
        foot_len = _u(rng, 0.09, 0.13)
        blob.ellipsoid(
            "foot", ankle + [0.0, -0.5 * foot_len, -0.045], (0.05, foot_len, 0.045), blend=0.04
        )

    # Pelvis and chest, blended into one trunk, plus a shoulder girdle.
    blob.ellipsoid("torso", (0.0, 0.0, hip_z + 0.06), (hip_x + 0.08, depth, 0.13), blend=0.06)
    chest_c = hip_z + 0.5 * torso_h
    blob.ellipsoid("torso", (0.0, 0.0, chest_c), (0.85 * sw, depth, 0.5 * torso_h), blend=0.12)
    shoulder_z = hip_z + 0.86 * torso_h
    blob.cone("torso", (-sw, 0.0, shoulder_z), (sw, 0.0, shoulder_z), 0.07, 0.07, blend=0.08)

    # The shoulder girdle (radius 0.07) hides the neck's base, so the visible
    # neck runs from shoulder_z + 0.07 to the bottom of the head.
    neck_len = _u(rng, 0.035, 0.1)
    neck_top = np.array([0.0, 0.0, shoulder_z + 0.07 + neck_len])
    blob.cone("neck", (0.0, 0.0, shoulder_z - 0.04), neck_top, 0.055, 0.05, blend=0.04)
    yaw = _u(rng, -35, 35) if rng.random() < 0.5 else 0.0
    turn = _rot("z", yaw)
    head_c = neck_top + [0.0, 0.0, 1.1 * head_r - 0.02]
    blob.ellipsoid("head", head_c, (0.85 * head_r, 0.95 * head_r, 1.1 * head_r), rotation=turn, blend=0.05)
    nose = head_c + turn @ np.array([0.0, -0.92 * head_r, -0.1 * head_r])
    blob.ellipsoid("head", nose, (0.035, 0.04, 0.045), rotation=turn, blend=0.03)

    # Arms: start hanging, abduct about +-Y, flex forward about X, bend the elbow forward.
    arm_len = _u(rng, 0.55, 0.8)
    poses: list[ArmPose] = ["down", "out", "up", "forward"]
    pose_l = poses[int(rng.choice(4, p=[0.4, 0.2, 0.2, 0.2]))]
    pose_r = pose_l if rng.random() < 0.7 else poses[int(rng.integers(4))]
    arm_pose = {}
    for sx, pose in ((1, pose_l), (-1, pose_r)):  # +X is the figure's left
        abd, flex, bend = _arm_angles(rng, pose)
        d = _rot("y", -sx * abd) @ np.array([0.0, 0.0, -1.0])  # +sx abducts towards +sx X
        d = _rot("x", -flex) @ d
        fwd = np.array([0.0, -1.0, 0.0]) - (d @ [0.0, -1.0, 0.0]) * d
        fwd = _unit(fwd) if np.linalg.norm(fwd) > 1e-3 else _unit(np.array([0.0, 0.0, 1.0]) - d[2] * d)
        rb = math.radians(bend)
        d2 = math.cos(rb) * d + math.sin(rb) * fwd
        shoulder = np.array([sx * sw, 0.0, shoulder_z])
        elbow = shoulder + 0.5 * arm_len * d
        wrist = elbow + 0.5 * arm_len * d2
        radii = [limb_r * 1.05, limb_r * 0.85, limb_r * 0.7]
        blob.chain("arm", [shoulder, elbow, wrist], radii, blend=0.04, joint_blend=0.02)
        hand_len = _u(rng, 0.08, 0.11)
        blob.ellipsoid_along(
            "hand", wrist - 0.01 * d2, wrist + hand_len * d2, width=0.045, thickness=0.032,
            thin_hint=np.cross(d2, [0.0, 0.0, 1.0]) if abs(d2[2]) < 0.9 else [1.0, 0.0, 0.0], blend=0.02,
        )
        arm_pose["left" if sx > 0 else "right"] = pose

    mesh, fp = blob.mesh(cells=84)
    b.add_labelled(mesh, fp)

    b.attributes.update(
        arm_pose=arm_pose, leg_length=leg_len, torso_height=torso_h, shoulder_half_width=sw,
        head_radius=head_r, head_yaw_deg=yaw, stance_splay_deg=splay,
    )
    feats = []
    if pose_l == pose_r:
        feats.append(_ARM_WORDS[pose_l])
    else:
        feats.append(f"its left arm {_ONE_ARM[pose_l]} and its right arm {_ONE_ARM[pose_r]}")
    if head_r > 0.135:
        feats.append("a big head")
    if leg_len > 0.9:
        feats.append("long legs")
    elif leg_len < 0.72:
        feats.append("short legs")
    if splay > 8:
        feats.append("its legs apart")
    if (w := _turn_words(yaw)) is not None:
        feats.append(w)
    height = leg_len + torso_h
    if sw > 0.22 and limb_r > 0.055:
        size = "stocky"
    elif height > 1.5 and sw < 0.19:
        size = "tall"
    elif height < 1.2:
        size = "short"
    elif limb_r < 0.048:
        size = "slender"
    else:
        size = None
    return b.build(seed=seed, caption=_features_caption(b, rng, main_part="torso", size=size, features=feats))


_ONE_ARM = {"down": "down", "out": "held out", "up": "raised", "forward": "reaching forward"}


# ---------------------------------------------------------------- bird

BIRD_PARTS = ["body", "neck", "head", "beak", "wing", "tail", "leg"]


@register("bird", BIRD_PARTS, organic=True)
def bird(rng: np.random.Generator, seed: int) -> Shape:
    """A bird facing -Y, perched (wings folded, legs down) or flying (wings spread, legs tucked)."""
    b = ShapeBuilder("bird", BIRD_PARTS, rng)
    blob = Blob(BIRD_PARTS)
    flying = bool(rng.random() < 0.4)
    bx, by, bz = _u(rng, 0.11, 0.18), _u(rng, 0.2, 0.32), _u(rng, 0.11, 0.18)
    pitch = _u(rng, -5, 5) if flying else _u(rng, 5, 35)  # chest up when perched
    tilt = _rot("x", -pitch)  # +pitch lifts the front (-Y) end

    def body_pt(v: ArrayLike3) -> np.ndarray:
        return tilt @ np.asarray(v, dtype=np.float64)

    blob.ellipsoid("body", (0.0, 0.0, 0.0), (bx, by, bz), rotation=tilt, blend=0.05)

    # Neck from the upper front of the body, head at its end.
    neck_len = _u(rng, 0.1, 0.4)
    neck_ang = math.radians(_u(rng, 10, 35) if flying else _u(rng, 45, 85))
    neck_r = _u(rng, 0.045, 0.07)
    neck_base = body_pt([0.0, -0.75 * by, 0.35 * bz])
    neck_top = neck_base + neck_len * np.array([0.0, -math.cos(neck_ang), math.sin(neck_ang)])
    blob.cone("neck", neck_base, neck_top, neck_r * 1.25, neck_r, blend=0.07)
    head_r = _u(rng, 0.065, 0.1)
    yaw = _u(rng, -35, 35) if rng.random() < 0.5 else 0.0
    turn = _rot("z", yaw)
    head_c = neck_top + turn @ np.array([0.0, -0.3 * head_r, 0.55 * head_r])
    blob.ellipsoid("head", head_c, (0.9 * head_r, 1.1 * head_r, head_r), rotation=turn, blend=0.05)

    beak = _pick(rng, ["short", "long", "hooked"])
    beak_base = head_c + turn @ np.array([0.0, -0.8 * head_r, -0.1 * head_r])
    base_r = _u(rng, 0.028, 0.045)
    if beak == "short":
        beak_len = _u(rng, 0.05, 0.1)
        blob.cone("beak", beak_base, beak_base + turn @ [0.0, -beak_len, -0.01], base_r, 0.018, blend=0.02)
    elif beak == "long":
        beak_len = _u(rng, 0.14, 0.3)
        blob.cone("beak", beak_base, beak_base + turn @ [0.0, -beak_len, -0.3 * beak_len * rng.random()],
                  base_r, 0.018, blend=0.02)
    else:
        beak_len = _u(rng, 0.07, 0.12)
        mid = beak_base + turn @ [0.0, -0.6 * beak_len, 0.01]
        tip = mid + turn @ [0.0, -0.4 * beak_len, -0.5 * beak_len]
        blob.chain("beak", [beak_base, mid, tip], [base_r, 0.7 * base_r, 0.018], blend=0.02)

    # Wings.
    span = 0.0
    wing_t = 0.022
    if flying:
        span = _u(rng, 0.45, 0.95)  # half span, from the body centre
        sweep = _u(rng, -0.05, 0.3)
        lift = _u(rng, -0.1, 0.25)  # dihedral: tip height over the shoulder
        chord = _u(rng, 0.5, 0.9) * by
        for sx in (-1, 1):
            fa = body_pt([sx * 0.4 * bx, -0.35 * by, 0.4 * bz])  # shoulder, leading edge
            fb = fa + [0.0, chord, 0.0]  # shoulder, trailing edge
            elbow = fa + [sx * 0.5 * span, 0.15 * sweep, 0.5 * lift]
            trail = fb + [sx * 0.45 * span, 0.2 * sweep, 0.5 * lift]
            tip = fa + [sx * span, sweep + 0.4 * chord, lift]
            blob.triangle("wing", fa, fb, elbow, thickness=wing_t, blend=0.04)
            blob.triangle("wing", fb, trail, elbow, thickness=wing_t, blend=0.01)
            blob.triangle("wing", elbow, trail, tip, thickness=wing_t, blend=0.01)
    else:
        wl = _u(rng, 1.0, 1.5) * by
        for sx in (-1, 1):
            # Flat plate lying on the flank (just outside the widest point), tip over the tail.
            p0 = body_pt([sx * 1.15 * bx, -0.45 * by, 0.25 * bz])
            p1 = body_pt([sx * 0.75 * bx, -0.45 * by + wl, 0.15 * bz])
            blob.plate_along("wing", p0, p1, width=0.5 * bz, thickness=0.024, normal_hint=[1, 0, 0], blend=0.03)

    # Tail from the rear of the body.
    tail = _pick(rng, ["fan", "long", "short"])
    t0 = body_pt([0.0, 0.75 * by, 0.1 * bz])
    tail_dir = tilt @ _unit([0.0, 1.0, _u(rng, -0.15, 0.35)])
    if tail == "fan":
        tl, tw = _u(rng, 0.15, 0.3), _u(rng, 0.08, 0.16)
        end = t0 + tl * tail_dir
        blob.triangle("tail", t0, end + [tw, 0.0, 0.0], end - [tw, 0.0, 0.0], thickness=0.02, blend=0.04)
    elif tail == "long":
        tl = _u(rng, 0.35, 0.6)
        for sx in (-1, 1):
            end = t0 + tl * tail_dir + [sx * 0.04, 0.0, 0.0]
            blob.cone("tail", t0, end, 0.035, 0.022, blend=0.04)
    else:
        tl = _u(rng, 0.08, 0.14)
        blob.ellipsoid_along("tail", t0 - 0.03 * tail_dir, t0 + tl * tail_dir, width=0.06, thickness=0.03,
                             thin_hint=[0, 0, 1], blend=0.04)

    # Legs: down to the perch with three forward toes and one back, or tucked behind in flight.
    leg_len = 0.0
    leg_r = _u(rng, 0.022, 0.03)
    for sx in (-1, 1):
        hip = body_pt([sx * 0.4 * bx, 0.1 * by, -0.55 * bz])
        if flying:
            blob.cone("leg", hip, hip + [0.0, 0.8 * by, -0.05], leg_r * 1.2, leg_r, blend=0.03)
            continue
        leg_len = _u(rng, 0.1, 0.45) if sx < 0 else leg_len
        ankle = np.array([sx * 0.45 * bx, hip[1] - 0.03, hip[2] - leg_len])
        knee = (hip + ankle) / 2 + [0.0, 0.04, 0.0]  # birds' "knees" (ankles) point back
        blob.chain("leg", [hip, knee, ankle], [leg_r * 1.6, leg_r * 1.1, leg_r], blend=0.04, joint_blend=0.015)
        toe = _u(rng, 0.06, 0.1)
        for ang in (-25.0, 0.0, 25.0, 180.0):
            d = _rot("z", ang) @ np.array([0.0, -1.0, 0.0])
            blob.cone("leg", ankle, ankle + toe * (0.6 if ang == 180 else 1.0) * d - [0.0, 0.0, 0.01],
                      leg_r, 0.8 * leg_r, blend=0.015)

    # Spread wings make the box wide, so flying birds get more cells to keep the body detailed.
    mesh, fp = blob.mesh(cells=96 if flying else 80)
    b.add_labelled(mesh, fp)

    b.attributes.update(
        pose="flying" if flying else "perched", wing_half_span=span, beak=beak, beak_length=beak_len,
        tail=tail, neck_length=neck_len, leg_length=leg_len, head_yaw_deg=yaw,
    )
    feats = ["spread wings" if flying else "folded wings"]
    if flying and span > 0.75:
        feats[0] = "wide spread wings"
    feats.append({"short": "a short beak", "long": "a long beak", "hooked": "a hooked beak"}[beak])
    feats.append({"fan": "a fanned tail", "long": "long tail feathers", "short": "a short tail"}[tail])
    if neck_len > 0.3:
        feats.append("a long neck")
    if not flying and leg_len > 0.33:
        feats.append("long legs")
    if (w := _turn_words(yaw)) is not None:
        feats.append(w)
    size = "slender" if bx < 0.13 and bz < 0.13 else ("plump" if bx > 0.16 and bz > 0.16 else None)
    if not flying and leg_len > 0.33 and neck_len > 0.25:
        size = "tall"
    cap = _features_caption(b, rng, main_part="body", size=size, features=feats)
    if flying and "flying" not in cap:
        cap = cap.replace(" bird", " flying bird", 1)
    return b.build(seed=seed, caption=cap)


# ---------------------------------------------------------------- fish

FISH_PARTS = ["body", "head", "tail_fin", "dorsal_fin", "side_fin", "anal_fin"]


@register("fish", FISH_PARTS, organic=True)
def fish(rng: np.random.Generator, seed: int) -> Shape:
    """A fish swimming towards -Y, back up: body, head, tail fin, dorsal fin, side fins; anal fin optional."""
    b = ShapeBuilder("fish", FISH_PARTS, rng)
    blob = Blob(FISH_PARTS)
    build = _pick(
        rng, ["slender", "standard", "deep", "round"], p=[0.25, 0.35, 0.25, 0.15]
    )
    length = _u(rng, 0.6, 1.0)  # head + trunk, without the tail
    ry = 0.5 * length
    rz = length * {"slender": _u(rng, 0.09, 0.13), "standard": _u(rng, 0.14, 0.2),
                   "deep": _u(rng, 0.25, 0.38), "round": _u(rng, 0.22, 0.3)}[build]
    rx = {"round": _u(rng, 0.85, 1.0) * rz, "deep": _u(rng, 0.3, 0.45) * rz}.get(build, _u(rng, 0.45, 0.75) * rz)
    rx = max(rx, 0.05)
    cy = 0.08 * length
    blob.ellipsoid("body", (0.0, cy, 0.0), (rx, ry, rz), blend=0.05)

    def top(y: float) -> float:
        """Height of the body's back above the axis at ``y``."""
        return rz * math.sqrt(max(0.0, 1.0 - ((y - cy) / ry) ** 2))

    # Head: a shorter ellipsoid at the front plus a snout, all turned slightly.
    head_len = _u(rng, 0.15, 0.25) * length
    head_c = np.array([0.0, cy - ry + 0.8 * head_len, -0.05 * rz])
    blob.ellipsoid("head", head_c, (0.92 * rx, head_len, _u(rng, 0.7, 0.9) * rz), blend=0.08)
    snout = _u(rng, 0.02, 0.12) * length
    blob.cone("head", head_c + [0.0, -0.5 * head_len, 0.0], head_c + [0.0, -head_len - snout, -0.1 * rz],
              0.55 * min(rx, rz), max(0.025, 0.3 * min(rx, rz)), blend=0.04)

    # Caudal peduncle and tail fin, bent sideways as one (a swimming pose).
    bend = _u(rng, -25, 25)
    turn = _rot("z", bend)
    ped0 = np.array([0.0, cy + 0.55 * ry, 0.0])
    ped_len = _u(rng, 0.12, 0.22) * length
    ped_r = max(0.03, 0.3 * min(rx, rz))

    def tail_pt(v: ArrayLike3) -> np.ndarray:
        return ped0 + turn @ np.asarray(v, dtype=np.float64)

    t0 = [0.0, 0.55 * ry + ped_len, 0.0]
    blob.cone("body", tail_pt([0, 0, 0]), tail_pt(t0), 0.6 * min(rx, rz), ped_r, blend=0.06)
    fin_t = 0.018
    tail = _pick(rng, ["forked", "rounded", "square", "lunate"])
    tl = _u(rng, 0.18, 0.32) * length
    th = _u(rng, 0.6, 1.1) * tl
    base = np.asarray(t0) - [0.0, 0.3 * ped_r, 0.0]
    if tail in ("forked", "lunate"):
        notch = (0.35 if tail == "forked" else 0.15) * tl
        for sz in (-1, 1):
            tip = base + [0.0, tl * (1.15 if tail == "lunate" else 1.0), sz * th]
            inner = base + [0.0, notch + 0.15 * tl, sz * 0.05 * th]
            root = base + [0.0, 0.0, sz * 0.45 * ped_r]
            blob.triangle("tail_fin", tail_pt(root), tail_pt(tip), tail_pt(inner), thickness=fin_t, blend=0.03)
    elif tail == "rounded":
        blob.plate_along("tail_fin", tail_pt(base - [0.0, 0.05 * tl, 0.0]), tail_pt(base + [0.0, 1.1 * tl, 0.0]),
                         width=0.75 * th, thickness=fin_t, normal_hint=turn @ [1.0, 0.0, 0.0], blend=0.03)
    else:
        blob.triangle("tail_fin", tail_pt(base), tail_pt(base + [0.0, tl, th]), tail_pt(base + [0.0, tl, -th]),
                      thickness=fin_t, blend=0.03)

    # Dorsal fin: a plate standing on the back.
    dorsal = _pick(rng, ["tall", "long", "sail", "small"])
    y0, y1, fh = {
        "tall": (-0.15, 0.2, _u(rng, 0.7, 1.2)),
        "long": (-0.35, 0.45, _u(rng, 0.3, 0.5)),
        "sail": (-0.3, 0.35, _u(rng, 0.8, 1.3)),
        "small": (0.0, 0.25, _u(rng, 0.3, 0.5)),
    }[dorsal]
    fh *= max(rz, 0.08) * 0.8
    ya, yb = cy + y0 * ry, cy + y1 * ry
    apex_y = ya + _u(rng, 0.35, 0.9) * (yb - ya) + (0.1 * ry if dorsal != "sail" else 0.0)
    blob.triangle(
        "dorsal_fin", (0.0, ya, 0.75 * top(ya)), (0.0, yb, 0.75 * top(yb)),
        (0.0, apex_y, top(apex_y) + fh), thickness=fin_t, blend=0.04,
    )
    anal = build != "round" and rng.random() < 0.5
    if anal:  # the unpaired fin under the rear
        yv = cy + 0.35 * ry
        blob.triangle("anal_fin", (0.0, yv - 0.15 * ry, -0.8 * top(yv - 0.15 * ry)),
                      (0.0, yv + 0.2 * ry, -0.8 * top(yv + 0.2 * ry)),
                      (0.0, yv + 0.2 * ry, -top(yv) - 0.4 * fh), thickness=fin_t, blend=0.03)

    # Side (pectoral) fins behind the head, angled back and down.
    side_len = _u(rng, 0.12, 0.26) * length
    droop = _u(rng, 10, 45)
    spread = _u(rng, 25, 70)
    for sx in (-1, 1):
        root = np.array([sx * 0.8 * rx, head_c[1] + 0.9 * head_len, -0.3 * rz])
        # Swing from pointing back (+Y) towards +-X by `spread`, then tilt down by `droop`.
        d = _rot("x", -droop) @ (_rot("z", -sx * spread) @ np.array([0.0, 1.0, 0.0]))
        blob.plate_along("side_fin", root - 0.1 * side_len * d, root + side_len * d, width=0.4 * side_len,
                         thickness=fin_t, normal_hint=[0.0, 0.0, 1.0], blend=0.03)

    mesh, fp = blob.mesh(cells=88)
    b.add_labelled(mesh, fp)

    b.attributes.update(
        build=build, tail_fin=tail, dorsal_fin=dorsal, anal_fin=anal, body_length=length, body_height=2 * rz,
        body_width=2 * rx, tail_bend_deg=bend, side_fin_length=side_len,
    )
    feats = [
        {"forked": "a forked tail", "rounded": "a rounded tail fin", "square": "a broad square tail",
         "lunate": "a crescent-shaped tail"}[tail],
        {"tall": "a tall dorsal fin", "long": "a long low dorsal fin", "sail": "a sail-like dorsal fin",
         "small": "a small dorsal fin"}[dorsal],
    ]
    if side_len > 0.21 * length:
        feats.append("large side fins")
    if abs(bend) > 15:
        feats.append("its tail swung to one side")
    size = {"slender": "slender", "standard": None, "deep": "deep-bodied", "round": "round"}[build]
    return b.build(seed=seed, caption=_features_caption(b, rng, main_part="body", size=size, features=feats))


# ---------------------------------------------------------------- insect

INSECT_PARTS = ["head", "thorax", "abdomen", "leg", "antenna", "wing"]


@register("insect", INSECT_PARTS, organic=True)
def insect(rng: np.random.Generator, seed: int) -> Shape:
    """A six-legged insect facing -Y: head, thorax, abdomen, legs, antennae; wings optional."""
    b = ShapeBuilder("insect", INSECT_PARTS, rng)
    blob = Blob(INSECT_PARTS)
    tx, ty, tz = _u(rng, 0.07, 0.12), _u(rng, 0.1, 0.16), _u(rng, 0.07, 0.11)
    body_z = _u(rng, 0.25, 0.4)  # standing height of the thorax centre above the feet
    blob.ellipsoid("thorax", (0.0, 0.0, body_z), (tx, ty, tz), blend=0.03)

    waist = "pinched" if rng.random() < 0.5 else "broad"
    ay = _u(rng, 0.18, 0.35)
    ax = _u(rng, 0.8, 1.6) * tx
    az = _u(rng, 0.8, 1.4) * tz
    gap = 0.06 if waist == "pinched" else -0.2 * ay
    a_tilt = _u(rng, -5, 20)  # abdomen droops behind
    a_y = ty + gap + ay
    a_c = np.array([0.0, a_y, body_z - 0.5 * a_y * math.sin(math.radians(a_tilt))])
    if waist == "pinched":
        # The thin waist (petiole) counts as abdomen.
        blob.cone("abdomen", (0.0, 0.7 * ty, body_z), (0.0, a_y - 0.7 * ay, a_c[2]), 0.035, 0.035, blend=0.03)
    blob.ellipsoid("abdomen", a_c, (ax, ay, az), rotation=_rot("x", -a_tilt), blend=0.04)

    head_r = _u(rng, 0.06, 0.1)
    head_c = np.array([0.0, -ty - 0.7 * head_r, body_z + 0.2 * tz])
    blob.ellipsoid("head", head_c, (1.05 * head_r, 0.9 * head_r, head_r), blend=0.04)

    # Legs: three pairs from the underside of the thorax; upper segment up and out, lower down to the ground.
    leg_len = _u(rng, 0.35, 0.65)
    leg_r = _u(rng, 0.024, 0.034)
    for i, yrel in enumerate((-0.6, 0.0, 0.6)):
        for sx in (-1, 1):
            hip = np.array([sx * 0.6 * tx, yrel * ty, body_z - 0.5 * tz])
            fan = (-35.0, 0.0, 35.0)[i] + _u(rng, -10, 10)  # front legs reach forward, hind legs back
            out = _rot("z", sx * fan) @ np.array([sx * 1.0, 0.0, 0.0])
            knee = hip + 0.45 * leg_len * _unit(out + [0.0, 0.0, _u(rng, 0.3, 0.8)])
            foot = knee + out * 0.45 * leg_len
            foot[2] = 0.0
            blob.chain("leg", [hip, knee, foot], [leg_r * 1.3, leg_r, 0.8 * leg_r], blend=0.02, joint_blend=0.012)

    # Antennae: forward and up from the top of the head, straight or elbowed.
    ant_len = _u(rng, 0.12, 0.4)
    elbowed = bool(rng.random() < 0.4)
    spread = _u(rng, 15, 40)
    rise = _u(rng, 20, 60)
    for sx in (-1, 1):
        root = head_c + [sx * 0.4 * head_r, -0.5 * head_r, 0.7 * head_r]
        d = _rot("z", sx * spread) @ (_rot("x", rise) @ np.array([0.0, -1.0, 0.0]))  # splay outwards
        pts = [root, root + 0.5 * ant_len * d]
        d2 = _rot("x", -50.0) @ d if elbowed else d  # the elbow bends the tip forward and down
        pts.append(pts[-1] + 0.5 * ant_len * d2)
        blob.chain("antenna", pts, [0.024, 0.021, 0.021], blend=0.015)
        if rng.random() < 0.3:
            blob.ellipsoid("antenna", pts[-1], (0.03, 0.03, 0.03), blend=0.01)

    wings = _pick(rng, ["none", "folded", "spread"], p=[0.4, 0.3, 0.3])
    wing_len = 0.0
    if wings != "none":
        wing_len = _u(rng, 0.7, 1.2) * (2 * ay + ty)
        for sx in (-1, 1):
            root = np.array([sx * 0.4 * tx, -0.2 * ty, body_z + 0.85 * tz])
            if wings == "folded":
                d = _unit([sx * 0.25, 1.0, 0.05])
            else:
                d = _unit([sx * 1.0, _u(rng, 0.3, 0.9), _u(rng, 0.0, 0.4)])
            blob.plate_along("wing", root - 0.1 * wing_len * d, root + wing_len * d,
                             width=_u(rng, 0.22, 0.34) * wing_len, thickness=0.02, normal_hint=[0.0, 0.0, 1.0],
                             blend=0.02)

    mesh, fp = blob.mesh(cells=84)
    b.add_labelled(mesh, fp)

    b.attributes.update(
        waist=waist, wings=wings, wing_length=wing_len, leg_length=leg_len, antenna_length=ant_len,
        elbowed_antennae=elbowed, abdomen_length=2 * ay,
    )
    feats = ["six legs"]
    feats.append({"none": "no wings", "folded": "folded wings", "spread": "spread wings"}[wings])
    feats.append("long antennae" if ant_len > 0.3 else ("elbowed antennae" if elbowed else "short antennae"))
    if waist == "pinched":
        feats.append("a narrow waist")
    if ay > 0.3:
        feats.append("a long abdomen")
    size = "long-legged" if leg_len > 0.55 else ("round" if ax > 1.4 * tx and ay < 0.24 else None)
    return b.build(seed=seed, caption=_features_caption(b, rng, main_part="thorax", size=size, features=feats))
