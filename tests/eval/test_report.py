"""Report: markdown tables and plotly figures from real (tiny) suite results."""

from __future__ import annotations

import json

import pytest
import torch

from tango3d_core.eval.__main__ import jsonable
from tango3d_core.eval.baselines import RandomBaseline
from tango3d_core.eval.report import build_figures, main, suite_results, write_report
from tango3d_core.eval.suites import SUITE_NAMES, default_config, run_suite

TINY = dict(categories=("chair", "mug"), shapes_per_category=2, views_per_shape=3, resolution=48, num_points=512,
            pixels_per_view=8, points_per_shape=32, label_points=64, occupancy_points=256)


@pytest.fixture(scope="module")
def results():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    providers = {"random": RandomBaseline(dim=8, global_dim=16), "random2": RandomBaseline(dim=8, global_dim=16, seed=1)}
    suites = {s: run_suite(s, providers if s != "vae" else {}, default_config(s, quick=True, **TINY), models={},
                           progress=False) for s in SUITE_NAMES}
    torch.set_num_threads(before)
    return jsonable({"suite": "all", "run": {"command": "python -m tango3d_core.eval --suite all --quick",
                                             "checkpoint": {"path": "ck", "name": "tiny", "num_parameters": 5}},
                     "suites": suites, "timing": {"total_s": 1.0}})


def test_figures_for_every_suite(results):
    for res in suite_results(results):
        figs = build_figures(res)
        assert "timing" in figs or res["suite"] == "vae"
        assert len(figs) >= 2 or res["suite"] == "vae"
        for fig in figs.values():
            assert len(fig.data) >= 1
    curve = build_figures(results["suites"]["pixel2point"])["curve"]
    assert [t.name for t in curve.data] == ["random", "random2"]
    assert max(curve.data[0].x) == pytest.approx(20.0)  # thresholds shown in percent


def test_write_report_html_only(results, tmp_path):
    files = write_report(results, tmp_path, png="off", plotlyjs="directory")
    md = files.markdown.read_text()
    assert files.markdown == tmp_path / "results.md" and not files.png
    for s in ("pixel2point", "point2pixel", "part-transfer", "retrieval", "vae"):
        assert f"({s})" in md
    assert "python -m tango3d_core.eval --suite all --quick" in md
    assert "| `random` |" in md and "| `random2` |" in md
    assert "PNG figures are not included" in md
    assert all(p.is_file() and p.suffix == ".html" for p in files.html)
    assert (tmp_path / "figures" / "plotly.min.js").is_file()
    for p in files.html:
        assert f"({p.relative_to(tmp_path).as_posix()})" in md


def test_single_suite_and_missing_values(results, tmp_path):
    res = json.loads(json.dumps(results["suites"]["pixel2point"]))
    res["methods"]["random"]["median_error"] = None  # NaN after jsonable
    files = write_report(res, tmp_path, png="off")
    md = files.markdown.read_text()
    assert "Pixel → 3D point" in md and "Retrieval" not in md and "–" in md


@pytest.mark.slow
def test_png_export_with_kaleido(results, tmp_path):
    pytest.importorskip("kaleido")
    one = {"suite": "all", "suites": {"vae": results["suites"]["vae"]}}
    files = write_report(one, tmp_path, png="auto")
    if files.png_error:
        pytest.skip(f"kaleido present but cannot export here: {files.png_error}")
    assert files.png and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in files.png)
    assert "![vae iou](figures/vae_iou.png)" in files.markdown.read_text()


def test_report_cli_from_json(results, tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    assert main([str(path), "--out", str(tmp_path / "out"), "--no-png"]) == 0
    assert (tmp_path / "out" / "results.md").is_file()


def test_bad_inputs(results, tmp_path):
    with pytest.raises(ValueError, match="no 'suite' key"):
        suite_results({"methods": {}})
    with pytest.raises(ValueError, match="png"):
        write_report(results, tmp_path, png="maybe")
    with pytest.raises(ValueError, match="plotlyjs"):
        write_report(results, tmp_path, plotlyjs="nowhere")
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.json"), "--out", str(tmp_path)])


def test_header_describes_checkpoints_and_skipped_baselines(results, tmp_path):
    res = json.loads(json.dumps(results))
    sched = [{"name": "pretrain", "steps": 600}, {"name": "local", "steps": 400}]
    res["run"]["checkpoint"] = {"path": "assets/checkpoint", "name": "tiny", "num_parameters": 6065642,
                                "extra": {"schedule": sched, "trained_by": "python -m tango3d_core.train --preset tiny"}}
    res["run"]["baseline_checkpoints"] = {"global-only": "assets/baselines/global-only"}
    res["run"]["baseline_checkpoint_info"] = {"global-only": {"path": "assets/baselines/global-only", "name": "tiny",
                                                              "num_parameters": 7, "extra": {}}}
    res["run"]["skipped_baselines"] = {"single-stage": "not found at x; train it with `cmd`"}
    md = write_report(res, tmp_path, png="off").markdown.read_text()
    assert ("Checkpoint: `assets/checkpoint` (tiny, 6,065,642 parameters); steps per stage: pretrain 600, local 400; "
            "trained by `python -m tango3d_core.train --preset tiny`.") in md
    assert "Baseline `global-only`: `assets/baselines/global-only` (tiny, 7 parameters)." in md
    assert "Baseline `single-stage` was not run: not found at x; train it with `cmd`." in md
    assert '"schedule"' not in md  # no raw JSON dumps in the page
