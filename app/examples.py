"""One-click examples, made by the project itself: procedural shapes and a rendered view of each.

``write_examples(dir)`` writes, deterministically (same bytes every run):

* ``<name>.ply`` / ``<name>.glb``  the mesh
* ``<name>.png``                   a 320 x 320 view rendered by ``tango3d_core.data.render``
* ``index.json``                   name, files, up axis and caption of each example

Four shapes come from ``tango3d_core.data.shapes`` (vertex-coloured PLY, Z-up). The fifth, a
bottle, is built here with a UV map and a procedural label texture baked into a PNG inside a
GLB; like every glTF file it is stored Y-up, so it also exercises the up-axis setting.

Run ``python -m app.examples [--out DIR]`` to (re)write them; the app writes them on first
start when ``assets/examples/index.json`` is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

__all__ = ["EXAMPLES_DIR", "Example", "ensure_examples", "load_examples", "textured_bottle", "write_examples"]

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "examples"
VIEW_SIZE = 320
# (name, category, seed): varied silhouettes with parts a click can tell apart.
PROCEDURAL = (("chair", "chair", 1), ("mug", "mug", 2), ("airplane", "airplane", 0), ("quadruped", "quadruped", 1))
INDEX_NAME = "index.json"


@dataclass(frozen=True)
class Example:
    """One example: a mesh file, a rendered view of it, and how to load it."""

    name: str
    mesh: str        # file name inside the examples folder
    image: str       # file name inside the examples folder
    up_axis: str     # "z" or "y": up axis of the mesh file
    caption: str

    def mesh_path(self, root: Path) -> Path:
        return Path(root) / self.mesh

    def image_path(self, root: Path) -> Path:
        return Path(root) / self.image


def _label_texture(width: int = 512, height: int = 256) -> np.ndarray:
    """uint8 [H, W, 3]: glass green body, a cream label with red stripes and a checker block,
    a gold neck band. Row 0 is the top of the bottle (v = 1)."""
    v = 1.0 - (np.arange(height) + 0.5) / height          # 1 at the top row
    u = (np.arange(width) + 0.5) / width
    uu, vv = np.meshgrid(u, v)
    img = np.empty((height, width, 3), np.float64)
    img[:] = (40, 120, 70)                                  # glass green
    label = (vv > 0.18) & (vv < 0.52)
    img[label] = (235, 222, 190)                            # cream label
    stripes = label & ((vv < 0.22) | (vv > 0.48))
    img[stripes] = (190, 30, 40)                            # red rims
    block = label & (uu > 0.62) & (uu < 0.88) & (vv > 0.26) & (vv < 0.44)
    checker = ((np.floor(uu * 48) + np.floor(vv * 24)) % 2 == 0)
    img[block & checker] = (30, 40, 120)
    img[block & ~checker] = (240, 240, 240)
    band = (vv > 0.80) & (vv < 0.86)
    img[band] = (215, 175, 50)                              # gold neck band
    cap = vv >= 0.97
    img[cap] = (150, 20, 30)
    return img.astype(np.uint8)


def textured_bottle(*, sections: int = 96, rings: int = 72) -> trimesh.Trimesh:
    """A Z-up bottle of revolution, centred, bounding-box diagonal 1, with a UV map
    (u around, v up; the seam's vertices are duplicated so u runs 0..1 without wrapping) and a
    baked label texture (PBR base colour)."""
    # Profile: radius as a function of height (arbitrary units, normalised below).
    z = np.linspace(0.0, 1.0, rings)
    body, neck = 0.30, 0.11
    t = np.clip((z - 0.55) / 0.22, 0.0, 1.0)
    r = body + (neck - body) * (3 * t**2 - 2 * t**3)        # smooth shoulder
    r = np.where(z > 0.93, r + 0.02, r)                     # lip
    r[0] = body * 0.96
    theta = np.linspace(0.0, 2 * np.pi, sections + 1)       # last column duplicates the first
    tt, zz = np.meshgrid(theta, z)
    rr = np.broadcast_to(r[:, None], tt.shape)
    verts = np.stack([rr * np.cos(tt), rr * np.sin(tt), zz], axis=-1).reshape(-1, 3)
    uv = np.stack([tt / (2 * np.pi), zz], axis=-1).reshape(-1, 2)
    cols = sections + 1
    faces = []
    for i in range(rings - 1):
        a = i * cols + np.arange(sections)
        b = a + 1
        c = a + cols
        d = c + 1
        faces.append(np.stack([a, b, d], 1))
        faces.append(np.stack([a, d, c], 1))
    faces = np.concatenate(faces)
    # Bottom and top caps: fans around a centre vertex; their uv points at the glass / cap colours.
    extra_v, extra_uv, extra_f = [], [], []
    for ring, zc, v_tex, flip in ((0, 0.0, 0.05, True), (rings - 1, 1.0, 0.99, False)):
        centre = len(verts) + len(extra_v)
        extra_v.append([0.0, 0.0, zc])
        extra_uv.append([0.5, v_tex])
        ring_idx = ring * cols + np.arange(sections)
        nxt = ring_idx + 1
        tri = np.stack([np.full(sections, centre), nxt, ring_idx], 1) if flip else np.stack(
            [np.full(sections, centre), ring_idx, nxt], 1)
        extra_f.append(tri)
    verts = np.concatenate([verts, np.array(extra_v)])
    uv = np.concatenate([uv, np.array(extra_uv)])
    faces = np.concatenate([faces] + extra_f)
    lo, hi = verts.min(0), verts.max(0)
    verts = (verts - (lo + hi) / 2) / np.linalg.norm(hi - lo)
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(_label_texture()), metallicFactor=0.0, roughnessFactor=0.8)
    visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return trimesh.Trimesh(vertices=verts, faces=faces, visual=visual, process=False)


# Z-up -> Y-up: the inverse of meshio's Y-up -> Z-up rotation (+90 degrees about +X).
_Z_UP_TO_Y_UP = np.array([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, -1, 0, 0], [0, 0, 0, 1]])


def _render(mesh: trimesh.Trimesh, *, azimuth: float, elevation: float) -> Image.Image:
    from tango3d_core.data import render

    cam = render.Camera.orbit(azimuth_deg=azimuth, elevation_deg=elevation, distance=1.75,
                              width=VIEW_SIZE, height=VIEW_SIZE)
    return Image.fromarray(render.render_view(mesh, cam).rgb)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _png_bytes(image: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def write_examples(out_dir: str | Path = EXAMPLES_DIR) -> list[Example]:
    """Write every example and ``index.json`` into ``out_dir``; returns the examples."""
    from tango3d_core.data import shapes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    examples: list[Example] = []
    for name, category, seed in PROCEDURAL:
        s = shapes.generate(category, seed)
        _write_atomic(out / f"{name}.ply", s.mesh.export(file_type="ply", encoding="binary"))
        _write_atomic(out / f"{name}.png", _png_bytes(_render(s.mesh, azimuth=35.0, elevation=20.0)))
        examples.append(Example(name, f"{name}.ply", f"{name}.png", "z", s.caption))
    bottle = textured_bottle()
    _write_atomic(out / "bottle.png", _png_bytes(_render(bottle, azimuth=-20.0, elevation=15.0)))
    y_up = bottle.copy()
    y_up.apply_transform(_Z_UP_TO_Y_UP)
    _write_atomic(out / "bottle.glb", y_up.export(file_type="glb"))
    examples.append(Example("bottle", "bottle.glb", "bottle.png", "y",
                            "a green glass bottle with a cream label (textured GLB, Y-up)"))
    index = {"format": "tango3d-examples", "version": 1, "examples": [asdict(e) for e in examples]}
    _write_atomic(out / INDEX_NAME, (json.dumps(index, indent=2) + "\n").encode())
    return examples


def load_examples(root: str | Path = EXAMPLES_DIR) -> list[Example]:
    """Examples listed in ``root/index.json`` whose files exist."""
    root = Path(root)
    data = json.loads((root / INDEX_NAME).read_text())
    out = []
    for e in data.get("examples", []):
        ex = Example(**{k: e[k] for k in ("name", "mesh", "image", "up_axis", "caption")})
        if ex.mesh_path(root).is_file() and ex.image_path(root).is_file():
            out.append(ex)
    return out


def ensure_examples(root: str | Path = EXAMPLES_DIR, *, fallback: str | Path | None = None) -> tuple[Path, list[Example]]:
    """(folder, examples): reads ``root``; writes the examples there first if they are missing,
    or into ``fallback`` when ``root`` is not writable."""
    for folder in [Path(root)] + ([Path(fallback)] if fallback is not None else []):
        try:
            if (folder / INDEX_NAME).is_file():
                found = load_examples(folder)
                if found:
                    return folder, found
            return folder, write_examples(folder)
        except OSError:
            continue
    raise OSError(f"cannot read or write the examples in {root}" + (f" or {fallback}" if fallback else ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write the explorer's bundled examples (deterministic).")
    p.add_argument("--out", default=str(EXAMPLES_DIR), help=f"output folder (default {EXAMPLES_DIR})")
    args = p.parse_args(argv)
    for e in write_examples(args.out):
        print(f"{args.out}/{e.mesh}  {args.out}/{e.image}  up={e.up_axis}  {e.caption}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
