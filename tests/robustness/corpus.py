"""The bad-input corpus of issue #8, built in code (nothing downloaded, nothing checked in).

Images: 1x1, 20000 x 20000 (a small PNG written row by row, never decoded), CMYK, 16-bit,
palette (with and without transparency), grey+alpha, RGBA, animated GIF, a corrupt JPEG, and
non-images with image extensions. Meshes: garbage, truncated, empty, point cloud, NaN
vertices, out-of-range indices, a header that claims billions of elements, wrong extensions,
an OBJ whose material file is missing, a GLB whose texture is an external file that is
missing, and a 5M-face binary PLY written straight from numpy.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image


def encode(im: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def one_colour_png(width: int, height: int, *, grey: int = 128) -> bytes:
    """An 8-bit greyscale PNG written row by row (20000 x 20000: ~1.7 MB file, 400 MB of pixels)."""
    row = b"\x00" + bytes([grey]) * width
    comp = zlib.compressobj(1)
    idat = b"".join([comp.compress(row) for _ in range(height)] + [comp.flush()])
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (24, 16), c) for c in [(255, 0, 0), (0, 0, 255)]]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)


def corrupt_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)), "JPEG", quality=90)
    return data[: len(data) // 2]


def palette_png(*, transparent: bool) -> bytes:
    im = Image.new("P", (12, 12), 0)
    im.putpalette([255, 0, 0, 0, 200, 0] + [0] * 762)
    im.paste(1, (6, 0, 12, 12))
    return encode(im, "PNG", **({"transparency": 0} if transparent else {}))


# name -> (bytes, expected outcome): "ok:<r,g,b at pixel (1,1)>" or "error"; "ok-or-error"
# where refusing with a message is as acceptable as decoding (a policy choice).
def image_cases() -> dict[str, tuple[bytes, str]]:
    grey16 = Image.fromarray(np.full((8, 8), 32896, np.uint16))  # 32896 / 65535 * 255 = 128
    return {
        "1x1.png": (encode(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"), "ok:10,20,30"),
        "cmyk.jpg": (encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95), "ok:red"),
        "grey16.png": (encode(grey16, "PNG"), "ok:128,128,128"),
        "palette.png": (palette_png(transparent=False), "ok:255,0,0"),
        "palette_alpha.png": (palette_png(transparent=True), "ok:255,255,255"),
        "grey_alpha.png": (encode(Image.new("LA", (8, 8), (0, 0)), "PNG"), "ok:255,255,255"),
        "rgba.webp": (encode(Image.new("RGBA", (8, 8), (0, 0, 255, 0)), "WEBP", lossless=True), "ok:255,255,255"),
        "animated.gif": (animated_gif(), "ok-or-error:255,0,0"),
        "corrupt.jpg": (corrupt_jpeg(), "error"),
        "text.png": (b"I am a text file with an image extension\n", "error"),
        "mesh.jpg": (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n0\n1\n2\n", "error"),
        "empty.png": (b"", "error"),
        "noise.webp": (np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes(), "error"),
    }


# ------------------------------------------------------------------------------- meshes


def ply_header(fmt: str, n_vertices: int, n_faces: int) -> bytes:
    return (f"ply\nformat {fmt} 1.0\nelement vertex {n_vertices}\nproperty float x\nproperty float y\n"
            f"property float z\nelement face {n_faces}\nproperty list uchar int vertex_indices\nend_header\n"
            ).encode()


def valid_ply() -> bytes:
    return trimesh.creation.icosphere(subdivisions=2).export(file_type="ply")


_TRI = b"v 0 0 0\nv 1 0 0\nv 0 1 0\n"


def mesh_cases() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, a fragment the message must contain, or "ok" for files that load)."""
    ply = valid_ply()
    glb_missing_texture = _glb_with_external_image("missing_texture.png")
    return {
        "garbage.ply": (np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not a PLY file"),
        "truncated.ply": (ply[: len(ply) // 2], "truncated"),
        "empty.obj": (b"", "empty"),
        "points.ply": (ply_header("ascii", 3, 0) + b"0 0 0\n1 0 0\n0 1 0\n", "point cloud"),
        "nan.obj": (b"v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "nan or infinite"),
        "index.ply": (ply_header("ascii", 3, 1) + b"0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "out of range"),
        "billions.ply": (ply_header("binary_little_endian", 4_000_000_000, 4_000_000_000) + b"\0" * 64,
                         "promises 4,000,000,000"),
        "billions.stl": (b"\0" * 80 + struct.pack("<I", 2**31) + b"\0" * 100, "2,147,483,648 triangles"),
        "ply_named.obj": (ply, "wrong extension"),
        "image_named.stl": (encode(Image.new("RGB", (4, 4)), "PNG"), ""),
        "model.txt": (_TRI + b"f 1 2 3\n", "not a supported mesh"),
        "model.fbx": (b"Kaydara FBX Binary  \x00", "not a supported mesh"),
        "missing_mtl.obj": (b"mtllib missing.mtl\nusemtl wood\n" + _TRI + b"f 1 2 3\n", "ok"),
        "missing_texture.glb": (glb_missing_texture, "ok"),  # geometry loads, untextured
    }


def _glb_with_external_image(uri: str) -> bytes:
    """A one-triangle GLB whose base-colour texture is an external file ``uri``."""
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    uv = np.array([[0, 0], [1, 0], [0, 1]], np.float32).tobytes()
    idx = np.array([0, 1, 2], np.uint32).tobytes()
    binary = pos + uv + idx
    header = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "indices": 2, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
        "textures": [{"source": 0}], "images": [{"uri": uri}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC2"},
            {"bufferView": 2, "componentType": 5125, "count": 3, "type": "SCALAR"},
        ],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36},
                        {"buffer": 0, "byteOffset": 36, "byteLength": 24},
                        {"buffer": 0, "byteOffset": 60, "byteLength": 12}],
        "buffers": [{"byteLength": len(binary)}],
    }
    return glb(header, binary)


def glb(header: dict, binary: bytes) -> bytes:
    js = json.dumps(header).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(binary), 0x004E4942) + binary
    return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body


def write_grid_ply(path: Path, n: int) -> int:
    """A wavy n x n vertex grid as binary PLY (2 (n-1)^2 faces), written straight from numpy.
    n = 1582 gives 4,999,122 faces in a 95 MB file in ~2 s. Returns the face count. The load
    test writes the same file for its figures, so both use one writer."""
    from benchmarks.load_test import grid_ply

    return grid_ply(path, n)
