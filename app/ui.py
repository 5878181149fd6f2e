"""Gradio Blocks for the explorer and the wiring of every event to :class:`app.explorer.Explorer`.

Layout: inputs and the clickable image on the left, the viser viewer (an iframe onto this
session's own viser server) in the middle with the display controls under it, retrieval on
the right. A status line under the title says what happened last; a problem the user can fix
also raises a ``gr.Warning`` toast. No handler lets an exception escape to the page: unexpected
ones are logged with their traceback on the server and reported in one line.

The 3D -> pixel direction starts in viser, outside Gradio, so the page polls: a ``gr.Timer``
asks ``Explorer.poll`` every ``POLL_SECONDS`` and only an actual change is sent back. The timer
starts once the tab has a shape to click (each tick costs a queue round trip).
"""

import functools
import html
import logging
from urllib.parse import urlsplit

import gradio as gr
from PIL import Image

from .explorer import Explorer, UserError
from .overlay import COLORMAPS, OverlaySettings

__all__ = ["build_ui", "CSS", "POLL_SECONDS"]

log = logging.getLogger("tango3d.app")

POLL_SECONDS = 0.4
VIEWER_HEIGHT = 560
NO_COMPARE = "(none)"
CSS = """
#status {min-height: 2.2em}
#query-image img {cursor: crosshair}
#viewer-frame iframe {width: 100%; border: 0; border-radius: 8px}
"""


def _guard(n_outputs: int, status_at: int, restore=None):
    """Turn UserError into a warning toast + status line, and any other error into a logged bug.
    The other outputs are left unchanged (gr.skip()), or set by ``restore(*args)`` when given
    (e.g. put the last good image back in place of a rejected upload)."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except UserError as e:
                message = str(e)
                gr.Warning(message)
            except Exception as e:  # a bug: keep the server and the page alive, say so briefly
                log.exception("handler %s failed", fn.__name__)
                message = f"Something went wrong ({type(e).__name__}); the details are in the server log."
                gr.Warning(message)
            out = [gr.skip()] * n_outputs
            if restore is not None:
                try:
                    out = list(restore(*args, **kwargs))
                except Exception:
                    log.exception("restoring the outputs of %s failed", fn.__name__)
            out[status_at] = f"⚠️ {message}"
            return tuple(out) if n_outputs > 1 else out[0]

        return inner

    return wrap


def _viewer_html(request: gr.Request | None, port: int) -> str:
    host = "127.0.0.1"
    scheme = "http"
    if request is not None:
        header = request.headers.get("host") or ""
        parsed = urlsplit(f"//{header}")
        if parsed.hostname:
            host = parsed.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    src = html.escape(f"{scheme}://{host}:{port}/", quote=True)
    return (f'<iframe id="viser" src="{src}" style="height:{VIEWER_HEIGHT}px" '
            f'title="3D viewer" allow="fullscreen"></iframe>')


def _payload_path(payload) -> str | None:
    if payload is None:
        return None
    if isinstance(payload, dict):
        return payload.get("path")
    return getattr(payload, "path", None)


def _rgb(path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def _hit_gallery(hits) -> list[tuple[Image.Image, str]]:
    return [(_rgb(h.thumbnail), f"{h.score:.3f} · {h.item.name}") for h in hits]


def build_ui(explorer: Explorer) -> gr.Blocks:
    """The Blocks app for ``explorer`` (call ``.queue()`` and ``.launch()`` on it)."""
    defaults = OverlaySettings()
    compare_choices = [NO_COMPARE] + list(explorer.compare_choices)

    with gr.Blocks(title="Tango3D explorer") as demo:
        session = gr.State(None, delete_callback=explorer.close_session)
        gr.Markdown("## Tango3D explorer — click a pixel, see where it lands on the shape; click the shape, "
                    f"see its pixels.  \nProvider: **{html.escape(explorer.primary.name)}**")
        status = gr.Markdown("Starting…", elem_id="status")
        with gr.Row():
            with gr.Column(scale=5):
                image = gr.Image(label="Image — click a pixel", type="filepath", sources=["upload", "clipboard"],
                                 format="jpeg", elem_id="query-image", height=420, buttons=[])
                compare_image = gr.Image(label="Comparison provider", interactive=False, visible=False,
                                         format="jpeg", elem_id="compare-image", height=420, buttons=[])
                with gr.Row():
                    mesh_file = gr.File(label="Mesh (OBJ, PLY, STL, OFF, GLB)", type="filepath",
                                        file_types=[".obj", ".ply", ".stl", ".off", ".glb"], elem_id="mesh-file")
                    up_axis = gr.Radio(["Z", "Y"], value="Z", label="Up axis of the mesh file", elem_id="up-axis")
                examples = gr.Gallery(
                    value=[(_rgb(e.image_path(explorer.examples_dir)), e.name) for e in explorer.examples],
                    label="Examples — click one", columns=5, height=150, allow_preview=False, buttons=[],
                    elem_id="examples", interactive=False)
            with gr.Column(scale=7):
                viewer = gr.HTML("<p>Starting the 3D viewer…</p>", elem_id="viewer-frame")
                with gr.Row():
                    colormap = gr.Dropdown(list(COLORMAPS), value=defaults.colormap, label="Colormap", elem_id="colormap")
                    mode = gr.Radio(["all", "top-k", "threshold"], value=defaults.mode, label="Show", elem_id="mode")
                    scale = gr.Radio(["relative", "absolute"], value=defaults.scale, label="Colour scale")
                with gr.Row():
                    k = gr.Slider(1, explorer.limits.num_points, value=defaults.k, step=1, label="k (top-k)")
                    threshold = gr.Slider(-1.0, 1.0, value=defaults.threshold, step=0.01, label="Threshold (cosine)")
                    opacity = gr.Slider(0.0, 1.0, value=defaults.opacity, step=0.05, label="Opacity")
                compare = gr.Dropdown(compare_choices, value=NO_COMPARE, label="Compare side by side with",
                                      elem_id="compare", interactive=len(compare_choices) > 1)
            with gr.Column(scale=4):
                gr.Markdown("### Retrieval")
                query_text = gr.Textbox(label="Describe a shape", placeholder="a chair with armrests",
                                        elem_id="query-text")
                with gr.Row():
                    search_text = gr.Button("Search text", elem_id="search-text")
                    search_image = gr.Button("Search with the image", elem_id="search-image")
                top_k = gr.Slider(1, 16, value=8, step=1, label="Results")
                results = gr.Gallery(label="Results (cosine score · shape) — click one to load it", columns=2,
                                     height=460, buttons=[],
                                     allow_preview=False, elem_id="results", interactive=False)
        timer = gr.Timer(POLL_SECONDS, active=False)

        panels_out = [image, compare_image, status]

        # ------------------------------------------------------------ lifecycle
        def on_load(request: gr.Request):
            try:
                s = explorer.open_session(request.session_hash or "local")
            except Exception as e:  # e.g. no free port for this tab's viewer
                log.exception("could not open a session")
                return None, "<p>The 3D viewer could not start.</p>", f"⚠️ Could not start a session ({type(e).__name__}); see the server log."
            html_ = _viewer_html(request, s.viewer.port) if s.viewer is not None else "<p>3D viewer disabled.</p>"
            msg = "Upload an image and a mesh, or click an example."
            if explorer.gallery is not None:
                msg += f" Gallery: {explorer.gallery.status(explorer.primary)}."
            return s, html_, msg

        def on_unload(request: gr.Request):
            explorer.close_session(request.session_hash)

        demo.load(on_load, outputs=[session, viewer, status])
        demo.unload(on_unload)

        # --------------------------------------------------------------- inputs
        def _panels(panels, s):
            """Outputs for (image, compare image, status)."""
            cmp = gr.update(value=panels[1], visible=len(s.providers) > 1)
            return panels[0], cmp, s.status

        def _last_image(payload, s, *rest, **kw):
            return (s.image if s is not None else None), gr.skip(), None

        @_guard(3, 2, restore=_last_image)
        def on_image(payload, s, progress=gr.Progress()):
            path = _payload_path(payload)
            if path is None:
                return gr.skip(), gr.skip(), gr.skip()
            return _panels(explorer.load_image(s, path, progress=progress), s)

        image.upload(on_image, inputs=[image, session], outputs=panels_out, preprocess=False,
                     concurrency_limit=2)

        def _polling(s):
            return gr.Timer(active=s is not None and s.mesh is not None)

        @_guard(2, 0)
        def on_mesh(path, axis, s, progress=gr.Progress()):
            if not path:
                return gr.skip(), gr.skip()
            name = str(path).replace("\\", "/").split("/")[-1]
            return explorer.load_mesh_file(s, path, up_axis=axis.lower(), display_name=name, progress=progress), \
                _polling(s)

        mesh_file.upload(on_mesh, inputs=[mesh_file, up_axis, session], outputs=[status, timer], concurrency_limit=2)

        @_guard(1, 0)
        def on_up_axis(axis, s, progress=gr.Progress()):
            return explorer.set_up_axis(s, axis.lower(), progress=progress)

        up_axis.input(on_up_axis, inputs=[up_axis, session], outputs=[status], concurrency_limit=2)

        @_guard(5, 3)
        def on_example(s, evt: gr.SelectData, progress=gr.Progress()):
            panels, axis = explorer.load_example(s, evt.index, progress=progress)
            first, cmp, msg = _panels(panels, s)
            return first, cmp, axis.upper(), msg, _polling(s)

        examples.select(on_example, inputs=[session], outputs=[image, compare_image, up_axis, status, timer],
                        concurrency_limit=2)

        # --------------------------------------------------------------- clicks
        @_guard(3, 2)
        def on_pixel(s, evt: gr.SelectData):
            return _panels(explorer.click_pixel(s, evt.index), s)

        image.select(on_pixel, inputs=[session], outputs=panels_out, show_progress="hidden",
                     trigger_mode="always_last", concurrency_limit=8)

        def on_poll(s):
            panels = explorer.poll(s)
            if panels is None:
                return gr.skip(), gr.skip(), gr.skip()
            return _panels(panels, s)

        timer.tick(on_poll, inputs=[session], outputs=panels_out, show_progress="hidden",
                   concurrency_limit=None)

        @_guard(3, 2)
        def on_overlay(cm, md, sc, kk, th, op, s):
            panels = explorer.set_overlay(s, colormap=cm, mode=md, scale=sc, k=int(kk), threshold=float(th),
                                          opacity=float(op))
            if panels is None:
                return gr.skip(), gr.skip(), gr.skip()
            return _panels(panels, s)

        overlay_inputs = [colormap, mode, scale, k, threshold, opacity, session]
        for control in (colormap, mode, scale):
            control.input(on_overlay, inputs=overlay_inputs, outputs=panels_out, show_progress="hidden",
                          trigger_mode="always_last")
        for control in (k, threshold, opacity):
            control.release(on_overlay, inputs=overlay_inputs, outputs=panels_out, show_progress="hidden",
                            trigger_mode="always_last")

        @_guard(3, 2)
        def on_compare(name, s, progress=gr.Progress()):
            return _panels(explorer.set_compare(s, None if name == NO_COMPARE else name, progress=progress), s)

        compare.input(on_compare, inputs=[compare, session], outputs=panels_out, concurrency_limit=2)

        # ------------------------------------------------------------ retrieval
        @_guard(2, 1)
        def on_search_text(text, kk, s):
            hits = explorer.search_text(s, text, k=int(kk))
            return _hit_gallery(hits), s.status

        @_guard(2, 1)
        def on_search_image(kk, s):
            hits = explorer.search_image(s, k=int(kk))
            return _hit_gallery(hits), s.status

        search_text.click(on_search_text, inputs=[query_text, top_k, session], outputs=[results, status])
        query_text.submit(on_search_text, inputs=[query_text, top_k, session], outputs=[results, status])
        search_image.click(on_search_image, inputs=[top_k, session], outputs=[results, status])

        @_guard(2, 0)
        def on_result(s, evt: gr.SelectData, progress=gr.Progress()):
            return explorer.load_hit(s, evt.index, progress=progress), _polling(s)

        results.select(on_result, inputs=[session], outputs=[status, timer], concurrency_limit=2)

    return demo
