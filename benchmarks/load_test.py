"""Load test of the explorer on loopback: concurrent simulated users upload, click and query.

Each simulated user is one browser tab speaking Gradio's own queue protocol over HTTP (the
page's ``load`` event opens its session; uploads go through ``/gradio_api/upload``; events
are ``/gradio_api/queue/join`` + the ``/gradio_api/queue/data`` event stream), so the whole
server is exercised: Gradio's queue, the handlers, the encoders, the caches, and one viser
server per tab. A user repeats, until the upload budget is spent: upload an image, upload a
mesh, click pixels, change the overlay, poll (the page's timer that carries 3D clicks back),
search by text. Every upload is distinct (new pixels / a new mesh), so nothing is served from a
cache by accident. (3D clicks themselves travel over each tab's viser WebSocket, not HTTP; the
explorer tests click points directly.)

Recorded:

* latency of every action (p50 / p95 / max per kind) and the number of errors: an HTTP
  failure, an event that did not complete, or a handler's warning status (``⚠️ ...``) on a
  valid input. Zero errors is the bar.
* a few invalid uploads per user (garbage image, truncated mesh), which must be *refused* with
  a message; they are counted apart ("rejected as expected").
* the server's resident memory (``VmRSS`` from ``/proc``) after every 100 uploads, and the
  files under the server's temporary folder (``TMPDIR`` points at a private folder; Gradio's
  cache and the explorer's work folder are counted apart) during the run
  and after the server is stopped. The server sweeps files older than ``--temp-max-age``
  (120 s here, 1 h by default) from Gradio's cache.

First, unless ``--skip-loaders``: ``load_image`` on a 20000 x 20000 PNG and ``load_mesh`` on a
5M-face PLY, each in a fresh process (time, CPU time, peak memory).

Run (starts ``python launch.py`` with the bundled checkpoint on a free local port)::

    python benchmarks/load_test.py --users 24 --uploads 1000 --json load_test.json

``--url URL`` tests a server that is already running instead (then memory and temporary
files are not measured). ``--quick`` is the CI-sized smoke run. Numbers depend on the
machine: on a shared 2-core box every request waits for the same two cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WARNING = "⚠️"


# ----------------------------------------------------------------------------------------
# Gradio's queue protocol, as the page's JavaScript client speaks it
# ----------------------------------------------------------------------------------------


class EventError(RuntimeError):
    """An event that did not complete (HTTP error, server error, timeout)."""


class GradioTab:
    """One browser tab: a session hash, the app's config, and calls to its event handlers.

    ``call(elem_id, event, data, event_data)`` runs the handler wired to ``event`` of the
    component with ``elem_id`` (or of the page itself for ``load``) and returns its outputs.
    A ``None`` in ``data`` for a ``gr.State`` input is what the page sends: the server keeps
    each session's state itself.
    """

    def __init__(self, base_url: str, *, timeout: float = 300.0, config: dict | None = None) -> None:
        self.base = base_url.rstrip("/") + "/"
        self.client = httpx.Client(base_url=self.base, timeout=timeout)
        self.timeout = timeout
        self.session_hash = uuid.uuid4().hex[:11]
        self.config = config if config is not None else fetch_config(self.client)
        self.api = self.config.get("api_prefix", "/gradio_api").strip("/")
        comps = {c["id"]: c for c in self.config["components"]}
        self._fns: dict[tuple[str | None, str], dict] = {}
        for dep in self.config["dependencies"]:
            for comp_id, event in dep["targets"]:
                elem = comps.get(comp_id, {}).get("props", {}).get("elem_id")
                self._fns.setdefault((elem, event), dep)
        self._input_types = {dep["id"]: [comps[i]["type"] for i in dep["inputs"]]
                             for dep in self.config["dependencies"]}

    def close(self) -> None:
        self.client.close()

    def upload(self, name: str, data: bytes) -> dict:
        """POST the file like the page does; returns the FileData dict to pass as input."""
        r = self.client.post(f"{self.api}/upload", files=[("files", (name, data))])
        if r.status_code != 200:
            raise EventError(f"upload of {name} failed: HTTP {r.status_code} {r.text[:200]}")
        path = r.json()[0]
        return {"path": path, "orig_name": name, "size": len(data), "meta": {"_type": "gradio.FileData"}}

    def call(self, elem_id: str | None, event: str, data: list[Any] | None = None,
             event_data: Any = None) -> list[Any]:
        dep = self._fns.get((elem_id, event))
        if dep is None:
            raise KeyError(f"no handler for {event!r} on {elem_id!r}")
        if data is None:
            data = [None] * len(dep["inputs"])
        body = {"data": data, "event_data": event_data, "fn_index": dep["id"], "trigger_id": dep["targets"][0][0],
                "session_hash": self.session_hash}
        r = self.client.post(f"{self.api}/queue/join", json=body)
        if r.status_code != 200:
            raise EventError(f"{elem_id}.{event}: queue/join HTTP {r.status_code} {r.text[:200]}")
        event_id = r.json()["event_id"]
        deadline = time.monotonic() + self.timeout
        with self.client.stream("GET", f"{self.api}/queue/data", params={"session_hash": self.session_hash}) as s:
            for line in s.iter_lines():
                if time.monotonic() > deadline:
                    raise EventError(f"{elem_id}.{event}: no result after {self.timeout:g} s")
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                if msg.get("event_id") not in (None, event_id):
                    continue
                kind = msg.get("msg")
                if kind == "process_completed":
                    if not msg.get("success"):
                        raise EventError(f"{elem_id}.{event}: server error {str(msg.get('output'))[:300]}")
                    return msg["output"].get("data", [])
                if kind in ("unexpected_error",):
                    raise EventError(f"{elem_id}.{event}: {msg.get('message')}")
                if kind == "close_stream":
                    break
        raise EventError(f"{elem_id}.{event}: the event stream closed without a result")


def fetch_config(client: httpx.Client) -> dict:
    r = client.get("config")
    r.raise_for_status()
    return r.json()


def _text_outputs(outputs: list[Any]) -> str:
    """Every string among a handler's outputs (status lines), joined."""
    parts = []
    for o in outputs:
        if isinstance(o, str):
            parts.append(o)
        elif isinstance(o, dict) and isinstance(o.get("value"), str):
            parts.append(o["value"])
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------
# inputs: every upload distinct
# ----------------------------------------------------------------------------------------


def make_image(rng: random.Random, size: int = 160) -> bytes:
    """A PNG of a random two-colour scene (new pixels every call: a cache miss)."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = rng.randrange(size - 20), rng.randrange(size - 20)
        d.ellipse((x0, y0, x0 + rng.randrange(10, 60), y0 + rng.randrange(10, 60)),
                  fill=tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def make_mesh(rng: random.Random) -> bytes:
    """A binary PLY of a randomly proportioned, slightly jittered box-ish sphere (distinct bytes)."""
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=2)
    m.vertices *= np.array([rng.uniform(0.5, 1.5) for _ in range(3)])
    m.vertices += np.random.default_rng(rng.randrange(2**31)).normal(0, 0.01, m.vertices.shape)
    return m.export(file_type="ply")


BAD_UPLOADS = (
    ("image", "photo.png", b"this is not an image"),
    ("mesh", "cut.ply", b"ply\nformat binary_little_endian 1.0\nelement vertex 9999999\nproperty float x\n"
                        b"property float y\nproperty float z\nend_header\n\x00\x00"),
)


# ----------------------------------------------------------------------------------------
# one simulated user
# ----------------------------------------------------------------------------------------


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    rejected: int = 0
    uploads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)

    def error(self, text: str) -> None:
        with self.lock:
            self.errors.append(text)


class Budget:
    """A shared count of uploads left; users stop when it is spent (or at the deadline)."""

    def __init__(self, uploads: int, deadline: float, on_upload=None) -> None:
        self.left = uploads
        self.deadline = deadline
        self.lock = threading.Lock()
        self.on_upload = on_upload

    def take(self, n: int = 1) -> bool:
        with self.lock:
            if self.left < n or time.monotonic() > self.deadline:
                return False
            self.left -= n
            return True


def simulated_user(base_url: str, user: int, budget: Budget, stats: Stats, *, config: dict, bad_every: int,
                   clicks: int, text: bool, timeout: float) -> None:
    rng = random.Random(user)
    tab = GradioTab(base_url, timeout=timeout, config=config)

    def timed(kind: str, fn, *args, expect_ok: bool = True, **kwargs):
        t0 = time.perf_counter()
        try:
            out = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - every failure is a recorded error
            stats.error(f"user {user} {kind}: {type(e).__name__}: {e}")
            return None
        dt = time.perf_counter() - t0
        stats.record(kind, dt)
        status = _text_outputs(out) if isinstance(out, list) else ""
        if expect_ok and WARNING in status:
            stats.error(f"user {user} {kind}: {status.strip()[:300]}")
        if not expect_ok:
            if WARNING in status:
                with stats.lock:
                    stats.rejected += 1
            else:
                stats.error(f"user {user} {kind}: a bad upload was not refused ({status[:200]!r})")
        return out

    try:
        if timed("load", tab.call, None, "load") is None:
            return
        rounds = 0
        while budget.take(2):
            rounds += 1
            img = make_image(rng)
            out = timed("upload_image",
                        lambda: tab.call("query-image", "upload", [tab.upload(f"u{user}.png", img), None]))
            mesh = make_mesh(rng)
            out2 = timed("upload_mesh", lambda: tab.call("mesh-file", "upload",
                                                          [tab.upload(f"u{user}.ply", mesh), "Z", None]))
            with stats.lock:
                stats.uploads += 2
            if budget.on_upload is not None:
                budget.on_upload(2)
            if out is None or out2 is None:
                continue
            for _ in range(clicks):
                xy = [rng.randrange(160), rng.randrange(160)]
                timed("click_pixel", tab.call, "query-image", "select", None, event_data={"index": xy, "value": None})
            timed("overlay", tab.call, "colormap", "input",
                  [rng.choice(["viridis", "turbo", "magma"]), "top-k", "relative",
                   rng.choice(["pose-verified", "features only"]), 200, 0.5, 1.0, None])
            timed("poll", tab.call, None, "tick")
            if text:
                query = rng.choice(["a chair", "a mug", "a lamp"])
                timed("search_text", tab.call, "search-text", "click", [query, 4, None])
            if bad_every and rounds % bad_every == 0:
                kind, name, data = BAD_UPLOADS[(rounds // bad_every) % len(BAD_UPLOADS)]
                if kind == "image":
                    timed("bad_upload", lambda: tab.call("query-image", "upload", [tab.upload(name, data), None]),
                          expect_ok=False)
                else:
                    timed("bad_upload", lambda: tab.call("mesh-file", "upload", [tab.upload(name, data), "Z", None]),
                          expect_ok=False)
    finally:
        try:
            tab.call(None, "unload")
        except Exception:  # noqa: BLE001 - the tab is going away anyway
            pass
        tab.close()


# ----------------------------------------------------------------------------------------
# the server under test
# ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, MB (Linux /proc)."""
    total = 0.0
    pids = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(k) for k in kids]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            pass
    return total


def count_files(folder: Path) -> dict[str, list[int]]:
    """{part: [files, bytes]} under ``folder``, split into Gradio's cache (``tango3d-gradio-*``:
    uploads and the images sent back), the explorer's work folder (``tango3d-app-*``) and the rest."""
    out: dict[str, list[int]] = {"gradio": [0, 0], "app": [0, 0], "other": [0, 0]}
    for root, _, files in os.walk(folder):
        rel = Path(root).relative_to(folder).parts
        top = rel[0] if rel else ""
        part = ("gradio" if top.startswith("tango3d-gradio-") or top == "gradio"
                else "app" if top.startswith("tango3d-app-") else "other")
        for f in files:
            if not rel and f == "server.log":
                continue
            try:
                out[part][1] += os.stat(os.path.join(root, f)).st_size
                out[part][0] += 1
            except OSError:
                pass
    return out


class LaunchedServer:
    """``python launch.py`` on a free local port, with a private temporary folder."""

    def __init__(self, extra: list[str], *, cache_dir: str | None = None, temp_max_age_s: float | None = None,
                 startup_timeout: float = 600.0) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="tango3d-load-"))
        self.port = free_port()
        # TMPDIR only: the server makes its own private Gradio folder in it (tango3d-gradio-*),
        # as it does by default, so what is measured is what runs in production.
        env = dict(os.environ, TMPDIR=str(self.tmp), GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
        env.pop("GRADIO_TEMP_DIR", None)
        # A private cache by default: the gallery is indexed from scratch (about a minute),
        # the same on every machine, and nothing of the user's cache is touched.
        env["TANGO3D_CACHE"] = cache_dir or str(self.tmp / "cache")
        if temp_max_age_s is not None:  # how old the server lets its temporary files get
            env["TANGO3D_TEMP_MAX_AGE_S"] = str(temp_max_age_s)
        for var in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "SPACE_ID"):
            env.pop(var, None)
        self.log = open(self.tmp / "server.log", "w")  # removed with the folder; its tail is reported
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), "--port", str(self.port), *extra],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}/"
        t0 = time.monotonic()
        while time.monotonic() - t0 < startup_timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"launch.py exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "config", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        self.close()
        raise RuntimeError(f"launch.py did not answer within {startup_timeout:g} s")

    def log_tail(self, n: int = 3000) -> str:
        self.log.flush()
        return (self.tmp / "server.log").read_text(errors="replace")[-n:]

    def close(self) -> None:
        """Ctrl+C (the server closes its sessions and deletes its files), then wait."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        if not self.log.closed:
            self.log.close()


def wait_for_gallery(url: str, timeout: float) -> str:
    """Open a tab and poll its status line until the gallery says ready (or time runs out)."""
    tab = GradioTab(url)
    try:
        t0 = time.monotonic()
        status = ""
        while time.monotonic() - t0 < timeout:
            out = tab.call(None, "load")
            status = _text_outputs(out)
            tab.call(None, "unload")
            if "Gallery: ready" in status or "Gallery" not in status:
                return status
            time.sleep(5.0)
        return status
    finally:
        tab.close()


# ----------------------------------------------------------------------------------------
# the loaders on the two largest hostile inputs, each in a fresh process (peak memory)
# ----------------------------------------------------------------------------------------

_MEASURE = """
import json, sys, time


def peak_mb():
    # VmHWM: this process image's own high-water mark (ru_maxrss would also count the parent's
    # memory that fork copied before exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)


t0, c0 = time.perf_counter(), time.process_time()
kind, path = sys.argv[1], sys.argv[2]
try:
    if kind == "image":
        from tango3d_core.data.imageio import load_image
        out = load_image(path)
        result = f"loaded {out.size}"
    else:
        from tango3d_core.data.meshio import load_mesh
        mesh = load_mesh(path, max_faces=300_000)
        result = f"{len(mesh.faces):,} faces, decimated from {mesh.metadata.get('decimated_from', 0):,}"
except ValueError as e:
    result = str(e)
print(json.dumps({"result": result, "wall_s": round(time.perf_counter() - t0, 2),
                  "cpu_s": round(time.process_time() - c0, 2),
                  "peak_rss_mb": peak_mb()}))
"""


def bomb_png(path: Path, side: int = 20_000) -> None:
    """``side`` x ``side`` grey PNG written row by row (never held decoded): ~1.7 MB for 20000."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x80" * side
    comp = zlib.compressobj(1)
    idat = b"".join([comp.compress(row) for _ in range(side)] + [comp.flush()])
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def grid_ply(path: Path, n: int = 1582) -> int:
    """A wavy n x n grid as binary PLY, 2 (n-1)^2 faces (n = 1582: 4,999,122 faces, 95 MB)."""
    xs = np.linspace(0, 1, n, dtype=np.float32)
    x, y = np.meshgrid(xs, xs, indexing="xy")
    v = np.stack([x, y, (0.05 * np.sin(12 * x) * np.cos(9 * y)).astype(np.float32)], -1).reshape(-1, 3)
    i = np.arange(n * n, dtype=np.int32).reshape(n, n)
    a, b, c, d = i[:-1, :-1].ravel(), i[:-1, 1:].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel()
    f = np.empty(2 * len(a), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    f["n"] = 3
    f["i"][0::2] = np.stack([a, b, d], 1)
    f["i"][1::2] = np.stack([a, d, c], 1)
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(v)}\nproperty float x\n"
              f"property float y\nproperty float z\nelement face {len(f)}\n"
              "property list uchar int vertex_indices\nend_header\n").encode()
    with open(path, "wb") as fh:
        fh.write(header + v.astype("<f4").tobytes() + f.tobytes())
    return len(f)


def loader_figures() -> dict:
    """load_image on a 20000 x 20000 PNG and load_mesh on a 5M-face PLY (explorer caps)."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="tango3d-loaders-") as d:
        png, ply = Path(d) / "bomb.png", Path(d) / "grid5m.ply"
        bomb_png(png)
        faces = grid_ply(ply)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        for key, kind, path in (("image_20000x20000", "image", png), ("mesh_5M_faces", "mesh", ply)):
            r = subprocess.run([sys.executable, "-c", _MEASURE, kind, str(path)], capture_output=True, text=True,
                               cwd=ROOT, env=env, timeout=1800)
            if r.returncode != 0:
                out[key] = {"error": r.stderr[-500:]}
                continue
            out[key] = {"file_mb": round(path.stat().st_size / 2**20, 1), **json.loads(r.stdout.splitlines()[-1])}
            print(f"  {key}: {out[key]}", flush=True)
        out["mesh_5M_faces"]["faces"] = faces
    return out


# ----------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def run_load(url: str, *, users: int, uploads: int, max_seconds: float, clicks: int = 3, text: bool = True,
             bad_every: int = 4, timeout: float = 300.0, on_upload=None) -> dict:
    """Run ``users`` simulated users against ``url`` until ``uploads`` uploads are done (or
    ``max_seconds`` pass); returns the figures as a JSON-ready dict."""
    config = fetch_config(httpx.Client(base_url=url.rstrip("/") + "/", timeout=60))
    stats = Stats()
    budget = Budget(uploads, time.monotonic() + max_seconds, on_upload=on_upload)
    threads = [threading.Thread(target=simulated_user, args=(url, u, budget, stats),
                                kwargs=dict(config=config, bad_every=bad_every, clicks=clicks, text=text,
                                            timeout=timeout), name=f"user-{u}", daemon=True)
               for u in range(users)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
        time.sleep(0.05)  # tabs open over a second, not in one instant
    for t in threads:
        t.join(max_seconds + timeout + 60)
    wall = time.perf_counter() - t0
    hung = sum(t.is_alive() for t in threads)
    if hung:
        stats.error(f"{hung} users were still running at the end")
    all_lat = [x for v in stats.latencies.values() for x in v]
    return {
        "users": users, "uploads": stats.uploads, "wall_s": round(wall, 1),
        "actions": len(all_lat), "actions_per_s": round(len(all_lat) / wall, 2) if wall else None,
        "errors": len(stats.errors), "error_samples": stats.errors[:20],
        "rejected_as_expected": stats.rejected,
        "latency_s": {kind: {"n": len(v), "p50": round(percentile(v, 50), 3), "p95": round(percentile(v, 95), 3),
                             "max": round(max(v), 3)}
                      for kind, v in sorted(stats.latencies.items())},
        "latency_all_s": {"p50": round(percentile(all_lat, 50), 3), "p95": round(percentile(all_lat, 95), 3)},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=24, help="concurrent simulated users (default 24)")
    p.add_argument("--uploads", type=int, default=1000, help="total uploads, images + meshes (default 1000)")
    p.add_argument("--max-seconds", type=float, default=3600.0, help="stop starting new rounds after this")
    p.add_argument("--clicks", type=int, default=3, help="pixel clicks per round (default 3)")
    p.add_argument("--no-text", action="store_true", help="skip text search (no MiniLM needed)")
    p.add_argument("--url", default=None, help="test a running server instead of starting launch.py")
    p.add_argument("--launch-args", default="", help="extra arguments for launch.py, e.g. '--checkpoint DIR'")
    p.add_argument("--cache-dir", default=None,
                   help="TANGO3D_CACHE for the server (default: a fresh private folder; the gallery is rebuilt)")
    p.add_argument("--temp-max-age", type=float, default=120.0,
                   help="the server's TANGO3D_TEMP_MAX_AGE_S (default 120 s instead of its 1 h, so that the "
                        "sweep of its temporary files shows within the run; keep it above the slowest upload)")
    p.add_argument("--quick", action="store_true", help="CI-sized: 20 users, 60 uploads")
    p.add_argument("--json", default=None, help="write the figures here")
    p.add_argument("--skip-loaders", action="store_true",
                   help="skip the loader figures (20000 x 20000 PNG, 5M-face PLY; about a minute)")
    args = p.parse_args(argv)
    if args.quick:
        args.users, args.uploads = 20, 60

    loaders = None
    if not args.skip_loaders and not args.quick:
        print("loaders on hostile inputs (fresh process each) ...", flush=True)
        loaders = loader_figures()
    server = None
    rss: list[tuple[int, float]] = []
    files: list[tuple[int, dict]] = []
    try:
        if args.url is None:
            print("starting launch.py ...", flush=True)
            server = LaunchedServer(args.launch_args.split(), cache_dir=args.cache_dir,
                                    temp_max_age_s=args.temp_max_age)
            url = server.url
            print(f"server on {url}; waiting for the gallery index", flush=True)
            print("  ", wait_for_gallery(url, 900.0).strip()[:200], flush=True)
            rss.append((0, rss_mb(server.proc.pid)))
            files.append((0, count_files(server.tmp)))
        else:
            url = args.url
        done = [0]
        lock = threading.Lock()

        def on_upload(n: int) -> None:
            if server is None:
                return
            with lock:
                old = done[0]
                done[0] += n
                if done[0] // 100 != old // 100:
                    rss.append((done[0], rss_mb(server.proc.pid)))
                    files.append((done[0], count_files(server.tmp)))
                    f = files[-1][1]
                    print(f"  {done[0]} uploads: server RSS {rss[-1][1]:.0f} MB; files: Gradio cache {f['gradio'][0]} "
                          f"({f['gradio'][1] / 2**20:.1f} MB), explorer work folder {f['app'][0]} "
                          f"({f['app'][1] / 2**20:.1f} MB)", flush=True)

        result = run_load(url, users=args.users, uploads=args.uploads, max_seconds=args.max_seconds,
                          clicks=args.clicks, text=not args.no_text, on_upload=on_upload)
        if server is not None:
            time.sleep(5.0)  # let the tabs' unload events close their sessions
            rss.append((result["uploads"], rss_mb(server.proc.pid)))
            files.append((result["uploads"], count_files(server.tmp)))
            result["server_alive"] = server.proc.poll() is None
            if result["errors"] or not result["server_alive"]:
                result["server_log_tail"] = server.log_tail()
            result["server_rss_mb"] = [[n, round(m, 1)] for n, m in rss]
            warm = [m for n, m in rss if n >= 100]
            if len(warm) >= 2:
                result["rss_growth_from_100_uploads_mb"] = round(max(warm) - warm[0], 1)
            server.close()
            result["temp_files"] = {
                "during": [{"uploads": n, **{k: {"files": v[0], "mb": round(v[1] / 2**20, 1)} for k, v in f.items()}}
                           for n, f in files],
                "after_shutdown": {k: {"files": v[0], "mb": round(v[1] / 2**20, 1)}
                                   for k, v in count_files(server.tmp).items()},
                "left_after_shutdown": sorted(str(p.relative_to(server.tmp)) for p in server.tmp.rglob("*")
                                              if p.is_file() and p.name != "server.log")[:20],
            }
        if loaders is not None:
            result["loaders"] = loaders
        result["machine"] = {"cpus": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)}
    finally:
        if server is not None:
            server.close()
            shutil.rmtree(server.tmp, ignore_errors=True)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
