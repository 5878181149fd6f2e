"""Run every benchmark in the repository and write ``docs/performance.md``.

    python -m benchmarks [--smoke] [--only click,training] [--out docs] [--json out.json]
                         [--threads N] [--png auto|off] [--no-browser]

Cases run in a fixed order, each timed; a case that fails is reported in the file (and the exit
status is 1) while the others still run. ``--smoke`` runs every case at toy sizes (under a minute
on 2 cores): it checks that the suite works, its figures mean nothing.

``python benchmarks/run.py`` does the same (it re-launches itself as ``python -m benchmarks``
from the repository root).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:
    # Run as a file (`python benchmarks/run.py`): the case modules import each other as the
    # `benchmarks` package, so run that, from the repository root.
    import subprocess
    import sys
    from pathlib import Path

    raise SystemExit(subprocess.call([sys.executable, "-m", "benchmarks", *sys.argv[1:]],
                                     cwd=Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from .common import REPO_ROOT, Context, LoadMeter, Row, fmt_count, machine_info

__all__ = ["CASES", "CaseMissing", "main", "run_cases"]


class CaseMissing(RuntimeError):
    """A case whose code is not in this checkout (reported, not an error)."""


# ---------------------------------------------------------------- adapters for the older scripts


def _rendering(ctx: Context) -> list[Row]:
    from . import render_throughput as rt

    mesh, name = rt.benchmark_mesh()
    rays = 50 if ctx.smoke else 400
    rows = []
    for size in (64,) if ctx.smoke else (128, 256):
        cams = rt.cameras(6 if ctx.smoke else 24, size)
        ours, coverage = rt.time_ours(mesh, cams, min_seconds=0.2 if ctx.smoke else 1.5)
        base, agree = rt.time_baseline(mesh, cams[1], rays)
        rows.append(Row(
            case="Rendering", setting=f"{size} x {size} px, {name}", ours=ours, baseline=base, unit="views/s",
            higher_is_better=True,
            ours_name="render.render_view: Open3D (Embree) ray casting, cached BVH, full View (rgb, xyz, depth, "
                      "normals, face ids, parts)",
            baseline_name="trimesh RayMeshIntersector.intersects_first (default triangle engine), hit map only; "
                          f"views/s extrapolated from its per-ray time on a {rays}-ray pixel sub-grid",
            kind="alternative", ours_detail=f"{100 * coverage:.0f} % of pixels on the object",
            baseline_detail=f"same face id as ours on {100 * agree:.1f} % of the sub-grid pixels"))
    return rows


def _encode_speed(ctx: Context) -> list[Row]:
    from .encode_speed import measure

    repeats = 1 if ctx.smoke else 10
    points = 1024 if ctx.smoke else 8192
    res = {p: measure(p, repeats=repeats, num_points=points) for p in ("tiny", "base")}
    params = {p: res[p]["parameters"]["count"] / 1e6 for p in res}
    rows = []
    for call, setting in (("encode_image", "encode_image, 224 x 224 input"),
                          ("encode_shape", f"encode_shape, {points} points")):
        rows.append(Row(
            case="Encode speed", setting=setting, ours=res["tiny"][call]["median_ms"],
            baseline=res["base"][call]["median_ms"], unit="ms",
            ours_name=f"tiny preset ({params['tiny']:.1f}M parameters, random weights)",
            baseline_name=f"base preset ({params['base']:.1f}M parameters, random weights), same input",
            kind="alternative", ours_detail=f"min {res['tiny'][call]['min_ms']:.1f} ms"))
    return rows


def _mesh_load(ctx: Context) -> list[Row]:
    from .mesh_load import measure

    res = measure(subdivisions=5 if ctx.smoke else 8, repeats=1 if ctx.smoke else 2)
    (_, parse_s), (_, base_s), *ours = res["rows"]
    plain_s = ours[0][1]
    rows = []
    for label, seconds in ours:
        decimates = "decimate" in label
        note = ("load_mesh also bounds the file against its header counts, merges vertices by position, uv and "
                "colour, drops degenerate and unused elements and checks the result")
        issue = ""
        if decimates:
            extra = seconds - plain_s
            note += (f", then decimates by quadric edge collapse to 1M faces ({extra:.1f} s of its {seconds:.1f} s "
                     "here), which trimesh.load_mesh does not do at all")
            if seconds > base_s:
                issue = (f"decimating an over-cap upload costs {extra:.1f} s: decimate in the background and show "
                         "the undecimated mesh (or a cheap vertex-clustering preview) first")
        elif seconds > base_s:
            issue = ("make meshio._clean cheaper on large meshes: a profile at 1.3M faces (when this suite was "
                     "written) put about 45 % of load_mesh in its lexsort of a 7-column (xyz, rgba) key and "
                     "about 40 % in the zero-area face test; one packed sort key and a float32 area pass that "
                     "re-checks only near-zero faces in float64 would close most of the gap")
        rows.append(Row(
            case="Mesh load", setting=f"binary PLY, {res['faces']:,} faces ({res['size_mb']:.0f} MB)"
                                      + (", decimated to the 1M-face cap" if decimates else ""),
            ours=seconds, baseline=base_s, unit="s", ours_name=label.split("[")[0].strip(),
            baseline_name="trimesh.load_mesh(path): parse, merge vertices, drop degenerate faces",
            kind="alternative", baseline_detail=f"parse only (trimesh.load_scene, process=False): {parse_s:.2f} s",
            note=note, issue=issue))
    return rows


def _app_click(ctx: Context, *, browser: bool) -> list[Row]:
    from . import app_click

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "app_click.json"
        argv = ["--repeats", "20" if ctx.smoke else "200", "--clicks", "30", "--json", str(out)]
        if ctx.smoke or not browser:
            argv.append("--no-browser")
        log, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(err):
                app_click.main(argv)
        except BaseException:
            sys.stderr.write(log.getvalue())
            raise
        finally:
            sys.stderr.write(err.getvalue())
        res = json.loads(out.read_text())
    if "--no-browser" not in argv and "click_to_scene_median_ms" not in res:
        # app_click keeps its server-side figures when the browser part fails, and says why on stderr
        why = [line for line in err.getvalue().splitlines() if line.startswith("browser part skipped")]
        ctx.skipped["app_click (browser)"] = why[-1] if why else "the browser part returned no figures"
    faces = int(res["faces"])
    budget = app_click.BUDGET
    rows = [Row(
        case="App click", setting="server-side click, 8192 points (similarity + colours)",
        ours=res["click_server_ms"], baseline=res["click_naive_numpy_ms"], unit="ms",
        ours_name="explorer click: sample pixel feature, dense @ f, colormap + blend (torch)",
        baseline_name="the same maths in plain numpy float64 (naive reference)", kind="alternative",
        ours_detail=f"p90 {res['click_server_p90_ms']:.2f} ms; whole handler with viser update "
                    f"{res['click_handler_ms']:.1f} ms")]
    for key, what in (("first_encode_image_s", "first encode of an image upload (640 x 480)"),
                      ("first_encode_mesh_s", f"first encode of a mesh upload ({faces:,} faces)")):
        rows.append(Row(
            case="App click", setting=what, ours=res[key], baseline=budget[key], unit="s",
            ours_name="Explorer.load_image / load_mesh_file: validate, decode, encode, colours, viewer upload",
            baseline_name="budget from the explorer issue", kind="budget"))
    if "click_to_scene_median_ms" in res:
        rows.append(Row(
            case="App click", setting=f"click -> changed viser scene, headless Chromium ({int(res['browser_clicks'])} "
                                      "clicks)",
            ours=res["click_to_scene_median_ms"], baseline=budget["click_to_scene_median_ms"], unit="ms",
            ours_name="mouse click on the image to the viser client receiving the scene update (median)",
            baseline_name="budget from the explorer issue", kind="budget",
            ours_detail=f"p90 {res['click_to_scene_p90_ms']:.0f} ms"))
    return rows


def _retrieval(ctx: Context) -> list[Row]:
    """Issue #6's ``benchmarks/retrieval.py``: its ``run_size`` at 1M entries (5k in smoke runs),
    or its own ``rows(ctx) -> list[Row]`` once it has one."""
    import argparse
    import importlib

    try:
        retrieval = importlib.import_module(f"{__package__}.retrieval")
    except ModuleNotFoundError as e:
        if e.name == f"{__package__}.retrieval":
            raise CaseMissing("retrieval benchmark not present (benchmarks/retrieval.py, issue #6)") from None
        raise
    if callable(getattr(retrieval, "rows", None)):
        return list(retrieval.rows(ctx))
    if not callable(getattr(retrieval, "run_size", None)):
        raise CaseMissing("benchmarks/retrieval.py has neither rows(ctx) nor run_size(n, args, workdir)")
    n = 5_000 if ctx.smoke else 1_000_000
    args = argparse.Namespace(data="clustered", queries=20 if ctx.smoke else 100, exact_queries=20 if ctx.smoke else 50,
                              numpy_queries=5 if ctx.smoke else 10, shards=None, target=0.97, progress=False, keep=False)
    log = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="tango3d-retrieval-") as tmp, contextlib.redirect_stdout(log):
        res = retrieval.run_size(n, args, Path(tmp))
    numpy_ms = res["numpy"]["p50_ms"]
    gib = n * res["dim"] * 4 / 2**30
    # Both sides use both cores: numpy's BLAS its threads, the exact index its default shards.
    base_name = (f"numpy brute force: `vectors @ q` + argpartition over {n:,} float32 rows ({gib:.2f} GiB, "
                 f"{res['numpy'].get('vectors', 'memory-mapped')}), p50 of one query")
    exact, approx = res["exact"], res["approx"]
    exact_note = exact_issue = approx_note = approx_issue = ""
    if exact["p50_ms"] > numpy_ms:
        paths = ", ".join(f"{v} x {k}" for k, v in exact.get("methods", {}).items())
        exact_note = (f"the exact index reads a quarter of the bytes but also re-ranks and certifies every answer "
                      f"(search paths here: {paths}); at {gib:.2f} GiB numpy's one float32 pass was cheaper")
        exact_issue = (f"ExactIndex.search was slower than a float32 numpy scan at {n:,} rows: profile it on a "
                       "quiet machine (issue #6); if it stays slower, use a plain float32 scan up to the size where "
                       "the int8 scan pays off")
    if approx["p50_ms"] > numpy_ms:
        approx_note = (f"nprobe {approx['nprobe']} x re-rank {approx['k_factor']}k was needed for recall@10 >= "
                       f"{args.target}; at this size that costs more than scanning every row")
        approx_issue = ("ApproxIndex is slower than brute force at this size: use exact search below the size "
                        "where the IVF index pays off (issue #6)")
    return [
        Row(case="Retrieval", setting=f"{fmt_count(n)} entries x {res['dim']}, top-{retrieval.K}, exact index",
            ours=exact["p50_ms"], baseline=numpy_ms, unit="ms",
            ours_name="ExactIndex (tango3d_core.gallery.index): int8 scan + certified float32 re-rank, p50",
            baseline_name=base_name, kind="alternative",
            ours_detail=f"p95 {exact['p95_ms']:.1f} ms; build {exact['build_s']:.1f} s, "
                        f"{exact['index_gb']:.2f} GiB; {exact['mismatches_vs_brute_force']} mismatches vs brute force",
            baseline_detail=f"p95 {res['numpy']['p95_ms']:.1f} ms", note=exact_note, issue=exact_issue),
        Row(case="Retrieval", setting=f"{fmt_count(n)} entries x {res['dim']}, top-{retrieval.K}, approximate index",
            ours=approx["p50_ms"], baseline=numpy_ms, unit="ms",
            ours_name=f"ApproxIndex: IVF{approx['nlist']}-PQ fast-scan, nprobe {approx['nprobe']}, float32 "
                      "re-rank, p50",
            baseline_name=base_name, kind="alternative",
            ours_detail=f"recall@10 {approx['recall@10']:.3f} vs exact; p95 {approx['p95_ms']:.2f} ms; build "
                        f"{approx['build_s']:.1f} s + tuning {approx['tune_s']:.1f} s",
            baseline_detail=f"p95 {res['numpy']['p95_ms']:.1f} ms", note=approx_note, issue=approx_issue),
    ]


def _case(module: str) -> Callable[[Context], list[Row]]:
    def run(ctx: Context) -> list[Row]:
        import importlib

        return importlib.import_module(f"{__package__}.{module}").run(ctx)

    return run


CASES: dict[str, Callable[..., list[Row]]] = {
    "hardware": _case("hardware"),
    "click": _case("click"),
    "shape_features": _case("shape_features"),
    "rendering": _rendering,
    "retrieval": _retrieval,
    "training": _case("training"),
    "encode_speed": _encode_speed,
    "mesh_load": _mesh_load,
    "app_click": _app_click,
    "pose": _case("pose"),
    "reconstruct": _case("reconstruct"),
    "scaling": _case("scaling"),  # last: it also turns the curves other cases recorded into rows
}


def run_cases(ctx: Context, names: list[str], *, browser: bool = True, verbose: bool = True
              ) -> tuple[list[Row], dict[str, float], dict[str, str]]:
    """Run ``names`` in ``CASES`` order; return (rows, seconds per case, {case: error} for failures)."""
    rows: list[Row] = []
    durations: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name in CASES:
        if name not in names:
            continue
        t0 = time.perf_counter()
        if verbose:
            print(f"[{name}] ...", flush=True)
        try:
            fn = CASES[name]
            got = fn(ctx, browser=browser) if name == "app_click" else fn(ctx)
            rows.extend(got)
        except CaseMissing as e:
            ctx.skipped[name] = str(e)
        except Exception as e:  # noqa: BLE001 - one broken case must not hide the others' figures
            traceback.print_exc()
            errors[name] = f"{type(e).__name__}: {e}"
            ctx.skipped[name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        durations[name] = time.perf_counter() - t0
        if verbose:
            print(f"[{name}] {durations[name]:.1f} s", flush=True)
    return rows, durations, errors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="toy sizes: checks that every case runs (< 1 min)")
    p.add_argument("--only", default=None, help=f"comma-separated cases from {','.join(CASES)}")
    p.add_argument("--out", default=str(REPO_ROOT / "docs"),
                   help="folder for performance.md and img/ (default: the repository's docs/)")
    p.add_argument("--json", default=None, help="also write every figure as JSON here")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice, all cores)")
    p.add_argument("--device", default="cpu", help="device of the model cases (the table is about CPUs)")
    p.add_argument("--png", choices=["auto", "off"], default="auto", help="PNG figures through kaleido")
    p.add_argument("--no-browser", action="store_true", help="skip the headless-Chromium part of app_click")
    args = p.parse_args(argv)

    names = list(CASES) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    import torch

    if any(n in names for n in ("click", "training")) and "hardware" not in names:
        names.insert(0, "hardware")  # their baselines are the measured limits
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    ctx = Context(smoke=args.smoke, threads=torch.get_num_threads(), device=args.device)
    machine = machine_info()
    meter = LoadMeter()
    meter.start()
    rows, durations, errors = run_cases(ctx, names, browser=not args.no_browser)
    load = meter.stop()
    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    files = None
    try:
        from .report import write_report

        files = write_report(args.out, rows=rows, curves=ctx.curves, machine=machine, hardware=ctx.hardware,
                             load=load, durations=durations, skipped=ctx.skipped, command=command,
                             threads=ctx.threads, smoke=args.smoke, png=args.png)
    finally:
        if args.json:
            out = Path(args.json)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({
                "smoke": args.smoke, "command": command, "machine": machine, "hardware": ctx.hardware,
                "load": load, "durations_s": durations, "skipped": ctx.skipped, "errors": errors,
                "rows": [r.to_dict() for r in rows], "curves": [c.to_dict() for c in ctx.curves],
            }, indent=1, default=str) + "\n")
    print(f"\nwrote {files['markdown']}" + (f" (PNG: {files['png_error']})" if files["png_error"] else ""))
    print(f"{len(rows)} rows, {sum(r.slower for r in rows)} slower than their baseline; "
          f"total {sum(durations.values()) / 60:.1f} min; other processes used {load['other_cores']:.2f} cores")
    for case, why in ctx.skipped.items():
        print(f"  not measured: {case}: {why}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
