"""``docs/performance.md`` and its figures from one suite run.

Writes::

    <out>/performance.md                      table, slower rows explained, scaling, machine, load
    <out>/img/performance_scaling.html|png    time against points, image size, gallery size
    <out>/img/performance_ratios.html|png     every row's ratio, by case

PNGs go through ``tango3d_core.eval.report.export_png`` (kaleido + Chromium); when that is not
possible the markdown links the HTML figures and says why. Rewrite the report from a saved run
without measuring again: ``python -m benchmarks.report RUN.json [--out docs]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from .common import Curve, Row, fmt_count, fmt_value

__all__ = ["build_figures", "main", "write_report"]

PngMode = Literal["auto", "off"]
KIND_COLOURS = {"alternative": "#1f77b4", "limit": "#2ca02c", "budget": "#ff7f0e", "expected": "#9467bd"}
KIND_WORDS = {"alternative": "alternative", "limit": "hardware limit", "budget": "budget",
              "expected": "expected growth"}


def build_figures(rows: Sequence[Row], curves: Sequence[Curve]) -> dict[str, Any]:
    """{"scaling": log-log time curves, one panel per size kind; "ratios": every row's ratio}."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figs: dict[str, Any] = {}
    panels = list(dict.fromkeys(c.panel for c in curves))
    if panels:
        fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[f"time vs {p}" for p in panels],
                            horizontal_spacing=0.08)
        for col, panel in enumerate(panels, start=1):
            for c in (c for c in curves if c.panel == panel):
                fig.add_trace(go.Scatter(
                    x=c.sizes, y=[s * 1e3 for s in c.seconds], mode="lines+markers",
                    name=f"{c.name}: ~x^{c.observed_exponent:.2f} (expected {c.expected_exponent:.2f})"),
                    row=1, col=col)
            xlabel = next(c.xlabel for c in curves if c.panel == panel)
            fig.update_xaxes(type="log", title_text=xlabel, row=1, col=col)
            fig.update_yaxes(type="log", title_text="ms" if col == 1 else None, row=1, col=col)
        fig.update_layout(title="Scaling (log-log; slope = observed exponent)", template="plotly_white",
                          legend=dict(orientation="h", yanchor="top", y=-0.22, font=dict(size=10)),
                          margin=dict(b=140))
        figs["scaling"] = fig
    good = [r for r in rows if math.isfinite(r.ratio) and r.ratio > 0]
    if good:
        fig = go.Figure()
        hover = "%{x}<br>%{text}<br>ratio %{y:.3g}<extra></extra>"
        for kind, colour in KIND_COLOURS.items():
            sel = [r for r in good if r.kind == kind and not r.slower]
            if sel:
                fig.add_trace(go.Scatter(
                    x=[r.case for r in sel], y=[r.ratio for r in sel], mode="markers", name=KIND_WORDS[kind],
                    marker=dict(size=10, color=colour), text=[r.setting for r in sel], hovertemplate=hover))
        slow = [r for r in good if r.slower]
        if slow:
            fig.add_trace(go.Scatter(
                x=[r.case for r in slow], y=[r.ratio for r in slow], mode="markers", name="slower (colour: kind)",
                marker=dict(size=11, symbol="x", color=[KIND_COLOURS[r.kind] for r in slow]),
                text=[r.setting for r in slow], hovertemplate=hover))
        fig.update_xaxes(categoryorder="array", categoryarray=list(dict.fromkeys(r.case for r in good)))
        fig.add_hline(y=1.0, line_dash="dash", line_color="grey")
        fig.update_yaxes(type="log", title_text="ratio (> 1: faster than the baseline; vs a limit: fraction reached)")
        fig.update_layout(title="Every row's ratio (x: slower than the alternative)", template="plotly_white")
        figs["ratios"] = fig
    return figs


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _value(x: float, unit: str) -> str:
    return f"{fmt_value(x)} {unit}"


def _rows_table(rows: Sequence[Row]) -> list[str]:
    out = ["| Case | Setting | Ours | Baseline | Ratio | Notes |", "| --- | --- | --- | --- | ---: | --- |"]
    for r in rows:
        ours = f"**{_value(r.ours, r.unit)}**<br><sub>{r.ours_name}</sub>"
        if r.ours_detail:
            ours += f"<br><sub>{r.ours_detail}</sub>"
        base = f"{_value(r.baseline, r.unit)}<br><sub>{r.baseline_name}</sub>"
        if r.baseline_detail:
            base += f"<br><sub>{r.baseline_detail}</sub>"
        ratio = f"**{fmt_value(r.ratio)}**<br><sub>{KIND_WORDS[r.kind]}</sub>" + ("<br>**slower**" if r.slower else "")
        out.append("| " + " | ".join(_cell(c) for c in (r.case, r.setting, ours, base, ratio, r.note)) + " |")
    return out


def _slower_section(rows: Sequence[Row], load: Mapping[str, Any]) -> list[str]:
    slower = [r for r in rows if r.slower]
    out = ["## Where we are slower", ""]
    if not slower:
        return out + ["No row is slower than its alternative, over its budget or growing faster than expected.", ""]
    for r in slower:
        out.append(f"- **{r.case}, {r.setting}** (ratio {fmt_value(r.ratio)} against {r.baseline_name}).")
        out.append(f"  Why: {r.note or _no_note(load)}")
        out.append(f"  Issue-worthy: {r.issue or _NO_ISSUE}")
    others = [r for r in rows if r.issue and not r.slower]
    if others:
        out += ["", "Other issue-worthy findings (rows that are not slower):", ""]
        out += [f"- **{r.case}, {r.setting}**: {r.issue}" for r in others]
    return out + [""]


_NO_ISSUE = "none: no cause is known for this row; rerun on a quiet machine and file one if it stays slower."


def _no_note(load: Mapping[str, Any]) -> str:
    return (f"no explanation recorded; other processes used {load.get('other_cores', float('nan')):.2f} cores on "
            "average during this run, so check on a quiet machine first.")


def _scaling_section(curves: Sequence[Curve], figure_links: Mapping[str, str]) -> list[str]:
    if not curves:
        return []
    out = ["## Scaling", ""]
    if "scaling" in figure_links:
        out += [figure_links["scaling"], ""]
    out += ["| Curve | Sizes | Expected complexity | Expected exponent here | Observed exponent | Times |",
            "| --- | --- | --- | ---: | ---: | --- |"]
    for c in curves:
        sizes = ", ".join(fmt_count(s) for s in c.sizes)
        times = " → ".join(f"{s * 1e3:.3g}" for s in (c.seconds[0], c.seconds[-1])) + " ms"
        out.append("| " + " | ".join(_cell(x) for x in (
            c.name, f"{c.xlabel}: {sizes}", c.expected_why, f"{c.expected_exponent:.2f}",
            f"{c.observed_exponent:.2f}", times)) + " |")
    out += ["", "Exponents are least-squares slopes of log time (or log FLOPs) against log size over the sizes "
            "shown; \"expected exponent here\" is that of the FLOP count (or of the textbook complexity) over the "
            "same range, so fixed costs at small sizes pull both below the asymptotic value.", ""]
    return out


def _machine_section(machine: Mapping[str, Any], hardware: Mapping[str, float], load: Mapping[str, Any],
                     threads: int) -> list[str]:
    la0 = ", ".join(f"{x:.2f}" for x in load.get("loadavg_start", []))
    la1 = ", ".join(f"{x:.2f}" for x in load.get("loadavg_end", []))
    out = [
        "## Machine and load", "",
        f"- Date: {machine.get('date_utc')}; commit `{machine.get('commit')}`.",
        f"- CPU: {machine.get('cpu')}, {machine.get('usable_cpus')} usable of {machine.get('logical_cpus')} "
        f"logical CPUs (caches as the OS reports them: "
        f"{', '.join(f'{k} {v}' for k, v in (machine.get('caches') or {}).items()) or 'unknown'}), "
        f"{machine.get('memory_gib')} GiB RAM; {machine.get('os')}; GPU: {machine.get('cuda')}.",
        f"- Software: Python {machine.get('python')}, torch {machine.get('torch')} "
        f"({threads} thread{'s' if threads != 1 else ''}, CPU capability {machine.get('torch_cpu_capability')}), "
        f"numpy {machine.get('numpy')}, "
        f"open3d {machine.get('open3d')}, trimesh {machine.get('trimesh')}, faiss {machine.get('faiss')}.",
    ]
    if hardware:
        out.append(
            f"- Measured limits: copy bandwidth {hardware['copy_GBps']:.1f} GB/s (STREAM copy, 2 x "
            f"{hardware['copy_array_MiB']:.0f} MiB moved per copy; numpy 1 thread {hardware['copy_numpy_GBps']:.1f}, "
            f"torch {hardware['copy_torch_GBps']:.1f}); GEMM peak {hardware['gemm_fp32_GFLOPs']:.0f} GFLOP/s fp32, "
            f"{hardware['gemm_bf16_GFLOPs']:.0f} GFLOP/s bf16 (torch.mm, n = {int(hardware['gemm_n'])} / "
            f"{int(hardware.get('gemm_bf16_n', hardware['gemm_n']))}).")
    out.append(
        f"- Load while measuring: other processes used {load.get('other_cores', float('nan')):.2f} cores on average "
        f"(CPU time from /proc/stat minus this process's own); load average {la0} at the start, {la1} at the end. "
        "On a quiet machine the first figure is near 0; above that, every time here is inflated, and so are the "
        "measured limits (a contended GEMM peak makes a ratio against it meaningless, even above 1).")
    return out + [""]


def write_report(out_dir: str | Path, *, rows: Sequence[Row], curves: Sequence[Curve], machine: Mapping[str, Any],
                 hardware: Mapping[str, float], load: Mapping[str, Any], durations: Mapping[str, float],
                 skipped: Mapping[str, str], command: str, threads: int, smoke: bool = False,
                 png: PngMode = "auto") -> dict[str, Any]:
    """Write the markdown and figures; return {"markdown": path, "html": [...], "png": [...], "png_error": str|None}."""
    from tango3d_core.eval.report import export_png

    out = Path(out_dir)
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    figs = build_figures(rows, curves)
    html, pngs = [], []
    for name, fig in figs.items():
        path = img / f"performance_{name}.html"
        fig.write_html(str(path), include_plotlyjs="cdn")
        html.append(path)
    png_error = None
    if png == "auto" and figs:
        paths = [img / f"performance_{name}.png" for name in figs]
        png_error = export_png(list(figs.values()), paths)
        if png_error is None:
            pngs = paths
    links: dict[str, str] = {}
    for name in figs:
        rel_html = f"img/performance_{name}.html"
        if (img / f"performance_{name}.png") in pngs:
            links[name] = f"![{name}](img/performance_{name}.png) ([interactive]({rel_html}))"
        else:
            links[name] = f"[{name} figure (interactive HTML)]({rel_html})"

    total = sum(durations.values())
    lines = [
        "# Performance", "",
        f"Written by `{command}` on {machine.get('date_utc')}; the suite took {total / 60:.1f} min "
        f"(budget: 10 min) and {load.get('own_cpu_s', float('nan')) / 60:.1f} CPU-minutes of its own, while other "
        f"processes kept {load.get('other_cores', float('nan')):.2f} cores busy. Every ratio compares two figures "
        "measured in this same run.", "",
    ]
    if smoke:
        lines += ["**Smoke run: toy sizes, the figures below check that the suite runs and mean nothing.**", ""]
    lines += [
        "**Reading the ratio.** Ratio = baseline time / our time (our rate / baseline rate for rates such as "
        "views/s). Against an *alternative* or a *budget*, > 1 means we are faster. Against a *hardware limit* "
        "(bandwidth, FLOPs) it is the fraction of the limit we reach, at most about 1. Against an *expected "
        "growth* (scaling rows), > 1 means our time grows more slowly than the expected complexity predicts "
        "(a scaling row counts as slower below 0.8).", "",
        "## Results", "",
        *_rows_table(rows), "",
    ]
    if "ratios" in links:
        lines += [links["ratios"], ""]
    lines += _slower_section(rows, load)
    lines += _scaling_section(curves, links)
    if skipped:
        lines += ["## Not measured in this run", ""]
        lines += [f"- **{case}**: {why}" for case, why in skipped.items()]
        lines.append("")
    lines += _machine_section(machine, hardware, load, threads)
    lines += ["## Time per case", "", "| Case | Seconds |", "| --- | ---: |"]
    lines += [f"| {case} | {sec:.1f} |" for case, sec in durations.items()]
    lines += [f"| **total** | **{total:.1f}** |", ""]
    if png_error:
        lines += [f"PNG figures were not written: {png_error}.", ""]
    lines += [
        "## How to reproduce", "",
        "```bash",
        "python -m benchmarks                  # every case, rewrites this file and docs/img/performance_*",
        "python -m benchmarks --smoke --out /tmp/perf   # toy sizes, < 1 min: checks that the suite runs",
        "python -m benchmarks --only click,training     # some cases (the table then holds only those)",
        "python -m benchmarks.click            # one case on its own, printed",
        "python -m benchmarks.report RUN.json  # rewrite this file from a saved --json run",
        "```", "",
        "Run it on a quiet machine: the load line above says how much else was running.", "",
    ]
    md = out / "performance.md"
    md.write_text("\n".join(lines))
    return {"markdown": md, "html": html, "png": pngs, "png_error": png_error}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.report RUN.json [--out docs]``: rewrite the report from a saved run."""
    import argparse
    import json

    from .common import REPO_ROOT

    p = argparse.ArgumentParser(prog="python -m benchmarks.report", description=main.__doc__)
    p.add_argument("json", help="what `python -m benchmarks --json RUN.json` wrote")
    p.add_argument("--out", default=str(REPO_ROOT / "docs"))
    p.add_argument("--png", choices=["auto", "off"], default="auto")
    args = p.parse_args(argv)
    res = json.loads(Path(args.json).read_text())
    fields = set(Row.__dataclass_fields__)
    rows = [Row(**{k: v for k, v in r.items() if k in fields}) for r in res["rows"]]
    cfields = set(Curve.__dataclass_fields__)
    curves = [Curve(**{k: v for k, v in c.items() if k in cfields}) for c in res["curves"]]
    files = write_report(args.out, rows=rows, curves=curves, machine=res["machine"], hardware=res["hardware"],
                         load=res["load"], durations=res["durations_s"], skipped=res["skipped"],
                         command=res["command"], threads=int(res["machine"].get("torch_threads", 1)),
                         smoke=bool(res["smoke"]), png=args.png)
    print(f"wrote {files['markdown']}" + (f" (PNG: {files['png_error']})" if files["png_error"] else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
