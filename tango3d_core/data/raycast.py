"""Closest-hit ray casting and ray-parity occupancy behind one interface, two engines.

``open3d`` (the default wherever Open3D imports) is Embree's BVH through
``RaycastingScene``: fast on a CPU, exact to float32. ``torch`` is a brute-force
Möller-Trumbore test of every ray against every triangle, in chunks, on any torch
device: on a GPU it renders a procedural shape's 224 x 224 view in milliseconds, and it
needs nothing beyond torch, so the data engine also runs on machines without an
Open3D wheel (a GPU box whose Python has none, a new Python version). Its cost grows as
rays x faces, so on a CPU it is only for small meshes and tests.

The engine is chosen per scene: ``backend="auto"`` takes ``$TANGO3D_RAYCAST``
(``open3d`` or ``torch``) when set, else Open3D when it imports, else torch; the torch
device is ``$TANGO3D_RAYCAST_DEVICE`` when set, else CUDA when available, else CPU.
Both engines give the same hits up to float32 ties on shared edges (tests compare them).
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Literal

import numpy as np

__all__ = ["Backend", "RayScene", "resolve_backend"]

Backend = Literal["auto", "open3d", "torch"]

# Fixed, irrational-looking directions: axis-aligned parity rays graze the edges and
# faces of box-built shapes far more often.
_PARITY_DIRS = np.array(
    [[0.5773, 0.6123, 0.5404], [-0.6712, 0.3146, -0.6712], [0.2418, -0.9017, 0.3585],
     [-0.3301, -0.4472, 0.8313], [0.8731, -0.1209, -0.4723], [-0.1147, 0.9734, 0.1986],
     [0.4180, 0.2917, -0.8604]],
    dtype=np.float64,
)


@functools.lru_cache(maxsize=1)
def _open3d_available() -> bool:
    try:
        import open3d  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: Backend = "auto") -> Literal["open3d", "torch"]:
    """The engine ``backend`` stands for on this machine (see the module docstring)."""
    if backend == "auto":
        env = os.environ.get("TANGO3D_RAYCAST", "").strip().lower()
        if env:
            if env not in ("open3d", "torch"):
                raise ValueError(f"TANGO3D_RAYCAST must be 'open3d' or 'torch', got {env!r}")
            backend = env  # type: ignore[assignment]
        else:
            backend = "open3d" if _open3d_available() else "torch"
    if backend not in ("open3d", "torch"):
        raise ValueError(f"backend must be 'auto', 'open3d' or 'torch', got {backend!r}")
    if backend == "open3d" and not _open3d_available():
        raise ImportError("the open3d ray caster needs Open3D (pip install open3d); backend='torch' needs none")
    return backend  # type: ignore[return-value]


def _torch_device(device: Any) -> Any:
    import torch

    if device is None:
        device = os.environ.get("TANGO3D_RAYCAST_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class RayScene:
    """A triangle mesh to cast rays against.

    Args:
        vertices: float [V, 3].
        faces: int [F, 3], indices into ``vertices``; F >= 1.
        backend: ``"auto"``, ``"open3d"`` or ``"torch"``.
        device: torch device of the torch engine (ignored by Open3D).
    """

    def __init__(self, vertices: Any, faces: Any, *, backend: Backend = "auto", device: Any = None) -> None:
        v = np.ascontiguousarray(vertices, dtype=np.float32).reshape(-1, 3)
        f = np.ascontiguousarray(faces, dtype=np.int64).reshape(-1, 3)
        if len(f) == 0:
            raise ValueError("a ray scene needs at least one face")
        if f.min() < 0 or f.max() >= len(v):
            raise ValueError("faces index vertices that do not exist")
        self.backend = resolve_backend(backend)
        self.num_faces = len(f)
        if self.backend == "open3d":
            import open3d as o3d

            scene = o3d.t.geometry.RaycastingScene()
            scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(f.astype(np.uint32)))
            # The BVH is committed lazily on the first query; paying it here means
            # concurrent renders never race on it.
            scene.cast_rays(o3d.core.Tensor(np.array([[0, 0, 0, 0, 0, 1]], dtype=np.float32)))
            self._o3d = scene
        else:
            import torch

            self._device = _torch_device(device)
            tri = torch.from_numpy(v[f]).to(self._device)  # [F, 3 corners, 3]
            self._v0 = tri[:, 0].contiguous()
            self._e1 = (tri[:, 1] - tri[:, 0]).contiguous()
            self._e2 = (tri[:, 2] - tri[:, 0]).contiguous()
            self._centre = tri.mean(1)                                     # [F, 3]
            self._radius = (tri - self._centre[:, None]).norm(dim=-1).max(1).values * 1.0001 + 1e-7
            # rays x faces per chunk: bounds the [R, F] temporaries (about 20 of them).
            self._budget = 1 << (25 if self._device.type == "cuda" else 21)
            self._chunk = max(1, self._budget // self.num_faces)
            # Rays per culled bundle: small on a CPU (work ~ rays x kept faces), large on a GPU
            # (each bundle costs a few kernel launches and a sync).
            self._group = 2048 if self._device.type == "cuda" else 32

    # ------------------------------------------------------------------ torch engine
    def _mt(self, o: Any, d: Any, faces: Any = None) -> tuple[Any, Any, Any]:
        """Möller-Trumbore of rays o, d [R, 3] against every face (or the ``faces`` [F'] subset):
        t, u, v [R, F] (t = inf: no hit)."""
        import torch

        e1, e2, v0 = self._e1, self._e2, self._v0
        if faces is not None:
            e1, e2, v0 = e1[faces], e2[faces], v0[faces]
        p = torch.linalg.cross(d[:, None, :].expand(-1, len(e2), -1), e2[None].expand(len(d), -1, -1), dim=-1)
        det = (p * e1[None]).sum(-1)                                      # [R, F]
        ok = det.abs() > 1e-12
        inv = torch.where(ok, 1.0 / torch.where(ok, det, torch.ones_like(det)), torch.zeros_like(det))
        s = o[:, None, :] - v0[None]                                      # [R, F, 3]
        u = (s * p).sum(-1) * inv
        del p
        q = torch.linalg.cross(s, e1[None].expand_as(s), dim=-1)
        del s
        v = (q * d[:, None, :]).sum(-1) * inv
        t = (q * e2[None]).sum(-1) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
        return torch.where(hit, t, torch.full_like(t, math.inf)), u, v

    def cast(self, rays: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """First hits of ``rays`` float32 [N, 6] (origin xyz, direction xyz; t is in units of
        the direction's length) -> ``t_hit`` float32 [N] (inf: miss), ``face`` int64 [N] (-1:
        miss), ``uv`` float32 [N, 2]: barycentric weights of the face's vertices 1 and 2
        (vertex 0 gets ``1 - u - v``), Embree's convention."""
        rays = np.ascontiguousarray(rays, dtype=np.float32).reshape(-1, 6)
        if self.backend == "open3d":
            import open3d as o3d

            hits = self._o3d.cast_rays(o3d.core.Tensor.from_numpy(rays))
            t = hits["t_hit"].numpy().astype(np.float32, copy=False)
            fid = hits["primitive_ids"].numpy().astype(np.int64)
            fid[~np.isfinite(t)] = -1
            return t, fid, hits["primitive_uvs"].numpy().astype(np.float32, copy=False)
        import torch

        n = len(rays)
        t_out = np.full(n, np.inf, np.float32)
        f_out = np.full(n, -1, np.int64)
        uv_out = np.zeros((n, 2), np.float32)
        if n == 0:
            return t_out, f_out, uv_out
        with torch.no_grad():
            r = torch.from_numpy(rays).to(self._device)
            o, d = r[:, :3], r[:, 3:]
            if n >= 512 and bool((o - o[0]).abs().max() <= 1e-6):
                groups = self._pinhole_groups(o[0], d, group=2 * self._group)
            else:
                groups = [(torch.arange(a, min(n, a + self._chunk), device=self._device), None)
                          for a in range(0, n, self._chunk)]
            for idx, faces in groups:
                if faces is not None and len(faces) == 0:
                    continue
                t, f, uv = self._closest(o[idx], d[idx], faces)
                i = idx.cpu().numpy()
                t_out[i], f_out[i], uv_out[i] = t.cpu().numpy(), f.cpu().numpy(), uv.cpu().numpy()
        return t_out, f_out, uv_out

    def _closest(self, o: Any, d: Any, faces: Any) -> tuple[Any, Any, Any]:
        """First hit of rays o, d [R, 3] among ``faces`` [F'] (None: all): t [R], face [R], uv [R, 2]."""
        import torch

        n_faces = self.num_faces if faces is None else len(faces)
        best_t = torch.full((len(o),), math.inf, device=o.device)
        best_f = torch.full((len(o),), -1, dtype=torch.long, device=o.device)
        best_uv = torch.zeros((len(o), 2), device=o.device)
        per = max(1, self._budget // max(1, len(o)))
        for b in range(0, n_faces, per):
            sub = torch.arange(b, min(n_faces, b + per), device=o.device) if faces is None else faces[b:b + per]
            t, u, v = self._mt(o, d, sub)
            tmin, j = t.min(dim=1)
            better = tmin < best_t
            best_t = torch.where(better, tmin, best_t)
            best_f = torch.where(better, sub[j], best_f)
            uv = torch.stack([u.gather(1, j[:, None])[:, 0], v.gather(1, j[:, None])[:, 0]], 1)
            best_uv = torch.where(better[:, None], uv, best_uv)
        return best_t, best_f, best_uv

    def _pinhole_groups(self, origin: Any, d: Any, group: int = 256) -> list[tuple[Any, Any]]:
        """Rays from one point (a camera) in compact bundles, each with the faces inside its
        cone: (ray indices, face indices). A face is kept when the angle between the bundle's
        axis and the face's bounding sphere is within the bundle's half-angle."""
        import torch

        ud = torch.nn.functional.normalize(d, dim=1)
        w = self._centre - origin
        dist = w.norm(dim=1).clamp(min=1e-12)
        wn = w / dist[:, None]
        face_ang = torch.where(dist > self._radius, torch.asin((self._radius / dist).clamp(max=1.0)),
                               torch.full_like(dist, math.pi))
        order = _zorder(ud, torch.nn.functional.normalize(ud.mean(0), dim=0))
        out = []
        for a in range(0, len(ud), group):
            idx = order[a:a + group]
            g = ud[idx]
            axis = torch.nn.functional.normalize(g.mean(0), dim=0)
            half = torch.acos((g @ axis).min().clamp(-1.0, 1.0))
            ang = torch.acos((wn @ axis).clamp(-1.0, 1.0))
            out.append((idx, torch.nonzero(ang <= half + face_ang + 1e-4).flatten()))
        return out

    def parity_occupancy(self, points: np.ndarray, *, nsamples: int = 3) -> np.ndarray:
        """Inside test for ``points`` [M, 3]: bool [M], the majority over ``nsamples`` (odd)
        rays of "an odd number of crossings". Meant for closed meshes."""
        q = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 3)
        if nsamples < 1 or nsamples % 2 == 0:
            raise ValueError(f"nsamples must be a positive odd number, got {nsamples}")
        if self.backend == "open3d":
            import open3d as o3d

            occ = self._o3d.compute_occupancy(o3d.core.Tensor(q), nsamples=nsamples)
            return occ.numpy().astype(bool)
        import torch

        if nsamples > len(_PARITY_DIRS):
            raise ValueError(f"the torch engine votes over at most {len(_PARITY_DIRS)} rays, got nsamples={nsamples}")
        dirs = _PARITY_DIRS[:nsamples] / np.linalg.norm(_PARITY_DIRS[:nsamples], axis=1, keepdims=True)
        votes = np.zeros(len(q), np.int64)
        tri = torch.stack([self._v0, self._v0 + self._e1, self._v0 + self._e2], 1)  # [F, 3, 3]
        with torch.no_grad():
            qt = torch.from_numpy(q).to(self._device)
            for dvec in dirs:
                # Parallel rays: a face can only be crossed by queries whose shadow along d
                # falls in the face's shadow, so queries go in spatially sorted groups and
                # each group meets only the faces whose 2D box overlaps the group's box.
                dt = torch.tensor(dvec, dtype=torch.float32, device=self._device)
                basis = _plane_basis(dt)                                  # [3, 2]
                q2 = qt @ basis                                           # [M, 2]
                t2 = tri @ basis                                          # [F, 3, 2]
                fmin, fmax = t2.min(1).values, t2.max(1).values
                order = _zorder_2d(q2)
                group = self._group
                for a in range(0, len(q), group):
                    idx = order[a:a + group]
                    glo, ghi = q2[idx].min(0).values, q2[idx].max(0).values
                    faces = torch.nonzero(((fmax >= glo) & (fmin <= ghi)).all(1)).flatten()
                    if len(faces) == 0:
                        continue
                    crossings = torch.zeros(len(idx), dtype=torch.long, device=self._device)
                    per = max(1, self._budget // group)
                    for b in range(0, len(faces), per):
                        t, _, _ = self._mt(qt[idx], dt.expand(len(idx), 3), faces[b:b + per])
                        crossings += torch.isfinite(t).sum(dim=1)
                    votes[idx.cpu().numpy()] += (crossings % 2).cpu().numpy()
        return votes * 2 > nsamples


def _plane_basis(axis: Any) -> Any:
    """Two unit vectors [3, 2] spanning the plane perpendicular to the unit ``axis`` [3]."""
    import torch

    helper = torch.tensor([1.0, 0.0, 0.0] if abs(float(axis[0])) < 0.9 else [0.0, 1.0, 0.0], device=axis.device)
    a = torch.nn.functional.normalize(torch.linalg.cross(axis, helper), dim=0)
    return torch.stack([a, torch.linalg.cross(axis, a)], 1)


def _zorder_2d(p: Any, bits: int = 5) -> Any:
    """Order of 2D points [M, 2] along a Z curve over a 2^bits grid on their bounding box:
    consecutive points stay in compact squares, so a run of them has a small bounding box."""
    import torch

    lo, hi = p.min(0).values, p.max(0).values
    cell = ((p - lo) / (hi - lo).clamp(min=1e-9) * (2 ** bits - 1e-3)).long()
    key = torch.zeros_like(cell[:, 0])
    for bit in range(bits):
        key |= ((cell[:, 0] >> bit) & 1) << (2 * bit + 1) | ((cell[:, 1] >> bit) & 1) << (2 * bit)
    return torch.argsort(key)


def _zorder(dirs: Any, axis: Any) -> Any:
    """Z order of unit directions [N, 3] by their coordinates in the plane perpendicular to ``axis``."""
    return _zorder_2d(dirs @ _plane_basis(axis))
