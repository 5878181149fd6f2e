"""Markdown report with plotly figures (HTML, and PNG through kaleido) from suite results.

``write_report(results, out_dir)`` takes what ``python -m tango3d_core.eval`` writes as JSON
(one suite, or ``--suite all``) and writes::

    out_dir/results.md                 tables per suite, figures embedded as PNG, links to HTML
    out_dir/figures/<suite>_<what>.html   interactive plotly figures
    out_dir/figures/<suite>_<what>.png    static copies (needs ``kaleido`` and a Chrome/Chromium;
                                          when PNG export fails the report says why)

Regenerate the report from a saved JSON without re-running anything::

    python -m tango3d_core.eval.report docs/results.json --out docs
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["ReportFiles", "write_report", "build_figures", "export_png", "suite_results", "main"]

REPORT_NAME = "results.md"
FIGURE_DIR = "figures"
PngMode = Literal["auto", "off"]
PlotlyJs = Literal["cdn", "directory", "inline"]

_TITLES = {
    "pixel2point": "Pixel → 3D point (pixel2point)",
    "point2pixel": "3D point → pixel, reverse grounding (point2pixel)",
    "part-transfer": "Part transfer across instances (part-transfer)",
    "retrieval": "Retrieval (retrieval)",
    "vae": "Shape VAE occupancy (vae)",
}


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote: the markdown file, HTML and PNG figures, and a note when
    PNG export did not happen (``png_error``)."""

    markdown: Path
    html: list[Path] = field(default_factory=list)
    png: list[Path] = field(default_factory=list)
    png_error: str | None = None


def suite_results(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The per-suite result dicts of a single-suite or an ``all`` result."""
    if not isinstance(results, Mapping) or "suite" not in results:
        raise ValueError("results must be the JSON object written by `python -m tango3d_core.eval` (no 'suite' key)")
    if results["suite"] == "all":
        return list(results.get("suites", {}).values())
    return [results]


# ---------------------------------------------------------------- figures


def _pct(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else 100.0 * float(x)


def _curve_figure(res: Mapping[str, Any], *, title: str, xlabel: str) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, row in res["methods"].items():
        c = row.get("curve")
        if c:
            fig.add_trace(go.Scatter(x=[100 * t for t in c["threshold"]], y=[_pct(a) for a in c["accuracy"]],
                                     mode="lines", name=name))
    fig.update_layout(title=title, xaxis_title=xlabel, yaxis_title="accuracy (%)", yaxis_range=[0, 100],
                      template="plotly_white", legend_title="method")
    return fig


def _bar_figure(groups: Sequence[str], series: Mapping[str, Sequence[float | None]], *, title: str, ylabel: str,
                percent: bool = True) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, values in series.items():
        fig.add_trace(go.Bar(x=list(groups), y=[_pct(v) if percent else v for v in values], name=name))
    fig.update_layout(title=title, yaxis_title=ylabel, barmode="group", template="plotly_white",
                      legend_title="method")
    if percent:
        fig.update_layout(yaxis_range=[0, 100])
    return fig


def _ok(row: Any) -> bool:
    return isinstance(row, Mapping) and "unsupported" not in row


def build_figures(res: Mapping[str, Any]) -> dict[str, Any]:
    """{figure name: plotly Figure} for one suite result."""
    suite, methods = res["suite"], res["methods"]
    figs: dict[str, Any] = {}
    if suite in ("pixel2point", "point2pixel"):
        unit = "bbox diagonal" if suite == "pixel2point" else "image size"
        figs["curve"] = _curve_figure(res, title=f"{suite}: accuracy vs threshold", xlabel=f"threshold (% of {unit})")
        ths = list(next(iter(methods.values()))["accuracy"]) if methods else []
        groups = [f"≤{100 * float(t):g}%" for t in ths]
        series = {m: [r["accuracy"][t] for t in ths] for m, r in methods.items()}
        if suite == "point2pixel":
            groups.append("consistent (≥3 views)")
            for m, r in methods.items():
                series[m] = list(series[m]) + [r["consistency"]["share"]]
        figs["accuracy"] = _bar_figure(groups, series, title=f"{suite}: accuracy", ylabel="%")
    elif suite == "part-transfer":
        modes = ["3d_to_3d", "2d_to_3d", "2d_to_3d_same_instance"]
        figs["miou"] = _bar_figure([m.replace("_", " ") for m in modes],
                                   {m: [r[k]["miou"] for k in modes] for m, r in methods.items()},
                                   title="part-transfer: mIoU", ylabel="mIoU (%)")
    elif suite == "retrieval":
        cols = _retrieval_columns()
        ok = {m: r for m, r in methods.items() if _ok(r)}
        figs["recall"] = _bar_figure([c[0] for c in cols], {m: [_dig(r, c[1]) for c in cols] for m, r in ok.items()},
                                     title="retrieval", ylabel="%")
    elif suite == "vae":
        figs["iou"] = _bar_figure(["IoU", "IoU near surface", "IoU uniform"],
                                  {m: [r.get("iou"), r.get("iou_near_surface"), r.get("iou_uniform")]
                                   for m, r in methods.items()}, title="vae: occupancy IoU", ylabel="IoU (%)")
    timing = res.get("timing", {}).get("methods", {})
    if timing:
        figs["timing"] = _bar_figure(["seconds per shape", "seconds per image"],
                                     {m: [t.get("shape_s_per_call"), t.get("image_s_per_call")] for m, t in timing.items()},
                                     title=f"{suite}: time per call (CPU unless stated)", ylabel="s", percent=False)
    return figs


def _retrieval_columns() -> list[tuple[str, tuple[str, ...]]]:
    return [
        ("img→shape inst R@1", ("image_to_shape", "instance", "r@1")),
        ("img→shape inst mAP", ("image_to_shape", "instance", "map")),
        ("img→shape cat R@1", ("image_to_shape", "category", "r@1")),
        ("img→shape cat mAP", ("image_to_shape", "category", "map")),
        ("text→shape inst R@1", ("text_to_shape", "instance", "r@1")),
        ("text→shape cat mAP", ("text_to_shape", "category", "map")),
        ("'a <cat>' R@1", ("category_text_to_shape", "r@1")),
        ("'a <cat>' P@10", ("category_text_to_shape", "p@10")),
    ]


def _dig(row: Any, path: Sequence[str]) -> Any:
    for k in path:
        if not isinstance(row, Mapping) or k not in row:
            return None
        row = row[k]
    return row


# ---------------------------------------------------------------- markdown


def _fmt(x: Any, *, pct: bool = False, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if pct:
        return f"{100 * float(x):.1f}"
    if isinstance(x, int):
        return str(x)
    return f"{float(x):.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _suite_tables(res: Mapping[str, Any]) -> list[str]:
    suite, methods = res["suite"], res["methods"]
    lines: list[str] = []
    if suite in ("pixel2point", "point2pixel"):
        ths = list(next(iter(methods.values()))["accuracy"]) if methods else []
        unit = "bbox diagonal" if suite == "pixel2point" else "image size"
        header = ["method"] + [f"acc ≤{100 * float(t):g}% (%)" for t in ths] + [f"median error (× {unit})"]
        if suite == "point2pixel":
            header += ["median error (px)", "consistent ≥3 views (%)"]
        else:
            header += ["best possible acc ≤1% (%)"]
        rows = []
        for m, r in methods.items():
            row = [f"`{m}`"] + [_fmt(r["accuracy"][t], pct=True) for t in ths] + [_fmt(r["median_error"], digits=4)]
            if suite == "point2pixel":
                row += [_fmt(r["median_error_px"], digits=1),
                        _fmt(r["consistency"]["share"], pct=True) + f" (n={r['consistency']['num_points']})"]
            else:
                ns = r.get("nearest_sample", {}).get("accuracy", {})
                row += [_fmt(ns.get(ths[0]) if ths else None, pct=True)]
            rows.append(row)
        lines += _table(header, rows)
        if suite == "pixel2point":
            lines += ["", "*best possible*: the share of queries whose nearest candidate point already lies "
                      "within the threshold (the floor that sampling N points imposes)."]
    elif suite == "part-transfer":
        modes = ["3d_to_3d", "2d_to_3d", "2d_to_3d_same_instance"]
        header = ["method"] + [f"{m.replace('_', ' ')} {k}" for m in modes for k in ("acc (%)", "mIoU (%)")]
        rows = [[f"`{n}`"] + [_fmt(r[m][k], pct=True) for m in modes for k in ("accuracy", "miou")]
                for n, r in methods.items()]
        lines += _table(header, rows)
    elif suite == "retrieval":
        cols = _retrieval_columns()
        header = ["method"] + [c[0] + " (%)" for c in cols]
        rows = []
        for n, r in methods.items():
            if not _ok(r):
                rows.append([f"`{n}`"] + [f"unsupported: {r.get('unsupported')}"] + [""] * (len(cols) - 1))
            else:
                rows.append([f"`{n}`"] + [_fmt(_dig(r, c[1]), pct=True) for c in cols])
        lines += _table(header, rows)
        ref = next((r for r in methods.values() if _ok(r) and _ok(r.get("category_text_to_shape"))), None)
        if ref is not None:
            lines += ["", f"P@10 of 'a <category>' can reach at most "
                      f"{_fmt(ref['category_text_to_shape'].get('p_at_10_max'), pct=True)} % with this gallery."]
    elif suite == "vae":
        header = ["method", "IoU (%)", "pooled IoU (%)", "accuracy (%)", "IoU near surface (%)", "IoU uniform (%)", "shapes"]
        rows = [[f"`{n}`", _fmt(r.get("iou"), pct=True), _fmt(r.get("iou_pooled"), pct=True),
                 _fmt(r.get("accuracy"), pct=True), _fmt(r.get("iou_near_surface"), pct=True),
                 _fmt(r.get("iou_uniform"), pct=True), str(r.get("num_shapes", ""))] for n, r in methods.items()]
        lines += _table(header, rows)
    timing = res.get("timing", {})
    tm = timing.get("methods", {})
    if tm:
        lines += ["", f"Timing (suite total {_fmt(timing.get('total_s'), digits=1)} s):", ""]
        lines += _table(["method", "s per shape", "s per image", "s in method"],
                        [[f"`{m}`", _fmt(t.get("shape_s_per_call")), _fmt(t.get("image_s_per_call")),
                          _fmt(t.get("total_s"), digits=1)] for m, t in tm.items()])
    return lines


def _config_line(res: Mapping[str, Any]) -> str:
    c, suite = res.get("config", {}), res["suite"]
    if c.get("meshes"):
        data = f"every mesh under `{c['meshes']}` (normalised, own random views)"
    else:
        cats = c.get("categories") or []
        data = f"procedural {c.get('split', 'test')} split, {len(cats)} categories × {c.get('shapes_per_category')} shapes"
    yaw = f"random yaw about +Z on the 3D input, seed {c.get('seed')}"
    if suite == "vae":
        what = f"{c.get('occupancy_points')} occupancy queries per shape"
    elif suite == "retrieval":
        what = f"one {c.get('resolution')} px query view per shape, N = {c.get('num_points')} points"
    elif suite == "part-transfer":
        what = (f"pairs of instances, {c.get('label_points')} labelled points / pixels per shape, "
                f"{c.get('resolution')} px views, N = {c.get('num_points')} points")
    else:
        per = (f"{c.get('pixels_per_view')} query pixels per view" if suite == "pixel2point"
               else f"{c.get('points_per_shape')} query points per shape")
        what = (f"{c.get('views_per_shape')} views per shape at {c.get('resolution')} px, {per}, "
                f"N = {c.get('num_points')} points")
    counts = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in res.get("counts", {}).items())
    return f"Data: {data}; {what}; {yaw}. Counts: {counts}."


# ---------------------------------------------------------------- writing


def export_png(figs: Sequence[Any], paths: Sequence[Path]) -> str | None:
    """Write PNGs through kaleido; the reason as a string when it cannot."""
    if not figs:
        return None
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return "kaleido is not installed (`pip install kaleido`; it also needs Chrome or Chromium)"
    try:
        import plotly.io as pio

        if hasattr(pio, "write_images"):  # one browser session for every figure (plotly >= 6.1)
            pio.write_images(list(figs), [str(p) for p in paths], width=900, height=500)
        else:  # pragma: no cover - older plotly
            for f, p in zip(figs, paths):
                f.write_image(str(p), width=900, height=500)
    except Exception as e:  # noqa: BLE001 - any export failure becomes a note in the report
        return f"PNG export failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    return None


def _describe_checkpoint(ck: Mapping[str, Any]) -> str:
    """One line: where a checkpoint is, its size, and how it was trained (stage: steps)."""
    text = f"`{ck.get('path')}`"
    if "name" in ck:
        n = ck.get("num_parameters")
        text += f" ({ck['name']}, {f'{n:,}' if isinstance(n, int) else '?'} parameters)"
    extra = ck.get("extra") or {}
    stages = [f"{st.get('name')} {st.get('steps')}" for st in extra.get("schedule", []) if isinstance(st, Mapping)]
    if stages:
        text += "; steps per stage: " + ", ".join(stages)
    if extra.get("trained_by"):
        text += f"; trained by `{extra['trained_by']}`"
    return text + "."


def write_report(results: Mapping[str, Any], out_dir: str | Path, *, png: PngMode = "auto",
                 plotlyjs: PlotlyJs = "cdn", command: str | None = None,
                 title: str = "Tango3D evaluation results") -> ReportFiles:
    """Write ``out_dir/results.md`` and ``out_dir/figures/*`` for ``results`` (see module doc).

    png       "auto": export PNGs with kaleido when it works, else note why in the report;
              "off": HTML only
    plotlyjs  how the HTML figures get plotly.js: "cdn" (small files, needs a network to view),
              "directory" (one shared plotly.min.js next to them), "inline" (self-contained)
    command   the command that produced ``results`` (quoted in the report)
    """
    if png not in ("auto", "off"):
        raise ValueError(f'png must be "auto" or "off", got {png!r}')
    if plotlyjs not in ("cdn", "directory", "inline"):
        raise ValueError(f'plotlyjs must be "cdn", "directory" or "inline", got {plotlyjs!r}')
    suites = suite_results(results)
    out = Path(out_dir)
    fig_dir = out / FIGURE_DIR
    fig_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(markdown=out / REPORT_NAME)
    per_suite: list[tuple[Mapping[str, Any], list[tuple[str, Path]]]] = []
    all_figs: list[Any] = []
    png_paths: list[Path] = []
    for res in suites:
        entries = []
        for name, fig in build_figures(res).items():
            stem = f"{res['suite']}_{name}"
            html = fig_dir / f"{stem}.html"
            fig.write_html(str(html), include_plotlyjs=True if plotlyjs == "inline" else plotlyjs, full_html=True)
            files.html.append(html)
            all_figs.append(fig)
            png_paths.append(fig_dir / f"{stem}.png")
            entries.append((name, html))
        per_suite.append((res, entries))
    if png == "auto":
        files.png_error = export_png(all_figs, png_paths)
        if files.png_error is None:
            files.png = [p for p in png_paths if p.is_file()]
    else:
        files.png_error = "PNG export switched off (png='off')"

    lines = [f"# {title}", ""]
    run_info = results.get("run", {})
    if command or run_info.get("command"):
        lines += ["Regenerate with:", "", "```bash", command or run_info["command"], "```", ""]
    if run_info.get("checkpoint"):
        lines += [f"Checkpoint: {_describe_checkpoint(run_info['checkpoint'])}", ""]
        infos = run_info.get("baseline_checkpoint_info") or {}
        for name, path in (run_info.get("baseline_checkpoints") or {}).items():
            lines += [f"Baseline `{name}`: {_describe_checkpoint(infos.get(name, {'path': path}))}", ""]
        for name, why in (run_info.get("skipped_baselines") or {}).items():
            lines += [f"Baseline `{name}` was not run: {why}.", ""]
    k = next((r.get("config", {}).get("backprojection_views") for r in suites), None) or "K"
    lines += ["Methods: `tango3d` (our model, progressive schedule); `tango3d-pose` (the same model and features; "
              "pixel2point: each pixel matched by `t3.pose_match` after `t3.estimate_pose` has turned the "
              "image's predicted surface into the 3D input's frame; retrieval: image->shape re-ranked, each "
              "image's 10 nearest shapes by global embedding ordered by how well its predicted surface fits them "
              "(the best `estimate_pose` score), text rows as `tango3d`; docs/experiments/pose_matching.md); "
              "`random` (random features: chance level); "
              f"`backprojection` (our own 2D encoder lifted to 3D by averaging its dense features over {k} rendered "
              "orbit views, no 3D branch; its shape global embedding is the mean of the views' image embeddings); "
              "`global-only` (same stage 0 and the same number of alignment steps, trained without the dense "
              "pixel-point objective: what dense alignment adds); `single-stage` (same stage 0 and steps, every "
              "loss and every parameter trained jointly from the start: what the progressive schedule adds). "
              "All methods see the same data in the same run.", ""]
    if files.png_error:
        lines += [f"> PNG figures are not included: {files.png_error}. The interactive HTML figures are linked.", ""]
    for res, entries in per_suite:
        lines += [f"## {_TITLES.get(res['suite'], res['suite'])}", "", _config_line(res), ""]
        lines += _suite_tables(res)
        lines += [""]
        for name, html in entries:
            rel_html = html.relative_to(out).as_posix()
            pngp = html.with_suffix(".png")
            if pngp in files.png:
                lines += [f"![{res['suite']} {name}]({pngp.relative_to(out).as_posix()})", ""]
            lines += [f"[{res['suite']} {name} (interactive)]({rel_html})", ""]
    files.markdown.write_text("\n".join(lines).rstrip() + "\n")
    return files


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tango3d_core.eval.report",
                                description="Write the markdown report (results.md + figures/) from a results JSON.")
    p.add_argument("results", help="JSON written by `python -m tango3d_core.eval --json`")
    p.add_argument("--out", required=True, help="output folder (results.md and figures/ are written there)")
    p.add_argument("--no-png", action="store_true", help="HTML figures only")
    p.add_argument("--plotlyjs", choices=["cdn", "directory", "inline"], default="cdn")
    a = p.parse_args(argv)
    try:
        results = json.loads(Path(a.results).read_text())
    except (OSError, json.JSONDecodeError) as e:
        p.error(f"cannot read {a.results}: {e}")
    files = write_report(results, a.out, png="off" if a.no_png else "auto", plotlyjs=a.plotlyjs)
    print(f"wrote {files.markdown} ({len(files.html)} HTML, {len(files.png)} PNG figures)", file=sys.stderr)
    if files.png_error and not a.no_png:
        print(f"note: {files.png_error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
