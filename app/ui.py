"""Gradio Blocks for the explorer and the wiring of every event to :class:`app.explorer.Explorer`.

Layout: on the left the clickable image (tab "Image") and the mask editor (tab "Mask"), the
mesh upload and the examples; in the middle the 3D view (an iframe onto this session's own
viser server, directly or through the single-port proxy; or ``gr.Model3D`` in fallback mode)
with the display controls; on the right the tools: retrieval, 3D <-> 3D, pixel -> many,
features & export. A status line under the title says what happened last; a problem the user can fix
also raises a ``gr.Warning`` toast. No handler lets an exception escape to the page: unexpected
ones are logged with their traceback on the server and reported in one line.

The 3D -> pixel direction starts in viser, outside Gradio, so the page polls: a ``gr.Timer``
asks ``Explorer.poll`` every ``POLL_SECONDS`` and only an actual change is sent back. The timer
starts once the tab has a shape to click (each tick costs a queue round trip).
"""

import functools
import html
import logging
from pathlib import Path
from urllib.parse import urlsplit

import gradio as gr
from gradio.utils import get_upload_folder
from PIL import Image

from .explorer import MAX_MANY, POSE_RERANK_TOP_K, Explorer, UserError
from .masks import mask_to_layer
from .overlay import COLORMAPS, OverlaySettings
from .proxy import viewer_path

__all__ = ["build_ui", "CSS", "POLL_SECONDS"]

log = logging.getLogger("tango3d.app")

POLL_SECONDS = 0.4
TEMP_FILE_CLEANUP = (900, 3600)  # Gradio's delete_cache: every 15 min, files older than 1 h
VIEWER_HEIGHT = 560
NO_COMPARE = "(none)"
SECOND = "second shape"
# radio label -> OverlaySettings.matching
MATCHING_LABELS = {"pose-verified": "pose", "features only": "features"}


def _matching_label(value: str) -> str:
    return next(label for label, v in MATCHING_LABELS.items() if v == value)

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
    return _iframe(f"{scheme}://{host}:{port}/")


def _proxied_viewer_html(token: str) -> str:
    """The iframe for single-port mode: a path relative to the page, served by ``app.proxy``."""
    return _iframe(viewer_path(token))


def _iframe(src: str) -> str:
    src = html.escape(src, quote=True)
    return (f'<iframe id="viser" src="{src}" style="height:{VIEWER_HEIGHT}px" '
            f'title="3D viewer" allow="fullscreen"></iframe>')


def _sam_missing(message: str) -> str:
    """The short form of what SAM lacks, for the button ("package and checkpoint")."""
    lacks = [what for what, key in (("the package", "package"), ("a checkpoint", "checkpoint")) if key in message]
    return "needs " + " and ".join(lacks) if lacks else message


def _uploaded(path) -> str:
    """``path`` if it is a file Gradio received from a page (inside its upload folder), else a
    UserError: a hand-made request must never get another server file read as an upload."""
    p = Path(str(path)).resolve()
    if not p.is_relative_to(Path(get_upload_folder()).resolve()):
        raise UserError("The upload did not arrive; please upload the file again.")
    return str(p)


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



def build_ui(explorer: Explorer, *, single_port: bool = False) -> gr.Blocks:
    """The Blocks app for ``explorer`` (call ``.queue()`` and ``.launch()`` on it, or mount it
    with ``app.proxy.serve_single_port`` when ``single_port``: the viewer iframe then points at
    the proxied path)."""
    defaults = OverlaySettings()
    compare_choices = [NO_COMPARE] + list(explorer.compare_choices)
    fallback = explorer.viewer_kind == "fallback"
    gallery_choices = explorer.gallery_choices()

    # Gradio keeps every upload and every image it sends back as a file: without this a
    # long-running server fills its disk. analytics off: a public demo reports nothing home.
    with gr.Blocks(title="Tango3D explorer", delete_cache=TEMP_FILE_CLEANUP, analytics_enabled=False) as demo:
        session = gr.State(None, delete_callback=explorer.close_session)
        gr.Markdown("## Tango3D explorer — click a pixel, see where it lands on the shape; click the shape, "
                    f"see its pixels.  \nProvider: **{html.escape(explorer.primary.name)}**")
        status = gr.Markdown("Starting…", elem_id="status")
        with gr.Row():
            # ------------------------------------------------------- left: image, mask, inputs
            with gr.Column(scale=5):
                with gr.Tabs(elem_id="image-tabs"):
                    with gr.Tab("Image", id="image-tab", elem_id="image-tab"):
                        image = gr.Image(label="Image — click a pixel", type="filepath",
                                         sources=["upload", "clipboard"], format="jpeg", elem_id="query-image",
                                         height=420, buttons=[])
                        compare_image = gr.Image(label="Comparison provider", interactive=False, visible=False,
                                                 format="jpeg", elem_id="compare-image", height=420, buttons=[])
                    with gr.Tab("Mask", id="mask-tab", elem_id="mask-tab") as mask_tab:
                        mask_editor = gr.ImageEditor(
                            label="Brush the region to transfer", type="numpy", image_mode="RGBA", sources=[],
                            transforms=[], layers=False, eraser=gr.Eraser(),
                            brush=gr.Brush(colors=["#ff8c00"], default_color="#ff8c00", color_mode="fixed"),
                            height=420, elem_id="mask-editor", buttons=[], format="png")
                        mask_apply = gr.Button("Transfer mask", variant="primary", elem_id="mask-transfer")
                        sam_button = gr.Button(
                            "SAM: propose a mask from the last clicked pixel" if explorer.sam_available
                            else "SAM unavailable: " + _sam_missing(explorer.sam_message),
                            interactive=explorer.sam_available, elem_id="sam-propose", size="sm")
                        gr.Markdown(explorer.sam_message, elem_id="sam-status")
                        mask_threshold = gr.Slider(-1.0, 1.0, value=0.0, step=0.01, elem_id="mask-threshold",
                                                   label="Region threshold (cosine to the mask − cosine to the rest)")
                        mask_file = gr.File(label="…or upload a mask (white = region; PNG, JPG, WebP)",
                                            file_types=[".png", ".jpg", ".jpeg", ".webp"], type="filepath",
                                            elem_id="mask-file")
                with gr.Row():
                    mesh_file = gr.File(label="Mesh (OBJ, PLY, STL, OFF, GLB)", type="filepath",
                                        file_types=[".obj", ".ply", ".stl", ".off", ".glb"], elem_id="mesh-file")
                    up_axis = gr.Radio(["Z", "Y"], value="Z", label="Up axis of the mesh file", elem_id="up-axis")
                examples = gr.Gallery(
                    value=[(_rgb(e.image_path(explorer.examples_dir)), e.name) for e in explorer.examples],
                    label="Examples — click one", columns=5, height=150, allow_preview=False, buttons=[],
                    elem_id="examples", interactive=False)
            # ------------------------------------------------------------- middle: the 3D view
            with gr.Column(scale=7):
                viewer = gr.HTML("<p>Starting the 3D viewer…</p>", elem_id="viewer-frame", visible=not fallback)
                model3d = gr.Model3D(label="3D view (fallback: no 3D clicks)", height=VIEWER_HEIGHT,
                                     elem_id="fallback-view", visible=fallback, interactive=False,
                                     clear_color=(1.0, 1.0, 1.0, 1.0))
                with gr.Row():
                    colormap = gr.Dropdown(list(COLORMAPS), value=defaults.colormap, label="Colormap", elem_id="colormap")
                    mode = gr.Radio(["all", "top-k", "threshold"], value=defaults.mode, label="Show", elem_id="mode")
                    scale = gr.Radio(["relative", "absolute"], value=defaults.scale, label="Colour scale")
                    matching = gr.Radio(list(MATCHING_LABELS), value=_matching_label(defaults.matching),
                                        label="Match pixels by", elem_id="matching",
                                        info="pose-verified: features, plus where the image's predicted "
                                             "surface puts the pixel once turned onto the shape")
                with gr.Row():
                    k = gr.Slider(1, explorer.limits.num_points, value=defaults.k, step=1, label="k (top-k)")
                    threshold = gr.Slider(-1.0, 1.0, value=defaults.threshold, step=0.01, label="Threshold (cosine)")
                    opacity = gr.Slider(0.0, 1.0, value=defaults.opacity, step=0.05, label="Opacity")
                compare = gr.Dropdown(compare_choices, value=NO_COMPARE, label="Compare side by side with",
                                      elem_id="compare", interactive=len(compare_choices) > 1)
                with gr.Accordion("Feature view & export", open=True, elem_id="export-box"):
                    with gr.Row():
                        pca_button = gr.Button("Feature view (PCA → RGB)", elem_id="pca", scale=2)
                        recon_button = gr.Button("VAE reconstruction", elem_id="vae-recon", scale=2)
                        export_shape = gr.Radio(["first shape", SECOND], value="first shape", show_label=False,
                                                elem_id="export-shape", scale=2)
                    with gr.Row():
                        export_ply = gr.Button("Export PLY", elem_id="export-ply", size="sm")
                        export_glb = gr.Button("Export GLB", elem_id="export-glb", size="sm")
                        export_npy = gr.Button("Scores .npy", elem_id="export-npy", size="sm")
                        export_png = gr.Button("Screenshot", elem_id="export-png", size="sm")
                    export_file = gr.File(label="Download", interactive=False, elem_id="export-file", height=90)
                    gr.Markdown("PLY / GLB: the shape with per-vertex colours, `label` (1 = in the region or "
                                "selection) and `similarity`; .npy: float32 [N, 4] = x, y, z, score of the "
                                "feature points. Colours, labels and scores are the primary provider's.")
            # ---------------------------------------------------------------- right: the tools
            with gr.Column(scale=4):
                with gr.Tabs(elem_id="tool-tabs"):
                    with gr.Tab("Search", id="retrieval-tab", elem_id="retrieval-tab"):
                        query_text = gr.Textbox(label="Describe a shape", placeholder="a chair with armrests",
                                                elem_id="query-text")
                        with gr.Row():
                            search_text = gr.Button("Search text", elem_id="search-text")
                            search_image = gr.Button("Search with the image", elem_id="search-image")
                            search_pose = gr.Checkbox(
                                False, label=f"Re-rank the top {POSE_RERANK_TOP_K} by pose fit (slower)",
                                elem_id="search-pose")
                        with gr.Row():
                            top_k = gr.Slider(1, 16, value=8, step=1, label="Results")
                            load_as = gr.Radio(["first shape", SECOND], value="first shape", elem_id="load-as",
                                               label="A clicked result becomes the")
                        results = gr.Gallery(label="Results (cosine score · shape) — click one to load it",
                                             columns=2, height=400, buttons=[], allow_preview=False,
                                             elem_id="results", interactive=False)
                    with gr.Tab("3D ↔ 3D", id="pair-tab", elem_id="pair-tab"):
                        gr.Markdown("A second shape stands beside the first; click a point of either one to "
                                    "see the matching region on the other (same or another instance).")
                        second_file = gr.File(label="Second mesh (uses the up axis chosen on the left)",
                                              type="filepath", file_types=[".obj", ".ply", ".stl", ".off", ".glb"],
                                              elem_id="second-file")
                        second_pick = gr.Dropdown(gallery_choices, value=None, label="…or a gallery shape",
                                                  elem_id="second-pick", interactive=bool(gallery_choices))
                        with gr.Row():
                            second_apply = gr.Button("Show as second shape", elem_id="second-apply",
                                                     interactive=bool(gallery_choices))
                            second_clear = gr.Button("Remove second shape", elem_id="second-clear")
                    with gr.Tab("1 → many", id="many-tab", elem_id="many-tab"):
                        gr.Markdown(f"Pixel → many shapes: every pixel click is also matched on these gallery "
                                    f"shapes (at most {MAX_MANY}).")
                        many_pick = gr.Dropdown(gallery_choices, value=explorer.default_many(), multiselect=True,
                                                max_choices=MAX_MANY, label="Gallery shapes", elem_id="many-pick",
                                                interactive=bool(gallery_choices))
                        many_apply = gr.Button("Use these shapes", elem_id="many-apply",
                                               interactive=bool(gallery_choices))
                        many_gallery = gr.Gallery(label="Best cosine · shape (magenta: best point)", columns=2,
                                                  height=420, allow_preview=True, buttons=[], elem_id="many-results",
                                                  interactive=False)
        timer = gr.Timer(POLL_SECONDS, active=False)

        panels_out = [image, compare_image, status] + ([model3d] if fallback else [])
        n_panels = len(panels_out)
        view_out = [model3d] if fallback else []

        def _view(s):
            """The fallback view's new GLB (or no change); nothing in viser mode."""
            if not fallback:
                return ()
            if s is None or s.viewer is None:
                return (gr.skip(),)
            path, changed = s.viewer.glb_path()
            return (str(path) if path is not None else None,) if changed else (gr.skip(),)

        # ------------------------------------------------------------ lifecycle
        def on_load(request: gr.Request):
            try:
                s = explorer.open_session(request.session_hash or "local")
            except Exception as e:  # e.g. no free port for this tab's viewer
                log.exception("could not open a session")
                return None, "<p>The 3D viewer could not start.</p>", f"⚠️ Could not start a session ({type(e).__name__}); see the server log."
            if s.viewer is None or fallback:
                html_ = "<p>3D viewer disabled.</p>"
            elif single_port:
                html_ = _proxied_viewer_html(s.viewer_token)
            else:
                html_ = _viewer_html(request, s.viewer.port)
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
            """Outputs for ``panels_out``: (image, compare image, status[, fallback view])."""
            cmp = gr.update(value=panels[1], visible=len(s.providers) > 1)
            return (panels[0], cmp, s.status) + _view(s)

        def _skip_panels():
            return tuple(gr.skip() for _ in range(n_panels))

        def _last_image(payload, s, *rest, **kw):
            return ((s.image if s is not None else None), gr.skip(), None) + tuple(gr.skip() for _ in view_out)

        @_guard(n_panels, 2, restore=_last_image)
        def on_image(payload, s, progress=gr.Progress()):
            path = _payload_path(payload)
            if path is None:
                return _skip_panels()
            return _panels(explorer.load_image(s, _uploaded(path), progress=progress), s)

        image.upload(on_image, inputs=[image, session], outputs=panels_out, preprocess=False,
                     concurrency_limit=2)

        def _polling(s):
            return gr.Timer(active=s is not None and s.mesh is not None and not fallback)

        @_guard(2 + len(view_out), 0)
        def on_mesh(path, axis, s, progress=gr.Progress()):
            if not path:
                return (gr.skip(), gr.skip()) + tuple(gr.skip() for _ in view_out)
            name = str(path).replace("\\", "/").split("/")[-1]
            msg = explorer.load_mesh_file(s, _uploaded(path), up_axis=axis.lower(), display_name=name,
                                          progress=progress)
            return (msg, _polling(s)) + _view(s)

        mesh_file.upload(on_mesh, inputs=[mesh_file, up_axis, session], outputs=[status, timer] + view_out,
                         concurrency_limit=2)

        @_guard(1 + len(view_out), 0)
        def on_up_axis(axis, s, progress=gr.Progress()):
            return (explorer.set_up_axis(s, axis.lower(), progress=progress),) + _view(s)

        up_axis.input(on_up_axis, inputs=[up_axis, session], outputs=[status] + view_out, concurrency_limit=2)

        @_guard(5 + len(view_out), 3)
        def on_example(s, evt: gr.SelectData, progress=gr.Progress()):
            panels, axis = explorer.load_example(s, evt.index, progress=progress)
            first, cmp, msg, *view = _panels(panels, s)
            return (first, cmp, axis.upper(), msg, _polling(s), *view)

        examples.select(on_example, inputs=[session],
                        outputs=[image, compare_image, up_axis, status, timer] + view_out, concurrency_limit=2)

        # --------------------------------------------------------------- clicks
        def _many(s):
            return list(s.many_results) if s is not None and s.many_keys else gr.skip()

        @_guard(n_panels + 1, 2)
        def on_pixel(s, evt: gr.SelectData):
            panels = explorer.click_pixel(s, evt.index)
            return _panels(panels, s) + (_many(s),)

        image.select(on_pixel, inputs=[session], outputs=panels_out + [many_gallery], show_progress="hidden",
                     trigger_mode="always_last", concurrency_limit=8)

        def on_poll(s):
            panels = explorer.poll(s)
            if panels is None:
                return _skip_panels()
            return _panels(panels, s)

        # trigger_mode "multiple": under the default "once" the page drops every tick while one is
        # still pending, so a single tick whose reply is lost or slow silences the 3D -> pixel
        # direction for good (seen as multi-second gaps between polls on a loaded machine).
        # A tick is a lock and an integer comparison, so letting them overlap costs little.
        timer.tick(on_poll, inputs=[session], outputs=panels_out, show_progress="hidden",
                   concurrency_limit=None, trigger_mode="multiple")

        @_guard(n_panels + 1, 2)
        def on_overlay(cm, md, sc, mt, kk, th, op, s):
            panels = explorer.set_overlay(s, colormap=cm, mode=md, scale=sc, matching=MATCHING_LABELS.get(mt, mt),
                                          k=int(kk), threshold=float(th), opacity=float(op))
            if panels is None:
                return _skip_panels() + (gr.skip(),)
            return _panels(panels, s) + (_many(s),)

        overlay_inputs = [colormap, mode, scale, matching, k, threshold, opacity, session]
        for control in (colormap, mode, scale, matching):
            control.input(on_overlay, inputs=overlay_inputs, outputs=panels_out + [many_gallery],
                          show_progress="hidden", trigger_mode="always_last")
        for control in (k, threshold, opacity):
            control.release(on_overlay, inputs=overlay_inputs, outputs=panels_out + [many_gallery],
                            show_progress="hidden", trigger_mode="always_last")

        @_guard(n_panels, 2)
        def on_compare(name, s, progress=gr.Progress()):
            return _panels(explorer.set_compare(s, None if name == NO_COMPARE else name, progress=progress), s)

        compare.input(on_compare, inputs=[compare, session], outputs=panels_out, concurrency_limit=2)

        # ------------------------------------------------------------ retrieval
        @_guard(2, 1)
        def on_search_text(text, kk, s):
            hits = explorer.search_text(s, text, k=int(kk))
            return _hit_gallery(hits), s.status

        @_guard(2, 1)
        def on_search_image(kk, pose, s, progress=gr.Progress()):
            hits = explorer.search_image(s, k=int(kk), pose=bool(pose), progress=progress)
            return _hit_gallery(hits), s.status

        search_text.click(on_search_text, inputs=[query_text, top_k, session], outputs=[results, status])
        query_text.submit(on_search_text, inputs=[query_text, top_k, session], outputs=[results, status])
        # The pose re-rank is seconds of model work (bounded by limits.timeout_s), like an encode.
        search_image.click(on_search_image, inputs=[top_k, search_pose, session], outputs=[results, status],
                           concurrency_limit=2)

        @_guard(n_panels + 1, 2)
        def on_result(target, s, evt: gr.SelectData, progress=gr.Progress()):
            explorer.load_hit(s, evt.index, as_second=target == SECOND, progress=progress)
            return _panels(s.panels, s) + (_polling(s),)

        results.select(on_result, inputs=[load_as, session], outputs=panels_out + [timer], concurrency_limit=2)

        # --------------------------------------------------------------- 3D <-> 3D
        @_guard(n_panels + 1, 2)
        def on_second_file(path, axis, s, progress=gr.Progress()):
            if not path:
                return _skip_panels() + (gr.skip(),)
            name = str(path).replace("\\", "/").split("/")[-1]
            explorer.load_second_file(s, _uploaded(path), up_axis=axis.lower(), display_name=name,
                                      progress=progress)
            return _panels(s.panels, s) + (_polling(s),)

        second_file.upload(on_second_file, inputs=[second_file, up_axis, session], outputs=panels_out + [timer],
                           concurrency_limit=2)

        @_guard(n_panels + 1, 2)
        def on_second_pick(key, s, progress=gr.Progress()):
            if not key:
                raise UserError("Pick a gallery shape first.")
            explorer.load_second_gallery(s, key, progress=progress)
            return _panels(s.panels, s) + (_polling(s),)

        second_apply.click(on_second_pick, inputs=[second_pick, session], outputs=panels_out + [timer],
                           concurrency_limit=2)

        @_guard(n_panels, 2)
        def on_second_clear(s):
            explorer.clear_second(s)
            return _panels(s.panels, s)

        second_clear.click(on_second_clear, inputs=[session], outputs=panels_out)

        # ------------------------------------------------------------ pixel -> many
        @_guard(2, 1)
        def on_many(keys, s, progress=gr.Progress()):
            out = explorer.set_many(s, keys or [], progress=progress)
            return out, s.status

        many_apply.click(on_many, inputs=[many_pick, session], outputs=[many_gallery, status], concurrency_limit=2)

        # ------------------------------------------------------------ mask transfer
        def on_mask_tab(s):
            """Put the working image under the brush when it changed since the editor last had it."""
            if s is None or s.image is None or s.editor_image_key == s.image_key:
                return gr.skip()
            s.editor_image_key = s.image_key
            return {"background": s.image, "layers": [], "composite": None}

        mask_tab.select(on_mask_tab, inputs=[session], outputs=[mask_editor], show_progress="hidden")

        @_guard(n_panels, 2)
        def on_mask_apply(value, s):
            return _panels(explorer.mask_from_editor(s, value), s)

        mask_apply.click(on_mask_apply, inputs=[mask_editor, session], outputs=panels_out, concurrency_limit=4)

        @_guard(n_panels, 2)
        def on_mask_file(path, s):
            if not path:
                return _skip_panels()
            return _panels(explorer.mask_from_file(s, _uploaded(path)), s)

        mask_file.upload(on_mask_file, inputs=[mask_file, session], outputs=panels_out, concurrency_limit=4)

        @_guard(n_panels, 2)
        def on_mask_threshold(t, s):
            panels = explorer.set_mask_threshold(s, float(t))
            return _skip_panels() if panels is None else _panels(panels, s)

        mask_threshold.release(on_mask_threshold, inputs=[mask_threshold, session], outputs=panels_out,
                               show_progress="hidden", trigger_mode="always_last")

        @_guard(n_panels + 1, 2)
        def on_sam(s):
            panels, mask = explorer.propose_mask(s)
            s.editor_image_key = s.image_key
            editor = {"background": s.image, "layers": [mask_to_layer(mask)], "composite": None}
            return _panels(panels, s) + (editor,)

        sam_button.click(on_sam, inputs=[session], outputs=panels_out + [mask_editor], concurrency_limit=1)

        # ------------------------------------------------------- features & export
        @_guard(n_panels, 2)
        def on_pca(s):
            return _panels(explorer.feature_view(s), s)

        pca_button.click(on_pca, inputs=[session], outputs=panels_out, concurrency_limit=4)

        @_guard(1, 0)
        def on_recon(s, progress=gr.Progress()):
            return explorer.vae_reconstruction(s, progress=progress)

        # Seconds of model work (bounded by limits.timeout_s); "once": no second run while one is pending.
        recon_button.click(on_recon, inputs=[session], outputs=[status], concurrency_limit=2, trigger_mode="once")

        def _export(kind):
            @_guard(2, 1)
            def on_export(target, s):
                path = explorer.export(s, kind, shape="b" if target == SECOND else "a")
                return str(path), f"Exported {path.name} ({path.stat().st_size / 1024:.0f} kB)."

            on_export.__name__ = f"on_export_{kind}"
            return on_export

        for button, kind in ((export_ply, "ply"), (export_glb, "glb"), (export_npy, "npy"), (export_png, "png")):
            button.click(_export(kind), inputs=[export_shape, session], outputs=[export_file, status],
                         concurrency_limit=2)

    return demo
