"""Start the Tango3D explorer.  ``python launch.py --help`` lists the options.

Thin by design: parse flags, hand them to ``app``; no logic lives here.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Tango3D explorer: click a pixel, see the matching 3D region.")
    on_space = bool(os.environ.get("SPACE_ID"))
    host = os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space else "127.0.0.1")
    p.add_argument("--host", default=host,
                   help=f"interface to bind (default {host}: 127.0.0.1 unless $GRADIO_SERVER_NAME is set or on a "
                        "Space; use 0.0.0.0 to expose)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT") or 7860),
                   help="port of the page (default 7860, or $GRADIO_SERVER_PORT)")
    p.add_argument("--single-port", action=argparse.BooleanOptionalAction, default=None,
                   help="serve Gradio and every tab's 3D viewer through one port (a proxy; default: on when "
                        "$SPACE_ID is set, i.e. on a Hugging Face Space, else off); see docs/deploy.md")
    p.add_argument("--viewer", choices=["viser", "fallback"], default="viser",
                   help="3D view: viser (interactive, WebSocket) or fallback (gr.Model3D, no WebSocket; "
                        "3D clicks unavailable) (default viser)")
    p.add_argument("--checkpoint", default=None, help="checkpoint directory (default: the bundled one in assets/)")
    p.add_argument("--gallery", default=None,
                   help="folder of meshes to retrieve from (default: bundled procedural shapes)")
    p.add_argument("--device", default="cpu", help="torch device for features: cpu, cuda, cuda:1, auto (default cpu)")
    p.add_argument("--provider", default="tango3d",
                   help="feature provider: tango3d, backprojection, or package.module:factory (default tango3d; "
                        "see docs/providers.md)")
    p.add_argument("--share", action="store_true", help="create a public Gradio share link (off by default)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import importlib.util

    if importlib.util.find_spec("app.main") is None:
        print(
            "The Tango3D explorer is not built yet (issue 5). The data engine and the model are usable "
            "from Python: see README.md. Exiting."
        )
        return 0
    from app.main import serve

    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
