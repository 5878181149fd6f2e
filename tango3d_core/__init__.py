"""Tango3D: dense 2D-3D correspondence in one shared feature space.

Public API (see ``../shared/CONTRACT.md`` in the project and ``README.md``)::

    import tango3d_core as t3
    model = t3.load_model()                   # bundled checkpoint in assets/
    mesh = t3.load_mesh("chair.glb", up_axis="y")
    img = model.encode_image(pil_image)
    shp = model.encode_shape(mesh, num_points=8192, seed=0)
    sims = model.match_pixel(img, shp, (x, y))

Names are resolved lazily so ``import tango3d_core`` does not import torch or
open3d; nothing is loaded until it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "load_mesh": "tango3d_core.data.meshio",
    "normalize_mesh": "tango3d_core.data.meshio",
    "MeshLoadError": "tango3d_core.data.meshio",
    "load_image": "tango3d_core.data.imageio",
    "ImageLoadError": "tango3d_core.data.imageio",
    "load_model": "tango3d_core.models.checkpoint",
    "save_checkpoint": "tango3d_core.models.checkpoint",
    "Tango3D": "tango3d_core.models.tango3d",
    "ImageFeatures": "tango3d_core.models.tango3d",
    "ShapeFeatures": "tango3d_core.models.tango3d",
    "PoseEstimate": "tango3d_core.models.pose",
    "estimate_pose": "tango3d_core.models.pose",
    "pose_match": "tango3d_core.models.pose",
    "pose_heatmap": "tango3d_core.models.pose",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .data.imageio import ImageLoadError, load_image
    from .data.meshio import MeshLoadError, load_mesh, normalize_mesh
    from .models.checkpoint import load_model, save_checkpoint
    from .models.pose import PoseEstimate, estimate_pose, pose_heatmap, pose_match
    from .models.tango3d import ImageFeatures, ShapeFeatures, Tango3D


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tango3d_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
