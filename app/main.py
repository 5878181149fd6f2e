"""Assemble and serve the explorer: providers, examples, gallery, Explorer, Gradio UI.

``launch.py`` parses the command line and calls :func:`serve`; tests call :func:`build_app`
and :func:`start` to run the app in-process on free ports.

Two ways to serve:

* default: Gradio on ``--port``, each session's viser server on its own local port (the page's
  iframe points at it directly);
* ``single_port`` (``--single-port``; the default when ``$SPACE_ID`` is set, i.e. on a
  Hugging Face Space): one FastAPI app on one port mounts Gradio and proxies every session's
  viser traffic under ``/viser/<token>/`` (``app.proxy``).

Both are served by uvicorn on a thread (``app.proxy.serve_app``); ``--share`` alone goes
through Gradio's own ``launch`` (its tunnel needs it).

``viewer="fallback"`` (``--viewer fallback``) replaces viser by a ``gr.Model3D`` view, for hosts
that cannot carry a WebSocket at all.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .examples import EXAMPLES_DIR, ensure_examples
from .explorer import Explorer, Limits, ViewerKind

__all__ = ["App", "TempSweeper", "build_app", "default_cache_dir", "limit_malloc_arenas", "resolve_single_port",
           "serve", "start", "sweep_old_files"]

log = logging.getLogger("tango3d.app")


def default_cache_dir() -> Path:
    """``$TANGO3D_CACHE``, else ``$XDG_CACHE_HOME/tango3d``, else ``~/.cache/tango3d``."""
    env = os.environ.get("TANGO3D_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tango3d"


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available here (use --device cpu)")
    return device


TEMP_MAX_AGE_ENV = "TANGO3D_TEMP_MAX_AGE_S"
_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``arenas`` unless ``$MALLOC_ARENA_MAX`` is set; True if done.

    Gradio and the explorer run handlers on many threads and glibc gives each its own arena
    (up to 8 per core), so a long-running server's resident memory creeps with traffic. Capped
    at 2 the 2000-upload load test stayed flat (docs/robustness.md). Any other C library: no-op."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, int(arenas)))
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False


def sweep_old_files(folder: str | Path, *, max_age_s: float) -> int:
    """Delete the files under ``folder`` last modified more than ``max_age_s`` seconds ago, and
    the folders that were empty and as old; returns the number of files deleted.

    Gradio writes every upload and every image it sends back under its temporary folder and
    deletes only the uploads (``delete_cache``); the returned images would pile up forever."""
    cutoff = time.time() - max_age_s
    deleted = 0
    for root, _, files in os.walk(folder, topdown=False):
        try:
            old_dir = os.lstat(root).st_mtime < cutoff  # before our deletions touch it
        except OSError:
            continue
        for name in files:
            path = os.path.join(root, name)
            try:
                if os.lstat(path).st_mtime < cutoff:
                    os.unlink(path)
                    deleted += 1
            except OSError:
                pass
        if old_dir and os.path.abspath(root) != os.path.abspath(folder):
            try:
                os.rmdir(root)  # only succeeds when empty
            except OSError:
                pass
    return deleted


class TempSweeper:
    """Runs :func:`sweep_old_files` on ``folder`` every ``every_s`` seconds (default: a quarter
    of ``max_age_s``, at most 15 min) on a daemon thread until :meth:`stop`."""

    def __init__(self, folder: str | Path, *, max_age_s: float, every_s: float | None = None) -> None:
        self.folder, self.max_age_s = Path(folder), float(max_age_s)
        self.every_s = float(every_s) if every_s is not None else min(900.0, max(1.0, self.max_age_s / 4))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="temp-sweeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                sweep_old_files(self.folder, max_age_s=self.max_age_s)
            except Exception:  # the sweeper must never take the server down
                log.exception("sweeping %s failed", self.folder)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class App:
    explorer: Explorer
    demo: Any  # gradio.Blocks
    url: str = ""
    single_port: bool = False
    server: Any = None  # app.proxy.ProxyServer in single-port mode

    def close(self) -> None:
        """Stop serving and close every session (their viser servers and export folders)."""
        try:
            if self.server is not None:
                self.server.close()
                self.server = None
            else:
                self.demo.close()
        finally:
            self.explorer.shutdown()
            shutil.rmtree(self.explorer.work_dir, ignore_errors=True)


def build_app(primary: Any, *, make_provider: Any = None, compare_choices: list[str] | None = None,
              gallery: Any = None, cache_dir: str | Path | None = None, examples_dir: str | Path = EXAMPLES_DIR,
              limits: Limits = Limits(), viewer_host: str = "127.0.0.1", single_port: bool = False,
              viewer: ViewerKind = "viser") -> App:
    """Explorer + Blocks around an already-built primary provider."""
    from .ui import build_ui

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    examples = ensure_examples(examples_dir, fallback=cache / "examples")
    work = Path(tempfile.mkdtemp(prefix="tango3d-app-"))
    explorer = Explorer(primary, make_provider=make_provider, compare_choices=compare_choices or [],
                        examples=examples, gallery=gallery, work_dir=work, limits=limits,
                        # Behind the proxy the viewers are reached from this process only.
                        viewer_host="127.0.0.1" if single_port else viewer_host, viewer=viewer, cache_dir=cache)
    return App(explorer=explorer, demo=build_ui(explorer, single_port=single_port), single_port=single_port)


def start(app: App, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
          block: bool = False, quiet: bool = True) -> App:
    """Serve the app (``block=False`` returns once the server is up); sets ``app.url``."""
    from .ui import CSS

    if app.single_port and share:
        raise ValueError("--share cannot be combined with --single-port (a share link tunnels Gradio's own "
                         "server only)")
    if not share:
        from .proxy import serve_app

        app.server = serve_app(app, host=host, port=port, quiet=quiet, proxy=app.single_port)
        app.url = app.server.url
        if block:
            try:
                while app.server._thread.is_alive():
                    app.server._thread.join(1.0)
            finally:
                app.close()
        return app
    app.demo.queue(default_concurrency_limit=4)
    _, local_url, share_url = app.demo.launch(
        server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=quiet,
        max_file_size=f"{max(app.explorer.limits.max_mesh_bytes, app.explorer.limits.max_image_bytes) // 2**20}mb",
        css=CSS, footer_links=[])
    app.url = local_url
    if block:
        try:
            app.demo.block_thread()
        finally:
            app.explorer.shutdown()
    return app


def serve(args: argparse.Namespace) -> int:
    """Entry point of ``launch.py``; returns the process exit code."""
    from tango3d_core.models.checkpoint import BUILD_COMMAND, CheckpointError
    from tango3d_core.providers import ProviderError, available_providers, create_provider

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log.setLevel(logging.INFO)
    limit_malloc_arenas()
    single_port = resolve_single_port(args)
    if single_port and args.share:
        print("error: --share cannot be combined with --single-port (the default when SPACE_ID is set); "
              "pass --no-single-port to use a share link.", file=sys.stderr)
        return 2
    try:
        device = resolve_device(args.device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        primary = create_provider(args.provider, checkpoint=args.checkpoint, device=device)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        if args.checkpoint is None and BUILD_COMMAND not in str(e):
            print(f"The bundled checkpoint is built by: {BUILD_COMMAND}", file=sys.stderr)
        return 2
    except ProviderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def make_provider(name: str) -> Any:
        return create_provider(name, checkpoint=args.checkpoint, device=device)

    cache = default_cache_dir()
    gallery = None
    if not getattr(args, "no_gallery", False):
        from .gallery import Gallery

        try:
            if args.gallery:
                gallery = Gallery.from_directory(args.gallery, cache_dir=cache / "gallery")
            elif hasattr(Gallery, "bundled"):  # the prebuilt assets/gallery (ready at once)
                gallery = Gallery.bundled(cache_dir=cache / "gallery")
            else:
                gallery = Gallery.procedural(per_category=2, cache_dir=cache / "gallery")
        except ValueError as e:
            print(f"error: --gallery: {e}", file=sys.stderr)
            return 2
    # Gradio's temporary files (uploads, every image sent back) go to a folder of our own, swept
    # by age (TANGO3D_TEMP_MAX_AGE_S, default 1 h) and removed at exit; a GRADIO_TEMP_DIR the
    # user set is swept the same way but kept.
    if not os.environ.get("GRADIO_TEMP_DIR"):
        own_temp = tempfile.mkdtemp(prefix="tango3d-gradio-")
        os.environ["GRADIO_TEMP_DIR"] = own_temp
        atexit.register(shutil.rmtree, own_temp, True)
    app = build_app(primary, make_provider=make_provider,
                    compare_choices=[n for n in available_providers() if n != primary.name],
                    gallery=gallery, cache_dir=cache, viewer_host=args.host, single_port=single_port,
                    viewer=getattr(args, "viewer", "viser"))
    if args.share and app.explorer.viewer_kind == "viser":
        print("note: --share exposes the Gradio page only; the 3D viewer runs on separate local ports "
              "and is not reachable through the share link (use --viewer fallback, or --single-port on a host).")
    try:
        start(app, host=args.host, port=args.port, share=args.share, block=False, quiet=True)
    except OSError as e:  # e.g. the port is taken
        app.explorer.shutdown()
        print(f"error: cannot serve on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    from gradio.utils import get_upload_folder

    sweeper = TempSweeper(get_upload_folder(), max_age_s=float(os.environ.get(TEMP_MAX_AGE_ENV) or 3600))
    mode = "single port" if single_port else "viewer ports per tab"
    print(f"Tango3D explorer running on {app.url}  (provider {primary.name}, device {device}, {mode}, "
          f"{app.explorer.viewer_kind} view; Ctrl+C to stop)", flush=True)
    try:
        if app.server is not None:
            while app.server._thread.is_alive():
                app.server._thread.join(1.0)
        else:
            app.demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        sweeper.stop()
        app.close()
    return 0


def resolve_single_port(args: argparse.Namespace) -> bool:
    """``--single-port`` / ``--no-single-port`` when given, else on exactly when ``$SPACE_ID`` is set."""
    flag = getattr(args, "single_port", None)
    return bool(os.environ.get("SPACE_ID")) if flag is None else bool(flag)
