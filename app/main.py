"""Assemble and serve the explorer: providers, examples, gallery, Explorer, Gradio UI.

``launch.py`` parses the command line and calls :func:`serve`; tests call :func:`build_app`
and :func:`start` to run the app in-process on free ports.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .examples import EXAMPLES_DIR, ensure_examples
from .explorer import Explorer, Limits

__all__ = ["App", "build_app", "default_cache_dir", "serve", "start"]

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


@dataclass
class App:
    explorer: Explorer
    demo: Any  # gradio.Blocks
    url: str = ""


def build_app(primary: Any, *, make_provider: Any = None, compare_choices: list[str] | None = None,
              gallery: Any = None, cache_dir: str | Path | None = None, examples_dir: str | Path = EXAMPLES_DIR,
              limits: Limits = Limits(), viewer_host: str = "127.0.0.1") -> App:
    """Explorer + Blocks around an already-built primary provider."""
    from .ui import build_ui

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    examples = ensure_examples(examples_dir, fallback=cache / "examples")
    work = Path(tempfile.mkdtemp(prefix="tango3d-app-"))
    explorer = Explorer(primary, make_provider=make_provider, compare_choices=compare_choices or [],
                        examples=examples, gallery=gallery, work_dir=work, limits=limits, viewer_host=viewer_host)
    return App(explorer=explorer, demo=build_ui(explorer))


def start(app: App, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False,
          block: bool = False, quiet: bool = True) -> App:
    """Launch the Blocks (``block=False`` returns once the server is up); sets ``app.url``."""
    from .ui import CSS

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
            else:
                gallery = Gallery.procedural(per_category=2, cache_dir=cache / "gallery")
        except ValueError as e:
            print(f"error: --gallery: {e}", file=sys.stderr)
            return 2
    app = build_app(primary, make_provider=make_provider,
                    compare_choices=[n for n in available_providers() if n != primary.name],
                    gallery=gallery, cache_dir=cache, viewer_host=args.host)
    if args.share:
        print("note: --share exposes the Gradio page only; the 3D viewer runs on separate local ports "
              "and is not reachable through the share link.")
    start(app, host=args.host, port=args.port, share=args.share, block=False, quiet=True)
    print(f"Tango3D explorer running on {app.url}  (provider {primary.name}, device {device}; Ctrl+C to stop)",
          flush=True)
    try:
        app.demo.block_thread()
    finally:
        app.explorer.shutdown()
    return 0
