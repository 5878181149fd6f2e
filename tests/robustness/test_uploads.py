"""Bad uploads through the explorer's own upload handlers (``app.explorer.Explorer``), the way
the page calls them: every case gets a clear message (or, for odd but valid files, a correct
image), in bounded time, and the session keeps working afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.explorer import Limits, UserError

from .conftest import EXAMPLES, ROOT
from .corpus import image_cases, mesh_cases, one_colour_png, write_grid_ply

CASE_SECONDS = 10.0  # per upload, on a shared CI machine; a normal upload here takes < 0.5 s


def assert_clear_message(message: str, *, work_dir, shown: str | None = None) -> None:
    """What a user sees: one plain sentence, no traceback, no server path, no stored name."""
    assert message and "Traceback" not in message and "File \"" not in message, message
    assert str(work_dir) not in message and "/tmp/" not in message, message
    assert not re.search(r"[0-9a-f]{64}", message), message  # the content-hash name never shows
    assert len(message) < 600, message
    if shown is not None:
        assert shown in message, message


def _expect_colour(spec: str) -> tuple[int, int, int] | None:
    colour = spec.split(":", 1)[1] if ":" in spec else ""
    if colour == "red":
        return None
    return tuple(int(c) for c in colour.split(","))  # type: ignore[return-value]


@pytest.mark.parametrize("name", sorted(image_cases()))
def test_image_uploads(make_explorer, tmp_path, name):
    data, expect = image_cases()[name]
    ex = make_explorer()
    s = ex.open_session("a")
    path = tmp_path / name
    path.write_bytes(data)
    t0 = time.perf_counter()
    try:
        panels = ex.load_image(s, path)
    except UserError as e:
        assert expect == "error" or expect.startswith("ok-or-error"), f"{name} was refused: {e}"
        assert_clear_message(str(e), work_dir=ex.work_dir)
        assert s.image is None  # a refused upload changes nothing
    else:
        assert expect.startswith("ok"), f"{name} should have been refused"
        img = panels[0]
        assert img.mode == "RGB" and img is s.image
        px = img.getpixel((min(1, img.width - 1), min(1, img.height - 1)))
        want = _expect_colour(expect)
        if want is None:  # CMYK (0, 255, 255, 0) is red
            assert px[0] > 230 and px[1] < 25 and px[2] < 25, px
        else:
            assert max(abs(a - b) for a, b in zip(px, want)) <= 2, (name, px, want)
    assert time.perf_counter() - t0 < CASE_SECONDS


def test_image_bomb_is_refused_from_its_header(make_explorer, tmp_path):
    """20000 x 20000 pixels in a ~1.7 MB file: refused before decoding (a decode would take
    1.2 GB as RGB), fast."""
    ex = make_explorer()
    path = tmp_path / "bomb.png"
    path.write_bytes(one_colour_png(20_000, 20_000))
    t0 = time.perf_counter()
    with pytest.raises(UserError) as err:
        ex.load_image(ex.open_session("a"), path)
    assert time.perf_counter() - t0 < 2.0
    assert "megapixels" in str(err.value) and "limit" in str(err.value)
    assert_clear_message(str(err.value), work_dir=ex.work_dir)


@pytest.mark.parametrize("name", sorted(mesh_cases()))
def test_mesh_uploads(make_explorer, tmp_path, name):
    data, fragment = mesh_cases()[name]
    ex = make_explorer()
    s = ex.open_session("a")
    upload = tmp_path / "upload.bin"  # what the server stores: the user's name is only shown
    upload.write_bytes(data)
    t0 = time.perf_counter()
    if fragment == "ok":
        status = ex.load_mesh_file(s, upload, display_name=name)
        assert name in status and s.mesh is not None
    else:
        with pytest.raises(UserError) as err:
            ex.load_mesh_file(s, upload, display_name=name)
        message = str(err.value)
        assert fragment.lower() in message.lower(), message
        assert_clear_message(message, work_dir=ex.work_dir, shown=name)
        assert s.mesh is None
    assert time.perf_counter() - t0 < CASE_SECONDS


def test_bad_second_shape_and_mask_uploads(make_explorer, tmp_path):
    ex = make_explorer()
    s = ex.open_session("a")
    ex.load_example(s, 0)
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 5000000000\nend_header\n")
    with pytest.raises(UserError) as err:
        ex.load_second_file(s, tmp_path / "bad.ply", display_name="second.ply")
    assert_clear_message(str(err.value), work_dir=ex.work_dir, shown="second.ply")
    assert s.second_mesh is None
    (tmp_path / "mask.png").write_bytes(one_colour_png(20_000, 20_000))
    with pytest.raises(UserError) as err:
        ex.mask_from_file(s, tmp_path / "mask.png")
    assert_clear_message(str(err.value), work_dir=ex.work_dir)
    (tmp_path / "mask2.png").write_bytes(b"GIF89a not really")
    with pytest.raises(UserError):
        ex.mask_from_file(s, tmp_path / "mask2.png")
    assert s.mask is None


def test_the_session_keeps_working_after_every_bad_upload(make_explorer, tmp_path):
    """All bad inputs in a row on one session, then a normal image + mesh + clicks."""
    ex = make_explorer()
    s = ex.open_session("a")
    refused = 0
    for name, (data, expect) in image_cases().items():
        (tmp_path / name).write_bytes(data)
        try:
            ex.load_image(s, tmp_path / name)
        except UserError:
            refused += 1
    for name, (data, fragment) in mesh_cases().items():
        (tmp_path / f"m_{name}").write_bytes(data)
        try:
            ex.load_mesh_file(s, tmp_path / f"m_{name}", display_name=name)
        except UserError:
            refused += 1
    assert refused >= 15
    ex.load_image(s, EXAMPLES / "chair.png")
    ex.load_mesh_file(s, EXAMPLES / "chair.ply")
    panels = ex.click_pixel(s, (160, 150))
    assert panels[0].size == (320, 320) and s.best_points and "Pixel (160, 150)" in s.status
    p = s.shapes[ex.primary.name].features.points[3].numpy().astype(np.float64)
    ex.click_point(s, 0, p)
    assert s.last_query[0] == "point"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak memory from Linux /proc")
def test_five_million_face_upload_is_decimated_in_bounded_time_and_memory(tmp_path):
    """A 5M-face binary PLY (95 MB, under the 100 MB upload cap) through the explorer with the
    default face cap, in a fresh process so its peak memory can be read: decimated to the cap
    with a message saying so, in bounded CPU time and under 4 GB. CPU time, not wall time, is
    asserted: a shared CI machine stretches wall time (the explorer's 120 s budget is lifted
    here for the same reason; docs/robustness.md has both figures)."""
    path = tmp_path / "grid5m.ply"
    faces = write_grid_ply(path, 1582)
    assert faces == 4_999_122 and path.stat().st_size < Limits().max_mesh_bytes
    script = f"""
import resource, time, torch
from app.explorer import Explorer, Limits
from tango3d_core.models import build_model, save_checkpoint
from tango3d_core.providers import create_provider
from robustness.conftest import tiny_config
torch.manual_seed(0)
ck = save_checkpoint(build_model(tiny_config()), {str(tmp_path / 'ckpt')!r})
ex = Explorer(create_provider("tango3d", checkpoint=str(ck), device="cpu"), work_dir={str(tmp_path / 'w')!r},
              limits=Limits(num_points=1024, timeout_s=1800.0), viewer=False)
t0 = time.perf_counter()
status = ex.load_mesh_file(ex.open_session("a"), {str(path)!r}, display_name="grid5m.ply")
print("STATUS", status)
print("SECONDS", time.perf_counter() - t0)
ru = resource.getrusage(resource.RUSAGE_SELF)
print("CPU", ru.ru_utime + ru.ru_stime)
# VmHWM, not ru_maxrss: the latter also counts the parent's memory that fork copied before exec
print("PEAK_MB", next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024)
ex.shutdown()
"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, env=env,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.split(" ", 1)[0].isupper())
    status, seconds, peak = lines["STATUS"], float(lines["SECONDS"]), float(lines["PEAK_MB"])
    cpu = float(lines["CPU"])
    print(f"\n5M-face upload: {seconds:.1f} s wall, {cpu:.1f} s CPU (whole process), peak RSS {peak:.0f} MB; {status}")
    assert f"{Limits().max_faces:,} faces, decimated from {faces:,}" in status
    assert cpu < 90.0
    assert peak < 4096
