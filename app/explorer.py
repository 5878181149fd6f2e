"""What the explorer does, free of Gradio: uploads, encodings, clicks, comparison, retrieval.

Every public method is one UI event. It takes the tab's :class:`~app.session.Session`, does the
work, and returns plain values (PIL images, strings). A problem the user can fix raises
:class:`UserError`, whose message the UI shows as is; anything else is a bug, logged by the UI.
The Gradio wiring lives in ``app/ui.py``; tests call these methods directly.

Data flow of a click (pixel -> 3D)::

    ImageFeatures.sample(xy) [D]  --(provider device)-->  ShapeFeatures.dense @ f  [N]
        -> overlay.point_colors -> Viewer.set_colors (viser handle updated in place)

and of a 3D click (viser thread)::

    ray -> Viewer.pick (mesh intersection) -> ShapeFeatures.query(p) [D]
        -> overlay.heat_image over the image -> Session.panels, version += 1
        -> the page's gr.Timer polls ``poll`` and shows the new panels
"""

from __future__ import annotations

import concurrent.futures
import logging
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import trimesh
from PIL import Image, ImageOps

from .examples import Example
from .gallery import Gallery, Hit
from .overlay import draw_marker, heat_image, point_colors
from .session import EncodedShape, LRUCache, Session, file_digest, image_digest
from .viewer import SlotContent, Viewer

__all__ = ["Explorer", "Limits", "UserError", "surface_colors"]

log = logging.getLogger("tango3d.app")

UpAxis = Literal["z", "y"]
Progress = Callable[..., Any]
IMAGE_FORMATS = {"PNG": "PNG", "JPEG": "JPG", "WEBP": "WebP"}
MESH_EXTENSIONS = (".obj", ".ply", ".stl", ".off", ".glb")
QUERY_MARKER = (20, 220, 255)   # the clicked pixel (matches the viewer's query marker)
BEST_MARKER = (255, 0, 255)     # the best match (matches the viewer's best marker)


class UserError(Exception):
    """Something the user can fix (bad file, missing input); the message is shown in the UI."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one upload may cost.

    max_image_bytes / max_image_pixels  refuse larger image files / decoded sizes
    image_side       the working image's longest side (larger images are downscaled once)
    max_mesh_bytes   refuse larger mesh files
    max_faces        meshes with more faces are decimated to this count on load
    num_points       surface samples per shape (features and overlay points)
    timeout_s        wall-clock budget of one load or encode
    max_sessions     open sessions (tabs); the least recently used is closed beyond this
    """

    max_image_bytes: int = 25 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    image_side: int = 1024
    max_mesh_bytes: int = 100 * 1024 * 1024
    max_faces: int = 300_000
    num_points: int = 8192
    timeout_s: float = 120.0
    max_sessions: int = 16


def _step(progress: Progress | None, frac: float, desc: str) -> None:
    if progress is not None:
        progress(frac, desc=desc)


def surface_colors(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """uint8 [N, 3]: the mesh's own colour (texture, vertex or face colours) at surface points.

    points  [N, 3] on (or near) the surface, mesh coordinates; each takes the colour at its
            closest surface point (Open3D closest-point query; texture sampled at the
            interpolated uv). Uncoloured meshes give light grey.
    """
    import open3d as o3d

    n = len(points)
    grey = np.full((n, 3), 200, np.uint8)
    visual = mesh.visual
    kind = getattr(visual, "kind", None)
    if kind not in ("vertex", "face", "texture") or n == 0:
        return grey
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    res = scene.compute_closest_points(o3d.core.Tensor(np.asarray(points, np.float32)))
    fid = res["primitive_ids"].numpy().astype(np.int64)
    uv = res["primitive_uvs"].numpy().astype(np.float64)
    bary = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=1)  # Embree: (u, v) weight v1, v2
    corners = np.asarray(mesh.faces)[fid]                                    # [N, 3]
    if kind == "face":
        return np.asarray(visual.face_colors)[fid, :3].astype(np.uint8)
    if kind == "vertex":
        vc = np.asarray(visual.vertex_colors, np.float64)[:, :3]
        return np.clip(np.einsum("nk,nkc->nc", bary, vc[corners]) + 0.5, 0, 255).astype(np.uint8)
    material = visual.material
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    if image is None or visual.uv is None:
        return grey
    uvs = np.einsum("nk,nkc->nc", bary, np.asarray(visual.uv, np.float64)[corners])
    rgba = trimesh.visual.color.uv_to_color(uvs, image)
    return np.asarray(rgba)[:, :3].astype(np.uint8)


class Explorer:
    """The app: providers, caches, examples, gallery, and the open sessions.

    primary          the provider every session starts with (``--provider``)
    make_provider    builds another registered provider by name, for side-by-side comparison
    compare_choices  names offered for comparison
    examples         (folder, examples) from ``app.examples.ensure_examples``
    gallery          retrieval gallery, or None to hide retrieval
    work_dir         private folder for uploaded files (stored by content hash, never by name)
    viewer           False runs without viser (tests of the 2D side, benchmarks)
    viewer_host      interface the per-session viser servers bind
    """

    def __init__(self, primary: Any, *, make_provider: Callable[[str], Any] | None = None,
                 compare_choices: Sequence[str] = (), examples: tuple[Path, list[Example]] | None = None,
                 gallery: Gallery | None = None, work_dir: str | Path, limits: Limits = Limits(),
                 viewer: bool = True, viewer_host: str = "127.0.0.1", shape_cache: int = 12,
                 image_cache: int = 48) -> None:
        self.primary = primary
        self._providers: dict[str, Any] = {primary.name: primary}
        self._make_provider = make_provider
        self.compare_choices = [c for c in compare_choices if c != primary.name]
        self.examples_dir, self.examples = examples if examples is not None else (Path("."), [])
        self.gallery = gallery
        self.work_dir = Path(work_dir)
        (self.work_dir / "uploads").mkdir(parents=True, exist_ok=True)
        self.limits = limits
        self.viewer_enabled = viewer
        self.viewer_host = viewer_host
        self.meshes: LRUCache[tuple, trimesh.Trimesh] = LRUCache(shape_cache)
        self.shape_cache: LRUCache[tuple, EncodedShape] = LRUCache(shape_cache)
        self.image_cache: LRUCache[tuple, Any] = LRUCache(image_cache)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._sessions_lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="encode")
        self._provider_lock = threading.Lock()
        if gallery is not None:
            gallery.build_in_background(primary)

    # ----------------------------------------------------------------- sessions
    def open_session(self, session_id: str) -> Session:
        """A new session with its own viewer; closes the least recently used one past the limit."""
        session = Session(id=session_id, providers=[self.primary.name])
        if self.viewer_enabled:
            session.viewer = Viewer(host=self.viewer_host, on_click=lambda slot, p: self.click_point(session, slot, p))
        evicted = []
        with self._sessions_lock:
            old = self._sessions.pop(session_id, None)
            if old is not None:
                evicted.append(old)
            self._sessions[session_id] = session
            while len(self._sessions) > self.limits.max_sessions:
                evicted.append(self._sessions.popitem(last=False)[1])
        for s in evicted:
            self._close(s)
        return session

    def close_session(self, session: Session | str | None) -> None:
        """Close a session (by object or id); idempotent."""
        if session is None:
            return
        with self._sessions_lock:
            if isinstance(session, str):
                session = self._sessions.pop(session, None)
            elif self._sessions.get(session.id) is session:
                # (A late callback for an old tab must not close a newer session with its id.)
                del self._sessions[session.id]
        if session is not None:
            self._close(session)

    def sessions(self) -> list[str]:
        with self._sessions_lock:
            return list(self._sessions)

    @staticmethod
    def _close(session: Session) -> None:
        with session.lock:
            session.closed = True
            if session.viewer is not None:
                session.viewer.close()

    def _live(self, session: Session | None) -> Session:
        if session is None or session.closed:
            raise UserError("This session has ended (closed to free resources, or the server restarted). "
                            "Reload the page to start a new one.")
        session.touch()
        with self._sessions_lock:
            if session.id in self._sessions:
                self._sessions.move_to_end(session.id)
        return session

    # ---------------------------------------------------------------- providers
    def provider(self, name: str) -> Any:
        with self._provider_lock:
            if name in self._providers:
                return self._providers[name]
            if self._make_provider is None or name not in self.compare_choices:
                raise UserError(f"Unknown provider {name!r}.")
        try:
            made = self._make_provider(name)
        except Exception as e:
            log.exception("provider %s failed to start", name)
            raise UserError(f"The provider {name!r} could not be started: {e}") from e
        with self._provider_lock:
            return self._providers.setdefault(name, made)

    def _run(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` on the encode pool with the wall-clock budget ``limits.timeout_s``."""
        future = self._pool.submit(fn, *args, **kwargs)
        try:
            return future.result(timeout=self.limits.timeout_s)
        except concurrent.futures.TimeoutError:
            raise UserError(f"{what} took longer than {self.limits.timeout_s:g} s and was abandoned; "
                            "try a smaller file.") from None

    # ------------------------------------------------------------------- images
    def read_image(self, path: str | Path) -> Image.Image:
        """Validate and decode an uploaded image into the working image (RGB, longest side capped)."""
        path = Path(path)
        lim = self.limits
        try:
            size = path.stat().st_size
        except OSError:
            raise UserError("The uploaded image could not be read; please upload it again.") from None
        if size > lim.max_image_bytes:
            raise UserError(f"The image file is {size / 2**20:.1f} MB; the limit is {lim.max_image_bytes / 2**20:.0f} MB.")
        try:
            with Image.open(path) as im:
                fmt = im.format
                if fmt not in IMAGE_FORMATS:
                    raise UserError(f"Unsupported image format ({fmt or 'unknown'}); upload a PNG, JPG or WebP image.")
                if im.width * im.height > lim.max_image_pixels:
                    raise UserError(f"The image is {im.width} x {im.height} pixels; the limit is "
                                    f"{lim.max_image_pixels / 1e6:.0f} megapixels.")
                im.load()
                img = ImageOps.exif_transpose(im)
        except UserError:
            raise
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
            raise UserError(f"The file is not a readable PNG, JPG or WebP image ({type(e).__name__}).") from None
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        img = img.convert("RGB")
        if max(img.size) > lim.image_side:
            s = lim.image_side / max(img.size)
            img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.LANCZOS)
        return img

    def load_image(self, session: Session, path: str | Path, *, progress: Progress | None = None
                   ) -> list[Image.Image | None]:
        """Upload -> working image, encoded by every provider in view. Returns the panels."""
        session = self._live(session)
        _step(progress, 0.05, "Reading image")
        img = self.read_image(path)
        key = image_digest(img)
        feats = {}
        for i, name in enumerate(session.providers):
            _step(progress, 0.2 + 0.7 * i / len(session.providers), f"Encoding image ({name})")
            feats[name] = self._image_features(self.provider(name), img, key)
        with session.lock:
            session.image, session.image_key, session.image_features = img, key, feats
            session.last_query = None
            session.best_pixels.clear()
            self._reset_overlay(session)
            session.panels = [img if i < len(session.providers) else None for i in range(2)]
            session.seen_version = session.version
            session.status = f"Image {img.width} x {img.height} ready. " + self._hint(session)
            return list(session.panels)

    def _image_features(self, provider: Any, img: Image.Image, key: str) -> Any:
        feats, _ = self.image_cache.get_or_compute(
            (provider.fingerprint, "image", key),
            lambda: self._run("Encoding the image", provider.encode_image, img))
        return feats

    # ------------------------------------------------------------------- meshes
    def load_mesh_file(self, session: Session, path: str | Path, *, up_axis: UpAxis = "z",
                       display_name: str | None = None, progress: Progress | None = None) -> str:
        """Upload -> mesh (validated, Z-up), encoded by every provider in view, shown in the viewer."""
        from tango3d_core.data.meshio import MeshLoadError, load_mesh

        session = self._live(session)
        if up_axis not in ("z", "y"):
            raise UserError(f"Up axis must be Z or Y, got {up_axis!r}.")
        path = Path(path)
        shown = _display_name(display_name or path.name)
        ext = Path(shown).suffix.lower() or path.suffix.lower()
        if ext not in MESH_EXTENSIONS:
            raise UserError(f"'{shown}' is not a supported mesh; upload OBJ, PLY, STL, OFF or GLB.")
        try:
            size = path.stat().st_size
        except OSError:
            raise UserError("The uploaded mesh could not be read; please upload it again.") from None
        if size > self.limits.max_mesh_bytes:
            raise UserError(f"'{shown}' is {size / 2**20:.1f} MB; the limit is {self.limits.max_mesh_bytes / 2**20:.0f} MB.")
        _step(progress, 0.02, "Reading mesh")
        digest = file_digest(path)
        # The upload is kept under its content hash: user-chosen names never reach a file path.
        stored = self.work_dir / "uploads" / f"{digest}{ext}"
        if not stored.is_file():
            tmp = stored.with_suffix(f".part{threading.get_ident()}")
            shutil.copyfile(path, tmp)
            tmp.replace(stored)

        def read() -> trimesh.Trimesh:
            try:
                return load_mesh(stored, up_axis=up_axis, max_faces=self.limits.max_faces,
                                 max_bytes=self.limits.max_mesh_bytes, timeout_s=self.limits.timeout_s)
            except MeshLoadError as e:
                raise UserError(str(e).replace(stored.name, shown)) from None

        mesh, _ = self.meshes.get_or_compute(("file", digest, up_axis), lambda: self._run(f"Reading '{shown}'", read))
        return self._set_shape(session, mesh, key=f"file-{digest}-{up_axis}", name=shown,
                               source=("file", str(stored)), up_axis=up_axis, progress=progress)

    def set_up_axis(self, session: Session, up_axis: UpAxis, *, progress: Progress | None = None) -> str:
        """Reload the current uploaded mesh file with another up axis. Gallery shapes keep the
        orientation they were indexed with; the choice then applies to the next upload."""
        session = self._live(session)
        if up_axis not in ("z", "y"):
            raise UserError(f"Up axis must be Z or Y, got {up_axis!r}.")
        if session.mesh_source is None or session.mesh_source[0] != "file" or up_axis == session.up_axis:
            session.up_axis = up_axis
            return session.status
        return self.load_mesh_file(session, session.mesh_source[1], up_axis=up_axis, display_name=session.mesh_name,
                                   progress=progress)

    def _set_shape(self, session: Session, mesh: trimesh.Trimesh, *, key: str, name: str,
                   source: tuple[str, str], up_axis: str, progress: Progress | None) -> str:
        encoded = {}
        t0 = time.perf_counter()
        for i, pname in enumerate(session.providers):
            _step(progress, 0.1 + 0.8 * i / len(session.providers), f"Encoding shape ({pname})")
            encoded[pname] = self._shape_features(self.provider(pname), mesh, key)
        _step(progress, 0.95, "Sending to the viewer")
        with session.lock:
            session.mesh, session.mesh_key, session.mesh_name = mesh, key, name
            session.mesh_source, session.up_axis = source, up_axis
            session.shapes = encoded
            session.last_query = None
            session.best_points.clear()
            if session.viewer is not None:
                for slot, pname in enumerate(session.providers):
                    self._show(session, slot, pname)
            if session.image is not None:
                session.panels = [session.image if i < len(session.providers) else None for i in range(2)]
            dt = time.perf_counter() - t0
            faces = len(mesh.faces)
            extra = f", decimated from {mesh.metadata['decimated_from']:,}" if "decimated_from" in mesh.metadata else ""
            session.status = (f"Mesh '{name}' ready: {faces:,} faces{extra}, "
                              f"{self.limits.num_points:,} feature points ({dt:.1f} s). " + self._hint(session))
            return session.status

    def _shape_features(self, provider: Any, mesh: trimesh.Trimesh, key: str) -> EncodedShape:
        def encode() -> EncodedShape:
            feats = provider.encode_shape(mesh, num_points=self.limits.num_points, seed=0)
            base_u8 = surface_colors(mesh, feats.points.detach().cpu().numpy())
            base = torch.from_numpy(base_u8.astype(np.float32) / 255.0).to(feats.dense.device)
            return EncodedShape(features=feats, base=base, base_u8=base_u8)

        value, _ = self.shape_cache.get_or_compute(
            (provider.fingerprint, "shape", key, self.limits.num_points),
            lambda: self._run("Encoding the shape", encode))
        return value

    def _show(self, session: Session, slot: int, pname: str) -> None:
        enc = session.shapes[pname]
        f = enc.features
        session.viewer.show(slot, SlotContent(mesh=session.mesh, points=f.points.detach().cpu().numpy(),
                                              normals=f.normals.detach().cpu().numpy(), base=enc.base_u8,
                                              label=pname))

    # ----------------------------------------------------------------- examples
    def load_example(self, session: Session, index: int, *, progress: Progress | None = None
                     ) -> tuple[list[Image.Image | None], str]:
        """Load example ``index`` (image and mesh). Returns (panels, the example's up axis)."""
        session = self._live(session)
        if not 0 <= int(index) < len(self.examples):
            raise UserError("That example does not exist.")
        ex = self.examples[int(index)]
        self.load_image(session, ex.image_path(self.examples_dir), progress=progress)
        self.load_mesh_file(session, ex.mesh_path(self.examples_dir), up_axis=ex.up_axis,  # type: ignore[arg-type]
                            display_name=ex.mesh, progress=progress)
        with session.lock:
            session.status = f"Example '{ex.name}': {ex.caption}. " + self._hint(session)
            return list(session.panels), ex.up_axis

    # ------------------------------------------------------------------- clicks
    def click_pixel(self, session: Session, xy: Sequence[float]) -> list[Image.Image | None]:
        """A click on the image at pixel ``xy`` = (x, y) of the working image: colour the shape(s)."""
        session = self._live(session)
        with session.lock:
            if session.image is None:
                raise UserError("Upload an image (or pick an example) first.")
            if session.mesh is None:
                raise UserError("Upload a mesh (or pick an example) to see where this pixel lands.")
            try:
                x, y = float(xy[0]), float(xy[1])
            except (TypeError, ValueError, IndexError):
                raise UserError("The click position did not arrive; click the image again.") from None
            w, h = session.image.size
            if not (np.isfinite(x) and np.isfinite(y)):
                raise UserError("The click position did not arrive; click the image again.")
            x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
            session.last_query = ("pixel", (x, y))
            self._render_query(session)
            session.seen_version = session.version
            return list(session.panels)

    def click_point(self, session: Session, slot: int, point: np.ndarray) -> None:
        """A click on the shape in the viewer (viser's thread): heat maps over the image."""
        try:
            with session.lock:
                if session.closed or session.mesh is None:
                    return
                if session.image is None:
                    session.status = "Upload an image to see where this point appears in it."
                    session.version += 1
                    return
                session.last_query = ("point", np.asarray(point, np.float64).reshape(3))
                self._render_query(session)
                session.version += 1
        except Exception:  # a viser callback must not die silently: log it, keep the viewer alive
            log.exception("3D click failed")

    def _render_query(self, session: Session) -> None:
        """Recompute colours, markers and panels for ``session.last_query`` (under ``session.lock``)."""
        if session.last_query is None:
            self._reset_overlay(session)
            return
        kind, value = session.last_query
        st = session.overlay
        t0 = time.perf_counter()
        for slot, pname in enumerate(session.providers):
            img_f = session.image_features[pname]
            enc = session.shapes[pname]
            dense = enc.features.dense
            if kind == "pixel":
                f = img_f.sample(torch.tensor([value], dtype=torch.float32))[0].to(dense.device)
                sims = dense @ f
                colors, best = point_colors(sims, enc.base, st)
                best_point = enc.features.points[best].detach().cpu().numpy().astype(np.float64)
                session.best_points[pname] = best_point
                session.panels[slot] = draw_marker(session.image, value, color=QUERY_MARKER)
                if session.viewer is not None:
                    session.viewer.set_colors(slot, colors)
                    session.viewer.set_marker(slot, "best", best_point)
                    session.viewer.set_marker(slot, "query", None)
            else:
                q = enc.features.query(torch.tensor(value[None], dtype=torch.float32))[0].to(dense.device)
                heat, best_px = heat_image(session.image, img_f.dense, q, st)
                session.best_pixels[pname] = best_px
                session.panels[slot] = draw_marker(heat, best_px, color=BEST_MARKER)
                # The shape shows the clicked point's similarity to the rest of the shape (3D -> 3D).
                colors, _ = point_colors(dense @ q, enc.base, st)
                if session.viewer is not None:
                    session.viewer.set_colors(slot, colors)
                    session.viewer.set_marker(slot, "query", value)
                    session.viewer.set_marker(slot, "best", None)
        session.last_ms = (time.perf_counter() - t0) * 1000.0
        if kind == "pixel":
            px = ", ".join(f"{p}: best point ({', '.join(f'{v:.3f}' for v in session.best_points[p])})"
                           for p in session.providers)
            session.status = f"Pixel ({value[0]:.0f}, {value[1]:.0f}) → {px}."
        else:
            px = ", ".join(f"{p}: best pixel {session.best_pixels[p]}" for p in session.providers)
            session.status = f"Point ({', '.join(f'{v:.3f}' for v in value)}) → {px}."

    def _reset_overlay(self, session: Session) -> None:
        if session.viewer is None or session.mesh is None:
            return
        for slot, pname in enumerate(session.providers):
            if pname in session.shapes:
                session.viewer.set_colors(slot, session.shapes[pname].base_u8)
            session.viewer.set_marker(slot, "best", None)
            session.viewer.set_marker(slot, "query", None)

    def poll(self, session: Session | None) -> list[Image.Image | None] | None:
        """New panels if a 3D click changed them since the last call, else None."""
        if session is None or session.closed:
            return None
        with session.lock:
            if session.version == session.seen_version:
                return None
            session.seen_version = session.version
            return list(session.panels)

    def set_overlay(self, session: Session, **changes: Any) -> list[Image.Image | None] | None:
        """Change colormap / mode / k / threshold / opacity / scale and redraw the last query."""
        session = self._live(session)
        with session.lock:
            try:
                session.overlay = session.overlay.updated(**changes)
            except (TypeError, ValueError) as e:
                raise UserError(f"Invalid display setting: {e}") from None
            if session.last_query is None:
                return None
            self._render_query(session)
            session.seen_version = session.version
            return list(session.panels)

    # --------------------------------------------------------------- comparison
    def set_compare(self, session: Session, name: str | None, *, progress: Progress | None = None
                    ) -> list[Image.Image | None]:
        """Show a second provider side by side (``None`` or "" turns comparison off)."""
        session = self._live(session)
        if name:
            if name == self.primary.name:
                raise UserError("Pick a provider other than the primary one to compare with.")
            provider = self.provider(name)
            img_f = enc = None
            if session.image is not None:
                _step(progress, 0.2, f"Encoding image ({name})")
                img_f = self._image_features(provider, session.image, session.image_key)
            if session.mesh is not None:
                _step(progress, 0.5, f"Encoding shape ({name})")
                enc = self._shape_features(provider, session.mesh, session.mesh_key)
        with session.lock:
            for old in session.providers[1:]:
                session.image_features.pop(old, None)
                session.shapes.pop(old, None)
            session.providers = [self.primary.name] + ([name] if name else [])
            if name:
                if img_f is not None:
                    session.image_features[name] = img_f
                if enc is not None:
                    session.shapes[name] = enc
                    if session.viewer is not None:
                        self._show(session, 1, name)
            elif session.viewer is not None:
                session.viewer.clear(1)
            session.panels[1] = session.image if name else None
            if session.last_query is not None and session.image is not None and session.mesh is not None:
                self._render_query(session)
            session.seen_version = session.version
            session.status = (f"Comparing {self.primary.name} with {name}." if name else "Comparison off.")
            return list(session.panels)

    # ---------------------------------------------------------------- retrieval
    def _gallery_ready(self) -> Gallery:
        if self.gallery is None:
            raise UserError("No gallery is loaded.")
        status = self.gallery.status(self.primary)
        if status != "ready":
            raise UserError(f"The gallery is not ready ({status}); try again in a moment.")
        return self.gallery

    def search_text(self, session: Session, text: str, *, k: int = 8) -> list[Hit]:
        session = self._live(session)
        text = (text or "").strip()
        if not text:
            raise UserError("Type a description to search for, e.g. 'a chair with armrests'.")
        if len(text) > 500:
            raise UserError("The query is too long (500 characters at most).")
        if not getattr(self.primary, "supports_text", False):
            raise UserError(f"The provider '{self.primary.name}' has no text encoder; search with an image instead.")
        gallery = self._gallery_ready()
        try:
            q = self._run("Encoding the text", self.primary.encode_text, [text])[0]
        except ImportError as e:
            raise UserError(f"Text search is unavailable: {e}") from None
        return self._hits(session, gallery.search(self.primary, q, k=k))

    def search_image(self, session: Session, *, k: int = 8) -> list[Hit]:
        session = self._live(session)
        if session.image is None:
            raise UserError("Upload an image (or pick an example) first; it is the query.")
        gallery = self._gallery_ready()
        feats = session.image_features.get(self.primary.name)
        if feats is None:
            feats = self._image_features(self.primary, session.image, session.image_key)
        return self._hits(session, gallery.search(self.primary, feats.global_embedding, k=k))

    @staticmethod
    def _hits(session: Session, hits: list[Hit]) -> list[Hit]:
        with session.lock:
            session.search_hits = hits
            session.status = f"{len(hits)} shapes found; click one to load it."
        return hits

    def load_hit(self, session: Session, index: int, *, progress: Progress | None = None) -> str:
        """Load search result ``index`` into the viewer."""
        session = self._live(session)
        with session.lock:
            hits = list(session.search_hits)
        if not 0 <= int(index) < len(hits):
            raise UserError("That result is no longer available; search again.")
        item = hits[int(index)].item
        _step(progress, 0.05, f"Loading {item.name}")
        mesh, _ = self.meshes.get_or_compute(("gallery", item.key), lambda: self._run(f"Loading {item.name}", item.load))
        return self._set_shape(session, mesh, key=f"gallery-{item.key}", name=item.name, source=("gallery", item.key),
                               up_axis=session.up_axis, progress=progress)

    # -------------------------------------------------------------------- misc
    @staticmethod
    def _hint(session: Session) -> str:
        if session.image is None:
            return "Now upload an image."
        if session.mesh is None:
            return "Now upload a mesh."
        return "Click a pixel of the image, or a point of the shape."

    def shutdown(self) -> None:
        for sid in self.sessions():
            self.close_session(sid)
        self._pool.shutdown(wait=False, cancel_futures=True)


def _display_name(name: str) -> str:
    """A user-supplied file name reduced to something safe to show (never used as a path)."""
    base = Path(str(name).replace("\\", "/")).name
    clean = "".join(c for c in base if c.isprintable() and c not in "<>\"'`")
    return (clean[:80] or "upload")
