"""The 3D side of the explorer: one viser server (one scene) per browser session.

Why one server per session: a viser client cannot tell the server which Gradio session it
belongs to (the websocket carries no page URL or cookie viser exposes), so per-client scenes
could not be matched to a Gradio tab. A server of its own per session isolates two tabs by
construction; it costs one thread and one local port (OS-assigned), and is stopped when the
session closes.

Scene layout (display coordinates = mesh coordinates centred on the bounding-box centre and
scaled to a diagonal of 1, so viser's default float16 positions stay precise):

* ``/slot{i}/mesh``     the shape, light grey (simplified to ``DISPLAY_FACES``), one per view
                        (shape x provider), side by side along +X, each just right of the slot
                        before it
* ``/slot{i}/overlay``  the provider's N surface samples as a point cloud, nudged outwards along
                        their normals; only its ``colors`` change on a click (updated in place)
* ``/slot{i}/best``     a marker on the best-matching point
* ``/slot{i}/query``    a marker on the point clicked in 3D
* ``/slot{i}/label``    the view's name (provider, and shape when two are shown)
* ``/recon/mesh``       optional: the shape VAE's reconstruction of one slot's shape, light blue,
                        in that slot's display frame moved left of it (``recon_frame``), so the
                        input and what the VAE kept of it stand side by side; ``/recon/label``

Clicks: ``scene.on_click`` hands us a ray; point clouds are not clickable, so the ray is
intersected with the mesh here (the project's ray caster: a 1 x 1 pixel camera along the ray).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import trimesh

__all__ = ["DisplayFrame", "SceneSlot", "SlotContent", "Viewer", "intersect_ray", "recon_frame", "slot_frame"]

MESH_COLOR = (200, 200, 205)
RECON_COLOR = (150, 185, 235)  # the VAE reconstruction: light blue, told apart from the grey input
BEST_COLOR = (255, 0, 255)   # magenta: in none of the colormaps, so it stands out on the heat
QUERY_COLOR = (20, 220, 255)
SLOT_GAP = 0.35  # display units between side-by-side copies
# Faces sent to the browser. The mesh there is only the backdrop of the overlay points, and
# clicks are intersected with the full mesh here, so a lighter copy costs no accuracy; it keeps
# the websocket message small and the browser's frame time low (software WebGL included).
DISPLAY_FACES = 30_000


@dataclass(frozen=True)
class DisplayFrame:
    """Mesh coordinates -> display coordinates: ``(p - centre) * scale + offset``."""

    centre: np.ndarray
    scale: float
    offset: np.ndarray

    @classmethod
    def for_mesh(cls, mesh: trimesh.Trimesh, *, offset: np.ndarray | None = None) -> DisplayFrame:
        lo, hi = np.asarray(mesh.bounds[0], np.float64), np.asarray(mesh.bounds[1], np.float64)
        diag = float(np.linalg.norm(hi - lo))
        return cls(centre=(lo + hi) / 2.0, scale=1.0 / diag if diag > 0 else 1.0,
                   offset=np.zeros(3) if offset is None else np.asarray(offset, np.float64))

    def to_display(self, p: np.ndarray) -> np.ndarray:
        return (np.asarray(p, np.float64) - self.centre) * self.scale + self.offset

    def to_mesh(self, p: np.ndarray) -> np.ndarray:
        return (np.asarray(p, np.float64) - self.offset) / self.scale + self.centre


@dataclass(frozen=True)
class SlotContent:
    """What one slot shows.

    mesh        the shape, in its own (mesh) coordinates
    points      [N, 3] overlay points, mesh coordinates
    normals     [N, 3] their unit normals
    base        uint8 [N, 3] surface colour at each point (shown where no heat is drawn)
    label       text above the shape (the provider's name)
    """

    mesh: trimesh.Trimesh
    points: np.ndarray
    normals: np.ndarray
    base: np.ndarray
    label: str


def slot_frame(mesh: trimesh.Trimesh, slot: int, previous: tuple[DisplayFrame, float] | None
               ) -> tuple[DisplayFrame, float]:
    """Display frame and display width of ``mesh`` in ``slot``: just right of the previous slot
    (its frame and width) with a gap of ``SLOT_GAP``, or at ``slot * (1 + SLOT_GAP)`` along +X
    when there is none (a display diagonal is 1, so that never overlaps)."""
    frame0 = DisplayFrame.for_mesh(mesh)
    width = float((mesh.bounds[1][0] - mesh.bounds[0][0]) * frame0.scale)
    if previous is None:
        x = slot * (1.0 + SLOT_GAP)
    else:
        pf, pw = previous
        x = float(pf.offset[0]) + pw / 2.0 + SLOT_GAP + width / 2.0
    return DisplayFrame(frame0.centre, frame0.scale, np.array([x, 0.0, 0.0])), width


def recon_frame(frame: DisplayFrame, width: float, mesh: trimesh.Trimesh) -> DisplayFrame:
    """Display frame of ``mesh`` (in the mesh coordinates of a slot shown with ``frame`` and display
    width ``width``) just left of that slot, ``SLOT_GAP`` apart: the slot's centre and scale, so
    the two are drawn at the same size, and only the offset moved along -X. Slots extend along
    +X from slot 0, so left of slot 0 nothing else is drawn."""
    right = float((np.asarray(mesh.bounds[1][0], np.float64) - frame.centre[0]) * frame.scale)
    x = float(frame.offset[0]) - width / 2.0 - SLOT_GAP - right
    return DisplayFrame(frame.centre, frame.scale, np.array([x, float(frame.offset[1]), float(frame.offset[2])]))


def intersect_ray(mesh: trimesh.Trimesh, origin: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, float] | None:
    """First hit of a ray with ``mesh`` (all in mesh coordinates).

    Returns (hit point [3], distance along the unit direction) or None. Uses the project's
    cached Open3D BVH (``render.renderer_for``) through a 1 x 1 camera whose single pixel
    centre lies on the optical axis, i.e. exactly on the ray.
    """
    from tango3d_core.data import render

    d = np.asarray(direction, np.float64)
    n = float(np.linalg.norm(d))
    if not n > 0 or not np.isfinite(d).all() or not np.isfinite(origin).all():
        return None
    d = d / n
    up = (0.0, 0.0, 1.0) if abs(d[2]) < 0.9 else (0.0, 1.0, 0.0)
    o = np.asarray(origin, np.float64)
    cam = render.Camera.look_at(o, o + d, up, fov_deg=1.0, width=1, height=1)
    view = render.renderer_for(mesh).render(cam)
    if not view.mask[0, 0]:
        return None
    hit = view.xyz[0, 0].astype(np.float64)
    return hit, float(np.dot(hit - o, d))


_display_cache: dict[int, tuple[weakref.ref, trimesh.Trimesh]] = {}
_display_lock = threading.Lock()


def _display_mesh(mesh: trimesh.Trimesh, max_faces: int = DISPLAY_FACES) -> trimesh.Trimesh:
    """``mesh`` itself, or a quadric-decimated copy with about ``max_faces`` faces (computed once
    per mesh object, forgotten with it: sessions showing the same cached mesh share it)."""
    if len(mesh.faces) <= max_faces:
        return mesh
    key = id(mesh)
    with _display_lock:
        entry = _display_cache.get(key)
        if entry is not None and entry[0]() is mesh:
            return entry[1]
    try:
        light = mesh.simplify_quadric_decimation(face_count=max_faces)
    except Exception:  # no decimation backend: send the full mesh rather than nothing
        light = mesh

    def forget(_ref: weakref.ref, key: int = key) -> None:
        with _display_lock:
            if key in _display_cache and _display_cache[key][0] is _ref:
                del _display_cache[key]

    with _display_lock:
        _display_cache[key] = (weakref.ref(mesh, forget), light)
    return light


@dataclass(frozen=True)
class SceneSlot:
    """One slot as shown: its content, display frame, overlay colours uint8 [N, 3], and the
    visible markers ("best" / "query") in mesh coordinates."""

    content: SlotContent
    frame: DisplayFrame
    colors: np.ndarray
    markers: dict[str, np.ndarray]


ClickCallback = Callable[[int, np.ndarray], None]
"""``callback(slot, point)``: the first hit, in the slot's mesh coordinates."""


STOP_THREAD_NAME = "viser-stop"


class Viewer:
    """One viser server and its scene. Thread-safe: Gradio handlers and viser callbacks both call in.

    host     interface the viser server binds (the app's ``--host``)
    port     0 lets the OS choose a free port (read it back from ``port``)
    on_click called from viser's thread pool when the user clicks a shape
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, on_click: ClickCallback | None = None) -> None:
        import viser

        self._server = viser.ViserServer(host=host, port=port, verbose=False)
        self._lock = threading.RLock()
        self._slots: dict[int, tuple[SlotContent, DisplayFrame, dict[str, object], float]] = {}
        # The reconstruction beside a slot: (slot, that slot's mesh, reconstruction, its display
        # frame, handles, label).
        self._recon: tuple[int, trimesh.Trimesh, trimesh.Trimesh, DisplayFrame, dict[str, object], str] | None = None
        self._on_click = on_click
        self._closed = False
        self._server.gui.configure_theme(show_logo=False, show_share_button=False)
        self._server.gui.add_markdown("**Tango3D** — click the shape to find its pixels.")
        self._server.scene.set_up_direction("+z")
        # No shadows: they add nothing to reading colours and multiply the cost of every frame
        # (which matters most in software WebGL).
        self._server.scene.configure_default_lights(enabled=True, cast_shadow=False)
        # A three-quarter view from the front-right, like the example renders (see _frame_camera).
        self._server.initial_camera.position = (0.67, -0.96, 0.43)
        self._server.initial_camera.look_at = (0.0, 0.0, 0.0)
        self._server.scene.on_click()(self._handle_click)

    # ----------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        return int(self._server.get_port())

    @property
    def server(self):  # noqa: ANN201 - viser.ViserServer, imported lazily
        return self._server

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, *, wait: bool = False) -> None:
        """Stop the server. By default in the background (viser's stop joins its loop thread for
        up to seconds); ``wait=True`` returns only once it has stopped. Threads doing the
        background stop are named ``STOP_THREAD_NAME``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._slots.clear()
            self._recon = None
        stopper = threading.Thread(target=self._server.stop, name=STOP_THREAD_NAME, daemon=True)
        stopper.start()
        if wait:
            stopper.join()

    def url(self, hostname: str = "127.0.0.1", *, scheme: str = "http") -> str:
        return f"{scheme}://{hostname}:{self.port}/"

    # -------------------------------------------------------------------- slots
    def show(self, slot: int, content: SlotContent) -> None:
        """Put ``content`` into ``slot`` (the explorer numbers its views: first shape per provider,
        then the second shape), replacing what was there, just right of slot ``slot - 1``."""
        mesh = content.mesh
        with self._lock:
            prev = self._slots.get(slot - 1)
        frame, width = slot_frame(mesh, slot, None if prev is None else (prev[1], prev[3]))
        shown = _display_mesh(mesh)
        verts = frame.to_display(shown.vertices).astype(np.float32)
        spacing = float(np.sqrt(max(mesh.area, 1e-12) * frame.scale**2 / max(len(content.points), 1)))
        # Nudge the overlay off the surface so it wins the depth test against the mesh.
        pts = frame.to_display(content.points) + content.normals * (0.15 * spacing)
        top = float(verts[:, 2].max()) if len(verts) else 0.5
        scene = self._server.scene
        with self._lock:
            if self._closed:
                return
            old = self._slots.pop(slot, None)
            if old is not None:
                for h in old[2].values():
                    h.remove()  # type: ignore[attr-defined]
            # A reconstruction beside this slot stays where it is if the slot shows the same shape
            # at the same place, moves with it if elsewhere, and goes if the shape is another.
            recon = self._recon if self._recon is not None and self._recon[0] == slot else None
            keep = recon is not None and recon[1] is mesh and np.array_equal(
                recon_frame(frame, width, recon[2]).offset, recon[3].offset)
            if recon is not None and not keep:
                self._remove_recon()
            handles: dict[str, object] = {}
            with self._server.atomic():
                handles["mesh"] = scene.add_mesh_simple(f"/slot{slot}/mesh", verts, np.asarray(shown.faces, np.uint32),
                                                        color=MESH_COLOR, side="double", cast_shadow=False,
                                                        receive_shadow=False)
                handles["overlay"] = scene.add_point_cloud(
                    f"/slot{slot}/overlay", pts.astype(np.float32), np.ascontiguousarray(content.base, np.uint8),
                    point_size=1.25 * spacing, point_shape="circle", point_shading="flat")
                r = max(0.018, 1.5 * spacing)
                handles["best"] = scene.add_icosphere(f"/slot{slot}/best", radius=r, color=BEST_COLOR, visible=False,
                                                      cast_shadow=False, receive_shadow=False)
                handles["query"] = scene.add_icosphere(f"/slot{slot}/query", radius=r, color=QUERY_COLOR,
                                                       visible=False, cast_shadow=False, receive_shadow=False)
                handles["label"] = scene.add_label(f"/slot{slot}/label", content.label,
                                                   position=(float(frame.offset[0]), 0.0, top + 0.08),
                                                   anchor="bottom-center")
            self._slots[slot] = (content, frame, handles, width)
            if recon is not None and recon[1] is mesh and not keep:
                self._place_recon(slot, recon[2], recon[5])
            self._frame_camera()
        # Build the BVH now so that the first click is not the slow one.
        from tango3d_core.data import render

        render.renderer_for(mesh)

    def clear(self, slot: int) -> None:
        with self._lock:
            old = self._slots.pop(slot, None)
            if old is not None and not self._closed:
                for h in old[2].values():
                    h.remove()  # type: ignore[attr-defined]
                if self._recon is not None and self._recon[0] == slot:
                    self._remove_recon()
                self._frame_camera()

    # ----------------------------------------------------------- reconstruction
    def show_reconstruction(self, slot: int, mesh: trimesh.Trimesh, label: str) -> DisplayFrame | None:
        """Show ``mesh`` (a reconstruction of slot ``slot``'s shape, in that shape's mesh
        coordinates) left of the slot, at the same scale (``recon_frame``), replacing any shown
        before. It follows the slot when the slot is shown again with the same mesh, and goes
        when the slot is cleared or shows another mesh. Returns its display frame, or None when
        the slot is empty (nothing is shown)."""
        with self._lock:
            if slot not in self._slots or self._closed:
                return None
            self._remove_recon()
            frame = self._place_recon(slot, mesh, label)
            self._frame_camera()
            return frame

    def _place_recon(self, slot: int, mesh: trimesh.Trimesh, label: str) -> DisplayFrame:
        """(Under the lock; slot ``slot`` is shown, no reconstruction is.)"""
        content, frame, _, width = self._slots[slot]
        rframe = recon_frame(frame, width, mesh)
        shown = _display_mesh(mesh)
        verts = rframe.to_display(shown.vertices).astype(np.float32)
        top = float(verts[:, 2].max()) if len(verts) else 0.5
        centre_x = float(rframe.to_display(np.asarray(mesh.bounds, np.float64).mean(axis=0))[0])
        scene = self._server.scene
        with self._server.atomic():
            handles: dict[str, object] = {
                "mesh": scene.add_mesh_simple("/recon/mesh", verts, np.asarray(shown.faces, np.uint32),
                                              color=RECON_COLOR, side="double", cast_shadow=False,
                                              receive_shadow=False),
                "label": scene.add_label("/recon/label", label, position=(centre_x, 0.0, top + 0.08),
                                         anchor="bottom-center"),
            }
        self._recon = (slot, content.mesh, mesh, rframe, handles, label)
        return rframe

    def clear_reconstruction(self) -> None:
        """Hide the reconstruction (if one is shown)."""
        with self._lock:
            if self._recon is not None and not self._closed:
                self._remove_recon()
                self._frame_camera()

    def reconstruction(self) -> tuple[int, trimesh.Trimesh, DisplayFrame, np.ndarray] | None:
        """The shown reconstruction: (slot, mesh in mesh coordinates, display frame, the display
        vertices the browser is sent [V, 3]), or None."""
        with self._lock:
            if self._recon is None:
                return None
            slot, _, mesh, frame, handles, _ = self._recon
            return slot, mesh, frame, np.array(handles["mesh"].vertices)  # type: ignore[attr-defined]

    def _remove_recon(self) -> None:
        """(Under the lock.)"""
        if self._recon is not None:
            for h in self._recon[4].values():
                h.remove()  # type: ignore[attr-defined]
            self._recon = None

    def _frame_camera(self) -> None:
        """Aim the initial camera, and every connected browser's camera, at all shown slots: a
        three-quarter view from the front-right (as the example renders) that fits them."""
        if not self._slots:
            return
        offsets = [e[1].offset for e in self._slots.values()]
        if self._recon is not None:
            offsets.append(self._recon[3].offset)
        lo = np.min([o - 0.5 for o in offsets], axis=0)
        hi = np.max([o + 0.5 for o in offsets], axis=0)
        centre = (lo + hi) / 2.0
        width = float(hi[0] - lo[0])
        direction = np.array([0.57, -0.82, 0.36])  # azimuth ~35 deg, elevation ~20 deg
        position = centre + direction / np.linalg.norm(direction) * (0.7 + 0.55 * width)
        look_at = tuple(float(v) for v in centre)
        pos = tuple(float(v) for v in position)
        self._server.initial_camera.position = pos
        self._server.initial_camera.look_at = look_at
        for client in self._server.get_clients().values():
            try:
                # Position first: viser moves look_at along with it; then aim.
                client.camera.position = pos
                client.camera.look_at = look_at
            except (AssertionError, ValueError):  # camera state not reported yet: it starts framed
                pass

    def slots(self) -> list[int]:
        with self._lock:
            return sorted(self._slots)

    def clear_from(self, first: int) -> None:
        """Remove every slot numbered ``first`` or higher."""
        for slot in [s for s in self.slots() if s >= first]:
            self.clear(slot)

    def scene(self) -> list[SceneSlot]:
        """What every slot shows now (for a server-side render or a GLB of the scene)."""
        with self._lock:
            out = []
            for slot in sorted(self._slots):
                content, frame, handles, _ = self._slots[slot]
                markers = {w: frame.to_mesh(np.asarray(handles[w].position))  # type: ignore[attr-defined]
                           for w in ("best", "query") if handles[w].visible}  # type: ignore[attr-defined]
                colors = np.array(handles["overlay"].colors)  # type: ignore[attr-defined]
                out.append(SceneSlot(content=content, frame=frame, colors=colors, markers=markers))
            return out

    def screenshot(self, *, max_width: int = 1280, timeout: float = 10.0) -> np.ndarray | None:
        """uint8 [H, W, 3]: what the most recently connected browser shows (rendered by that
        client at its canvas size, at most ``max_width`` wide), or None without a client."""
        clients = list(self._server.get_clients().values())
        if not clients or self._closed:
            return None
        client = clients[-1]
        try:
            cam = client.camera
            w, h = int(cam.image_width), int(cam.image_height)
        except (AssertionError, AttributeError, ValueError):
            w, h = 0, 0
        if w <= 0 or h <= 0:
            w, h = 960, 640
        if w > max_width:
            w, h = max_width, max(1, round(h * max_width / w))
        try:
            img = client.get_render(h, w, transport_format="jpeg", timeout=timeout)
        except Exception:  # disconnected, timed out, or a client that cannot render
            return None
        return np.asarray(img)[..., :3].astype(np.uint8)

    def set_colors(self, slot: int, colors: np.ndarray) -> None:
        """Overlay colours, uint8 [N, 3]; the handle is updated in place (one small message)."""
        with self._lock:
            entry = self._slots.get(slot)
            if entry is None or self._closed:
                return
            entry[2]["overlay"].colors = np.ascontiguousarray(colors, np.uint8)  # type: ignore[attr-defined]

    def colors(self, slot: int) -> np.ndarray | None:
        """The overlay colours the server holds for ``slot`` (what the browser is sent)."""
        with self._lock:
            entry = self._slots.get(slot)
            return None if entry is None else np.array(entry[2]["overlay"].colors)  # type: ignore[attr-defined]

    def set_marker(self, slot: int, which: str, point: np.ndarray | None) -> None:
        """Show marker ``which`` ("best" or "query") at ``point`` (mesh coordinates), or hide it."""
        if which not in ("best", "query"):
            raise ValueError(f"marker must be 'best' or 'query', got {which!r}")
        with self._lock:
            entry = self._slots.get(slot)
            if entry is None or self._closed:
                return
            handle = entry[2][which]
            if point is None:
                handle.visible = False  # type: ignore[attr-defined]
                return
            handle.position = tuple(float(v) for v in entry[1].to_display(point))  # type: ignore[attr-defined]
            handle.visible = True  # type: ignore[attr-defined]

    def marker(self, slot: int, which: str) -> np.ndarray | None:
        """Mesh-coordinate position of a visible marker, else None."""
        with self._lock:
            entry = self._slots.get(slot)
            if entry is None:
                return None
            h = entry[2][which]
            return entry[1].to_mesh(np.asarray(h.position)) if h.visible else None  # type: ignore[attr-defined]

    # ------------------------------------------------------------------- clicks
    def pick(self, origin: np.ndarray, direction: np.ndarray) -> tuple[int, np.ndarray] | None:
        """Nearest shape hit by a display-space ray: (slot, point in mesh coordinates) or None."""
        with self._lock:
            slots = [(s, e[0].mesh, e[1]) for s, e in self._slots.items()]
        best: tuple[float, int, np.ndarray] | None = None
        for slot, mesh, frame in slots:
            hit = intersect_ray(mesh, frame.to_mesh(origin), np.asarray(direction, np.float64))
            if hit is None:
                continue
            dist = hit[1] * frame.scale
            if best is None or dist < best[0]:
                best = (dist, slot, hit[0])
        return None if best is None else (best[1], best[2])

    def _handle_click(self, event) -> None:  # noqa: ANN001 - viser.SceneClickEvent
        picked = self.pick(np.asarray(event.ray_origin), np.asarray(event.ray_direction))
        if picked is not None and self._on_click is not None:
            self._on_click(*picked)
