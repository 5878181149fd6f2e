"""Point sampling on meshes: area-weighted surface samples and occupancy labels.

Everything here is deterministic given ``seed``: randomness comes from a local
``numpy.random.Generator``, never from trimesh's or numpy's global state, so the
dataset builder produces identical shards on every machine and in every worker.

Units are mesh units. Procedural shapes have a bounding-box diagonal of 1, so the
default noise scale and the query box below are expressed as fractions of the
diagonal.
"""

from __future__ import annotations

from dataclasses import dataclass
import warnings

import numpy as np
import trimesh

from .raycast import RayScene

__all__ = [
    "SurfaceSamples",
    "sample_surface",
    "occupancy",
    "sample_occupancy",
    "buried_mask",
    "OCC_BOX_HALF_WIDTH",
]

OCC_BOX_HALF_WIDTH = 0.55
"""Half width of the uniform occupancy query cube, as a fraction of the bbox diagonal.

A bbox-centred shape of diagonal 1 lies inside [-0.5, 0.5]^3, so the cube
[-0.55, 0.55]^3 contains it with a 5 % margin on every side.
"""


@dataclass(frozen=True)
class SurfaceSamples:
    """Points sampled on a mesh surface.

    Attributes:
        points: float32 [n, 3], mesh units.
        normals: float32 [n, 3], unit face normals (from the triangle winding).
        face_id: int64 [n], the face each point lies on.
        part_id: int64 [n], ``face_parts[face_id]``, or -1 when no parts were given.
    """

    points: np.ndarray
    normals: np.ndarray
    face_id: np.ndarray
    part_id: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


def _as_mesh_arrays(mesh: trimesh.Trimesh) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"expected a trimesh.Trimesh, got {type(mesh).__name__}")
    v = np.asarray(mesh.vertices, dtype=np.float64)
    f = np.asarray(mesh.faces, dtype=np.int64)
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise ValueError("the mesh has no triangles")
    if not np.isfinite(v).all():
        raise ValueError("the mesh has non-finite vertex coordinates")
    return v, f


def sample_surface(
    mesh: trimesh.Trimesh,
    n: int,
    *,
    seed: int,
    face_parts: np.ndarray | None = None,
    exterior_only: bool = False,
) -> SurfaceSamples:
    """Sample ``n`` points uniformly by area on the surface of ``mesh``.

    Faces are drawn with probability proportional to their area (inverse CDF on
    the cumulative areas), then a point is drawn uniformly inside the triangle
    (square-root barycentric parametrisation).

    Args:
        mesh: any triangle mesh; degenerate faces are never drawn.
        n: number of samples, >= 0.
        seed: seeds a private ``numpy.random.Generator``; same seed -> same samples.
        face_parts: optional int [F] part index of each face (e.g. ``Shape.face_parts``).
            When omitted, ``mesh.metadata["face_parts"]`` is used if present, else -1.
        exterior_only: drop samples buried inside another closed component (see
            :func:`buried_mask`) and draw again until ``n`` remain, so the samples are
            uniform on the visible outer surface of a union of parts.

    Returns:
        :class:`SurfaceSamples` with ``n`` points.

    Raises:
        ValueError: ``n < 0``, no triangles, zero total area, ``face_parts`` of
            the wrong length, or (``exterior_only``) almost no exterior surface.
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    v, f = _as_mesh_arrays(mesh)
    if exterior_only:
        return _sample_exterior(mesh, n, seed=seed, face_parts=face_parts)
    if face_parts is None:
        face_parts = mesh.metadata.get("face_parts") if isinstance(mesh.metadata, dict) else None
    if face_parts is not None:
        face_parts = np.asarray(face_parts, dtype=np.int64)
        if face_parts.shape != (len(f),):
            raise ValueError(f"face_parts must have shape ({len(f)},), got {face_parts.shape}")

    tri = v[f]  # [F, 3, 3]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    twice_area = np.linalg.norm(cross, axis=1)
    total = float(twice_area.sum())
    if not np.isfinite(total) or total <= 0:
        raise ValueError("the mesh has zero surface area")

    rng = np.random.default_rng(seed)
    cdf = np.cumsum(twice_area)
    # side="right" so a face of zero area (flat step in the CDF) can never be hit.
    face_id = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    face_id = np.minimum(face_id, len(f) - 1).astype(np.int64)

    r1, r2 = rng.random(n), rng.random(n)
    s1 = np.sqrt(r1)
    w0, w1, w2 = 1.0 - s1, s1 * (1.0 - r2), s1 * r2
    t = tri[face_id]
    points = w0[:, None] * t[:, 0] + w1[:, None] * t[:, 1] + w2[:, None] * t[:, 2]
    normals = cross[face_id] / np.maximum(twice_area[face_id], 1e-30)[:, None]
    part_id = face_parts[face_id] if face_parts is not None else np.full(n, -1, dtype=np.int64)
    return SurfaceSamples(
        points=points.astype(np.float32),
        normals=normals.astype(np.float32),
        face_id=face_id,
        part_id=part_id.astype(np.int64),
    )


def _sample_exterior(
    mesh: trimesh.Trimesh, n: int, *, seed: int, face_parts: np.ndarray | None
) -> SurfaceSamples:
    rng = np.random.default_rng(seed)
    kept: list[SurfaceSamples] = []
    have, draw = 0, max(int(n * 1.25), 1) + 16
    for _ in range(12):
        s = sample_surface(mesh, draw, seed=int(rng.integers(2**63 - 1)), face_parts=face_parts)
        keep = ~buried_mask(mesh, s.points, s.face_id)
        kept.append(SurfaceSamples(s.points[keep], s.normals[keep], s.face_id[keep], s.part_id[keep]))
        have += int(keep.sum())
        if have >= n:
            break
        # Grow the next draw by the observed rejection rate.
        draw = int((n - have) / max(keep.mean(), 0.02) * 1.25) + 16
    if have < n:
        raise ValueError("exterior_only: almost all of the surface is buried inside other components")
    cat = [np.concatenate([getattr(k, a) for k in kept])[:n] for a in ("points", "normals", "face_id", "part_id")]
    return SurfaceSamples(*cat)


# ------------------------------------------------------------------ occupancy


def _face_components(faces: np.ndarray) -> list[np.ndarray]:
    """Face index arrays of the edge-connected components of a triangle soup."""
    adjacency = trimesh.graph.face_adjacency(faces=faces)
    comps = trimesh.graph.connected_components(adjacency, nodes=np.arange(len(faces)), min_len=1)
    return [np.sort(np.asarray(c, dtype=np.int64)) for c in comps]


def _is_closed(faces: np.ndarray) -> bool:
    """True when every edge is shared by exactly two faces (parity test is well defined)."""
    e = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    # One int64 key per undirected edge: a 1-D sort is ~10x faster than unique(axis=0).
    key = np.sort(e[:, 0] * (int(faces.max()) + 1) + e[:, 1])
    if len(key) == 0:
        return False
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    counts = np.diff(np.r_[starts, len(key)])
    return bool((counts == 2).all())


def _closed_components(
    v: np.ndarray, f: np.ndarray
) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]], int]:
    """Split into closed components.

    Returns ``([(verts, faces, face_index), ...], n_open)`` where ``face_index`` are the
    component's faces in the input mesh. A component that is open under the mesh's own
    connectivity is retried after merging coincident vertices (files such as STL store
    every triangle with its own vertices); if still open it is counted in ``n_open``.
    """
    closed: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    open_faces: list[np.ndarray] = []
    for comp in _face_components(f):
        used, inv = np.unique(f[comp], return_inverse=True)
        if _is_closed(inv.reshape(-1, 3)):
            closed.append((v[used], inv.reshape(-1, 3), comp))
        else:
            open_faces.append(comp)
    n_open = 0
    if open_faces:
        # Merge coincident vertices across all open pieces at once: in a soup every
        # triangle is its own piece, and only together do they close.
        of_idx = np.concatenate(open_faces)
        used, inv = np.unique(f[of_idx], return_inverse=True)
        merged = trimesh.Trimesh(v[used], inv.reshape(-1, 3), process=False)
        merged.merge_vertices(merge_tex=True, merge_norm=True)
        mv, mf = np.asarray(merged.vertices), np.asarray(merged.faces, dtype=np.int64)
        if len(mf) != len(of_idx):  # pragma: no cover - merge_vertices keeps faces
            raise RuntimeError("vertex merge changed the face count")
        for sc in _face_components(mf):
            su, sinv = np.unique(mf[sc], return_inverse=True)
            if _is_closed(sinv.reshape(-1, 3)):
                closed.append((mv[su], sinv.reshape(-1, 3), np.sort(of_idx[sc])))
            else:
                n_open += 1
    return closed, n_open


def _parity_occupancy(v: np.ndarray, f: np.ndarray, q: np.ndarray, *, nsamples: int) -> np.ndarray:
    return RayScene(v, f).parity_occupancy(q, nsamples=nsamples)


def occupancy(mesh: trimesh.Trimesh, points: np.ndarray, *, nsamples: int = 3) -> np.ndarray:
    """Inside test for ``points`` [M, 3] against ``mesh``: bool [M].

    The mesh may be a union of several closed components that overlap (how the
    procedural shapes are built: a leg box pushed into a seat box). A single ray
    parity test over such a mesh is wrong where components overlap, so the mesh is
    split into edge-connected components, each closed component gets its own
    ray-parity test (Open3D's ``RaycastingScene.compute_occupancy``, or the torch
    engine of :mod:`.raycast`; majority vote over ``nsamples`` rays against edge hits)
    and the results are OR-ed: inside = inside any closed component.

    Fallbacks (documented behaviour, not errors):
        * open (non-watertight) components are ignored: they bound no volume;
        * if the mesh has no closed component at all, one ray-parity majority vote
          over the whole mesh is used, which tolerates small holes; a
          ``RuntimeWarning`` says so.

    A component nested inside another (a hollow shell modelled as two separate
    surfaces) is treated as solid, since the union of the two is solid.

    Args:
        mesh: triangle mesh.
        points: float [M, 3] query points, mesh units.
        nsamples: odd number of rays per query for Open3D's majority vote.

    Returns:
        bool [M], True inside.
    """
    v, f = _as_mesh_arrays(mesh)
    q = np.asarray(points, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 3:
        raise ValueError(f"points must have shape [M, 3], got {q.shape}")
    if nsamples < 1 or nsamples % 2 == 0:
        raise ValueError(f"nsamples must be a positive odd number, got {nsamples}")
    out = np.zeros(len(q), dtype=bool)
    if len(q) == 0:
        return out
    closed, _ = _closed_components(v, f)
    if not closed:
        warnings.warn(
            "occupancy: the mesh has no closed component; using a ray-parity vote over the "
            "whole (open) mesh",
            RuntimeWarning,
            stacklevel=2,
        )
        return _parity_occupancy(v, f, q, nsamples=max(nsamples, 5))
    for cv, cf, _ in closed:
        _or_inside(out, cv, cf, q, np.ones(len(q), dtype=bool), nsamples=nsamples)
    return out


def _or_inside(
    out: np.ndarray, cv: np.ndarray, cf: np.ndarray, q: np.ndarray, consider: np.ndarray, *, nsamples: int
) -> None:
    """``out |= inside(closed component, q)`` for the queries where ``consider`` holds."""
    lo, hi = cv.min(0), cv.max(0)
    pad = 1e-6 * max(float(np.linalg.norm(hi - lo)), 1e-12)
    # Only points inside the component's box can be inside it; skipping the rest
    # makes a 30-part chair cost about as much as one closed mesh.
    cand = np.flatnonzero(consider & ~out & (q >= lo - pad).all(1) & (q <= hi + pad).all(1))
    if len(cand):
        out[cand] = _parity_occupancy(cv, cf, q[cand], nsamples=nsamples)


def buried_mask(mesh: trimesh.Trimesh, points: np.ndarray, face_id: np.ndarray, *, nsamples: int = 3) -> np.ndarray:
    """Which surface points lie inside a *different* closed component: bool [n].

    Procedural shapes are unions of overlapping closed parts, so part of their
    triangles is buried inside other parts (a leg's top inside the seat): no camera
    can see those points. ``points`` [n, 3] must lie on faces ``face_id`` [n].
    Points on open components are tested against every closed component.
    """
    v, f = _as_mesh_arrays(mesh)
    q = np.asarray(points, dtype=np.float64)
    face_id = np.asarray(face_id, dtype=np.int64)
    if q.shape != (len(face_id), 3):
        raise ValueError(f"points [n, 3] and face_id [n] disagree: {q.shape} vs {face_id.shape}")
    closed, _ = _closed_components(v, f)
    comp_of_face = np.full(len(f), -1, dtype=np.int64)
    for k, (_, _, fi) in enumerate(closed):
        comp_of_face[fi] = k
    own = comp_of_face[face_id]
    out = np.zeros(len(q), dtype=bool)
    for k, (cv, cf, _) in enumerate(closed):
        _or_inside(out, cv, cf, q, own != k, nsamples=nsamples)
    return out


def sample_occupancy(
    mesh: trimesh.Trimesh,
    n: int,
    *,
    seed: int,
    near_surface_frac: float = 0.6,
    sigma: float = 0.01,
    quantize: bool = False,
    exterior_only: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy training queries and their labels.

    ``round(n * near_surface_frac)`` queries are surface samples plus isotropic
    Gaussian noise of std ``sigma * diag``; the rest are uniform in the cube of
    half width ``OCC_BOX_HALF_WIDTH * diag`` around the bbox centre (for canonical
    shapes: [-0.55, 0.55]^3). ``diag`` is the mesh's bbox diagonal.

    Args:
        mesh: triangle mesh (several overlapping closed parts allowed, see :func:`occupancy`).
        n: number of queries.
        seed: seeds a private generator.
        near_surface_frac: share of near-surface queries, in [0, 1].
        sigma: near-surface noise std as a fraction of the bbox diagonal, >= 0.
        quantize: round the queries to float16 *before* labelling, so a float16
            copy of the points carries exactly-correct labels (used by the shards).
        exterior_only: perturb samples of the outer surface only (buried faces of a
            union of parts are not the solid's surface: noise around them is all inside).

    Returns:
        ``(points float32 [n, 3], labels float32 [n])``, labels 1 inside, 0 outside.
        Near-surface queries come first.
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= near_surface_frac <= 1.0:
        raise ValueError(f"near_surface_frac must be in [0, 1], got {near_surface_frac}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    v, _ = _as_mesh_arrays(mesh)
    lo, hi = v.min(0), v.max(0)
    centre, diag = (lo + hi) / 2, float(np.linalg.norm(hi - lo))
    rng = np.random.default_rng(seed)
    n_near = int(round(n * near_surface_frac))
    surf_seed = int(rng.integers(2**63 - 1))
    near = sample_surface(mesh, n_near, seed=surf_seed, exterior_only=exterior_only).points.astype(np.float64)
    near = near + rng.normal(scale=sigma * diag, size=near.shape)
    half = OCC_BOX_HALF_WIDTH * diag
    uni = centre + rng.uniform(-half, half, size=(n - n_near, 3))
    pts = np.concatenate([near, uni]).astype(np.float16 if quantize else np.float32)
    labels = occupancy(mesh, pts.astype(np.float64)).astype(np.float32)
    return pts.astype(np.float32), labels
