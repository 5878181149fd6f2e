"""Evaluation suites: each runs every method (feature provider) on the same held-out data.

``run_suite(name, providers, config)`` builds the data (the procedural test split, or a folder of
user meshes for the geometric suites), runs the suite and returns one JSON-ready dict::

    {"suite": name, "config": {...resolved SuiteConfig...},
     "methods": {method: {...metrics...}, ...},
     "counts": {...}, "timing": {"total_s": s, "methods": {method: {...}}}}

The metric keys of each suite are documented in its module: :mod:`.pixel2point`,
:mod:`.point2pixel`, :mod:`.part_transfer`, :mod:`.retrieval`, :mod:`.vae`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from . import part_transfer, pixel2point, point2pixel, retrieval, vae
from ._common import (
    MESH_EXTENSIONS,
    SUITE_NAMES,
    EvalShape,
    EvalView,
    FeatureProvider,
    ModelProvider,
    PoseModelProvider,
    PixelFeatures,
    PointFeatures,
    SuiteConfig,
    SuiteName,
    argmax_cosine,
    default_config,
    fit_distance,
    mesh_files,
    mesh_folder_scenes,
    procedural_scenes,
    random_view_cameras,
    scene_rng,
)

__all__ = [
    "GEOMETRIC_SUITES",
    "MESH_EXTENSIONS",
    "SUITE_NAMES",
    "SUITE_DESCRIPTIONS",
    "EvalShape",
    "EvalView",
    "FeatureProvider",
    "ModelProvider",
    "PoseModelProvider",
    "PixelFeatures",
    "PointFeatures",
    "SuiteConfig",
    "SuiteName",
    "argmax_cosine",
    "default_config",
    "fit_distance",
    "mesh_files",
    "mesh_folder_scenes",
    "procedural_scenes",
    "random_view_cameras",
    "run_suite",
    "scene_rng",
]

GEOMETRIC_SUITES: tuple[str, ...] = ("pixel2point", "point2pixel")
"""Suites that need no labels, so they also run on a folder of user meshes."""

SUITE_DESCRIPTIONS: dict[str, str] = {
    "pixel2point": "a pixel finds its 3D point: accuracy within 1/2.5/5/10 % of the bbox diagonal, median error",
    "point2pixel": "a 3D point finds its pixel in each view that sees it: pixel error, cross-view consistency",
    "part-transfer": "part labels carried across instances of a category: 3D->3D and 2D->3D accuracy, mIoU",
    "retrieval": "image->shape and text->shape over a gallery: R@1, R@5, mAP (instance and category), P@10",
    "vae": "occupancy IoU of the shape VAE on held-out shapes, at its trained token count and at 512 / 1024",
}


def _num_procedural(cfg: SuiteConfig) -> int:
    return len(cfg.category_list) * cfg.shapes_per_category


def _pairs(cfg: SuiteConfig) -> Iterator[tuple[EvalShape, EvalShape]]:
    for category in cfg.category_list:
        for k in range(cfg.shapes_per_category // 2):
            source, target = procedural_scenes(
                SuiteConfig(**{**_fields(cfg), "categories": (category,)}), instances=(2 * k, 2 * k + 1))
            yield source, target


def _fields(cfg: SuiteConfig) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def run_suite(name: str, providers: Mapping[str, FeatureProvider], config: SuiteConfig, *,
              models: Mapping[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Run one suite.

    name       one of ``SUITE_NAMES``
    providers  {method name: provider}; every method sees exactly the same data
    config     the data and metric settings (``default_config(name, quick=...)``)
    models     vae only: {method name: Tango3D} whose ``shape_vae`` is evaluated (a ``random``
               reference is always added)
    """
    if name not in SUITE_NAMES:
        raise ValueError(f"unknown suite {name!r}; choose one of {list(SUITE_NAMES)}")
    if config.meshes is not None and name not in GEOMETRIC_SUITES:
        raise ValueError(f"suite {name!r} needs labelled procedural shapes; with meshes only "
                         f"{list(GEOMETRIC_SUITES)} can run")
    t0 = time.perf_counter()
    if name in GEOMETRIC_SUITES:
        if config.meshes is not None:
            total = len(mesh_files(config.meshes))
            scenes = mesh_folder_scenes(config, config.meshes)
        else:
            total = _num_procedural(config)
            scenes = procedural_scenes(config)
        module = pixel2point if name == "pixel2point" else point2pixel
        out = module.run(providers, config, scenes, num_scenes=total, progress=progress)
    elif name == "part-transfer":
        if config.shapes_per_category < 2:
            raise ValueError("part-transfer needs shapes_per_category >= 2 (pairs of instances)")
        out = part_transfer.run(providers, config, _pairs(config),
                                num_pairs=len(config.category_list) * (config.shapes_per_category // 2),
                                progress=progress)
    elif name == "retrieval":
        out = retrieval.run(providers, config, procedural_scenes(config, views=1),
                            num_scenes=_num_procedural(config), progress=progress)
    else:
        items = [(c, i) for c in config.category_list for i in range(config.shapes_per_category)]
        out = vae.run(models or {}, config, items, num_scenes=len(items), progress=progress)
    total_s = time.perf_counter() - t0
    timing = out.pop("timing")
    timing["total_s"] = total_s
    return {"suite": name, "config": config.to_dict(), **out, "timing": timing}
