"""What the explorer does, free of Gradio: uploads, encodings, clicks, comparison, retrieval,
3D <-> 3D matching, pixel -> many shapes, mask transfer, the feature view, the VAE
reconstruction and exports.

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

Views: the viewer shows one slot per (shape, provider): the first shape "a" for every provider
in view, then the second shape "b" (3D <-> 3D) for every provider. A query colours every view
with its own provider's features; a click on a point of one shape marks the best-matching
point on the other (cosine of the clicked point's feature, ``ShapeFeatures.query``, against the
other shape's ``dense`` features; the same field ``dense`` samples).
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
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
from PIL import Image

from tango3d_core.eval.suites.retrieval import POSE_RERANK_TOP_K, rerank_top_k
from tango3d_core.models.features import ImageFeatures
from tango3d_core.models.pose import estimate_pose, pose_heatmap, pose_match

from .examples import Example
from .export import ExportDir, mesh_bytes, values_npy_bytes
from .fallback import FallbackViewer, screenshot_png
from .gallery import Gallery, Hit
from .many import MANY_POINTS, ShapeCard
from .masks import (MaskError, draw_mask, foreground_mask, mask_from_editor, mask_prototypes, read_mask_file,
                    region_scores)
from .overlay import OverlaySettings, draw_marker, heat_image, point_colors, score_image
from .pca import fit_pca, image_pca_rgb
from .reconstruction import RESOLUTION, reconstruct, tango3d_model
from .sam import SamSegmenter, find_checkpoint, sam_status
from .session import EncodedShape, LRUCache, Session, ViewResult, file_digest, image_digest
from .viewer import SlotContent, Viewer

__all__ = ["POSE_RERANK_TOP_K", "Explorer", "Limits", "UserError", "surface_colors"]

log = logging.getLogger("tango3d.app")

UpAxis = Literal["z", "y"]
ViewerKind = Literal["viser", "fallback"]
ExportKind = Literal["ply", "glb", "npy", "png"]
ShapeId = Literal["a", "b"]
Progress = Callable[..., Any]
MESH_EXTENSIONS = (".obj", ".ply", ".stl", ".off", ".glb")
QUERY_MARKER = (20, 220, 255)   # the clicked pixel (matches the viewer's query marker)
BEST_MARKER = (255, 0, 255)     # the best match (matches the viewer's best marker)
MAX_MANY = 8                    # gallery shapes in one pixel -> many query


class UserError(Exception):
    """Something the user can fix (bad file, missing input); the message is shown in the UI."""


class _Abandoned(Exception):
    """The pose re-rank ran past its budget (the search falls back to the global order)."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one upload may cost.

    max_image_bytes / max_image_pixels  refuse larger image files / decoded sizes
    image_side       the working image's longest side (larger images are downscaled once)
    max_mesh_bytes   refuse larger mesh files
    max_faces        meshes with more faces are decimated to this count on load
    max_stored_uploads  uploaded mesh files kept on disk (for an up-axis change); older ones are
                     deleted, so the work folder does not grow with every upload
    num_points       surface samples per shape (features and overlay points)
    timeout_s        wall-clock budget of one load or encode
    max_sessions     open sessions (tabs); the least recently used is closed beyond this. An idle
                     tab costs ~0.1 MB and one thread (its viser server): room for 20+ users at once
    Mask uploads are bounded like images (``max_image_bytes``, ``max_image_pixels``).
    """

    max_image_bytes: int = 25 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    image_side: int = 1024
    max_mesh_bytes: int = 100 * 1024 * 1024
    max_faces: int = 300_000
    max_stored_uploads: int = 32
    num_points: int = 8192
    timeout_s: float = 120.0
    max_sessions: int = 64


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
    work_dir         private folder for uploads (stored by content hash, never by name) and the
                     sessions' export folders
    viewer           "viser" (or True): one viser server per session; "fallback": a GLB for
                     ``gr.Model3D`` (no WebSocket); False: no 3D view (tests, benchmarks)
    viewer_host      interface the per-session viser servers bind
    cache_dir        where an optional SAM checkpoint is looked for (``<cache_dir>/sam/*.safetensors``)
    """

    def __init__(self, primary: Any, *, make_provider: Callable[[str], Any] | None = None,
                 compare_choices: Sequence[str] = (), examples: tuple[Path, list[Example]] | None = None,
                 gallery: Gallery | None = None, work_dir: str | Path, limits: Limits = Limits(),
                 viewer: bool | ViewerKind = True, viewer_host: str = "127.0.0.1", shape_cache: int = 12,
                 image_cache: int = 48, many_cache: int = 24, cache_dir: str | Path | None = None) -> None:
        self.primary = primary
        self._providers: dict[str, Any] = {primary.name: primary}
        self._make_provider = make_provider
        self.compare_choices = [c for c in compare_choices if c != primary.name]
        self.examples_dir, self.examples = examples if examples is not None else (Path("."), [])
        self.gallery = gallery
        self.work_dir = Path(work_dir)
        (self.work_dir / "uploads").mkdir(parents=True, exist_ok=True)
        self.limits = limits
        if viewer is True:
            viewer = "viser"
        if viewer not in (False, "viser", "fallback"):
            raise ValueError(f"viewer must be 'viser', 'fallback' or False, got {viewer!r}")
        self.viewer_kind: ViewerKind | None = viewer or None
        self.viewer_enabled = bool(viewer)
        self.viewer_host = viewer_host
        self.meshes: LRUCache[tuple, trimesh.Trimesh] = LRUCache(shape_cache)
        self.shape_cache: LRUCache[tuple, EncodedShape] = LRUCache(shape_cache)
        self.image_cache: LRUCache[tuple, Any] = LRUCache(image_cache)
        self.many_cache: LRUCache[tuple, ShapeCard] = LRUCache(many_cache)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._sessions_lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="encode")
        self._provider_lock = threading.Lock()
        self.sam_available, self.sam_message = sam_status(cache_dir)
        self._sam: SamSegmenter | None = None
        self._cache_dir = cache_dir
        if gallery is not None:
            gallery.build_in_background(primary)

    # ----------------------------------------------------------------- sessions
    def open_session(self, session_id: str) -> Session:
        """A new session with its own viewer (a viser server of its own, started here and
        stopped by :meth:`close_session`); closes the least recently used one past the limit."""
        session = Session(id=session_id, providers=[self.primary.name])
        if self.viewer_kind == "viser":
            session.viewer = Viewer(host=self.viewer_host, on_click=lambda slot, p: self.click_point(session, slot, p))
        elif self.viewer_kind == "fallback":
            session.viewer = FallbackViewer(self.work_dir / "scenes")
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
        """Close a session (by object or id): stop its viewer, delete its exports; idempotent."""
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

    def session(self, session_id: str) -> Session | None:
        with self._sessions_lock:
            return self._sessions.get(session_id)

    def viewer_port(self, token: str) -> int | None:
        """Local port of the open viser server whose session has viewer token ``token`` (the
        single-port proxy's routing table), or None."""
        with self._sessions_lock:
            for s in self._sessions.values():
                if s.viewer_token == token and not s.closed:
                    port = getattr(s.viewer, "port", None)
                    return None if port is None or s.viewer.closed else int(port)
        return None

    @staticmethod
    def _close(session: Session) -> None:
        with session.lock:
            session.closed = True
            if session.viewer is not None:
                session.viewer.close()
            if session.exports is not None:
                session.exports.cleanup()

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
        """Validate and decode an uploaded image into the working image (RGB, longest side capped).

        ``tango3d_core.data.imageio.load_image`` does the work: byte cap before decoding, pixel
        cap from the header, first frame of an animation, 16-bit / CMYK / palette converted,
        transparency over white, EXIF orientation applied."""
        from tango3d_core.data.imageio import ImageLoadError, load_image

        lim = self.limits
        try:
            return load_image(path, max_bytes=lim.max_image_bytes, max_pixels=lim.max_image_pixels,
                              max_side=lim.image_side)
        except ImageLoadError as e:
            raise UserError(str(e)) from None

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
            session.last_pixel = None
            session.best_pixels.clear()
            session.mask, session.foreground = None, None
            session.many_results = []
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
    def _read_mesh_file(self, path: str | Path, *, up_axis: UpAxis, display_name: str | None
                        ) -> tuple[trimesh.Trimesh, str, str, Path]:
        """Validate, store (by content hash) and load an uploaded mesh: (mesh, key, shown name,
        stored path). The mesh is cached by (content, up axis)."""
        from tango3d_core.data.meshio import MeshLoadError, load_mesh

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
        digest = file_digest(path)
        # The upload is kept under its content hash: user-chosen names never reach a file path.
        stored = self.work_dir / "uploads" / f"{digest}{ext}"
        if not stored.is_file():
            tmp = stored.with_suffix(f".part{threading.get_ident()}")
            shutil.copyfile(path, tmp)
            tmp.replace(stored)
        else:
            stored.touch()  # most recently used: pruned last
        self._prune_uploads(keep=stored)

        def read() -> trimesh.Trimesh:
            try:
                return load_mesh(stored, up_axis=up_axis, max_faces=self.limits.max_faces,
                                 max_bytes=self.limits.max_mesh_bytes, timeout_s=self.limits.timeout_s)
            except MeshLoadError as e:
                raise UserError(str(e).replace(stored.name, shown)) from None

        mesh, _ = self.meshes.get_or_compute(("file", digest, up_axis), lambda: self._run(f"Reading '{shown}'", read))
        return mesh, f"file-{digest}-{up_axis}", shown, stored

    def _prune_uploads(self, *, keep: Path) -> None:
        """Keep the ``limits.max_stored_uploads`` most recently used uploaded meshes and delete the
        rest (an up-axis change of a deleted one asks for the file again). Partial copies of
        other threads (``*.part<thread>``) are left alone."""
        files = []
        for p in (self.work_dir / "uploads").iterdir():
            if p.suffix.lower() not in MESH_EXTENSIONS or p == keep:
                continue
            try:
                files.append((p.stat().st_mtime, p))
            except FileNotFoundError:
                continue
        files.sort(reverse=True)
        for _, p in files[max(0, self.limits.max_stored_uploads - 1):]:
            p.unlink(missing_ok=True)

    def load_mesh_file(self, session: Session, path: str | Path, *, up_axis: UpAxis = "z",
                       display_name: str | None = None, progress: Progress | None = None) -> str:
        """Upload -> mesh (validated, Z-up), encoded by every provider in view, shown in the viewer."""
        session = self._live(session)
        _step(progress, 0.02, "Reading mesh")
        mesh, key, shown, stored = self._read_mesh_file(path, up_axis=up_axis, display_name=display_name)
        return self._set_shape(session, mesh, key=key, name=shown, source=("file", str(stored)), up_axis=up_axis,
                               progress=progress)

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
            if session.reconstruction_shown and session.viewer is not None:
                session.viewer.clear_reconstruction()
            session.reconstruction, session.reconstruction_shown = None, False  # it was of the old shape
            session.last_query = None
            session.best_points.clear()
            session.match_points.clear()
            session.results.clear()
            self._show_all(session)
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

    # -------------------------------------------------------------------- views
    @staticmethod
    def _views(session: Session) -> list[tuple[ShapeId, str, EncodedShape]]:
        """The viewer's slots in order: (shape, provider, encoding); slot = index in this list."""
        views: list[tuple[ShapeId, str, EncodedShape]] = []
        if session.mesh is not None:
            views += [("a", p, session.shapes[p]) for p in session.providers if p in session.shapes]
        if session.second_mesh is not None:
            views += [("b", p, session.shapes_b[p]) for p in session.providers if p in session.shapes_b]
        return views

    def _show_all(self, session: Session) -> None:
        """(Re)build every slot from ``_views`` (under ``session.lock``)."""
        if session.viewer is None:
            return
        views = self._views(session)
        two = session.second_mesh is not None
        for slot, (sid, pname, enc) in enumerate(views):
            mesh = session.mesh if sid == "a" else session.second_mesh
            name = session.mesh_name if sid == "a" else session.second_name
            f = enc.features
            session.viewer.show(slot, SlotContent(mesh=mesh, points=f.points.detach().cpu().numpy(),
                                                  normals=f.normals.detach().cpu().numpy(), base=enc.base_u8,
                                                  label=f"{pname} · {name}" if two else pname))
        session.viewer.clear_from(len(views))

    # ------------------------------------------------------------ second shape
    def load_second_file(self, session: Session, path: str | Path, *, up_axis: UpAxis = "z",
                         display_name: str | None = None, progress: Progress | None = None) -> str:
        """Upload -> the second shape, side by side with the first (3D <-> 3D matching)."""
        session = self._live(session)
        _step(progress, 0.02, "Reading the second mesh")
        mesh, key, shown, _ = self._read_mesh_file(path, up_axis=up_axis, display_name=display_name)
        return self._set_second(session, mesh, key=key, name=shown, progress=progress)

    def load_second_gallery(self, session: Session, key: str, *, progress: Progress | None = None) -> str:
        """A gallery shape (by its key) -> the second shape."""
        session = self._live(session)
        if self.gallery is None:
            raise UserError("No gallery is loaded; upload a second mesh instead.")
        item = self._gallery_item(key)
        if item is None:
            raise UserError("That gallery shape does not exist; pick another one.")
        _step(progress, 0.05, f"Loading {item.name}")
        mesh = self._gallery_mesh(item)
        return self._set_second(session, mesh, key=f"gallery-{item.key}", name=item.name, progress=progress)

    def _gallery_item(self, key: str) -> Any:
        """The gallery item with ``key``, or None (a dict look-up when the gallery offers one)."""
        if self.gallery is None:
            return None
        lookup = getattr(self.gallery, "item", None)
        if callable(lookup):
            return lookup(key)
        return next((it for it in self.gallery.items if it.key == key), None)

    def _gallery_mesh(self, item: Any) -> trimesh.Trimesh:
        mesh, _ = self.meshes.get_or_compute(("gallery", item.key),
                                             lambda: self._run(f"Loading {item.name}", item.load))
        return mesh

    def _set_second(self, session: Session, mesh: trimesh.Trimesh, *, key: str, name: str,
                    progress: Progress | None) -> str:
        with session.lock:
            if session.mesh is None:
                raise UserError("Load the first shape (upload, example or search result) before a second one.")
        encoded = {}
        for i, pname in enumerate(session.providers):
            _step(progress, 0.1 + 0.8 * i / len(session.providers), f"Encoding the second shape ({pname})")
            encoded[pname] = self._shape_features(self.provider(pname), mesh, key)
        with session.lock:
            session.second_mesh, session.second_key, session.second_name = mesh, key, name
            session.shapes_b = encoded
            session.match_points.clear()
            self._show_all(session)
            self._rerender(session)
            session.status = (f"Second shape '{name}' ready beside '{session.mesh_name}': click a point of either "
                              "shape to see the matching region on the other.")
            return session.status

    def clear_second(self, session: Session) -> str:
        session = self._live(session)
        with session.lock:
            session.second_mesh, session.second_key, session.second_name = None, None, ""
            session.shapes_b = {}
            session.match_points = {k: v for k, v in session.match_points.items() if k[0] == "a"}
            if session.last_query is not None and session.last_query[0] == "point" and session.last_query[2] == "b":
                session.last_query = None
            self._show_all(session)
            self._rerender(session)
            session.status = "Second shape removed."
            return session.status

    def _rerender(self, session: Session) -> None:
        """Redraw the current query after the views changed (under ``session.lock``)."""
        session.results.clear()
        if session.last_query is not None and self._query_possible(session):
            self._render_query(session)
        else:
            session.last_query = None
            self._reset_overlay(session)

    @staticmethod
    def _query_possible(session: Session) -> bool:
        kind = session.last_query[0] if session.last_query else None
        if kind in ("pixel", "mask"):
            return session.image is not None and session.mesh is not None
        if kind == "point":
            return session.mesh is not None and (session.last_query[2] == "a" or session.second_mesh is not None)
        return kind == "pca"

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
        """A click on the image at pixel ``xy`` = (x, y) of the working image: colour the shape(s)
        (and the pixel -> many gallery shapes, when some are chosen)."""
        session = self._live(session)
        with session.lock:
            if session.image is None:
                raise UserError("Upload an image (or pick an example) first.")
            try:
                x, y = float(xy[0]), float(xy[1])
            except (TypeError, ValueError, IndexError):
                raise UserError("The click position did not arrive; click the image again.") from None
            w, h = session.image.size
            if not (np.isfinite(x) and np.isfinite(y)):
                raise UserError("The click position did not arrive; click the image again.")
            x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
            session.last_pixel = (x, y)
            if session.mesh is None:
                if session.many_keys:  # pixel -> many needs no shape of its own
                    self._render_many(session, (x, y))
                    session.panels[0] = draw_marker(session.image, (x, y), color=QUERY_MARKER)
                    session.status = f"Pixel ({x:.0f}, {y:.0f}) matched on {len(session.many_results)} gallery shapes."
                    session.seen_version = session.version
                    return list(session.panels)
                raise UserError("Upload a mesh (or pick an example) to see where this pixel lands.")
            session.last_query = ("pixel", (x, y))
            self._render_query(session)
            session.seen_version = session.version
            return list(session.panels)

    def click_point(self, session: Session, slot: int, point: np.ndarray) -> None:
        """A click on a shape in the viewer (viser's thread): heat maps over the image, and the
        matching region on the other shape (3D <-> 3D)."""
        try:
            with session.lock:
                if session.closed or session.mesh is None:
                    return
                views = self._views(session)
                if not 0 <= int(slot) < len(views):
                    return
                sid = views[int(slot)][0]
                if session.image is None and session.second_mesh is None:
                    session.status = ("Upload an image to see where this point appears in it, or add a second "
                                      "shape to match it in 3D.")
                    session.version += 1
                    return
                session.last_query = ("point", np.asarray(point, np.float64).reshape(3), sid)
                self._render_query(session)
                session.version += 1
        except Exception:  # a viser callback must not die silently: log it, keep the viewer alive
            log.exception("3D click failed")

    def click_shape_point(self, session: Session, shape: ShapeId, index: int) -> list[Image.Image | None]:
        """The 3D click without a browser: feature point ``index`` of shape "a" or "b" (for the
        fallback view, tests and scripts). Returns the panels."""
        session = self._live(session)
        with session.lock:
            encs = session.shapes if shape == "a" else session.shapes_b
            if not encs:
                raise UserError("There is no such shape loaded.")
            pts = encs[session.providers[0]].features.points
            if not 0 <= int(index) < len(pts):
                raise UserError(f"Point index must be in [0, {len(pts) - 1}].")
            slot = next(i for i, v in enumerate(self._views(session)) if v[0] == shape)
        self.click_point(session, slot, pts[int(index)].detach().cpu().numpy().astype(np.float64))
        with session.lock:
            session.seen_version = session.version
            return list(session.panels)

    # ---------------------------------------------------------------- rendering
    def _render_query(self, session: Session) -> None:
        """Recompute colours, markers and panels for ``session.last_query`` (under ``session.lock``)."""
        if session.last_query is None:
            self._reset_overlay(session)
            return
        kind = session.last_query[0]
        t0 = time.perf_counter()
        session.results.clear()
        if kind == "pixel":
            self._render_pixel(session, session.last_query[1])
        elif kind == "point":
            self._render_point(session, session.last_query[1], session.last_query[2])
        elif kind == "mask":
            self._render_mask(session)
        elif kind == "pca":
            self._render_pca(session)
        else:
            raise ValueError(f"unknown query kind {kind!r}")
        session.last_ms = (time.perf_counter() - t0) * 1000.0

    def _selection(self, sims: torch.Tensor, st: OverlaySettings) -> np.ndarray:
        """bool [N]: the points a heat map highlights (top-k, or at least the threshold)."""
        if st.mode == "top-k":
            sel = torch.zeros_like(sims, dtype=torch.bool)
            sel[sims.topk(min(int(st.k), sims.shape[0])).indices] = True
        else:
            sel = sims >= float(st.threshold)
        return sel.cpu().numpy()

    def _set_view(self, session: Session, slot: int, sid: str, pname: str, scores: torch.Tensor, labels: np.ndarray,
                  colors: np.ndarray) -> None:
        session.results[(sid, pname)] = ViewResult(scores=scores.float().cpu().numpy(), labels=labels, colors=colors)
        if session.viewer is not None:
            session.viewer.set_colors(slot, colors)

    def _render_pixel(self, session: Session, value: tuple[float, float]) -> None:
        st = session.overlay
        feats = {p: session.image_features[p].sample(torch.tensor([value], dtype=torch.float32))[0]
                 for p in session.providers}
        notes: dict[str, str] = {}
        for slot, (sid, pname, enc) in enumerate(self._views(session)):
            dense = enc.features.dense
            sims = None
            if sid == "a" and st.matching == "pose":
                pose, why = self._pose(session, pname, enc.features)
                if pose is not None:
                    sims = pose_match(session.image_features[pname], enc.features, [list(value)], pose=pose)[0]
                    sims = sims.to(dense.device)
                    notes[pname] = f"pose-verified, yaw {math.degrees(pose.yaw):.0f}°"
                else:
                    notes[pname] = f"features only: {why}"
            if sims is None:
                sims = dense @ feats[pname].to(dense.device)
            colors, best = point_colors(sims, enc.base, st)
            best_point = enc.features.points[best].detach().cpu().numpy().astype(np.float64)
            if sid == "a":
                session.best_points[pname] = best_point
            session.match_points[(sid, pname)] = best_point
            self._set_view(session, slot, sid, pname, sims, self._selection(sims, st), colors)
            if session.viewer is not None:
                session.viewer.set_marker(slot, "best", best_point)
                session.viewer.set_marker(slot, "query", None)
        for i, pname in enumerate(session.providers):
            session.panels[i] = draw_marker(session.image, value, color=QUERY_MARKER)
        if session.many_keys:
            self._render_many(session, value)
        px = ", ".join(f"{p}: best point ({', '.join(f'{v:.3f}' for v in session.best_points[p])})"
                       + (f" [{notes[p]}]" if p in notes else "") for p in session.providers)
        session.status = f"Pixel ({value[0]:.0f}, {value[1]:.0f}) → {px}."

    def _pose(self, session: Session, pname: str, shape: Any) -> tuple[Any, str]:
        """(PoseEstimate or None, why not) of the image in the first shape for provider ``pname``,
        cached until the image features or the shape change (under ``session.lock``)."""
        img = session.image_features.get(pname)
        cached = session.poses.get(pname)
        if cached is not None and cached[0] is img and cached[1] is shape:
            return cached[2], cached[3]
        pose, why = None, ""
        geometry = getattr(img, "geometry", None)
        if geometry is None:
            why = "this provider predicts no geometry"
        elif geometry.foreground_source == "none":
            why = "no plain background or alpha to find the object by"
        else:
            try:
                pose = estimate_pose(img, shape)
            except ValueError as e:
                why = str(e)
        session.poses[pname] = (img, shape, pose, why)
        return pose, why

    def _render_point(self, session: Session, value: np.ndarray, clicked: str) -> None:
        st = session.overlay
        encs = session.shapes if clicked == "a" else session.shapes_b
        queries = {p: encs[p].features.query(torch.tensor(value[None], dtype=torch.float32))[0]
                   for p in session.providers}
        parts = []
        if session.image is not None:
            notes: dict[str, str] = {}
            for i, pname in enumerate(session.providers):
                img = session.image_features[pname]
                pose = None
                if clicked == "a" and st.matching == "pose":
                    # The pose relates the image to the first shape only.
                    pose, why = self._pose(session, pname, encs[pname].features)
                    notes[pname] = f"pose-verified, yaw {math.degrees(pose.yaw):.0f}°" if pose is not None \
                        else f"features only: {why}"
                if pose is not None:
                    # The point's feature is already queried (the 3D views use it too).
                    scores = pose_heatmap(img, encs[pname].features, value, pose=pose, feature=queries[pname])
                    heat, best_px = score_image(session.image, scores, st)
                else:
                    heat, best_px = heat_image(session.image, img.dense, queries[pname], st)
                session.best_pixels[pname] = best_px
                session.panels[i] = draw_marker(heat, best_px, color=BEST_MARKER)
            parts.append(", ".join(f"{p}: best pixel {session.best_pixels[p]}" + (f" [{notes[p]}]" if p in notes else "")
                                   for p in session.providers))
        for slot, (sid, pname, enc) in enumerate(self._views(session)):
            dense = enc.features.dense
            sims = dense @ queries[pname].to(dense.device)
            colors, best = point_colors(sims, enc.base, st)
            self._set_view(session, slot, sid, pname, sims, self._selection(sims, st), colors)
            if sid == clicked:
                # The clicked shape shows the point's similarity to the rest of itself.
                if session.viewer is not None:
                    session.viewer.set_marker(slot, "query", value)
                    session.viewer.set_marker(slot, "best", None)
            else:
                best_point = enc.features.points[best].detach().cpu().numpy().astype(np.float64)
                session.match_points[(sid, pname)] = best_point
                if session.viewer is not None:
                    session.viewer.set_marker(slot, "best", best_point)
                    session.viewer.set_marker(slot, "query", None)
        other = "b" if clicked == "a" else "a"
        if session.second_mesh is not None:
            name = session.second_name if other == "b" else session.mesh_name
            parts.append(", ".join(f"{p}: best match on '{name}' at "
                                   f"({', '.join(f'{v:.3f}' for v in session.match_points[(other, p)])})"
                                   for p in session.providers if (other, p) in session.match_points))
        where = "" if clicked == "a" or session.second_mesh is None else f" of '{session.second_name}'"
        session.status = f"Point ({', '.join(f'{v:.3f}' for v in value)}){where} → " + "; ".join(parts) + "."

    def _foreground(self, session: Session) -> np.ndarray:
        if session.foreground is None:
            session.foreground = foreground_mask(session.image)
        return session.foreground

    def _render_mask(self, session: Session) -> None:
        st = session.overlay
        t = float(session.mask_threshold)
        region_st = st.updated(mode="threshold", threshold=min(max(t, -1.0), 1.0), scale="relative")
        fg = self._foreground(session)
        protos = {p: mask_prototypes(session.image_features[p], session.mask, fg) for p in session.providers}
        sizes = []
        for slot, (sid, pname, enc) in enumerate(self._views(session)):
            score = region_scores(enc.features.dense, *protos[pname])
            region = score >= t
            colors, _ = point_colors(score, enc.base, region_st)
            self._set_view(session, slot, sid, pname, score, region.cpu().numpy(), colors)
            if session.viewer is not None:
                session.viewer.set_marker(slot, "best", None)
                session.viewer.set_marker(slot, "query", None)
            sizes.append(f"{pname}{'' if sid == 'a' else ' (2nd shape)'}: {int(region.sum())} of {len(region)} points")
        shown = draw_mask(session.image, session.mask)
        for i in range(len(session.providers)):
            session.panels[i] = shown
        session.status = (f"Mask of {int(session.mask.sum()):,} pixels transferred at threshold {t:+.2f} → "
                          + ", ".join(sizes) + ".")

    def _render_pca(self, session: Session) -> None:
        views = self._views(session)
        fg = self._foreground(session) if session.image is not None else None
        explained = []
        for i, pname in enumerate(session.providers):
            blocks = []
            img_f = session.image_features.get(pname) if session.image is not None else None
            small_fg = None
            if img_f is not None:
                d, h, w = img_f.dense.shape
                small_fg = np.asarray(Image.fromarray(fg.astype(np.uint8) * 255).resize((w, h), Image.BOX)) > 127
                if not small_fg.any():
                    small_fg = np.ones((h, w), bool)
                rows = img_f.dense.reshape(d, h * w).T
                blocks.append(rows[torch.from_numpy(small_fg.reshape(-1)).to(rows.device)])
            mine = [(slot, sid, enc) for slot, (sid, p, enc) in enumerate(views) if p == pname]
            blocks += [enc.features.dense for _, _, enc in mine]
            if not blocks:
                continue
            proj = fit_pca(blocks)
            explained.append(f"{pname}: {100 * float(proj.explained.sum()):.0f}% of the variance")
            if img_f is not None:
                session.panels[i] = image_pca_rgb(proj, img_f.dense, session.image.size, dim_mask=fg)
            for slot, sid, enc in mine:
                colors = proj.to_u8(enc.features.dense)
                first = proj.project(enc.features.dense)[:, 0]
                self._set_view(session, slot, sid, pname, first, np.zeros(len(colors), bool), colors)
                if session.viewer is not None:
                    session.viewer.set_marker(slot, "best", None)
                    session.viewer.set_marker(slot, "query", None)
        session.status = ("Feature view: the first 3 principal components of the dense features → RGB, one "
                          "projection per provider shared by the image and the shapes (" + "; ".join(explained)
                          + "). Click to query again.")

    def _reset_overlay(self, session: Session) -> None:
        session.results.clear()
        if session.viewer is None:
            return
        for slot, (_, _, enc) in enumerate(self._views(session)):
            session.viewer.set_colors(slot, enc.base_u8)
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
        img_f = enc = enc_b = None
        if name:
            if name == self.primary.name:
                raise UserError("Pick a provider other than the primary one to compare with.")
            provider = self.provider(name)
            with session.lock:
                image, image_key = session.image, session.image_key
                mesh, mesh_key = session.mesh, session.mesh_key
                second, second_key = session.second_mesh, session.second_key
            if image is not None:
                _step(progress, 0.2, f"Encoding image ({name})")
                img_f = self._image_features(provider, image, image_key)
            if mesh is not None:
                _step(progress, 0.5, f"Encoding shape ({name})")
                enc = self._shape_features(provider, mesh, mesh_key)
            if second is not None:
                _step(progress, 0.75, f"Encoding the second shape ({name})")
                enc_b = self._shape_features(provider, second, second_key)
        with session.lock:
            for old in session.providers[1:]:
                session.image_features.pop(old, None)
                session.shapes.pop(old, None)
                session.shapes_b.pop(old, None)
            session.providers = [self.primary.name] + ([name] if name else [])
            if name:
                if img_f is not None and session.image is not None:
                    session.image_features[name] = img_f
                if enc is not None and session.mesh is not None:
                    session.shapes[name] = enc
                if enc_b is not None and session.second_mesh is not None:
                    session.shapes_b[name] = enc_b
            self._show_all(session)
            session.panels[1] = session.image if name else None
            self._rerender(session)
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

    def search_image(self, session: Session, *, k: int = 8, pose: bool = False,
                     progress: Progress | None = None) -> list[Hit]:
        """The ``k`` gallery shapes nearest the image by global embedding, best first.

        pose  re-rank the top ``POSE_RERANK_TOP_K`` by pose fit (:meth:`_pose_rerank`; seconds of
              work). It helped the model before training stage 5; with the bundled model's refit
              global embeddings it gains nothing in instance R@1 on the test gallery and loses in
              category R@1 (README), above all where a category has one or two shapes (the fit
              does not know categories).
              Off by default for both reasons. Falls back to the global order,
              and says so in the status line, when it cannot be done or runs out of time.
        """
        session = self._live(session)
        if session.image is None:
            raise UserError("Upload an image (or pick an example) first; it is the query.")
        gallery = self._gallery_ready()
        feats = session.image_features.get(self.primary.name)
        if feats is None:
            feats = self._image_features(self.primary, session.image, session.image_key)
        if not pose:
            return self._hits(session, gallery.search(self.primary, feats.global_embedding, k=k))
        hits = gallery.search(self.primary, feats.global_embedding, k=max(int(k), POSE_RERANK_TOP_K))
        hits, note = self._pose_rerank(feats, hits, progress)
        return self._hits(session, hits[:int(k)], note=note)

    def _pose_rerank(self, feats: Any, hits: list[Hit], progress: Progress | None) -> tuple[list[Hit], str]:
        """(hits, status note): the first ``POSE_RERANK_TOP_K`` hits ordered by how well the image's
        predicted surface fits each shape (``estimate_pose``'s best score, as the evaluation's
        ``pose_fit``, ordered by the evaluation's ``rerank_top_k``: ties keep their global order,
        shapes that cannot be fitted come after the fitted ones), the rest after them in their
        order. Each hit's mesh and features come from the explorer's caches (the same entries a
        loaded hit uses); every step runs on the encode pool within ``limits.timeout_s``, and the
        re-rank is abandoned once it has run that long in all (checked before each shape). Where
        it cannot be done, ``hits`` come back unchanged."""
        name = self.primary.name

        def skipped(why: str) -> tuple[list[Hit], str]:
            return hits, f" in the global order (pose re-rank skipped: {why})"

        geometry = getattr(feats, "geometry", None) if isinstance(feats, ImageFeatures) else None
        if tango3d_model(self.primary) is None or geometry is None:
            return skipped(f"the provider '{name}' predicts no geometry for the image; it needs a Tango3D model")
        if geometry.foreground_source == "none":
            return skipped("the image has no plain background or alpha to find the object by")
        n = min(len(hits), POSE_RERANK_TOP_K)
        if n < 2:
            return hits, ""
        t0 = time.perf_counter()
        failed: list[str] = []

        def fit(_q: int, j: int) -> float:
            if time.perf_counter() - t0 > self.limits.timeout_s:
                raise _Abandoned
            item = hits[j].item
            _step(progress, 0.05 + 0.9 * j / n, f"Fitting the pose to {n} shapes")
            try:
                mesh = self._gallery_mesh(item)
                shape = self._shape_features(self.primary, mesh, f"gallery-{item.key}").features
                score = self._run("Fitting the pose", _pose_fit, feats, shape)
            except UserError:  # a step ran past limits.timeout_s
                raise _Abandoned from None
            except Exception:
                log.exception("pose re-rank: %s could not be fitted", item.key)
                score = -math.inf
            if not math.isfinite(score):
                failed.append(item.name)
            return score

        # Hits come best first by global score, so rerank_top_k's top k are the first n.
        sim = np.array([[h.score for h in hits]], dtype=np.float64)
        try:
            ranked = rerank_top_k(sim, fit, POSE_RERANK_TOP_K)[0]
        except _Abandoned:
            return skipped(f"it took longer than {self.limits.timeout_s:g} s and was abandoned")
        note = f", top {n} re-ranked by pose fit in {time.perf_counter() - t0:.1f} s"
        if failed:
            note += f" ({len(failed)} could not be fitted and come after the others)"
        return [hits[int(i)] for i in np.argsort(-ranked, kind="stable")], note

    @staticmethod
    def _hits(session: Session, hits: list[Hit], *, note: str = "") -> list[Hit]:
        with session.lock:
            session.search_hits = hits
            session.status = f"{len(hits)} shapes found{note}; click one to load it."
        return hits

    def load_hit(self, session: Session, index: int, *, as_second: bool = False,
                 progress: Progress | None = None) -> str:
        """Load search result ``index`` into the viewer (as the first shape, or the second)."""
        session = self._live(session)
        with session.lock:
            hits = list(session.search_hits)
        if not 0 <= int(index) < len(hits):
            raise UserError("That result is no longer available; search again.")
        item = hits[int(index)].item
        _step(progress, 0.05, f"Loading {item.name}")
        mesh = self._gallery_mesh(item)
        if as_second:
            return self._set_second(session, mesh, key=f"gallery-{item.key}", name=item.name, progress=progress)
        return self._set_shape(session, mesh, key=f"gallery-{item.key}", name=item.name, source=("gallery", item.key),
                               up_axis=session.up_axis, progress=progress)

    def gallery_choices(self, *, limit: int = 500) -> list[tuple[str, str]]:
        """(name, key) of the first ``limit`` gallery shapes, for pickers."""
        if self.gallery is None:
            return []
        return [(it.name, it.key) for it in self.gallery.items[:limit]]

    # ------------------------------------------------------------ pixel -> many
    def default_many(self, session: Session | None = None, *, n: int = 6) -> list[str]:
        """A starting choice of gallery shapes: the last search's hits, else one per category."""
        if self.gallery is None:
            return []
        if session is not None and session.search_hits:
            return [h.item.key for h in session.search_hits[:n]]
        seen, keys = set(), []
        for it in self.gallery.items[:2000]:  # a built gallery may hold millions: look at the start only
            cat = getattr(it, "category", "") or it.key
            if cat not in seen:
                seen.add(cat)
                keys.append(it.key)
            if len(keys) == n:
                break
        return keys

    def set_many(self, session: Session, keys: Sequence[str], *, progress: Progress | None = None
                 ) -> list[tuple[Image.Image, str]]:
        """Choose the gallery shapes (at most ``MAX_MANY``) that every pixel click is also matched
        on. Encodes (once, cached) and renders each; redraws the last pixel if there is one."""
        session = self._live(session)
        keys = list(dict.fromkeys(str(k) for k in (keys or [])))
        if len(keys) > MAX_MANY:
            raise UserError(f"Pick at most {MAX_MANY} gallery shapes (got {len(keys)}).")
        if keys and self.gallery is None:
            raise UserError("No gallery is loaded.")
        items = {k: self._gallery_item(k) for k in keys}
        unknown = [k for k, it in items.items() if it is None]
        if unknown:
            raise UserError("Some chosen shapes are not in the gallery; pick them again.")
        for i, key in enumerate(keys):
            _step(progress, 0.05 + 0.9 * i / max(1, len(keys)), f"Encoding {items[key].name}")
            self._many_card(items[key])
        with session.lock:
            session.many_keys = keys
            session.many_results = []
            if keys and session.last_pixel is not None and session.image is not None:
                self._render_many(session, session.last_pixel)
                session.status = f"Last pixel matched on {len(keys)} gallery shapes."
            elif keys:
                session.status = f"{len(keys)} gallery shapes chosen: click a pixel of the image."
            else:
                session.status = "No gallery shapes chosen for pixel → many."
            return list(session.many_results)

    def _many_card(self, item: Any) -> ShapeCard:
        provider = self.primary

        def build() -> ShapeCard:
            mesh = self._gallery_mesh(item)
            feats = provider.encode_shape(mesh, num_points=MANY_POINTS, seed=0)
            return ShapeCard.build(item.key, item.name, mesh, feats)

        card, _ = self.many_cache.get_or_compute((provider.fingerprint, item.key),
                                                 lambda: self._run(f"Encoding {item.name}", build))
        return card

    def _render_many(self, session: Session, xy: tuple[float, float]) -> None:
        """Colour the chosen gallery shapes for pixel ``xy`` (primary provider; under the lock)."""
        if session.image is None or not session.many_keys:
            session.many_results = []
            return
        f = session.image_features[self.primary.name].sample(torch.tensor([xy], dtype=torch.float32))[0]
        out = []
        for key in session.many_keys:
            card = self.many_cache.get((self.primary.fingerprint, key))
            if card is None:  # evicted by other sessions: rebuild (a fraction of a second per shape)
                item = self._gallery_item(key)
                if item is None:
                    continue
                card = self._many_card(item)
            img, best, _ = card.heat(f, session.overlay)
            out.append((img, f"{best:.3f} · {card.name}"))
        session.many_results = out

    # ------------------------------------------------------------ mask transfer
    def _mask_ready(self, session: Session) -> None:
        if session.image is None:
            raise UserError("Upload an image (or pick an example) first; the mask is drawn on it.")
        if session.mesh is None:
            raise UserError("Load a shape first; the mask's region is transferred onto it.")

    def set_mask(self, session: Session, mask: np.ndarray) -> list[Image.Image | None]:
        """Transfer ``mask`` (bool [H, W] on the working image) to the shape(s)."""
        session = self._live(session)
        with session.lock:
            self._mask_ready(session)
            mask = np.asarray(mask, bool)
            if mask.shape != (session.image.height, session.image.width):
                raise UserError(f"The mask is {mask.shape[1]} x {mask.shape[0]} but the image is "
                                f"{session.image.width} x {session.image.height}.")
            if not mask.any():
                raise UserError("The mask is empty; paint a region first.")
            session.mask = mask
            session.last_query = ("mask",)
            self._render_query(session)
            session.seen_version = session.version
            return list(session.panels)

    def mask_from_editor(self, session: Session, value: Any) -> list[Image.Image | None]:
        """The brush strokes of the mask editor -> :meth:`set_mask`."""
        session = self._live(session)
        with session.lock:
            self._mask_ready(session)
            size = session.image.size
        try:
            mask = mask_from_editor(value, size, max_pixels=self.limits.max_image_pixels)
        except MaskError as e:
            raise UserError(str(e)) from None
        if mask is None:
            raise UserError("Nothing is drawn yet: brush over a region of the image, then transfer it.")
        return self.set_mask(session, mask)

    def mask_from_file(self, session: Session, path: str | Path) -> list[Image.Image | None]:
        """An uploaded mask image (white = inside) -> :meth:`set_mask`. Bounded like an image upload."""
        session = self._live(session)
        with session.lock:
            self._mask_ready(session)
            size = session.image.size
        try:
            mask = read_mask_file(path, size, max_bytes=self.limits.max_image_bytes,
                                  max_pixels=self.limits.max_image_pixels)
        except MaskError as e:
            raise UserError(str(e)) from None
        return self.set_mask(session, mask)

    def set_mask_threshold(self, session: Session, threshold: float) -> list[Image.Image | None] | None:
        """Change the region threshold (score = cos to the mask - cos to the rest); redraw."""
        session = self._live(session)
        t = float(threshold)
        if not -1.0 <= t <= 1.0:
            raise UserError(f"The threshold must be in [-1, 1], got {t}.")
        with session.lock:
            session.mask_threshold = t
            if session.last_query is None or session.last_query[0] != "mask":
                return None
            self._render_query(session)
            session.seen_version = session.version
            return list(session.panels)

    def propose_mask(self, session: Session) -> tuple[list[Image.Image | None], np.ndarray]:
        """SAM's mask for the last clicked pixel, transferred. Returns (panels, mask bool [H, W])."""
        session = self._live(session)
        if not self.sam_available:
            raise UserError(self.sam_message)
        with session.lock:
            self._mask_ready(session)
            if session.last_pixel is None:
                raise UserError("Click a pixel of the image first: SAM grows a mask from it.")
            image, key, xy = session.image, session.image_key, session.last_pixel
        if self._sam is None:
            self._sam = SamSegmenter(find_checkpoint(self._cache_dir), device=str(self.primary.device))
        try:
            mask = self._run("Segment Anything", self._sam.propose, image, key, xy)
        except UserError:
            raise
        except Exception as e:
            log.exception("SAM failed")
            raise UserError(f"SAM could not propose a mask: {type(e).__name__}: {e}") from None
        return self.set_mask(session, mask), mask

    # ------------------------------------------------------------- feature view
    def feature_view(self, session: Session) -> list[Image.Image | None]:
        """PCA of the dense features -> RGB on the image and every shape, one projection per
        provider fitted on the image's foreground pixels and all the shapes' points."""
        session = self._live(session)
        with session.lock:
            if session.image is None and session.mesh is None:
                raise UserError("Load an image or a shape first.")
            session.last_query = ("pca",)
            self._render_query(session)
            session.seen_version = session.version
            return list(session.panels)

    # ------------------------------------------------------- VAE reconstruction
    def vae_reconstruction(self, session: Session, *, progress: Progress | None = None) -> str:
        """Show the shape VAE's reconstruction of the first shape beside it in the 3D view, or
        hide it when it is shown. Computed once per shape (with the first provider in view that
        has a shape VAE, on the encode pool within ``limits.timeout_s``) and kept in the session
        until the shape changes, so showing it again is instant. Returns the status line."""
        session = self._live(session)
        with session.lock:
            viewer = session.viewer
            if session.reconstruction_shown:
                if viewer is not None:
                    viewer.clear_reconstruction()
                session.reconstruction_shown = False
                session.status = "VAE reconstruction hidden (click the button again to show it)."
                return session.status
            pname, model = self._vae_provider(session)
            if session.mesh is None:
                raise UserError("Load a shape first (upload, example or search result); the VAE reconstructs it.")
            if viewer is None or not hasattr(viewer, "show_reconstruction"):
                raise UserError("The VAE reconstruction is drawn in the interactive 3D view (viser), which this "
                                "server does not run.")
            mesh, name = session.mesh, session.mesh_name
            key = (self.provider(pname).fingerprint, session.mesh_key, RESOLUTION, self.limits.num_points)
            rec = session.reconstruction if getattr(session.reconstruction, "key", None) == key else None
        cached = rec is not None
        if rec is None:
            _step(progress, 0.1, "Reconstructing the shape with the VAE")
            try:
                rec = self._run("The VAE reconstruction", reconstruct, model, mesh, key=key, resolution=RESOLUTION,
                                num_points=self.limits.num_points)
            except ValueError as e:
                raise UserError(f"The VAE could not reconstruct '{name}': {e}") from None
        with session.lock:
            if session.closed or session.mesh is not mesh:
                raise UserError("The shape changed while it was being reconstructed; click the button again.")
            session.reconstruction = rec
            if viewer.show_reconstruction(0, rec.mesh, f"VAE reconstruction · {rec.tokens} tokens") is None:
                raise UserError("The shape is not in the 3D view; load it again.")
            session.reconstruction_shown = True
            how = rec.summary() + (" when computed, shown from the cache" if cached else "")
            session.status = (f"VAE reconstruction: {how} ({pname}; in blue, left of '{name}'; click the button "
                              "again to hide it).")
            return session.status

    def _vae_provider(self, session: Session) -> tuple[str, Any]:
        """(name, Tango3D model) of the first provider in view with a shape VAE, else UserError."""
        for pname in session.providers:
            model = tango3d_model(self.provider(pname))
            if model is not None:
                return pname, model
        names = " and ".join(f"'{p}'" for p in session.providers)
        which = f"the provider {names} has" if len(session.providers) == 1 else f"the providers {names} have"
        raise UserError(f"The VAE reconstruction needs a Tango3D model with a shape VAE; {which} none "
                        "(start the explorer with --provider tango3d).")

    # ------------------------------------------------------------------ exports
    def export(self, session: Session, kind: ExportKind, *, shape: ShapeId = "a") -> Path:
        """Write the current result as a file in the session's export folder and return its path.

        kind   "ply" / "glb": the shape with per-vertex colours, labels and scores (see
               ``app.export``); "npy": float32 [N, 4] x, y, z, score of the feature points;
               "png": a screenshot of the 3D view
        shape  "a" (the first shape) or "b" (the second); the primary provider's result
        """
        session = self._live(session)
        if kind not in ("ply", "glb", "npy", "png"):
            raise UserError(f"Unknown export format {kind!r}.")
        with session.lock:
            if session.exports is None:
                session.exports = ExportDir(self.work_dir / "exports")
            exports = session.exports
            if kind == "png":
                viewer = session.viewer
            else:
                mesh = session.mesh if shape == "a" else session.second_mesh
                if mesh is None:
                    raise UserError("There is no shape to export." if shape == "a" else "There is no second shape.")
                res = session.results.get((shape, self.primary.name))
                if res is None:
                    raise UserError("Nothing to export yet: click a pixel or a point, transfer a mask, or show the "
                                    "feature view first.")
                enc = (session.shapes if shape == "a" else session.shapes_b)[self.primary.name]
                points = enc.features.points.detach().cpu().numpy()
                what = {"pixel": "heat", "point": "heat", "mask": "region", "pca": "features"}[session.last_query[0]]
        if kind == "png":
            if viewer is None:
                raise UserError("There is no 3D view to take a screenshot of.")
            data = self._run("The screenshot", screenshot_png, viewer)
            return exports.write("screenshot", "png", data)
        if kind == "npy":
            return exports.write(what, "npy", values_npy_bytes(points, res.scores))
        data = self._run("The export", mesh_bytes, mesh, points, res.colors, res.labels, res.scores, fmt=kind)
        return exports.write(what, kind, data)

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


def _pose_fit(image: Any, shape: Any) -> float:
    """How well the image's predicted surface fits ``shape`` (``estimate_pose``'s best score,
    higher is better), or -inf where no pose can be estimated: the evaluation's ``pose_fit``."""
    try:
        pose = estimate_pose(image, shape)
    except ValueError:
        return -math.inf
    return pose.score


def _display_name(name: str) -> str:
    """A user-supplied file name reduced to something safe to show (never used as a path)."""
    base = Path(str(name).replace("\\", "/")).name
    clean = "".join(c for c in base if c.isprintable() and c not in "<>\"'`")
    return (clean[:80] or "upload")
