"""Learning-curve plots: reading resumed logs, one run, and the overlay of several runs."""

import pytest

from tango3d_core.train.plot import compare_figure, compare_runs, read_run


def _stage(run, name, text):
    d = run / name
    d.mkdir(parents=True)
    (d / "log.csv").write_text(text)


def test_plot_reads_logs_and_dedupes(tmp_path):
    _stage(tmp_path, "0_pretrain", "step,total\n10,2.0\n20,1.5\n")
    with open(tmp_path / "0_pretrain" / "log.csv", "a") as f:  # a resumed run re-logs step 20
        f.write("20,1.4\n30,1.0\n")
    (stage,) = read_run(tmp_path)
    assert stage[0] == "0_pretrain"
    assert [r["step"] for r in stage[1]] == [10, 20, 30]
    assert stage[1][1]["total"] == 1.4


def test_compare_overlays_alignment_stages_only(tmp_path, monkeypatch):
    import tango3d_core.eval.report as report

    monkeypatch.setattr(report, "export_png", lambda figs, paths: "png off in this test")
    a, b = tmp_path / "progressive", tmp_path / "single-stage"
    _stage(a, "0_pretrain", "step,total,geometry\n10,9.0,1.0\n")
    _stage(a, "1_local", "step,total,dense\n10,8.0,8.0\n20,7.5,7.5\n")
    _stage(a, "2_global", "step,total,dense,global\n10,9.0,7.4,1.6\n")
    _stage(b, "0_pretrain", "step,total,geometry\n10,9.0,1.0\n")
    _stage(b, "1_single", "step,total,dense,global\n10,9.9,8.2,2.5\n30,9.0,7.8,2.0\n")
    (html,) = compare_runs([a, b], tmp_path / "out" / "cmp")
    text = html.read_text()
    assert html.name == "cmp.html" and "progressive" in text and "single-stage" in text
    # the shared stage 0 is left out; the stages of one run are laid end to end
    fig = compare_figure([a, b])
    dense: dict[str, list[float]] = {}
    for t in fig.data:
        if t.yaxis == "y":  # first panel: dense InfoNCE
            dense.setdefault(t.name, []).extend(t.x)
    assert dense == {"progressive": [10, 20, 30], "single-stage": [10, 30]}
    geometry = [t for t in fig.data if t.yaxis == "y5"]
    assert geometry == []  # logged only in stage 0
    with pytest.raises(ValueError, match="at least two"):
        compare_runs([a], tmp_path / "x")
    with pytest.raises(FileNotFoundError):
        compare_runs([a, tmp_path / "empty"], tmp_path / "x")
