"""Command line of the data engine: ``python -m tango3d_core.data {build,preview,watertight,stats}``.

Examples::

    # 8 views of 224 px, 100 shapes per category, train split, 2 processes
    python -m tango3d_core.data build data_cache/shards --split train --shapes-per-category 100

    # all three splits (val/test with 20 shapes per category)
    python -m tango3d_core.data build data_cache/shards --split all --shapes-per-category 100 \\
        --eval-shapes-per-category 20

    python -m tango3d_core.data preview out/preview.png --per-category 4
    python -m tango3d_core.data watertight --seeds 20 --json
    python -m tango3d_core.data stats --seeds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np


def _categories(arg: str | None) -> list[str] | None:
    if not arg:
        return None
    from . import shapes

    cats = [c.strip() for c in arg.split(",") if c.strip()]
    unknown = [c for c in cats if c not in shapes.CATEGORIES]
    if unknown:
        raise SystemExit(f"error: unknown categories {unknown}; choose from {', '.join(shapes.CATEGORIES)}")
    return cats


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {n}")
    return n


# ---------------------------------------------------------------- build


def cmd_build(args: argparse.Namespace) -> int:
    from .dataset import SPLITS, _shard_range, build_shards

    splits = list(SPLITS) if args.split == "all" else [args.split]
    summary = {}
    for split in splits:
        n = args.shapes_per_category
        if split != "train" and args.eval_shapes_per_category is not None:
            n = args.eval_shapes_per_category
        t0 = time.perf_counter()
        res = build_shards(
            args.out_dir,
            split=split,
            shapes_per_category=n,
            views_per_shape=args.views,
            resolution=args.resolution,
            points_per_shape=args.points,
            occ_per_shape=args.occ,
            shard_size=args.shard_size,
            workers=args.workers,
            categories=_categories(args.categories),
            seed=args.seed,
            progress=not args.no_progress,
        )
        dt = time.perf_counter() - t0
        n_built = sum(len(_shard_range(res.config, k)) for k in res.built)
        total_bytes = sum(p.stat().st_size for p in res.shard_paths)
        summary[split] = {
            "shapes": res.config.num_shapes,
            "shards": len(res.shard_paths),
            "shards_built": len(res.built),
            "shards_skipped": len(res.skipped),
            "seconds": round(dt, 2),
            "shapes_built": n_built,
            "shapes_per_second": round(n_built / dt, 3) if n_built else None,
            "mb_per_shape": round(total_bytes / res.config.num_shapes / 1e6, 3),
            "index": str(res.index_path),
        }
    print(json.dumps(summary, indent=2))
    return 0


# ---------------------------------------------------------------- preview


def cmd_preview(args: argparse.Namespace) -> int:
    from PIL import Image, ImageDraw, ImageFont

    from . import render, shapes
    from .dataset import _framing_distance

    cats = _categories(args.categories) or list(shapes.CATEGORIES)
    if not cats:
        raise SystemExit("error: no shape category is registered")
    R, K = args.resolution, args.per_category
    label_h = 18
    grid = Image.new("RGB", (K * R, len(cats) * (R + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for row, cat in enumerate(cats):
        y0 = row * (R + label_h)
        draw.text((4, y0 + 3), cat, fill=(0, 0, 0), font=font)
        for col in range(K):
            s = shapes.generate(cat, args.seed + col)
            v = np.asarray(s.mesh.vertices)
            centre = (v.min(0) + v.max(0)) / 2
            az, el = 35.0, 25.0
            dist = _framing_distance(v - centre, az, el, 40.0, 0.9)
            cam = render.Camera.orbit(
                azimuth_deg=az, elevation_deg=el, distance=dist, target=centre, fov_deg=40.0, width=R, height=R
            )
            view = render.render_view(s, cam, background=(245, 245, 245))
            grid.paste(Image.fromarray(view.rgb), (col * R, y0 + label_h))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    print(f"wrote {out} ({len(cats)} categories x {K} seeds, {grid.width}x{grid.height} px)")
    return 0


# ---------------------------------------------------------------- watertight / stats


def _table(rows: list[dict], cols: Sequence[str]) -> str:
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths)) for r in rows]
    return "\n".join(lines)


def cmd_watertight(args: argparse.Namespace) -> int:
    from . import shapes

    cats = _categories(args.categories) or list(shapes.CATEGORIES)
    rows, total, closed = [], 0, 0
    for cat in cats:
        ok = sum(bool(shapes.generate(cat, s).mesh.is_watertight) for s in range(args.seed, args.seed + args.seeds))
        rows.append({"category": cat, "watertight": ok, "seeds": args.seeds, "fraction": round(ok / args.seeds, 3)})
        total += args.seeds
        closed += ok
    overall = round(closed / total, 3) if total else None
    if args.json:
        print(json.dumps({"per_category": {r["category"]: r["fraction"] for r in rows}, "overall": overall,
                          "seeds": args.seeds}, indent=2))
    else:
        print(_table(rows, ["category", "watertight", "seeds", "fraction"]))
        print(f"overall: {overall}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from . import shapes

    cats = _categories(args.categories) or list(shapes.CATEGORIES)
    rows = []
    for cat in cats:
        faces, secs = [], []
        for s in range(args.seed, args.seed + args.seeds):
            t0 = time.perf_counter()
            shp = shapes.generate(cat, s)
            secs.append(time.perf_counter() - t0)
            faces.append(len(shp.mesh.faces))
        rows.append(
            {
                "category": cat,
                "faces_mean": int(np.mean(faces)),
                "faces_min": int(np.min(faces)),
                "faces_max": int(np.max(faces)),
                "gen_ms_mean": round(1000 * float(np.mean(secs)), 1),
                "gen_ms_max": round(1000 * float(np.max(secs)), 1),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows, list(rows[0]) if rows else ["category"]))
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tango3d_core.data",
        description="Tango3D data engine: build dataset shards, preview and check the procedural shapes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1] if __doc__ else None,
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser(
        "build",
        help="render shapes into .npz shards (resumable, deterministic)",
        description="Render procedural shapes into {split}-NNNNN.npz shards plus {split}-index.json and "
        "manifest.json. Existing valid shards are skipped, so an interrupted build can be rerun.",
    )
    b.add_argument("out_dir", metavar="OUT_DIR", help="output directory (created if missing)")
    b.add_argument("--split", choices=["train", "val", "test", "all"], default="train",
                   help="split to build; 'all' builds train, val and test (default: train)")
    b.add_argument("--shapes-per-category", type=_positive, required=True, metavar="N",
                   help="instances per category (split seeds: train 0.., val 100000.., test 200000..)")
    b.add_argument("--eval-shapes-per-category", type=_positive, default=None, metavar="N",
                   help="instances per category for val/test (default: --shapes-per-category)")
    b.add_argument("--views", type=_positive, default=8, metavar="V", help="views per shape (default: 8)")
    b.add_argument("--resolution", type=_positive, default=224, metavar="R", help="image side in pixels (default: 224)")
    b.add_argument("--points", type=_positive, default=8192, metavar="P",
                   help="surface samples stored per shape (default: 8192)")
    b.add_argument("--occ", type=_positive, default=8192, metavar="M",
                   help="occupancy queries stored per shape (default: 8192)")
    b.add_argument("--shard-size", type=_positive, default=32, metavar="S", help="shapes per shard (default: 32)")
    b.add_argument("--workers", type=_positive, default=2, help="worker processes (default: 2)")
    b.add_argument("--categories", default=None, metavar="A,B,...",
                   help="comma-separated subset of categories (default: all)")
    b.add_argument("--seed", type=int, default=0, help="seed of cameras, lights and samples (default: 0)")
    b.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    b.set_defaults(func=cmd_build)

    v = sub.add_parser("preview", help="PNG grid of every category, a few seeds each",
                       description="Render every category (rows) at a few seeds (columns) into one PNG.")
    v.add_argument("out", metavar="OUT.png", help="output image path")
    v.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    v.add_argument("--per-category", type=_positive, default=4, metavar="K", help="seeds per category (default: 4)")
    v.add_argument("--resolution", type=_positive, default=160, metavar="R", help="tile side in pixels (default: 160)")
    v.add_argument("--categories", default=None, metavar="A,B,...", help="subset of categories")
    v.set_defaults(func=cmd_preview)

    w = sub.add_parser("watertight", help="watertight fraction per category",
                       description="Generate --seeds instances per category and report mesh.is_watertight.")
    w.add_argument("--seeds", type=_positive, default=20, help="instances per category (default: 20)")
    w.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    w.add_argument("--categories", default=None, metavar="A,B,...", help="subset of categories")
    w.add_argument("--json", action="store_true", help="print JSON instead of a table")
    w.set_defaults(func=cmd_watertight)

    s = sub.add_parser("stats", help="face counts and generation time per category",
                       description="Generate --seeds instances per category; report face counts and timings.")
    s.add_argument("--seeds", type=_positive, default=5, help="instances per category (default: 5)")
    s.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    s.add_argument("--categories", default=None, metavar="A,B,...", help="subset of categories")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_stats)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
