"""Learning curves of a run: ``python -m tango3d_core.train.plot RUN_DIR --out docs/img/learning_curves``.

Reads every stage's ``log.csv`` and draws the main loss terms against the global
step (stages laid end to end), as plotly HTML and, when kaleido works, PNG.

Several runs (``RUN_DIR RUN_DIR ...``) are overlaid instead, one colour per run, over the
alignment steps only (stage 0 is shared by the ablations): the schedule comparison of
``docs/results.md``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

# The terms worth a panel each, in display order; others are diagnostics.
PANELS: tuple[tuple[str, str], ...] = (
    ("geometry", "2D geometry loss"),
    ("vae_iou", "VAE occupancy IoU"),
    ("dense", "dense InfoNCE"),
    ("dense_accuracy", "dense top-1 accuracy"),
    ("global", "global contrastive"),
    ("total", "total loss"),
    ("foreground_iou", "foreground IoU (stage 4)"),
    ("global_image_shape", "image-shape contrastive"),
)


def read_run(run_dir: str | Path) -> list[tuple[str, list[dict[str, float]]]]:
    """[(stage folder name, rows)] in stage order; a step logged twice keeps its last row."""
    out = []
    for d in sorted(p for p in Path(run_dir).iterdir() if (p / "log.csv").exists()):
        rows: dict[int, dict[str, float]] = {}
        with open(d / "log.csv", newline="") as f:
            for r in csv.DictReader(f):
                if r.get("step") == "step":  # a header repeated by an appended rerun
                    continue
                rows[int(r["step"])] = {k: float(v) for k, v in r.items() if v not in ("", None)}
        out.append((d.name, [rows[k] for k in sorted(rows)]))
    return out


def plot_run(run_dir: str | Path, out_stem: str | Path) -> list[Path]:
    """Write ``out_stem.html`` (and ``out_stem.png`` when possible); return the paths written."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    stages = read_run(run_dir)
    if not stages:
        raise FileNotFoundError(f"no stage log.csv under {run_dir}")
    cols = 4
    fig = make_subplots(rows=2, cols=cols, subplot_titles=[t for _, t in PANELS])
    offset = 0
    in_legend: set[str] = set()
    for si, (name, rows) in enumerate(stages):
        for pi, (key, _) in enumerate(PANELS):
            xs = [offset + r["step"] for r in rows if key in r]
            ys = [r[key] for r in rows if key in r]
            if xs:
                fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, legendgroup=name,
                                         showlegend=name not in in_legend,
                                         line={"color": _COLOURS[si % len(_COLOURS)]}),
                              row=pi // cols + 1, col=pi % cols + 1)
                in_legend.add(name)
        offset += int(rows[-1]["step"]) if rows else 0
    fig.update_layout(title=f"Learning curves: {Path(run_dir).name}", height=500, width=1150)
    fig.update_xaxes(title_text="global step")
    return _write(fig, out_stem)


_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")

# Panels of the run comparison: the alignment-phase terms every schedule may log.
COMPARE_PANELS: tuple[tuple[str, str], ...] = (
    ("dense", "dense InfoNCE"),
    ("dense_accuracy", "dense top-1 accuracy"),
    ("global", "global contrastive"),
    ("vae_iou", "VAE occupancy IoU"),
    ("geometry", "2D geometry loss"),
    ("total", "total loss"),
)


def compare_runs(run_dirs: list[str | Path], out_stem: str | Path) -> list[Path]:
    """Overlay the alignment stages (every stage after ``0_pretrain``) of several runs against
    the alignment step; write ``out_stem.html`` (and ``.png`` when possible)."""
    return _write(compare_figure(run_dirs), out_stem)


def compare_figure(run_dirs: list[str | Path]):
    """The plotly figure of :func:`compare_runs`: one trace per (run, panel), named by the run."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if len(run_dirs) < 2:
        raise ValueError("compare_runs needs at least two run directories")
    fig = make_subplots(rows=2, cols=3, subplot_titles=[t for _, t in COMPARE_PANELS])
    for ri, run_dir in enumerate(run_dirs):
        stages = [(n, rows) for n, rows in read_run(run_dir) if not n.startswith("0_")]
        if not stages:
            raise FileNotFoundError(f"no alignment stage log.csv under {run_dir}")
        label, colour = Path(run_dir).name, _COLOURS[ri % len(_COLOURS)]
        offset, shown = 0, False
        for _, rows in stages:
            for pi, (key, _) in enumerate(COMPARE_PANELS):
                xs = [offset + r["step"] for r in rows if key in r]
                ys = [r[key] for r in rows if key in r]
                if xs:
                    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=label, legendgroup=label,
                                             showlegend=not shown, line={"color": colour}),
                                  row=pi // 3 + 1, col=pi % 3 + 1)
                    shown = True
            offset += int(rows[-1]["step"]) if rows else 0
    fig.update_layout(title="Alignment phase, same stage 0 and steps: " + " vs ".join(Path(r).name for r in run_dirs),
                      height=500, width=900)
    fig.update_xaxes(title_text="alignment step")
    return fig


def _write(fig, out_stem: str | Path) -> list[Path]:
    out = Path(out_stem)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [out.with_suffix(".html")]
    fig.write_html(written[0], include_plotlyjs="cdn")
    from ..eval.report import export_png  # one kaleido code path for every figure

    if export_png([fig], [out.with_suffix(".png")]) is None:
        written.append(out.with_suffix(".png"))
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tango3d_core.train.plot", description=__doc__)
    p.add_argument("run_dir", nargs="+", help="one run (its stages end to end) or several (overlaid)")
    p.add_argument("--out", default="docs/img/learning_curves", help="output path without suffix")
    a = p.parse_args(argv)
    paths = plot_run(a.run_dir[0], a.out) if len(a.run_dir) == 1 else compare_runs(a.run_dir, a.out)
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
