"""Command line: ``python -m tango3d_core.eval --suite NAME --json OUT.json [...]``.

Runs a suite (or ``all``) on the held-out procedural test split with our model and the baselines
on the same data, writes one JSON object and, with ``--report DIR``, ``DIR/results.md`` with
figures. ``docs/results.md`` is regenerated with::

    python -m tango3d_core.eval --suite all --quick --json docs/results.json --report docs

Never imports training code.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .suites import GEOMETRIC_SUITES, SUITE_DESCRIPTIONS, SUITE_NAMES

__all__ = ["main", "build_parser", "jsonable"]

# Built-in baselines computed on the fly, and trained ablations loaded from assets/baselines/.
COMPUTED_BASELINES = ("random", "backprojection")
CHECKPOINT_BASELINES = ("canonical-xyz", "global-only", "single-stage")
DEFAULT_BASELINES = COMPUTED_BASELINES + CHECKPOINT_BASELINES


def build_parser() -> argparse.ArgumentParser:
    suites = "\n".join(f"  {n:<14} {SUITE_DESCRIPTIONS[n]}" for n in SUITE_NAMES)
    p = argparse.ArgumentParser(
        prog="python -m tango3d_core.eval",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Evaluate Tango3D and its baselines on the same held-out data.\n\n"
            f"suites:\n{suites}\n  {'all':<14} every suite above (only the geometric ones with --meshes)\n\n"
            "Default data: the procedural test split (seeds 200000+), every category, 224x224 views, a random "
            "yaw about +Z on the 3D input, N = 8192 points. Baselines in the same run: random features, "
            "back-projection of our 2D encoder over 8 views, the bundled global-only and single-stage "
            "ablations (assets/baselines/), and any --baseline-checkpoint."
        ),
        epilog="docs/results.md: python -m tango3d_core.eval --suite all --quick --json docs/results.json --report docs",
    )
    p.add_argument("--suite", required=True, choices=[*SUITE_NAMES, "all"], metavar="NAME",
                   help=f"one of {', '.join(SUITE_NAMES)}, or all")
    p.add_argument("--json", metavar="OUT.json", help="write the results here (default: print to stdout)")
    p.add_argument("--report", metavar="DIR", help="also write DIR/results.md and DIR/figures/ (HTML + PNG)")
    p.add_argument("--meshes", metavar="DIR",
                   help=f"run the geometric suites ({', '.join(GEOMETRIC_SUITES)}) on every mesh file under DIR")
    p.add_argument("--quick", action="store_true", help="small data: every suite in <= 5 minutes on one CPU thread")
    p.add_argument("--checkpoint", metavar="DIR", help="Tango3D checkpoint directory (default: the bundled assets/checkpoint)")
    p.add_argument("--device", default="cpu", help="torch device of the models (default: cpu)")
    p.add_argument("--text-table", metavar="FILE",
                   help="precomputed text embeddings (safetensors, models.text.TextEmbeddingTable) instead of "
                        "the MiniLM, for machines without it; must hold every prompt")
    p.add_argument("--baseline-checkpoint", action="append", default=[], metavar="NAME=DIR",
                   help="another checkpoint evaluated the same way and reported under methods[NAME]; "
                        "repeatable. NAME canonical-xyz, global-only or single-stage replaces the bundled one")
    p.add_argument("--baselines", default=",".join(DEFAULT_BASELINES),
                   help="comma-separated baselines to run: random, backprojection (computed), canonical-xyz "
                        "(our schedule with the plain xyz loss), global-only, single-stage (the schedule ablations "
                        "from that model's stage 0; bundled in assets/baselines/), or none (default: %(default)s)")
    g = p.add_argument_group("data overrides (default: the suite's documented full or --quick setting)")
    g.add_argument("--categories", help="comma-separated procedural categories (default: all)")
    g.add_argument("--shapes-per-category", type=int, metavar="N")
    g.add_argument("--views", type=int, metavar="N", help="query views per shape")
    g.add_argument("--resolution", type=int, metavar="PX", help="rendered view side (default 224)")
    g.add_argument("--num-points", type=int, metavar="N", help="surface points per shape (default 8192)")
    g.add_argument("--backprojection-views", type=int, metavar="K", help="views the back-projection renders (default 8)")
    g.add_argument("--seed", type=int, help="seed of every random choice (default 0)")
    g.add_argument("--vae-tokens", metavar="LIST",
                   help="vae: comma-separated latent-token counts evaluated besides the trained one, as rows "
                        "NAME@COUNT, or none (default 512,1024)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    p.add_argument("--no-png", action="store_true", help="report: HTML figures only")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-pose", action="store_true",
                   help="pixel2point, point2pixel and retrieval: skip the tango3d-pose row (our model with "
                        "pose-verified matching / image->shape re-ranked by pose fit, models.pose)")
    return p


def jsonable(x: Any) -> Any:
    """``x`` with NaN / inf as null, numpy and torch scalars as Python numbers, tuples as lists."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 0) == 0:
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    return x


def _parse_named(values: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or not path:
            parser.error(f"--baseline-checkpoint expects NAME=DIR, got {v!r}")
        if name in out or name in ("tango3d", *COMPUTED_BASELINES):
            parser.error(f"--baseline-checkpoint name {name!r} is taken; pick another")
        out[name] = path
    return out


def _parse_tokens(value: str | None, parser: argparse.ArgumentParser) -> tuple[int, ...] | None:
    if value is None:
        return None
    if value.strip().lower() == "none":
        return ()
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        parser.error(f"--vae-tokens must be comma-separated integers or none, got {value!r}")


def _bundled_ablations(wanted: Sequence[str], named: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The bundled ablation checkpoints among ``wanted`` (not overridden by ``named``), and the
    ones that were asked for but are not on disk, with the command that trains them."""
    from ..models.checkpoint import BASELINE_BUILD_COMMANDS, bundled_baseline_dir

    found: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name in wanted:
        if name not in CHECKPOINT_BASELINES or name in named:
            continue
        directory = bundled_baseline_dir(name)
        if (directory / "config.json").is_file():
            found[name] = str(directory)
        else:
            missing[name] = f"not found at {directory}; train it with `{BASELINE_BUILD_COMMANDS[name]}`"
    return found, missing


def _display_path(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (reports stay portable)."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _checkpoint_info(path: str | None, model: Any) -> dict[str, Any]:
    from ..models.checkpoint import default_checkpoint_dir, read_checkpoint_config

    directory = Path(path) if path else default_checkpoint_dir()
    info: dict[str, Any] = {"path": _display_path(directory), "name": model.config.name,
                            "num_parameters": model.num_parameters()}
    try:
        info["extra"] = read_checkpoint_config(directory)[1].get("extra", {})
    except Exception:  # noqa: BLE001 - metadata only; the weights already loaded
        pass
    return info


def _summary_lines(res: dict[str, Any]) -> list[str]:
    lines = [f"[{res['suite']}] {res['timing'].get('total_s', 0):.1f} s"]
    for name, row in res["methods"].items():
        if res["suite"] in GEOMETRIC_SUITES:
            acc = row["accuracy"]
            key = "0.05" if "0.05" in acc else next(iter(acc))
            extra = f" consistency {row['consistency']['share']:.3f}" if "consistency" in row else ""
            lines.append(f"  {name:<16} acc@{key} {acc[key]:.3f}  median {row['median_error']:.4f}{extra}")
        elif res["suite"] == "part-transfer":
            lines.append(f"  {name:<16} " + "  ".join(f"{m} mIoU {row[m]['miou']:.3f}" for m in row))
        elif res["suite"] == "retrieval":
            if "unsupported" in row:
                lines.append(f"  {name:<16} unsupported ({row['unsupported']})")
            else:
                i2s = row["image_to_shape"]
                lines.append(f"  {name:<16} img->shape inst R@1 {i2s['instance']['r@1']:.3f} "
                             f"cat mAP {i2s['category']['map']:.3f}")
        else:
            lines.append(f"  {name:<16} IoU {row.get('iou', float('nan')):.3f}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    named = _parse_named(args.baseline_checkpoint, parser)
    baselines = [b.strip() for b in args.baselines.split(",") if b.strip() and b.strip() != "none"]
    unknown = sorted(set(baselines) - set(DEFAULT_BASELINES))
    if unknown:
        parser.error(f"--baselines: unknown {unknown}; choose from {list(DEFAULT_BASELINES)} or none")
    if args.meshes and not Path(args.meshes).is_dir():
        parser.error(f"--meshes {args.meshes}: not a directory")
    if args.suite not in ("all", *GEOMETRIC_SUITES) and args.meshes:
        parser.error(f"--meshes works with the geometric suites {list(GEOMETRIC_SUITES)} (or all), not {args.suite!r}")
    suites = list(SUITE_NAMES) if args.suite == "all" else [args.suite]
    if args.meshes:
        suites = [s for s in suites if s in GEOMETRIC_SUITES]

    # Model and rendering code only once the arguments are known to be valid.
    import torch

    from ..models.checkpoint import CheckpointError, load_model
    from .baselines import BackprojectionBaseline, RandomBaseline
    from .suites import ModelProvider, PoseModelProvider, default_config, run_suite

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {
        "categories": tuple(c.strip() for c in args.categories.split(",") if c.strip()) if args.categories else None,
        "shapes_per_category": args.shapes_per_category, "views_per_shape": args.views,
        "resolution": args.resolution, "num_points": args.num_points,
        "backprojection_views": args.backprojection_views, "seed": args.seed, "meshes": args.meshes,
        "vae_tokens": _parse_tokens(args.vae_tokens, parser),
    }
    bundled, missing = _bundled_ablations(baselines, named)
    for name, why in missing.items():
        print(f"note: baseline {name} skipped: {why}", file=sys.stderr)
    named = {**bundled, **named}
    try:
        configs = {s: default_config(s, quick=args.quick, **overrides) for s in suites}
        model = load_model(args.checkpoint, device=args.device)
        others = {n: load_model(d, device=args.device) for n, d in named.items()}
        if args.text_table:
            from ..models.text import TextEmbeddingTable

            table = TextEmbeddingTable.load(args.text_table)
            for m in (model, *others.values()):
                m.set_text_encoder(table)
    except (CheckpointError, ValueError, OSError) as e:
        parser.error(str(e))
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    for suite in suites:
        cfg = configs[suite]
        providers: dict[str, Any] = {"tango3d": ModelProvider(model)}
        if suite in ("pixel2point", "point2pixel", "retrieval") and not args.no_pose:
            providers["tango3d-pose"] = PoseModelProvider(model)
        if "random" in baselines:
            providers["random"] = RandomBaseline(dim=model.dense_dim, global_dim=model.global_dim, seed=cfg.seed)
        if "backprojection" in baselines:
            providers["backprojection"] = BackprojectionBaseline.from_model(
                model, num_views=cfg.backprojection_views, resolution=cfg.resolution)
        providers.update({n: ModelProvider(m) for n, m in others.items()})
        res = run_suite(suite, providers, cfg, models={"tango3d": model, **others}, progress=not args.no_progress)
        results[suite] = res
        print("\n".join(_summary_lines(res)), file=sys.stderr)
    run_info = {
        "command": "python -m tango3d_core.eval " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "checkpoint": _checkpoint_info(args.checkpoint, model),
        "baseline_checkpoints": {n: _display_path(Path(d)) for n, d in named.items()},
        "baseline_checkpoint_info": {n: _checkpoint_info(d, m) for (n, d), m in zip(named.items(), others.values())},
        "baselines": baselines,
        "skipped_baselines": missing,
        "device": args.device,
        "quick": args.quick,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if args.suite == "all":
        out: dict[str, Any] = {"suite": "all", "run": run_info, "suites": results,
                               "timing": {"total_s": time.perf_counter() - t0,
                                          "suites": {s: r["timing"]["total_s"] for s, r in results.items()}}}
    else:
        out = {**results[args.suite], "run": run_info}
    out = jsonable(out)
    text = json.dumps(out, indent=1, allow_nan=False)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        print(f"wrote {path}", file=sys.stderr)
    else:
        print(text)
    if args.report:
        from .report import write_report

        files = write_report(out, args.report, png="off" if args.no_png else "auto", command=run_info["command"])
        print(f"wrote {files.markdown} ({len(files.html)} HTML, {len(files.png)} PNG figures)", file=sys.stderr)
        if files.png_error and not args.no_png:
            print(f"note: {files.png_error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
