"""What every benchmark case shares: the result row, the run context, timing, machine details.

A case is a function ``case(ctx: Context) -> list[Row]``. Every :class:`Row` compares one of our
figures with a baseline measured in the same run: an *alternative* (another way of doing the
same job), a *limit* (the best this hardware allows, from a bandwidth or FLOP count), a
*budget* (a target from an issue) or an *expected* growth (scaling curves).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "EXPECTED_TOLERANCE",
    "KINDS",
    "REPO_ROOT",
    "Context",
    "Curve",
    "Kind",
    "LoadMeter",
    "Row",
    "Timing",
    "cache_sizes",
    "count_flops",
    "fit_exponent",
    "fmt_count",
    "fmt_value",
    "machine_info",
    "print_rows",
    "time_call",
]

Kind = Literal["alternative", "limit", "budget", "expected"]
KINDS: tuple[str, ...] = ("alternative", "limit", "budget", "expected")
REPO_ROOT = Path(__file__).resolve().parents[1]
EXPECTED_TOLERANCE = 0.8
"""A scaling row counts as slower when its time grows more than 1 / 0.8 = 1.25 x the expected growth."""


@dataclass(frozen=True)
class Row:
    """One line of the performance table.

    case, setting      what is measured ("Click similarity", "N = 1M, fp16")
    ours, baseline     the two measured values, in ``unit``
    unit               "ms", "s/shape", "views/s", "samples/s", "x growth", ...
    higher_is_better   True for rates (views/s), False for times
    ours_name          what produced ``ours`` ("torch dense @ q")
    baseline_name      what produced ``baseline`` ("copy-bandwidth limit: N x D x 4 B / 13.1 GB/s")
    kind               see the module docstring
    ours_detail, baseline_detail
                       extra figures shown beside each value (accuracy, agreement, ...)
    note               why the ratio is what it is; required for a row where we are slower
                       (see :attr:`slower`)
    issue              for a slower row: what to change, worded as an issue to file
    """

    case: str
    setting: str
    ours: float
    baseline: float
    unit: str
    ours_name: str
    baseline_name: str
    kind: Kind
    higher_is_better: bool = False
    ours_detail: str = ""
    baseline_detail: str = ""
    note: str = ""
    issue: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not self.baseline_name:
            raise ValueError(f"row {self.case} / {self.setting}: baseline_name is empty")

    @property
    def ratio(self) -> float:
        """Baseline time / our time (our rate / baseline rate): > 1 means we are faster. Against a
        limit it is the fraction of the limit reached; against an expected growth, > 1 means our
        time grows more slowly than expected. NaN when a value is missing."""
        a, b = (self.ours, self.baseline) if self.higher_is_better else (self.baseline, self.ours)
        if not (math.isfinite(a) and math.isfinite(b)) or b <= 0:
            return float("nan")
        return a / b

    @property
    def slower(self) -> bool:
        """We lose against an alternative or miss a budget (ratio < 1), or our time grows clearly
        faster than expected (ratio < ``EXPECTED_TOLERANCE``: fits over a few sizes are noisy)."""
        if self.kind == "limit" or not math.isfinite(self.ratio):
            return False
        return self.ratio < (EXPECTED_TOLERANCE if self.kind == "expected" else 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "slower": self.slower}


@dataclass
class Curve:
    """One scaling curve: seconds per call at each size, and the growth we expect.

    sizes, seconds     [K] the x values (points, pixels per side, entries) and median times
    expected_exponent  time ~ size ** expected_exponent over this range
    expected_why       where that exponent comes from ("FLOPs counted", "O(N) scan", ...)
    panel              which plot it belongs to ("points", "image size", "gallery size")
    bytes_per_item     bytes read per unit of size (working set = size x this), if it is a scan
    issue              what to file if the curve grows faster than expected
    """

    name: str
    panel: str
    xlabel: str
    sizes: list[float]
    seconds: list[float]
    expected_exponent: float
    expected_why: str
    bytes_per_item: float | None = None
    issue: str = ""

    @property
    def observed_exponent(self) -> float:
        return fit_exponent(self.sizes, self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "observed_exponent": self.observed_exponent}


@dataclass
class Context:
    """Shared state of one suite run.

    smoke        tiny sizes: checks that everything runs, the figures mean nothing
    threads      torch intra-op threads every case runs with
    device       torch device for the model cases
    hardware     measured limits (``copy_GBps``, ``gemm_fp32_GFLOPs``, ...), filled by the first case
    curves       scaling curves collected from every case
    skipped      {case: reason} for cases that could not run
    """

    smoke: bool = False
    threads: int = 1
    device: str = "cpu"
    hardware: dict[str, float] = field(default_factory=dict)
    curves: list[Curve] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    _model: Any = field(default=None, repr=False)

    def model(self) -> Any:
        """The bundled checkpoint (loaded once), in eval mode on ``device``."""
        if self._model is None:
            import tango3d_core as t3

            self._model = t3.load_model(device=self.device).eval()
        return self._model


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated calls (median, min, 90th percentile, count) and the median
    CPU seconds of this process per call (summed over threads: on a busy machine the steadier
    figure, close to the wall time of an idle machine when one thread runs)."""

    median: float
    min: float
    p90: float
    n: int
    cpu_median: float = float("nan")


def time_call(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1, min_time: float = 0.0,
              max_repeats: int = 1000) -> Timing:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed calls; keep calling (up to
    ``max_repeats``) until ``min_time`` seconds have been timed, so fast calls get many samples."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    cpu: list[float] = []
    total = 0.0
    while len(out) < repeats or (total < min_time and len(out) < max_repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        dt = time.perf_counter() - t0
        cpu.append(time.process_time() - c0)
        out.append(dt)
        total += dt
    return Timing(median=statistics.median(out), min=min(out), p90=float(np.percentile(out, 90)), n=len(out),
                  cpu_median=statistics.median(cpu))


def fit_exponent(sizes: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of log(value) against log(size): value ~ size ** slope."""
    x, y = np.log(np.asarray(sizes, dtype=np.float64)), np.log(np.asarray(values, dtype=np.float64))
    if len(x) < 2 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    return float(np.polyfit(x, y, 1)[0])


def fmt_count(n: float) -> str:
    """10000 -> "10k", 1000000 -> "1M"."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            v = n / div
            return f"{v:.0f}{suffix}" if v == round(v) else f"{v:.3g}{suffix}"
    return f"{n:g}"


def fmt_value(x: float) -> str:
    """Three significant figures, no exponent for everyday magnitudes."""
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 0.01:
        return f"{x:.3g}"
    return f"{x:.2e}"


def print_rows(rows: Sequence[Row]) -> None:
    """A plain-text table on stdout (for running one case module on its own)."""
    for r in rows:
        flag = "  SLOWER" if r.slower else ""
        print(f"{r.case:<22} {r.setting:<28} ours {fmt_value(r.ours):>9} {r.unit:<10} "
              f"baseline {fmt_value(r.baseline):>9}  ratio {fmt_value(r.ratio):>6}  "
              f"({r.kind}: {r.baseline_name}){flag}")


# ---------------------------------------------------------------- machine and load


class LoadMeter:
    """How busy the machine is besides us: CPU time of every process (``/proc/stat``) minus this
    process's own, over the wall time between ``start()`` and ``stop()``, in cores."""

    def __init__(self) -> None:
        self._t0 = self._busy0 = self._own0 = 0.0
        self.loadavg_start: tuple[float, float, float] | None = None
        self.loadavg_end: tuple[float, float, float] | None = None

    @staticmethod
    def _busy_seconds() -> float:
        try:
            with open("/proc/stat") as f:
                fields = [float(v) for v in f.readline().split()[1:]]
        except OSError:
            return float("nan")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
        # guest time is already inside user / nice
        busy = sum(fields[:8]) - idle
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_seconds() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def start(self) -> None:
        self._t0, self._busy0, self._own0 = time.monotonic(), self._busy_seconds(), self._own_seconds()
        self.loadavg_start = os.getloadavg()

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t0
        others = (self._busy_seconds() - self._busy0) - (self._own_seconds() - self._own0)
        self.loadavg_end = os.getloadavg()
        return {"wall_s": wall, "own_cpu_s": self._own_seconds() - self._own0,
                "other_cores": max(0.0, others / wall) if wall > 0 else float("nan"),
                "loadavg_start": list(self.loadavg_start or ()), "loadavg_end": list(self.loadavg_end)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def cache_sizes() -> dict[str, int]:
    """Data / unified cache sizes in bytes as the OS reports them for CPU 0 ({"L1d", "L2", "L3"});
    empty where ``/sys`` does not say. In a VM, L3 is the host's figure, shared with other guests."""
    out: dict[str, int] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = (index / "level").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        mult = {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1:], 1)
        try:
            out[f"L{level}" + ("d" if kind == "Data" else "")] = int(size.rstrip("KMG")) * mult
        except ValueError:
            continue
    return out


def _version(module: str) -> str:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001 - an optional package that is missing or broken
        return "not installed"
    return str(getattr(mod, "__version__", "?"))


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU, memory, OS and library versions, the torch thread count, the commit, and the date."""
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    cap = torch.backends.cpu.get_cpu_capability() if hasattr(torch.backends.cpu, "get_cpu_capability") else "?"
    return {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "memory_gib": round(_mem_gib(), 1),
        "caches": {k: f"{v / 2**20:g} MiB" if v >= 2**20 else f"{v / 2**10:g} KiB" for k, v in cache_sizes().items()},
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": cap,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "numpy": np.__version__,
        "open3d": _version("open3d"),
        "trimesh": _version("trimesh"),
        "faiss": _version("faiss"),
        "commit": _git_commit(),
    }


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs of the matrix products (mm, conv, attention) ``fn()`` runs, backward included.

    torch's counter misses CPU fused attention, so its forward and backward are added here.
    Element-wise work (norms, activations, softmax) is not counted: a time derived from this
    count is a lower bound (an upper bound on throughput).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def fwd(q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return sdpa_flop_count(q, k, v)

    def bwd(grad: Any, q: Any, k: Any, v: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return sdpa_backward_flop_count(grad, q, k, v)

    mapping = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping = {aten._scaled_dot_product_flash_attention_for_cpu: fwd,
                   aten._scaled_dot_product_flash_attention_for_cpu_backward: bwd}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return float(counter.get_total_flops())
