"""Regenerate the explorer's screenshots in ``docs/screenshots/`` headlessly.

    python -m app.screenshots [--out docs/screenshots] [--checkpoint DIR]

Starts the explorer in-process in single-port mode with the bundled checkpoint and a small
procedural gallery, drives it with Debian's Chromium through Playwright (software WebGL; no
browser is downloaded), and writes one PNG per view:

=====================  ==========================================================
pixel_to_3d.png        a pixel click coloured onto the shape
3d_to_pixel.png        a click on the shape, its heat map over the image
shape_to_shape.png     3D <-> 3D: a click on one chair, the match on another
pixel_to_many.png      one pixel matched on several gallery shapes
mask_transfer.png      a brushed mask and the transferred region
feature_view.png       PCA of the features -> RGB on the image and the shapes
vae_reconstruction     the shape VAE's reconstruction (blue) beside the shape
compare_and_retrieval  text search results and a second provider side by side
export.png             the export panel after a PLY export
fallback_view.png      the gr.Model3D view used where no WebSocket can be proxied
=====================  ==========================================================

The camera helpers (``pixel_on_slot``) are shared with the browser tests: they find a page
pixel whose click lands on a given shape, by asking the server's own picking.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "SCREENSHOTS_DIR", "pixel_on_slot", "project", "ray", "main"]

SCREENSHOTS_DIR = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1500, "height": 1080}


# ------------------------------------------------------------------ viser camera maths
def _camera_axes(camera: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pos, look, up = (np.asarray(v, float) for v in (camera.position, camera.look_at, camera.up_direction))
    f = (look - pos) / np.linalg.norm(look - pos)
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    return pos, f, r, np.cross(r, f)


def project(camera: Any, box: dict, p: np.ndarray) -> tuple[float, float]:
    """Page pixel of display-space point ``p`` for viser's perspective camera (three.js,
    vertical ``fov`` in radians) drawn in the canvas ``box`` (Playwright bounding box)."""
    pos, f, r, u = _camera_axes(camera)
    d = np.asarray(p, float) - pos
    t, aspect = np.tan(camera.fov / 2.0), box["width"] / box["height"]
    nx, ny = (d @ r) / ((d @ f) * t * aspect), (d @ u) / ((d @ f) * t)
    return box["x"] + (nx + 1) / 2 * box["width"], box["y"] + (1 - ny) / 2 * box["height"]


def ray(camera: Any, box: dict, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
    """The display-space ray (origin, direction) through page pixel (x, y)."""
    pos, f, r, u = _camera_axes(camera)
    t, aspect = np.tan(camera.fov / 2.0), box["width"] / box["height"]
    nx, ny = 2 * (x - box["x"]) / box["width"] - 1, 1 - 2 * (y - box["y"]) / box["height"]
    return pos, f + nx * t * aspect * r + ny * t * u


def pixel_on_slot(viewer: Any, camera: Any, box: dict, slot: int, points: np.ndarray) -> tuple[float, float] | None:
    """A page pixel whose ray, and the rays 3 px around it, all hit ``slot`` first (so a click
    there lands on that shape despite rounding), tried at the projections of ``points`` (mesh
    coordinates of that slot's shape)."""
    frame = viewer.scene()[slot].frame
    for p in points:
        x, y = project(camera, box, frame.to_display(p))
        hits = [viewer.pick(*ray(camera, box, x + dx, y + dy)) for dx in (-3, 0, 3) for dy in (-3, 0, 3)]
        if all(h is not None and h[0] == slot for h in hits):
            return x, y
    return None


# ----------------------------------------------------------------------- the script
def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _click_image_pixel(page: Any, x: float, y: float) -> None:
    img = page.locator("#query-image img").first
    img.wait_for(timeout=30000)
    img.scroll_into_view_if_needed()
    _wait(lambda: img.evaluate("e => e.complete && e.naturalWidth > 0"), 30, "the image")
    box = img.bounding_box()
    nw, nh = img.evaluate("e => [e.naturalWidth, e.naturalHeight]")
    r = min(box["width"] / nw, box["height"] / nh, 1.0)
    left, top = box["x"] + (box["width"] - nw * r) / 2, box["y"] + (box["height"] - nh * r) / 2
    page.mouse.click(left + (x + 0.5) * r, top + (y + 0.5) * r)


def _dismiss_notice(viser: Any) -> None:
    try:
        viser.locator("[class*=Notification] button").first.click(timeout=3000)
    except Exception:
        pass


def _status(page: Any, text: str, timeout: float = 120) -> None:
    _wait(lambda: text in page.locator("#status").inner_text(), timeout, f"status {text!r}")


def _settle(page: Any, seconds: float = 2.0, *, top: bool = True) -> None:
    if top:
        page.evaluate("window.scrollTo(0, 0)")
    time.sleep(seconds)  # software WebGL draws a few frames behind the scene updates


def run(out: Path, *, checkpoint: str | None = None, log: Callable[[str], None] = print) -> list[Path]:
    """Write every screenshot into ``out``; returns the files written."""
    from playwright.sync_api import sync_playwright

    from tango3d_core.providers import BackprojectionProvider, create_provider

    from .explorer import Limits
    from .gallery import Gallery
    from .main import build_app, start

    out.mkdir(parents=True, exist_ok=True)
    primary = create_provider("tango3d", checkpoint=checkpoint, device="cpu")

    def make_provider(name: str) -> Any:
        return BackprojectionProvider(primary.encode_image, name=name, num_views=6, view_size=160)

    cache = Path(tempfile.mkdtemp(prefix="tango3d-shots-"))
    gallery = Gallery.procedural(per_category=2, categories=["chair", "mug", "lamp", "table", "airplane", "car"],
                                 cache_dir=cache / "gallery")
    app = build_app(primary, cache_dir=cache, gallery=gallery, make_provider=make_provider,
                    compare_choices=["backprojection"], single_port=True, limits=Limits(num_points=8192))
    written: list[Path] = []

    def shot(page: Any, name: str) -> None:
        from PIL import Image

        path = out / name
        page.screenshot(path=str(path))
        # 256 colours (median cut): a third of the bytes, no visible loss on UI and colormaps.
        with Image.open(path) as im:
            small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)
        written.append(path)
        log(f"wrote {path}")

    start(app, host="127.0.0.1", port=None)
    try:
        assert gallery.wait(primary, timeout=600), "the gallery did not index"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT, accept_downloads=True)
            page.goto(app.url)
            page.wait_for_selector("#viser", timeout=60000)
            _wait(lambda: len(app.explorer.sessions()) == 1, 60, "the session")
            s = app.explorer.session(app.explorer.sessions()[0])
            viser = page.frame_locator("#viser")
            names = [e.name for e in app.explorer.examples]

            # Pixel -> 3D and 3D -> pixel on the chair.
            page.locator("#examples button.thumbnail-item").nth(names.index("chair")).click()
            _status(page, "Example 'chair'")
            viser.locator("canvas").first.wait_for(timeout=60000)
            _dismiss_notice(viser)
            _click_image_pixel(page, 165, 175)                     # the seat
            _status(page, "Pixel (165, 175)")
            _settle(page)
            shot(page, "pixel_to_3d.png")
            _wait(lambda: len(s.viewer.server.get_clients()) > 0, 60, "the viser client")
            client = next(iter(s.viewer.server.get_clients().values()))
            canvas = viser.locator("canvas").first
            pts = s.shapes["tango3d"].features.points.numpy()
            target = pixel_on_slot(s.viewer, client.camera, canvas.bounding_box(), 0, pts[::97])
            if target is not None:
                page.mouse.click(*target)
                _status(page, "best pixel")
                _settle(page)
                shot(page, "3d_to_pixel.png")

            # 3D <-> 3D: another chair from the gallery beside it.
            page.get_by_role("tab", name="3D ↔ 3D").click()
            other = next(it for it in gallery.items if it.category == "chair")
            page.locator("#second-pick input").first.click()
            page.get_by_role("option", name=other.name).click()
            page.locator("#second-apply").click()
            _status(page, "Second shape")
            _settle(page, 2.5)
            client = next(iter(s.viewer.server.get_clients().values()))
            target = pixel_on_slot(s.viewer, client.camera, canvas.bounding_box(), 0, pts[::53])
            if target is not None:
                page.mouse.click(*target)
                _status(page, "best match on")
                _settle(page)
                shot(page, "shape_to_shape.png")

            # Pixel -> many gallery shapes.
            page.get_by_role("tab", name="1 → many").click()
            page.locator("#many-apply").click()
            _status(page, "gallery shapes")
            _click_image_pixel(page, 165, 175)
            _wait(lambda: page.locator("#many-results button.thumbnail-item").count() > 0, 60, "the many results")
            _settle(page, 1.5)
            shot(page, "pixel_to_many.png")

            # Mask transfer: brush over the back rest.
            page.get_by_role("tab", name="3D ↔ 3D").click()
            page.locator("#second-clear").click()
            _status(page, "Second shape removed")
            page.get_by_role("tab", name="Mask").click()
            _wait(lambda: s.editor_image_key == s.image_key, 30, "the image under the brush")
            editor = page.locator("#mask-editor canvas").first
            editor.wait_for(timeout=30000)
            _settle(page, 1.5)
            eb = editor.bounding_box()
            cx, cy = eb["x"] + eb["width"] * 0.55, eb["y"] + eb["height"] * 0.33
            page.mouse.move(cx, cy)
            page.mouse.down()
            for i in range(10):
                page.mouse.move(cx + 4 * i, cy - 3 * i, steps=2)
            page.mouse.up()
            page.locator("#mask-transfer").click()
            _status(page, "transferred")
            _settle(page)
            shot(page, "mask_transfer.png")

            # Feature view.
            page.get_by_role("tab", name="Image").click()
            page.locator("#pca").click()
            _status(page, "Feature view")
            _settle(page)
            shot(page, "feature_view.png")

            # The VAE's reconstruction beside the shape, hidden again for the views after it.
            page.locator("#vae-recon").click()
            _status(page, "VAE reconstruction:", timeout=120)
            _settle(page)
            shot(page, "vae_reconstruction.png")
            page.locator("#vae-recon").click()
            _status(page, "VAE reconstruction hidden")

            # Export after a pixel click.
            _click_image_pixel(page, 165, 175)
            _status(page, "Pixel (165, 175)")
            page.locator("#export-ply").click()
            page.locator("#export-file a").first.wait_for(timeout=60000)
            page.locator("#export-box").evaluate("e => e.scrollIntoView({block: 'center'})")
            _settle(page, 1.0, top=False)
            shot(page, "export.png")

            # Retrieval + comparison.
            page.evaluate("window.scrollTo(0, 0)")
            page.get_by_role("tab", name="Search").click()
            page.locator("#query-text textarea, #query-text input").first.fill("a mug with a handle")
            page.locator("#search-text").click()
            _wait(lambda: page.locator("#results button.thumbnail-item").count() > 0, 60, "search results")
            page.locator("#examples button.thumbnail-item").nth(names.index("mug")).click()
            _status(page, "Example 'mug'")
            page.locator("#compare input").first.click()
            page.get_by_role("option", name="backprojection").click()
            _status(page, "Comparing", timeout=300)
            _click_image_pixel(page, 150, 170)
            _status(page, "backprojection: best point")
            _settle(page, 2.5)
            shot(page, "compare_and_retrieval.png")
            browser.close()
    finally:
        app.close()

    # The fallback view: a second app without viser.
    fb = build_app(primary, cache_dir=cache, single_port=True, viewer="fallback", limits=Limits(num_points=8192))
    start(fb, host="127.0.0.1", port=None)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(fb.url)
            page.wait_for_selector("#fallback-view", timeout=60000)
            names = [e.name for e in fb.explorer.examples]
            page.locator("#examples button.thumbnail-item").nth(names.index("airplane")).click()
            _status(page, "Example 'airplane'")
            _click_image_pixel(page, 160, 150)
            _status(page, "Pixel (160, 150)")
            page.locator("#fallback-view canvas").first.wait_for(timeout=60000)
            _settle(page, 4.0)
            shot(page, "fallback_view.png")
            browser.close()
    finally:
        fb.close()
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Regenerate docs/screenshots/*.png headlessly (needs playwright and "
                                            f"a Chromium at {CHROMIUM}).")
    p.add_argument("--out", type=Path, default=SCREENSHOTS_DIR, help=f"output folder (default {SCREENSHOTS_DIR})")
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the bundled one)")
    args = p.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"error: no Chromium at {CHROMIUM} (apt-get install chromium)", file=sys.stderr)
        return 2
    run(args.out, checkpoint=args.checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
