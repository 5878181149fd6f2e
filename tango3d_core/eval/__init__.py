"""Evaluation: metrics (pure functions), suites, baselines (back-projection), report.

Command line: ``python -m tango3d_core.eval --suite NAME --json OUT.json`` (``--help`` lists
the suites). From Python::

    from tango3d_core.eval import run_suite, default_config, ModelProvider, RandomBaseline
    res = run_suite("pixel2point", {"tango3d": ModelProvider(model), "random": RandomBaseline()},
                    default_config("pixel2point", quick=True))

    from tango3d_core.eval import BackprojectionFeatures   # any 2D encoder -> per-point features
    feats = BackprojectionFeatures(lambda img: my_encoder(img))(mesh)    # .dense [N, D]

Evaluation never imports training code (``tango3d_core.train``). Names are resolved lazily, so
``import tango3d_core.eval`` loads neither torch nor open3d.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "metrics": "tango3d_core.eval.metrics",
    "SUITE_NAMES": "tango3d_core.eval.suites",
    "SUITE_DESCRIPTIONS": "tango3d_core.eval.suites",
    "SuiteConfig": "tango3d_core.eval.suites",
    "default_config": "tango3d_core.eval.suites",
    "run_suite": "tango3d_core.eval.suites",
    "EvalShape": "tango3d_core.eval.suites",
    "EvalView": "tango3d_core.eval.suites",
    "FeatureProvider": "tango3d_core.eval.suites",
    "PixelFeatures": "tango3d_core.eval.suites",
    "PointFeatures": "tango3d_core.eval.suites",
    "ModelProvider": "tango3d_core.eval.suites",
    "procedural_scenes": "tango3d_core.eval.suites",
    "mesh_folder_scenes": "tango3d_core.eval.suites",
    "BackprojectionFeatures": "tango3d_core.eval.baselines",
    "BackprojectedShape": "tango3d_core.eval.baselines",
    "BackprojectionBaseline": "tango3d_core.eval.baselines",
    "RandomBaseline": "tango3d_core.eval.baselines",
    "orbit_cameras": "tango3d_core.eval.baselines",
    "write_report": "tango3d_core.eval.report",
}

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from . import metrics
    from .baselines import (
        BackprojectedShape,
        BackprojectionFeatures,
        BackprojectionBaseline,
        RandomBaseline,
        orbit_cameras,
    )
    from .report import write_report
    from .suites import (
        SUITE_DESCRIPTIONS,
        SUITE_NAMES,
        EvalShape,
        EvalView,
        FeatureProvider,
        ModelProvider,
        PixelFeatures,
        PointFeatures,
        SuiteConfig,
        default_config,
        mesh_folder_scenes,
        procedural_scenes,
        run_suite,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tango3d_core.eval' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if name == "metrics" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = sorted(_EXPORTS)
