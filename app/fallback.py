"""The 3D view without viser, for hosts that cannot proxy a WebSocket: a GLB for ``gr.Model3D``.

:class:`FallbackViewer` has the methods of :class:`app.viewer.Viewer` that the explorer calls
(``show``, ``clear``, ``set_colors``, ``set_marker``, ...), keeps the scene as plain arrays,
and writes it as one GLB (every slot side by side, vertex colours from the nearest overlay
point, markers as small spheres) whenever the page asks for a newer ``version``. Clicking the
shape is not possible in this view (Model3D reports no picks): pixel -> 3D, 3D <-> 3D from the
second shape's controls, mask transfer, the feature view and exports all still work.

:func:`render_scene` is the server-side picture of a scene (either viewer's), used for the
screenshot export when no browser can render one.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from .export import Y_UP, ExportDir, nearest_point_index, png_bytes
from .overlay import draw_marker
from .viewer import BEST_COLOR, MESH_COLOR, QUERY_COLOR, SceneSlot, SlotContent, _display_mesh, slot_frame

__all__ = ["FallbackViewer", "render_scene", "scene_glb", "screenshot_png"]

MARKER_COLORS = {"best": BEST_COLOR, "query": QUERY_COLOR}


class FallbackViewer:
    """Scene state with the Viewer interface; ``glb_path()`` writes it for ``gr.Model3D``."""

    port = None

    def __init__(self, export_root: str | Path) -> None:
        self._lock = threading.RLock()
        self._slots: dict[int, dict] = {}
        self._closed = False
        self.version = 0
        self._written: tuple[int, Path] | None = None
        self._exports = ExportDir(export_root, max_files=4)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._slots.clear()
        self._exports.cleanup()

    def show(self, slot: int, content: SlotContent) -> None:
        with self._lock:
            if self._closed:
                return
            prev = self._slots.get(slot - 1)
            frame, width = slot_frame(content.mesh, slot, None if prev is None else (prev["frame"], prev["width"]))
            self._slots[slot] = {"content": content, "frame": frame, "width": width,
                                 "colors": np.ascontiguousarray(content.base, np.uint8).copy(), "markers": {}}
            self.version += 1

    def clear(self, slot: int) -> None:
        with self._lock:
            if self._slots.pop(slot, None) is not None:
                self.version += 1

    def clear_from(self, first: int) -> None:
        for slot in [s for s in self.slots() if s >= first]:
            self.clear(slot)

    def slots(self) -> list[int]:
        with self._lock:
            return sorted(self._slots)

    def set_colors(self, slot: int, colors: np.ndarray) -> None:
        with self._lock:
            entry = self._slots.get(slot)
            if entry is None or self._closed:
                return
            entry["colors"] = np.ascontiguousarray(colors, np.uint8).copy()
            self.version += 1

    def colors(self, slot: int) -> np.ndarray | None:
        with self._lock:
            entry = self._slots.get(slot)
            return None if entry is None else entry["colors"].copy()

    def set_marker(self, slot: int, which: str, point: np.ndarray | None) -> None:
        if which not in ("best", "query"):
            raise ValueError(f"marker must be 'best' or 'query', got {which!r}")
        with self._lock:
            entry = self._slots.get(slot)
            if entry is None or self._closed:
                return
            if point is None:
                if entry["markers"].pop(which, None) is not None:
                    self.version += 1
                return
            entry["markers"][which] = np.asarray(point, np.float64).reshape(3).copy()
            self.version += 1

    def marker(self, slot: int, which: str) -> np.ndarray | None:
        with self._lock:
            entry = self._slots.get(slot)
            return None if entry is None else entry["markers"].get(which)

    def scene(self) -> list[SceneSlot]:
        with self._lock:
            return [SceneSlot(content=e["content"], frame=e["frame"], colors=e["colors"].copy(),
                              markers=dict(e["markers"])) for _, e in sorted(self._slots.items())]

    def screenshot(self, **_: object) -> None:
        return None  # no browser renders this scene; the caller falls back to render_scene

    def glb_path(self) -> tuple[Path | None, bool]:
        """(path of a GLB of the current scene or None when empty, whether it is new since the
        last call)."""
        with self._lock:
            version = self.version
            if self._written is not None and self._written[0] == version:
                return self._written[1], False
            scene = self.scene()
        if not scene:
            return None, self._written is not None and self._written[0] != version
        path = self._exports.write("scene", "glb", scene_glb(scene))
        with self._lock:
            self._written = (version, path)
        return path, True


def _slot_mesh(entry: SceneSlot) -> tuple[trimesh.Trimesh, np.ndarray]:
    """(display-coordinate mesh of the slot, uint8 [V, 3] vertex colours from the overlay)."""
    shown = _display_mesh(entry.content.mesh)
    idx = nearest_point_index(shown.vertices, entry.content.points)
    verts = entry.frame.to_display(shown.vertices)
    return trimesh.Trimesh(vertices=verts, faces=np.asarray(shown.faces), process=False), entry.colors[idx]


def scene_glb(scene: list[SceneSlot]) -> bytes:
    """One GLB (Y up) of every slot with its overlay colours and markers."""
    parts = []
    for entry in scene:
        mesh, colors = _slot_mesh(entry)
        mesh.visual.vertex_colors = np.concatenate([colors, np.full((len(colors), 1), 255, np.uint8)], axis=1)
        parts.append(mesh)
        for which, point in entry.markers.items():
            ball = trimesh.creation.icosphere(subdivisions=2, radius=0.02)
            ball.apply_translation(entry.frame.to_display(point))
            ball.visual.vertex_colors = np.array([*MARKER_COLORS[which], 255], np.uint8)
            parts.append(ball)
    merged = trimesh.util.concatenate(parts)
    merged.apply_transform(np.block([[Y_UP, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]))
    return merged.export(file_type="glb")


def render_scene(scene: list[SceneSlot], *, width: int = 960, height: int = 600) -> Image.Image:
    """A server-side picture of ``scene``: the project's ray caster, each pixel coloured like
    its nearest overlay point, Lambert-shaded, markers drawn on top. White when empty."""
    from tango3d_core.data import render

    if not scene:
        return Image.new("RGB", (width, height), (255, 255, 255))
    meshes, colors, owners = [], [], []
    for i, entry in enumerate(scene):
        mesh, vc = _slot_mesh(entry)
        meshes.append(mesh)
        colors.append(vc)
        owners.append(np.full(len(mesh.faces), i))
    merged = trimesh.util.concatenate(meshes)
    vcol = np.concatenate(colors).astype(np.float32)
    lo = np.min([e.frame.offset - 0.5 for e in scene], axis=0)
    hi = np.max([e.frame.offset + 0.5 for e in scene], axis=0)
    centre = (lo + hi) / 2.0
    direction = np.array([0.57, -0.82, 0.36])  # the viewer's initial three-quarter view
    eye = centre + direction / np.linalg.norm(direction) * (0.7 + 0.55 * float(hi[0] - lo[0]))
    cam = render.Camera.look_at(eye, centre, (0.0, 0.0, 1.0), fov_deg=50.0, width=width, height=height)
    view = render.Renderer(merged).render(cam)
    out = np.full((height, width, 3), 255.0, np.float32)
    m = view.mask
    if m.any():
        corners = np.asarray(merged.faces)[view.face_id[m]]                # [P, 3]
        rgb = np.einsum("pk,pkc->pc", view.bary[m], vcol[corners])
        light = np.array([-0.4, -0.6, -0.7]) / np.linalg.norm([-0.4, -0.6, -0.7])
        shade = 0.35 + 0.65 * np.clip((view.normal[m] @ cam.R.T) @ light, 0.0, 1.0)
        grey = np.asarray(MESH_COLOR, np.float32)
        rgb = np.where(np.isfinite(rgb), rgb, grey)
        out[m] = rgb * shade[:, None]
    img = Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8))
    for entry in scene:
        for which, point in entry.markers.items():
            xy, depth = cam.project_with_depth(entry.frame.to_display(point)[None])
            if depth[0] > 0:
                img = draw_marker(img, (float(xy[0, 0]), float(xy[0, 1])), color=MARKER_COLORS[which])
    return img


def screenshot_png(viewer: object) -> bytes:
    """PNG bytes of what ``viewer`` shows: the browser's own render when a client can give one,
    else :func:`render_scene`."""
    shot = viewer.screenshot() if hasattr(viewer, "screenshot") else None  # type: ignore[attr-defined]
    if shot is not None:
        return png_bytes(shot)
    return png_bytes(render_scene(viewer.scene()))  # type: ignore[attr-defined]

