"""Render throughput: our cached Open3D/Embree renderer against trimesh's own ray query.

Prints views/s at 128x128 and 256x256 for
  - ours: ``render.render_view`` (BVH cached per mesh; full View: rgb, xyz, depth,
    normals, face ids, barycentrics, parts),
  - ours without the cache: a new ``Renderer`` (BVH build) for every view,
  - baseline: ``trimesh.ray.ray_triangle.RayMeshIntersector.intersects_first`` (the
    default triangle engine, hit map only). It needs ~3 ms per ray on a 20k-face
    mesh, so it runs on a uniform sub-grid of each view's pixels and its views/s is
    extrapolated linearly from that per-ray cost; its face ids are checked against
    ours on the same pixels.

Usage: ``python benchmarks/render_throughput.py [--views 24] [--baseline-rays 400]``.
Runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import trimesh

from tango3d_core.data import render


def benchmark_mesh() -> tuple[trimesh.Trimesh, str]:
    """A procedural chair if the shapes module provides one, else a bumpy ~20k-face blob."""
    try:
        from tango3d_core.data import shapes

        if "chair" in shapes.CATEGORIES:
            shape = shapes.generate("chair", 0)
            return shape.mesh, f'shapes.generate("chair", 0), {len(shape.mesh.faces)} faces'
    except Exception:  # noqa: BLE001 - the shapes module may be mid-development
        pass
    mesh = trimesh.creation.icosphere(subdivisions=5)  # 20480 faces
    v = mesh.vertices
    bump = 1.0 + 0.15 * np.sin(5 * v[:, 0]) * np.cos(4 * v[:, 1]) + 0.1 * np.sin(7 * v[:, 2])
    mesh = trimesh.Trimesh(v * bump[:, None] * [1.0, 0.7, 1.3], mesh.faces)
    mesh.apply_translation(-mesh.bounds.mean(0))
    mesh.apply_scale(1.0 / np.linalg.norm(mesh.extents))
    rng = np.random.default_rng(0)
    mesh.visual.vertex_colors = rng.integers(0, 256, (len(mesh.vertices), 4), dtype=np.uint8)
    return mesh, f"bumpy vertex-coloured blob, {len(mesh.faces)} faces"


def cameras(n: int, size: int) -> list[render.Camera]:
    # Distance 1.5 frames a diagonal-1 object the way dataset views do (~1/3 of the pixels).
    return [
        render.Camera.orbit(
            azimuth_deg=360.0 * i / n, elevation_deg=20.0, distance=1.5, fov_deg=40.0, width=size, height=size
        )
        for i in range(n)
    ]


def time_ours(mesh: trimesh.Trimesh, cams: list[render.Camera], min_seconds: float = 1.5) -> tuple[float, float]:
    render.render_view(mesh, cams[0])  # build + cache the BVH, warm up
    done, coverage = 0, []
    start = time.perf_counter()
    while True:
        for cam in cams:
            coverage.append(render.render_view(mesh, cam).mask.mean())
        done += len(cams)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed, float(np.mean(coverage))


def time_uncached(mesh: trimesh.Trimesh, cams: list[render.Camera], n: int = 6) -> float:
    start = time.perf_counter()
    for cam in cams[:n]:
        render.Renderer(mesh).render(cam)
    return n / (time.perf_counter() - start)


def time_baseline(mesh: trimesh.Trimesh, cam: render.Camera, n_rays: int) -> tuple[float, float]:
    """Extrapolated views/s of trimesh's triangle engine, and its agreement with ours."""
    stride = max(1, int(np.sqrt(cam.width * cam.height / n_rays)))
    origins, dirs = cam.rays()
    sub = (slice(stride // 2, None, stride), slice(stride // 2, None, stride))
    o, d = origins[sub].reshape(-1, 3), dirs[sub].reshape(-1, 3)
    intersector = trimesh.ray.ray_triangle.RayMeshIntersector(mesh)
    start = time.perf_counter()
    first = intersector.intersects_first(o, d)
    per_ray = (time.perf_counter() - start) / len(o)
    ours = render.render_view(mesh, cam).face_id[sub].reshape(-1)
    return 1.0 / (per_ray * cam.width * cam.height), float((first == ours).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, default=24, help="cameras on the orbit")
    parser.add_argument("--baseline-rays", type=int, default=400, help="rays per view for the slow baseline")
    args = parser.parse_args()

    mesh, name = benchmark_mesh()
    start = time.perf_counter()
    render.Renderer(mesh)
    print(f"mesh: {name}; BVH build {1e3 * (time.perf_counter() - start):.1f} ms")
    print(f"{'size':>8} {'coverage':>9} {'ours v/s':>9} {'no-cache v/s':>13} {'trimesh v/s':>12} {'ratio':>9} {'agree':>6}")
    for size in (128, 256):
        cams = cameras(args.views, size)
        ours, coverage = time_ours(mesh, cams)
        uncached = time_uncached(mesh, cams)
        base, agree = time_baseline(mesh, cams[1], args.baseline_rays)
        print(
            f"{size:>4}x{size:<3} {coverage:>9.2f} {ours:>9.1f} {uncached:>13.1f} {base:>12.4f} "
            f"{ours / base:>8.0f}x {agree:>6.3f}"
        )
    print("trimesh v/s extrapolated from its per-ray time on a pixel sub-grid; 'agree' = same face id there.")


if __name__ == "__main__":
    main()
