"""benchmarks/: the row arithmetic, the FLOP counter, the report, and the whole suite at toy sizes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmarks.common import Curve, Row, count_flops, fit_exponent, time_call
from benchmarks.report import write_report
from benchmarks.run import CASES
from tango3d_core.train.stages import default_schedule

ROOT = Path(__file__).resolve().parents[1]


def _row(ours: float, baseline: float, *, kind: str = "alternative", rate: bool = False, **kw) -> Row:
    return Row(case="c", setting="s", ours=ours, baseline=baseline, unit="views/s" if rate else "ms",
               ours_name="ours", baseline_name="theirs", kind=kind, higher_is_better=rate, **kw)


def test_ratio_reads_the_same_way_for_times_and_rates() -> None:
    assert _row(2.0, 10.0).ratio == pytest.approx(5.0)  # 2 ms vs 10 ms: 5x faster
    assert _row(50.0, 10.0, rate=True).ratio == pytest.approx(5.0)  # 50 vs 10 views/s: 5x faster
    assert _row(10.0, 2.0).slower and _row(10.0, 50.0, rate=True).slower
    assert not _row(2.0, 10.0).slower
    # a limit is never "slower": its ratio is the fraction of the limit reached
    assert _row(10.0, 1.0, kind="limit").ratio == pytest.approx(0.1) and not _row(10.0, 1.0, kind="limit").slower
    # expected growth: noisy fits get 25 % of slack
    assert not _row(1.1, 1.0, kind="expected").slower and _row(1.5, 1.0, kind="expected").slower
    assert math.isnan(_row(float("nan"), 1.0).ratio) and not _row(float("nan"), 1.0).slower
    assert math.isnan(_row(0.0, 1.0).ratio)


def test_row_refuses_unknown_kind_and_missing_baseline() -> None:
    with pytest.raises(ValueError, match="kind"):
        _row(1.0, 1.0, kind="vibes")
    with pytest.raises(ValueError, match="baseline_name"):
        Row(case="c", setting="s", ours=1.0, baseline=1.0, unit="ms", ours_name="o", baseline_name="",
            kind="limit")


def test_fit_exponent_recovers_a_power_law() -> None:
    sizes = [1e3, 4e3, 16e3, 64e3]
    assert fit_exponent(sizes, [3e-6 * s**1.7 for s in sizes]) == pytest.approx(1.7, abs=1e-9)
    assert fit_exponent(sizes, [0.5] * 4) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(fit_exponent([1.0], [1.0]))


def test_time_call_runs_until_min_time() -> None:
    calls = []
    t = time_call(lambda: calls.append(1), repeats=3, warmup=2, min_time=0.0)
    assert len(calls) == 5 and t.n == 3 and t.min <= t.median <= t.p90


def test_count_flops_matches_the_textbook_counts() -> None:
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    assert count_flops(lambda: a @ b) == 2 * 8 * 16 * 4
    # fused CPU attention (uncounted by torch itself): QK^T and AV, 2 * 2 * B * H * L * S * D
    q = torch.randn(2, 3, 10, 8)
    assert count_flops(lambda: F.scaled_dot_product_attention(q, q, q)) == 4 * 2 * 3 * 10 * 10 * 8
    # with backward: 2.5x the forward (torch's own convention for attention's backward)
    qg = q.clone().requires_grad_(True)
    total = count_flops(lambda: F.scaled_dot_product_attention(qg, qg, qg).sum().backward())
    assert total == pytest.approx(3.5 * 4 * 2 * 3 * 10 * 10 * 8)


def test_report_lists_every_row_and_explains_the_slower_ones(tmp_path: Path) -> None:
    rows = [
        _row(2.0, 10.0, note="fine"),
        _row(10.0, 2.0, note="it does more work", issue="make it do less"),
        _row(4.0, 1.0, kind="limit"),
        Row(case="c", setting="unexplained", ours=3.0, baseline=2.0, unit="s", ours_name="o",
            baseline_name="a budget", kind="budget"),
    ]
    curves = [Curve(name="thing", panel="points", xlabel="N", sizes=[1.0, 10.0], seconds=[0.1, 1.0],
                    expected_exponent=1.0, expected_why="O(N)")]
    files = write_report(tmp_path, rows=rows, curves=curves, machine={"date_utc": "today", "cpu": "a CPU"},
                         hardware={}, load={"other_cores": 0.1, "loadavg_start": [0.1], "loadavg_end": [0.2]},
                         durations={"x": 1.0}, skipped={"retrieval": "not present"}, command="python -m benchmarks",
                         threads=2, png="off")
    md = files["markdown"].read_text()
    table = [line for line in md.splitlines() if line.startswith("| c | ")]
    assert len(table) == len(rows)
    slower = md.split("## Where we are slower")[1].split("##")[0]
    assert "it does more work" in slower and "make it do less" in slower and "fine" not in slower
    # a row that is slower only in this run still gets a line saying so, with the load
    assert "unexplained" in slower and "0.10 cores" in slower
    assert "retrieval" in md and "not present" in md and "a CPU" in md
    assert (tmp_path / "img" / "performance_scaling.html").is_file()
    assert (tmp_path / "img" / "performance_ratios.html").is_file()


def test_run_py_as_a_file_and_bad_arguments() -> None:
    out = subprocess.run([sys.executable, "benchmarks/run.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "--smoke" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nope"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "unknown case" in bad.stderr


@pytest.mark.slow
def test_smoke_suite_runs_every_case_and_every_row_has_a_baseline_and_a_ratio(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--threads", "1", "--out", str(tmp_path),
                          "--json", str(tmp_path / "r.json"), "--png", "off", "--no-browser"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["smoke"] and not res["errors"]
    # every case ran (the retrieval one only where issue #6's benchmarks/retrieval.py is in the checkout)
    assert set(res["durations_s"]) == set(CASES)
    has_retrieval = (ROOT / "benchmarks" / "retrieval.py").is_file()
    assert set(res["skipped"]) == (set() if has_retrieval else {"retrieval"}), res["skipped"]
    cases = {r["case"] for r in res["rows"]}
    expected = {"Click similarity", "Shape features", "Rendering", "Training throughput", "Scaling", "Encode speed",
                "Mesh load", "App click"} | ({"Retrieval"} if has_retrieval else set())
    assert expected <= cases
    for r in res["rows"]:
        assert r["baseline_name"] and r["ours_name"], r
        assert math.isfinite(r["baseline"]) and r["baseline"] > 0, r
        assert r["ratio"] is not None and math.isfinite(r["ratio"]) and r["ratio"] > 0, r
    # click: every size x dtype; training: every stage of the schedule
    assert sum(r["case"] == "Click similarity" for r in res["rows"]) == 2 * 3
    assert sum(r["case"] == "Training throughput" for r in res["rows"]) == len(default_schedule("tiny"))
    assert {c["panel"] for c in res["curves"]} == {"points", "image size", "gallery size"}
    md = (tmp_path / "performance.md").read_text()
    for r in res["rows"]:
        assert f"| {r['case']} | {r['setting']} |" in md
    assert "Machine and load" in md and res["machine"]["cpu"] in md


@pytest.mark.parametrize("flops, expected", [(1e9, 256), (1e11, 2048), (1e6, 128)])
def test_gemm_size_keeps_one_product_short(monkeypatch: pytest.MonkeyPatch, flops: float, expected: int) -> None:
    # A CPU without bf16 instructions runs a bf16 product at ~1 GFLOP/s: n = 2048 would take 17 s
    # per product, and the hardware probe minutes.
    from benchmarks import hardware

    monkeypatch.setattr(hardware, "gemm_peak", lambda *, n, dtype, repeats=5: flops)
    n = hardware.gemm_size(torch.bfloat16, max_n=2048, target_s=0.25)
    assert n == expected
    assert n == 128 or 2.0 * n**3 / flops <= 0.25
