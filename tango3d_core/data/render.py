"""Exact ray-cast rendering: pinhole cameras, per-pixel surface points, shaded RGB.

Every pixel is one ray through its centre; the first triangle it hits (Open3D's
Embree ``RaycastingScene``, or the torch engine where Open3D is missing: see
:mod:`.raycast`) gives the face id and barycentric weights, and the
surface point is rebuilt from the mesh's own float64 vertices, so ``View.xyz``
lies exactly on the mesh and ``Camera.project`` maps it back to its pixel.

Conventions (see CONTRACT.md):

- Pixel coordinates are ``(x, y)`` = (column, row); the top-left pixel's centre is
  ``(0, 0)``. Images are indexed ``[row, column]``.
- Cameras use the OpenCV frame: x right, y down, z forward. ``R`` maps world
  directions to camera directions, ``x_cam = R @ (x_world - eye)``.
- Meshes are Z-up; ``Camera.look_at`` with the default ``up=(0, 0, 1)`` shows world
  up as image up and never mirrors the image. ``Camera.orbit`` with azimuth 0 sits on
  -Y looking towards +Y (the object's front), so +X appears on the right.

Typical use::

    cam = Camera.look_at((0, -2.5, 0.8), (0, 0, 0), width=256, height=256)
    view = render_view(mesh, cam)          # BVH cached per mesh
    renderer = Renderer(mesh)              # or hold the BVH yourself
    views = [renderer.render(c) for c in cams]
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, Sequence

import numpy as np
import trimesh

from .raycast import Backend, RayScene

__all__ = [
    "Camera",
    "LightFrame",
    "NormalMode",
    "Renderer",
    "View",
    "clear_cache",
    "render_view",
    "render_views",
    "renderer_for",
]

LightFrame = Literal["camera", "world"]
"""Frame of ``light_dir``: ``"camera"`` (x right, y down, z forward) or ``"world"``."""

NormalMode = Literal["face", "smooth"]
"""``"face"``: geometric face normal; ``"smooth"``: interpolated vertex normal."""

MAX_IMAGE_SIDE = 4096
DEFAULT_ALBEDO = (0.78, 0.78, 0.78)
# Towards the light, camera frame: from the upper left, in front of the object
# (negative x = left, negative y = up, negative z = towards the viewer).
DEFAULT_LIGHT_DIR = (-0.4, -0.6, -1.0)


def _vec3(value: Any, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3,):
        raise ValueError(f"{name} must be a 3-vector, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


def _check_size(width: Any, height: Any) -> tuple[int, int]:
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or int(v) != v:
            raise ValueError(f"{name} must be an integer, got {v!r}")
        if not 1 <= int(v) <= MAX_IMAGE_SIDE:
            raise ValueError(f"{name} must be in [1, {MAX_IMAGE_SIDE}], got {v}")
    return int(width), int(height)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = np.array(arr, dtype=np.float64, copy=True)
    arr.setflags(write=False)
    return arr


# ---------------------------------------------------------------------------------
# Camera
# ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera in the OpenCV convention (x right, y down, z forward).

    Attributes:
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels; ``((width-1)/2, (height-1)/2)`` is the
            image centre since pixel centres sit on integer coordinates.
        width, height: image size in pixels (each in ``[1, 4096]``).
        R: float64 [3, 3], world-to-camera rotation (rows: camera x, y, z axes in
            world coordinates), det +1.
        eye: float64 [3], camera centre in world (mesh) units.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    R: np.ndarray
    eye: np.ndarray

    def __post_init__(self) -> None:
        width, height = _check_size(self.width, self.height)
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)
        for name in ("fx", "fy", "cx", "cy"):
            val = float(getattr(self, name))
            if not np.isfinite(val):
                raise ValueError(f"{name} must be finite, got {val}")
            object.__setattr__(self, name, val)
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be > 0, got fx={self.fx}, fy={self.fy}")
        R = np.asarray(self.R, dtype=np.float64)
        if R.shape != (3, 3) or not np.all(np.isfinite(R)):
            raise ValueError(f"R must be a finite [3, 3] rotation, got shape {R.shape}")
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
            raise ValueError("R must be a proper rotation (orthonormal, det +1)")
        object.__setattr__(self, "R", _readonly(R))
        object.__setattr__(self, "eye", _readonly(_vec3(self.eye, "eye")))

    # -- constructors -------------------------------------------------------------

    @classmethod
    def look_at(
        cls,
        eye: Sequence[float] | np.ndarray,
        target: Sequence[float] | np.ndarray,
        up: Sequence[float] | np.ndarray = (0.0, 0.0, 1.0),
        *,
        fov_deg: float = 40.0,
        width: int = 256,
        height: int = 256,
    ) -> Camera:
        """A camera at ``eye`` looking at ``target`` with ``up`` pointing up in the image.

        Args:
            eye, target, up: 3-vectors in world units; ``up`` need not be
                orthogonal to the view direction, only not parallel to it.
            fov_deg: vertical field of view in degrees, in (0, 180); square pixels.
            width, height: image size in pixels, each in [1, 4096].

        Raises:
            ValueError: eye == target, ``up`` zero or parallel to the view
                direction, bad fov or image size, non-finite inputs.
        """
        eye_v = _vec3(eye, "eye")
        target_v = _vec3(target, "target")
        up_v = _vec3(up, "up")
        width, height = _check_size(width, height)
        fov = float(fov_deg)
        if not 0.0 < fov < 180.0:
            raise ValueError(f"fov_deg must be in (0, 180) degrees, got {fov_deg}")
        forward = target_v - eye_v
        dist = np.linalg.norm(forward)
        if dist <= 1e-12 * max(1.0, np.abs(eye_v).max()):
            raise ValueError(f"eye and target must differ, both are {eye_v.tolist()}")
        forward /= dist
        up_norm = np.linalg.norm(up_v)
        if up_norm == 0.0:
            raise ValueError("up must be a non-zero vector")
        right = np.cross(forward, up_v / up_norm)
        if np.linalg.norm(right) < 1e-6:
            raise ValueError(
                f"up {up_v.tolist()} is parallel to the view direction {forward.tolist()}; "
                "pick another up vector"
            )
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        f = (height / 2.0) / np.tan(np.radians(fov) / 2.0)
        return cls(
            fx=f,
            fy=f,
            cx=(width - 1) / 2.0,
            cy=(height - 1) / 2.0,
            width=width,
            height=height,
            R=np.stack([right, down, forward]),
            eye=eye_v,
        )

    @classmethod
    def orbit(
        cls,
        *,
        azimuth_deg: float,
        elevation_deg: float,
        distance: float,
        target: Sequence[float] | np.ndarray = (0.0, 0.0, 0.0),
        fov_deg: float = 40.0,
        width: int = 256,
        height: int = 256,
    ) -> Camera:
        """A camera on a sphere around ``target``, looking at it, Z up.

        Azimuth 0 puts the camera on -Y looking towards +Y (the object's front);
        azimuth grows counter-clockwise seen from above (90 = on +X looking at -X).
        Elevation is above the XY plane; +-90 (straight down/up) is allowed, the
        image up then being the horizontal direction the camera faced.

        Args:
            azimuth_deg, elevation_deg: angles in degrees; elevation in [-90, 90].
            distance: eye-to-target distance in world units, > 0.
            target, fov_deg, width, height: as in ``look_at``.
        """
        el = float(elevation_deg)
        if not -90.0 <= el <= 90.0:
            raise ValueError(f"elevation_deg must be in [-90, 90], got {elevation_deg}")
        if not float(distance) > 0.0 or not np.isfinite(distance):
            raise ValueError(f"distance must be a finite number > 0, got {distance}")
        az, el = np.radians(float(azimuth_deg)), np.radians(el)
        horiz = np.array([np.sin(az), -np.cos(az), 0.0])
        offset = float(distance) * (np.cos(el) * horiz + np.array([0.0, 0.0, np.sin(el)]))
        # World Z projected onto the image plane, written so it stays defined at the
        # poles (it equals the projection of (0, 0, 1) up to a positive factor).
        up = -np.sin(el) * horiz + np.array([0.0, 0.0, np.cos(el)])
        target_v = _vec3(target, "target")
        return cls.look_at(target_v + offset, target_v, up, fov_deg=fov_deg, width=width, height=height)

    # -- matrices -----------------------------------------------------------------

    @property
    def position(self) -> np.ndarray:
        """float64 [3]: camera centre in world units (same as ``eye``)."""
        return self.eye

    @property
    def fov_deg(self) -> float:
        """Vertical field of view in degrees."""
        return float(np.degrees(2.0 * np.arctan2(self.height / 2.0, self.fy)))

    @property
    def K(self) -> np.ndarray:
        """float64 [3, 3] intrinsics; pixel (x, y) = (K @ x_cam)[:2] / z."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def world_to_camera(self) -> np.ndarray:
        """float64 [4, 4]: x_cam = M @ [x_world, 1]."""
        m = np.eye(4)
        m[:3, :3] = self.R
        m[:3, 3] = -self.R @ self.eye
        return m

    @property
    def camera_to_world(self) -> np.ndarray:
        """float64 [4, 4]: inverse of ``world_to_camera``."""
        m = np.eye(4)
        m[:3, :3] = self.R.T
        m[:3, 3] = self.eye
        return m

    # -- projection ---------------------------------------------------------------

    def project_with_depth(self, points: Any) -> tuple[np.ndarray, np.ndarray]:
        """Project world points to pixels.

        Args:
            points: float [..., 3] world coordinates (numpy or anything ``np.asarray`` takes).

        Returns:
            ``(xy, depth)``: float64 [..., 2] pixel (x, y) and float64 [...] camera z
            in world units. Points with depth <= 0 (behind the camera) get NaN pixels.
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.shape[-1:] != (3,):
            raise ValueError(f"points must have shape [..., 3], got {pts.shape}")
        cam = (pts - self.eye) @ self.R.T
        z = cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(z > 0, 1.0 / z, np.nan)
        xy = np.stack([self.fx * cam[..., 0] * inv + self.cx, self.fy * cam[..., 1] * inv + self.cy], axis=-1)
        return xy, z

    def project(self, points: Any) -> np.ndarray:
        """float [..., 3] world points -> float64 [..., 2] pixel (x, y); NaN behind the camera."""
        return self.project_with_depth(points)[0]

    # -- rays ---------------------------------------------------------------------

    @cached_property
    def _camera_dirs(self) -> np.ndarray:
        """float64 [H, W, 3]: per-pixel direction in camera frame with z == 1."""
        xs = (np.arange(self.width, dtype=np.float64) - self.cx) / self.fx
        ys = (np.arange(self.height, dtype=np.float64) - self.cy) / self.fy
        d = np.empty((self.height, self.width, 3))
        d[..., 0] = xs[None, :]
        d[..., 1] = ys[:, None]
        d[..., 2] = 1.0
        return d

    @cached_property
    def _rays_f32(self) -> np.ndarray:
        """float32 [H, W, 6] Open3D rays; directions have camera z == 1 so t_hit is depth."""
        rays = np.empty((self.height, self.width, 6), dtype=np.float32)
        rays[..., :3] = self.eye
        rays[..., 3:] = self._camera_dirs @ self.R
        return rays

    @cached_property
    def _dirs_f32(self) -> np.ndarray:
        """float32 [H*W, 3]: contiguous copy of the ray directions."""
        return np.ascontiguousarray(self._rays_f32.reshape(-1, 6)[:, 3:])

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel rays through pixel centres.

        Returns:
            ``(origins, dirs)``: float64 [H, W, 3] each, world frame; ``dirs`` are unit
            length and ``origins`` are all ``eye``.
        """
        d = self._camera_dirs @ self.R
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        return np.broadcast_to(self.eye, d.shape).copy(), d


# ---------------------------------------------------------------------------------
# View
# ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class View:
    """One rendered view. H, W = camera height, width.

    Attributes:
        rgb: uint8 [H, W, 3], shaded colour; ``background`` off the mask.
        mask: bool [H, W], True where a ray hit the mesh.
        depth: float32 [H, W], camera-space z of ``xyz`` (distance along the optical
            axis, mesh units); 0 off the mask.
        xyz: float32 [H, W, 3], surface point in mesh coordinates, the barycentric
            combination of the hit triangle's vertices; NaN off the mask.
        normal: float32 [H, W, 3], unit normal in mesh coordinates, flipped to face the
            camera; zeros off the mask.
        face_id: int32 [H, W], index of the hit face; -1 off the mask.
        bary: float32 [H, W, 3], weights of the face's vertices 0, 1, 2 (sum to 1);
            zeros off the mask.
        part_id: int32 [H, W], ``face_parts[face_id]``; -1 off the mask or when the
            mesh has no part labels.
        camera: the camera that produced the view.
    """

    rgb: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    xyz: np.ndarray
    normal: np.ndarray
    face_id: np.ndarray
    bary: np.ndarray
    part_id: np.ndarray
    camera: Camera = field(repr=False)

    @property
    def pixels(self) -> np.ndarray:
        """int64 [N, 2]: (x, y) of every masked pixel, row-major order (matches ``xyz[mask]``)."""
        rows, cols = np.nonzero(self.mask)
        return np.stack([cols, rows], axis=-1)


# ---------------------------------------------------------------------------------
# Colour sources
# ---------------------------------------------------------------------------------


def _rgb01(colors: Any) -> np.ndarray:
    """uint8 (or 0-1 float) [..., 3|4] colours -> float32 [..., 3] in [0, 1]."""
    c = np.asarray(colors)
    if np.issubdtype(c.dtype, np.floating) and c.size and c.max() <= 1.0:
        return c[..., :3].astype(np.float32)
    return (c[..., :3].astype(np.float32) / 255.0).clip(0.0, 1.0)


class _Albedo:
    """Base colour per hit: ``__call__(face_idx [N], bary float64 [N, 3]) -> float32 [N, 3]``."""

    def __init__(self, faces: np.ndarray, visual: Any) -> None:
        self.kind = "constant"
        self.constant = np.asarray(DEFAULT_ALBEDO, dtype=np.float32)
        self._faces = faces
        n_faces = len(faces)
        n_verts = int(faces.max()) + 1 if n_faces else 0
        if isinstance(visual, trimesh.visual.TextureVisuals):
            self._init_texture(visual, n_verts)
        elif isinstance(visual, trimesh.visual.ColorVisuals):
            # ``kind`` is None when no colours were defined: reading vertex_colors
            # then would only give trimesh's default grey, so keep ours.
            kind = visual.kind
            if kind == "vertex":
                cols = _rgb01(visual.vertex_colors)
                if len(cols) >= n_verts:
                    self.kind, self.vertex = "vertex", cols
            elif kind == "face":
                cols = _rgb01(visual.face_colors)
                if len(cols) == n_faces:
                    self.kind, self.face = "face", cols

    def _init_texture(self, visual: trimesh.visual.TextureVisuals, n_verts: int) -> None:
        mat = visual.material
        image, factor = None, None
        if isinstance(mat, trimesh.visual.material.PBRMaterial):
            image = mat.baseColorTexture
            if mat.baseColorFactor is not None:
                factor = _rgb01(mat.baseColorFactor)
        elif mat is not None:
            image = getattr(mat, "image", None)
            # An OBJ's Kd comes with map_Kd at arbitrary values (and trimesh defaults
            # it to dark grey), so the diffuse colour is used only without an image.
            if image is None and getattr(mat, "diffuse", None) is not None:
                factor = _rgb01(mat.diffuse)
        self.constant = factor if factor is not None else self.constant
        uv = visual.uv
        if image is None or uv is None or len(uv) < n_verts:
            if image is not None:
                # A texture with no usable uv: its mean colour is the best guess.
                tex = _rgb01(np.asarray(image.convert("RGB")))
                self.constant = tex.reshape(-1, 3).mean(0) * (factor if factor is not None else 1.0)
            return
        tex = _rgb01(np.asarray(image.convert("RGB")))
        if factor is not None:
            tex = tex * factor
        self.kind = "texture"
        self.uv = np.asarray(uv, dtype=np.float64)
        self.texture = np.ascontiguousarray(tex, dtype=np.float32)

    def __call__(self, face_idx: np.ndarray, bary: np.ndarray) -> np.ndarray:
        if self.kind == "constant":
            return np.broadcast_to(self.constant, (len(face_idx), 3))
        if self.kind == "face":
            return np.take(self.face, face_idx, axis=0)
        if self.kind == "vertex":
            if not hasattr(self, "_corner_colours"):
                self._corner_colours = np.ascontiguousarray(self.vertex[self._faces])  # [F, 3, 3]
            return np.einsum("nk,nkc->nc", bary, np.take(self._corner_colours, face_idx, axis=0))
        if not hasattr(self, "_corner_uv"):
            self._corner_uv = np.ascontiguousarray(self.uv[self._faces])  # [F, 3, 2]
        uv = np.einsum("nk,nkc->nc", bary, np.take(self._corner_uv, face_idx, axis=0))
        return _sample_bilinear(self.texture, uv)


def _sample_bilinear(tex: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear texture lookup.

    Args:
        tex: float32 [h, w, 3], row 0 at the top of the image.
        uv: float64 [N, 2]; trimesh/glTF-style with origin at the bottom-left, so
            v = 1 is image row 0. Outside [0, 1] the texture repeats; inside, texel
            lookups clamp to the edge so a border pixel never bleeds in from the
            opposite side.

    Returns:
        float32 [N, 3].
    """
    h, w = tex.shape[:2]
    outside = (uv < 0.0) | (uv > 1.0)
    uv = np.where(outside, uv - np.floor(uv), uv)
    # Texel i covers [i, i+1) / size, its centre at (i + 0.5) / size.
    px = np.clip(uv[:, 0] * w - 0.5, 0.0, w - 1)
    py = np.clip((1.0 - uv[:, 1]) * h - 0.5, 0.0, h - 1)
    x0 = np.floor(px).astype(np.int64)
    y0 = np.floor(py).astype(np.int64)
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    wx = (px - x0).astype(np.float32)[:, None]
    wy = (py - y0).astype(np.float32)[:, None]
    top = tex[y0, x0] * (1 - wx) + tex[y0, x1] * wx
    bottom = tex[y1, x0] * (1 - wx) + tex[y1, x1] * wx
    return top * (1 - wy) + bottom * wy


# ---------------------------------------------------------------------------------
# Renderer
# ---------------------------------------------------------------------------------


def _unwrap(obj: Any) -> tuple[trimesh.Trimesh, np.ndarray | None]:
    """Accept a Trimesh or a shape-like object with ``.mesh`` (and ``.face_parts``)."""
    if isinstance(obj, trimesh.Trimesh):
        return obj, None
    mesh = getattr(obj, "mesh", None)
    if isinstance(mesh, trimesh.Trimesh):
        return mesh, getattr(obj, "face_parts", None)
    hint = " (use scene.to_mesh() to merge a Scene)" if isinstance(obj, trimesh.Scene) else ""
    raise TypeError(f"expected a trimesh.Trimesh or an object with a .mesh, got {type(obj).__name__}{hint}")


def _check_parts(parts: Any, n_faces: int, source: str) -> np.ndarray:
    arr = np.asarray(parts)
    if arr.shape != (n_faces,):
        raise ValueError(f"{source} must have shape [{n_faces}] (one entry per face), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{source} must hold integers, got dtype {arr.dtype}")
    return arr.astype(np.int32)


class Renderer:
    """Ray-casts one mesh from any number of cameras; builds the BVH once.

    Args:
        mesh: a ``trimesh.Trimesh`` or a shape-like object with ``.mesh`` and
            ``.face_parts`` (e.g. ``shapes.Shape``). Colours come from its visual:
            texture (uv + image, times the PBR ``baseColorFactor``), vertex colours,
            face colours, or light grey.
        face_parts: int [F] part label per face; overrides the shape's
            ``face_parts``, which overrides ``mesh.metadata["face_parts"]``.
        backend: ray-casting engine, see :mod:`.raycast` (``"auto"``: Open3D where it
            imports, else torch).

    The renderer copies what it needs, so later edits to ``mesh`` are not seen;
    ``render_view`` notices edits through its cache check.
    """

    def __init__(self, mesh: Any, *, face_parts: Any = None, backend: Backend = "auto") -> None:
        tm, shape_parts = _unwrap(mesh)
        self.vertices = np.array(tm.vertices, dtype=np.float64)  # [V, 3]
        self.faces = np.array(tm.faces, dtype=np.int64).reshape(-1, 3)  # [F, 3]
        n_faces = len(self.faces)
        if len(self.vertices) and not np.all(np.isfinite(self.vertices)):
            raise ValueError("mesh vertices must be finite (found NaN or inf)")
        if n_faces and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError("mesh faces index vertices that do not exist")
        tri = self.vertices[self.faces]
        normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        norm = np.linalg.norm(normals, axis=1, keepdims=True)
        # Degenerate faces keep a zero normal; shading then falls back to the view ray.
        self.face_normals = np.divide(normals, norm, out=np.zeros_like(normals), where=norm > 0)
        # Per-face copies so the hot path is one contiguous np.take per hit.
        self._corners = np.ascontiguousarray(tri)  # float64 [F, 3, 3]
        self._face_normals32 = self.face_normals.astype(np.float32)
        lo, hi = (self.vertices.min(0), self.vertices.max(0)) if n_faces else (np.zeros(3), np.zeros(3))
        self._box_corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        parts = face_parts if face_parts is not None else shape_parts
        source = "face_parts"
        if parts is None:
            parts, source = tm.metadata.get("face_parts"), 'mesh.metadata["face_parts"]'
        self.face_parts = None if parts is None else _check_parts(parts, n_faces, source)
        self._albedo = _Albedo(self.faces, tm.visual)
        self._scene: RayScene | None = RayScene(self.vertices, self.faces, backend=backend) if n_faces else None

    @cached_property
    def vertex_normals(self) -> np.ndarray:
        """float64 [V, 3] unit area-weighted vertex normals, for ``normals="smooth"``.

        Computed here rather than read from trimesh so the renderer holds no
        reference to the mesh (the cache keys meshes by weak reference).
        """
        tri = self._corners
        area_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # |.| = 2 * area
        n_verts = len(self.vertices)
        vn = np.stack(
            [np.bincount(self.faces.ravel(), np.repeat(area_n[:, c], 3), minlength=n_verts) for c in range(3)],
            axis=1,
        )
        norm = np.linalg.norm(vn, axis=1, keepdims=True)
        return np.divide(vn, norm, out=np.zeros_like(vn), where=norm > 0)

    @cached_property
    def _corner_normals(self) -> np.ndarray:
        """float32 [F, 3, 3]: vertex normals at each face's corners."""
        return np.ascontiguousarray(self.vertex_normals[self.faces], dtype=np.float32)

    def _pixel_rect(self, cam: Camera) -> tuple[int, int, int, int] | None:
        """Pixel window ``(x0, x1, y0, y1)`` (half-open) that can contain hits.

        Rays outside the projection of the mesh's bounding box cannot hit it, so only
        the window is cast: views of small objects cost a fraction of the full image.
        The whole image when the camera is inside or beside the box (corners behind
        it); None when the box projects off-screen.
        """
        xy, z = cam.project_with_depth(self._box_corners)
        if not np.all(z > 1e-9 * max(1.0, float(np.abs(z).max()))):
            return 0, cam.width, 0, cam.height
        # One pixel of margin absorbs float32 rounding in the ray caster.
        x0, y0 = np.floor(xy.min(0)).astype(int) - 1
        x1, y1 = np.ceil(xy.max(0)).astype(int) + 2
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, cam.width), min(y1, cam.height)
        if x0 >= x1 or y0 >= y1:
            return None
        return int(x0), int(x1), int(y0), int(y1)

    @property
    def albedo_kind(self) -> str:
        """Colour source in use: "texture", "vertex", "face" or "constant"."""
        return self._albedo.kind

    def render(
        self,
        cam: Camera,
        *,
        light_dir: Sequence[float] | np.ndarray | None = None,
        light_frame: LightFrame = "camera",
        ambient: float = 0.35,
        diffuse: float = 0.65,
        light_color: Sequence[float] = (1.0, 1.0, 1.0),
        background: Sequence[int] = (255, 255, 255),
        normals: NormalMode = "face",
        face_parts: Any = None,
    ) -> View:
        """Render one view.

        Args:
            cam: the camera.
            light_dir: direction from the surface towards a distant light, in
                ``light_frame``; default from the upper left, in front of the object.
            light_frame: ``"camera"`` (the light moves with the camera) or ``"world"``.
            ambient, diffuse: Lambert terms, rgb = albedo * light_color *
                (ambient + diffuse * max(0, n . l)), clipped to [0, 1].
            light_color: RGB in [0, 1].
            background: RGB uint8 of pixels that miss the mesh.
            normals: normal stored in ``View.normal`` and used for shading.
            face_parts: int [F], overrides the renderer's part labels for this call.

        Returns:
            A ``View``; see its docstring for shapes and units.
        """
        if not isinstance(cam, Camera):
            raise TypeError(f"cam must be a render.Camera, got {type(cam).__name__}")
        if light_frame not in ("camera", "world"):
            raise ValueError(f'light_frame must be "camera" or "world", got {light_frame!r}')
        if normals not in ("face", "smooth"):
            raise ValueError(f'normals must be "face" or "smooth", got {normals!r}')
        ldir = _vec3(DEFAULT_LIGHT_DIR if light_dir is None else light_dir, "light_dir")
        if not np.linalg.norm(ldir) > 0:
            raise ValueError("light_dir must be non-zero")
        ldir = ldir / np.linalg.norm(ldir)
        if light_frame == "camera":
            ldir = cam.R.T @ ldir
        lcol = np.asarray(light_color, dtype=np.float32)
        bg = np.asarray(background)
        if lcol.shape != (3,) or bg.shape != (3,):
            raise ValueError("light_color and background must be RGB triples")
        if np.any(bg < 0) or np.any(bg > 255):
            raise ValueError(f"background must be uint8 RGB in [0, 255], got {bg.tolist()}")
        parts = self.face_parts if face_parts is None else _check_parts(face_parts, len(self.faces), "face_parts")

        H, W = cam.height, cam.width
        rgb = np.empty((H * W, 3), np.uint8)
        rgb[:] = bg.astype(np.uint8)
        depth = np.zeros(H * W, np.float32)
        xyz = np.full((H * W, 3), np.nan, np.float32)
        normal = np.zeros((H * W, 3), np.float32)
        face_id = np.full(H * W, -1, np.int32)
        bary = np.zeros((H * W, 3), np.float32)
        part_id = np.full(H * W, -1, np.int32)
        mask = np.zeros(H * W, bool)

        rect = self._pixel_rect(cam) if self._scene is not None else None
        if rect is not None:
            x0, x1, y0, y1 = rect
            rays = cam._rays_f32
            if (x1 - x0, y1 - y0) == (W, H):
                sub_rays = rays.reshape(-1, 6)
            else:
                sub_rays = np.ascontiguousarray(rays[y0:y1, x0:x1]).reshape(-1, 6)
            t_hit, hit_face, hit_uv = self._scene.cast(sub_rays)
            local = np.flatnonzero(np.isfinite(t_hit))
            idx = (local // (x1 - x0) + y0) * W + local % (x1 - x0) + x0
            mask[idx] = True
            fid = np.take(hit_face, local)
            uv = np.take(hit_uv, local, axis=0)
            # Embree's (u, v) weight vertices 1 and 2; vertex 0 gets the rest.
            b = np.empty((len(idx), 3))
            b[:, 1:] = uv
            b[:, 0] = 1.0 - b[:, 1] - b[:, 2]
            p = np.einsum("nk,nkc->nc", b, np.take(self._corners, fid, axis=0))
            b32 = b.astype(np.float32)

            ray_dir = np.take(cam._dirs_f32, idx, axis=0)
            n = np.take(self._face_normals32, fid, axis=0)
            flip = np.where(np.einsum("nc,nc->n", n, ray_dir) > 0, np.float32(-1), np.float32(1))[:, None]
            n *= flip
            degenerate = ~np.any(n != 0, axis=1)
            if degenerate.any():
                d = ray_dir[degenerate]
                n[degenerate] = -d / np.linalg.norm(d, axis=1, keepdims=True)
            if normals == "smooth":
                corner_n = np.take(self._corner_normals, fid, axis=0)
                sn = np.einsum("nk,nkc->nc", b32, corner_n) * flip
                sl = np.linalg.norm(sn, axis=1, keepdims=True)
                n = np.where(sl > 1e-12, sn / np.maximum(sl, 1e-12), n)

            lambert = np.maximum(n @ ldir.astype(np.float32), 0)[:, None]
            shade = (np.float32(ambient) + np.float32(diffuse) * lambert) * lcol
            colour = self._albedo(fid, b32) * shade
            rgb[idx] = np.clip(colour * 255.0 + 0.5, 0, 255).astype(np.uint8)
            # Depth from the reconstructed point (not Embree's float32 t) so that
            # depth, xyz and project() agree to float64 precision.
            depth[idx] = (p - cam.eye) @ cam.R[2]
            xyz[idx] = p
            normal[idx] = n
            face_id[idx] = fid
            bary[idx] = b32
            if parts is not None:
                part_id[idx] = np.take(parts, fid)

        return View(
            rgb=rgb.reshape(H, W, 3),
            mask=mask.reshape(H, W),
            depth=depth.reshape(H, W),
            xyz=xyz.reshape(H, W, 3),
            normal=normal.reshape(H, W, 3),
            face_id=face_id.reshape(H, W),
            bary=bary.reshape(H, W, 3),
            part_id=part_id.reshape(H, W),
            camera=cam,
        )


# ---------------------------------------------------------------------------------
# Cached entry points
# ---------------------------------------------------------------------------------

_CACHE_SIZE = 4
_cache: OrderedDict[int, tuple[weakref.ref, tuple, Renderer]] = OrderedDict()
# Re-entrant: a weakref callback can fire from garbage collection inside a locked
# section of the same thread.
_cache_lock = threading.RLock()


def _fingerprint(mesh: trimesh.Trimesh) -> tuple:
    """Cheap identity of what a Renderer copies: trimesh caches array hashes until
    an array is modified, so this is O(1) for an unchanged mesh."""
    visual = mesh.visual
    material = getattr(visual, "material", None)
    return (
        hash(mesh),
        type(visual),
        hash(visual),
        id(material),
        id(getattr(material, "image", None)),
        id(getattr(material, "baseColorTexture", None)),
        id(mesh.metadata.get("face_parts")),
    )


def renderer_for(mesh: Any) -> Renderer:
    """The cached ``Renderer`` of ``mesh`` (a Trimesh or shape-like object).

    Keeps the last few meshes (LRU), keyed by object and checked against the mesh's
    geometry/visual hashes, so an edited mesh is rebuilt, never served stale. Part
    labels are those of the mesh's metadata; shape labels are applied per call by
    ``render_view``.
    """
    tm, _ = _unwrap(mesh)
    key, fp = id(tm), _fingerprint(tm)
    with _cache_lock:
        entry = _cache.get(key)
        if entry is not None and entry[0]() is tm and entry[1] == fp:
            _cache.move_to_end(key)
            return entry[2]
    renderer = Renderer(tm)

    def _drop(_ref: weakref.ref, key: int = key) -> None:
        with _cache_lock:
            if key in _cache and _cache[key][0] is _ref:
                del _cache[key]

    with _cache_lock:
        _cache[key] = (weakref.ref(tm, _drop), fp, renderer)
        _cache.move_to_end(key)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return renderer


def clear_cache() -> None:
    """Forget every cached ``Renderer``."""
    with _cache_lock:
        _cache.clear()


def render_view(mesh: Any, cam: Camera, *, face_parts: Any = None, **opts: Any) -> View:
    """Render ``mesh`` (Trimesh or shape-like) from ``cam``; see ``Renderer.render``.

    The BVH is cached per mesh, so repeated calls cost only the ray cast. Part labels:
    ``face_parts`` if given, else the shape's ``face_parts``, else
    ``mesh.metadata["face_parts"]``.
    """
    _, shape_parts = _unwrap(mesh)
    parts = face_parts if face_parts is not None else shape_parts
    return renderer_for(mesh).render(cam, face_parts=parts, **opts)


def render_views(mesh: Any, cams: Sequence[Camera], *, face_parts: Any = None, **opts: Any) -> list[View]:
    """Render ``mesh`` from every camera in ``cams``; one BVH for all."""
    _, shape_parts = _unwrap(mesh)
    parts = face_parts if face_parts is not None else shape_parts
    renderer = renderer_for(mesh)
    return [renderer.render(cam, face_parts=parts, **opts) for cam in cams]
