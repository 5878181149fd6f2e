"""Property-based fuzzing of the two loaders of untrusted files: ``load_mesh`` and ``load_image``.

The property, for any bytes at all: the loader either returns a valid result (a clean mesh /
an RGB image within the caps) or raises its own error type (``MeshLoadError`` /
``ImageLoadError``) with a message. Nothing else escapes, and no input takes long.

Three kinds of input per loader: random bytes; valid files mutated (bytes flipped, cut,
spliced, a 4-byte field overwritten with a huge count); and random *headers* (element counts,
sizes, types) in front of random bodies, the fields a hostile file would lie in.

CI runs a fixed, derandomised set of examples (``TANGO3D_FUZZ_EXAMPLES`` per test, default 100)
so the suite stays fast and reproducible; for a longer local hunt with fresh examples:
``TANGO3D_FUZZ_EXAMPLES=2000 TANGO3D_FUZZ_RANDOM=1 python -m pytest tests/data/test_fuzz_loaders.py``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import tempfile
import time
import zlib
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import trimesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tango3d_core.data.imageio import ImageLoadError, load_image
from tango3d_core.data.meshio import MeshLoadError, load_mesh

EXAMPLES = int(os.environ.get("TANGO3D_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # timing is asserted per call below, with a bound a loaded CI machine meets
    derandomize=not os.environ.get("TANGO3D_FUZZ_RANDOM"),
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# PIL warns (and does not refuse) above 89 MP; our own caps refuse such images before decoding.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

MAX_SECONDS = 20.0  # per call: far above a normal load (< 0.5 s), far below a hang
MESH_EXTS = ("ply", "obj", "stl", "off", "glb", "gltf")
MESH_MAX_FACES = 64  # below the valid corpus' 80 faces: decimation runs on fuzzed meshes too
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
IMAGE_MAX_PIXELS = 1_000_000


@pytest.fixture(scope="module")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="tango3d-fuzz-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------------------------------
# the properties
# ------------------------------------------------------------------------------------


def check_mesh(folder: Path, ext: str, data: bytes) -> None:
    path = folder / f"fuzz.{ext}"
    path.write_bytes(data)
    t0 = time.perf_counter()
    try:
        mesh = load_mesh(path, max_faces=MESH_MAX_FACES, timeout_s=MAX_SECONDS)
    except MeshLoadError as e:
        assert str(e).startswith("Cannot load mesh 'fuzz."), str(e)
        assert str(folder) not in str(e)
    else:
        assert type(mesh) is trimesh.Trimesh
        v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
        assert v.dtype == np.float64 and v.ndim == 2 and v.shape[1] == 3 and np.isfinite(v).all()
        assert f.dtype == np.int64 and f.ndim == 2 and f.shape[1] == 3 and 0 < len(f) <= MESH_MAX_FACES
        assert f.min() >= 0 and f.max() < len(v)
    assert time.perf_counter() - t0 < MAX_SECONDS


def check_image(data: bytes) -> None:
    t0 = time.perf_counter()
    try:
        im = load_image(data, max_pixels=IMAGE_MAX_PIXELS, name="fuzz.img")
    except ImageLoadError as e:
        assert str(e).startswith("Cannot load image 'fuzz.img': "), str(e)
    else:
        assert isinstance(im, Image.Image) and im.mode == "RGB"
        assert im.width >= 1 and im.height >= 1 and im.width * im.height <= IMAGE_MAX_PIXELS
        assert np.asarray(im).shape == (im.height, im.width, 3)
        assert im.info["format"] in IMAGE_FORMATS
    assert time.perf_counter() - t0 < MAX_SECONDS


# ------------------------------------------------------------------------------------
# corpora of valid files and mutations
# ------------------------------------------------------------------------------------


@cache
def valid_mesh(ext: str) -> bytes:
    mesh = trimesh.creation.icosphere(subdivisions=1)  # 80 faces
    mesh.visual.vertex_colors = np.tile([200, 30, 30, 255], (len(mesh.vertices), 1)).astype(np.uint8)
    if ext == "gltf":  # one self-contained file: the buffer embedded as a data URI
        return trimesh.exchange.gltf.export_gltf(trimesh.Scene(mesh), embed_buffers=True)["model.gltf"]
    data = mesh.export(file_type=ext)
    return data.encode() if isinstance(data, str) else data


@cache
def valid_image(fmt: str) -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (12, 16, 4), dtype=np.uint8)
    im = Image.fromarray(arr, "RGBA")
    if fmt in ("JPEG", "BMP"):
        im = im.convert("RGB")
    if fmt == "GIF":
        frames = [im.convert("RGB").quantize(16), Image.new("RGB", (16, 12), (0, 0, 255)).quantize(4)]
        buf = io.BytesIO()
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=40)
        return buf.getvalue()
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """``base`` with 1-4 mutations: flip/set bytes, truncate, splice random bytes, delete a
    span, or overwrite a 4-byte field with a huge or boundary count."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["set", "truncate", "splice", "delete", "count"]))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[at: at + draw(st.integers(1, 64))]
        else:
            value = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF]))
            fmt = draw(st.sampled_from(["<I", ">I"]))
            data[at: at + 4] = struct.pack(fmt, value)
    return bytes(data)


# ------------------------------------------------------------------------------------
# random headers
# ------------------------------------------------------------------------------------

_COUNTS = st.one_of(st.integers(0, 8), st.sampled_from([2**31 - 1, 2**31, 2**32 - 1, 4_000_000_000, 10**12]),
                    st.integers(0, 2**40))
_NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**63), 2**63))
_PLY_TYPES = ["char", "uchar", "short", "ushort", "int", "uint", "float", "double", "int8", "float64", "bogus"]


@st.composite
def ply_files(draw) -> bytes:
    fmt = draw(st.sampled_from(["ascii", "binary_little_endian", "binary_big_endian", "binary_middle_endian"]))
    lines = ["ply", f"format {fmt} 1.0"]
    for element in draw(st.lists(st.sampled_from(["vertex", "face", "edge", "material"]), max_size=3)):
        lines.append(f"element {element} {draw(_COUNTS)}")
        if element == "face":
            lines.append(f"property list {draw(st.sampled_from(_PLY_TYPES))} "
                         f"{draw(st.sampled_from(_PLY_TYPES))} vertex_indices")
        else:
            for axis in draw(st.lists(st.sampled_from(["x", "y", "z", "red", "s"]), max_size=4)):
                lines.append(f"property {draw(st.sampled_from(_PLY_TYPES))} {axis}")
    header = ("\n".join(lines) + "\nend_header\n").encode()
    if fmt == "ascii":
        rows = draw(st.lists(st.lists(_NUMBERS, max_size=6), max_size=12))
        body = "\n".join(" ".join(str(x) for x in r) for r in rows).encode()
    else:
        body = draw(st.binary(max_size=512))
    return header + body


@st.composite
def off_files(draw) -> bytes:
    counts = f"{draw(_COUNTS)} {draw(_COUNTS)} {draw(_COUNTS)}"
    rows = draw(st.lists(st.lists(_NUMBERS, max_size=5), max_size=12))
    return ("OFF\n" + counts + "\n" + "\n".join(" ".join(str(x) for x in r) for r in rows)).encode()


@st.composite
def obj_files(draw) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 16))):
        kind = draw(st.sampled_from(["v", "f", "vt", "vn", "mtllib", "usemtl", "o", "l", "#"]))
        if kind in ("mtllib", "usemtl"):
            lines.append(f"{kind} {draw(st.sampled_from(['../../etc/passwd', '/etc/passwd', 'missing.mtl', 'x']))}")
        elif kind == "f":
            idx = draw(st.lists(st.one_of(st.integers(-10, 10), st.integers(-(2**40), 2**40)), min_size=1,
                                max_size=5))
            lines.append("f " + " ".join(str(i) for i in idx))
        else:
            lines.append(kind + " " + " ".join(str(x) for x in draw(st.lists(_NUMBERS, max_size=4))))
    return "\n".join(lines).encode()


@st.composite
def stl_files(draw) -> bytes:
    if draw(st.booleans()):
        count = draw(st.one_of(st.integers(0, 4), st.sampled_from([2**31, 2**32 - 1])))
        body = draw(st.binary(max_size=50 * 4))
        return b"\0" * 80 + struct.pack("<I", count) + body
    facets = []
    for _ in range(draw(st.integers(0, 4))):
        vs = "\n".join("vertex " + " ".join(str(x) for x in draw(st.lists(_NUMBERS, min_size=0, max_size=4)))
                       for _ in range(draw(st.integers(0, 4))))
        facets.append(f"facet normal 0 0 1\nouter loop\n{vs}\nendloop\nendfacet")
    return ("solid fuzz\n" + "\n".join(facets) + "\nendsolid fuzz\n").encode()


@st.composite
def glb_files(draw) -> bytes:
    count = draw(_COUNTS)
    header = {
        "asset": {"version": draw(st.sampled_from(["2.0", "1.0", "x"]))},
        "scene": 0, "scenes": [{"nodes": draw(st.lists(st.integers(-1, 3), max_size=3))}],
        "nodes": [{"mesh": draw(st.integers(-1, 2))} for _ in range(draw(st.integers(0, 3)))],
        "meshes": [{"primitives": [{"attributes": {"POSITION": draw(st.integers(-1, 2))},
                                    "indices": draw(st.integers(-1, 2)),
                                    "mode": draw(st.sampled_from([0, 1, 4, 5, 6, 99]))}]}],
        "accessors": [{"bufferView": draw(st.integers(-1, 2)), "byteOffset": draw(_COUNTS), "count": count,
                       "componentType": draw(st.sampled_from([5120, 5121, 5123, 5125, 5126, 1])),
                       "type": draw(st.sampled_from(["SCALAR", "VEC3", "MAT4", "NOPE"]))}
                      for _ in range(draw(st.integers(0, 3)))],
        "bufferViews": [{"buffer": draw(st.integers(-1, 1)), "byteOffset": draw(_COUNTS),
                         "byteLength": draw(_COUNTS), "byteStride": draw(st.sampled_from([None, 0, 4, 12, 255]))}
                        for _ in range(draw(st.integers(0, 3)))],
        "buffers": [{"byteLength": draw(_COUNTS)}],
    }
    js = json.dumps(header).encode()
    js += b" " * (-len(js) % 4)
    binary = draw(st.binary(max_size=256))
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(binary), 0x004E4942) + binary
    total = draw(st.one_of(st.just(12 + len(body)), _COUNTS.map(lambda n: n % 2**32)))
    return b"glTF" + struct.pack("<II", 2, total) + body


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


_DIMS = st.one_of(st.integers(0, 64), st.integers(0, 5000), st.sampled_from([65535, 2**31 - 1, 2**32 - 1]))


@st.composite
def png_files(draw) -> bytes:
    w, h = draw(_DIMS), draw(_DIMS)
    ihdr = struct.pack(">IIBBBBB", w % 2**32, h % 2**32, draw(st.sampled_from([1, 2, 4, 8, 16, 3])),
                       draw(st.sampled_from([0, 2, 3, 4, 6, 5])), draw(st.integers(0, 1)), 0,
                       draw(st.integers(0, 1)))
    raw = draw(st.binary(max_size=2048))
    idat = zlib.compress(raw) if draw(st.booleans()) else raw
    chunks = [_png_chunk(b"IHDR", ihdr)]
    if draw(st.booleans()):
        chunks.append(_png_chunk(b"PLTE", draw(st.binary(max_size=48))))
    if draw(st.booleans()):
        chunks.append(_png_chunk(b"tRNS", draw(st.binary(max_size=16))))
    if draw(st.booleans()):
        chunks.append(_png_chunk(b"acTL", struct.pack(">II", draw(_COUNTS) % 2**32, 0)))
    chunks += [_png_chunk(b"IDAT", idat), _png_chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


@st.composite
def gif_files(draw) -> bytes:
    w, h = draw(_DIMS) % 65536, draw(_DIMS) % 65536
    flags = draw(st.integers(0, 255))
    head = b"GIF89a" + struct.pack("<HHBBB", w, h, flags, 0, 0)
    table = draw(st.binary(max_size=768))
    desc = b"\x2c" + struct.pack("<HHHHB", 0, 0, draw(_DIMS) % 65536, draw(_DIMS) % 65536, draw(st.integers(0, 255)))
    return head + table + desc + draw(st.binary(max_size=512)) + b"\x3b"


@st.composite
def jpeg_files(draw) -> bytes:
    w, h = draw(_DIMS) % 65536, draw(_DIMS) % 65536
    n = draw(st.integers(0, 5))
    sof = struct.pack(">BHHB", 8, h, w, n) + b"".join(struct.pack(">BBB", i + 1, 0x11, 0) for i in range(n))
    marker = draw(st.sampled_from([b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"]))
    return (b"\xff\xd8" + marker + struct.pack(">H", len(sof) + 2) + sof
            + draw(st.binary(max_size=1024)) + b"\xff\xd9")


@st.composite
def bmp_files(draw) -> bytes:
    w = draw(st.one_of(_DIMS, st.integers(-(2**31), 0)))
    h = draw(st.one_of(_DIMS, st.integers(-(2**31), 0)))
    bpp = draw(st.sampled_from([1, 4, 8, 16, 24, 32, 0, 7]))
    body = draw(st.binary(max_size=1024))
    info = struct.pack("<IiiHHIIiiII", 40, max(min(w, 2**31 - 1), -(2**31)), max(min(h, 2**31 - 1), -(2**31)), 1,
                       bpp, draw(st.integers(0, 6)), len(body), 0, 0, draw(st.integers(0, 300)), 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + len(body), 0, 0, 14 + len(info)) + info + body


MESH_HEADERS = {"ply": ply_files(), "off": off_files(), "obj": obj_files(), "stl": stl_files(), "glb": glb_files()}
IMAGE_HEADERS = st.one_of(png_files(), gif_files(), jpeg_files(), bmp_files())


# ------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------


@FUZZ
@given(ext=st.sampled_from(MESH_EXTS), data=st.binary(max_size=4096))
def test_load_mesh_on_random_bytes(workdir, ext, data):
    check_mesh(workdir, ext, data)


@FUZZ
@given(data=st.data())
def test_load_mesh_on_mutated_valid_files(workdir, data):
    ext = data.draw(st.sampled_from(MESH_EXTS), label="ext")
    check_mesh(workdir, ext, data.draw(mutated(valid_mesh(ext)), label="bytes"))


@FUZZ
@given(data=st.data())
def test_load_mesh_on_random_headers(workdir, data):
    ext = data.draw(st.sampled_from(sorted(MESH_HEADERS)), label="ext")
    check_mesh(workdir, ext, data.draw(MESH_HEADERS[ext], label="bytes"))


def test_the_valid_corpus_loads(workdir):
    """The mutation bases are valid, so a mutation that changes nothing must load."""
    for ext in MESH_EXTS:
        path = workdir / f"valid.{ext}"
        path.write_bytes(valid_mesh(ext))
        assert len(load_mesh(path).faces) == 80
    for fmt in IMAGE_FORMATS:
        assert load_image(valid_image(fmt)).size == (16, 12)


@FUZZ
@given(data=st.binary(max_size=4096))
def test_load_image_on_random_bytes(data):
    check_image(data)


@FUZZ
@given(data=st.data())
def test_load_image_on_mutated_valid_files(data):
    fmt = data.draw(st.sampled_from(IMAGE_FORMATS), label="format")
    check_image(data.draw(mutated(valid_image(fmt)), label="bytes"))


@FUZZ
@given(data=IMAGE_HEADERS)
def test_load_image_on_random_headers(data):
    check_image(data)
