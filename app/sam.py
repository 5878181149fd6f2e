"""Optional: Segment Anything proposes a mask from one click.

Used only when both are present locally (nothing is ever downloaded):

* the ``segment-anything`` package (``pip install segment-anything``), and
* a SAM checkpoint in safetensors format: ``$TANGO3D_SAM_CHECKPOINT``, else the first
  ``*.safetensors`` in ``<cache>/sam/`` (``~/.cache/tango3d/sam/``). The model type is read
  from the file name (``vit_h`` / ``vit_l`` / ``vit_b``, e.g. ``sam_vit_b_01ec64.safetensors``).
  Pickled ``.pth`` files are never loaded (unpickling runs arbitrary code); convert the
  official one once, on a machine you trust:
  ``python -c "import torch, safetensors.torch as s; s.save_file(torch.load('sam_vit_b_01ec64.pth',
  weights_only=True), 'sam_vit_b_01ec64.safetensors')"``.

:func:`sam_status` says which of the two is missing, in words the page can show on the button.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["SAM_ENV", "SamSegmenter", "find_checkpoint", "sam_status"]

SAM_ENV = "TANGO3D_SAM_CHECKPOINT"
MODEL_TYPES = ("vit_h", "vit_l", "vit_b")


def find_checkpoint(cache_dir: str | Path | None) -> Path | None:
    """The SAM checkpoint to use, or None (see the module docstring)."""
    env = os.environ.get(SAM_ENV)
    if env:
        p = Path(env)
        return p if p.is_file() else None
    if cache_dir is None:
        return None
    folder = Path(cache_dir) / "sam"
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    return found[0] if found else None


def model_type(path: Path) -> str:
    name = path.name.lower()
    for t in MODEL_TYPES:
        if t in name:
            return t
    return "vit_h"  # the registry's "default"


def _has_package() -> bool:
    return importlib.util.find_spec("segment_anything") is not None


def sam_status(cache_dir: str | Path | None) -> tuple[bool, str]:
    """(available, message). The message names what is missing and how to provide it."""
    has_pkg = _has_package()
    ckpt = find_checkpoint(cache_dir)
    where = f"${SAM_ENV}" + (f" or {Path(cache_dir) / 'sam'}/*.safetensors" if cache_dir is not None else "")
    if has_pkg and ckpt is not None:
        return True, f"SAM ({model_type(ckpt)}, {ckpt.name}): click the image to propose a mask"
    missing = []
    if not has_pkg:
        missing.append("the segment-anything package (pip install segment-anything)")
    if ckpt is None:
        missing.append(f"a SAM checkpoint ({where})")
    return False, "SAM unavailable: needs " + " and ".join(missing)


class SamSegmenter:
    """Loads SAM on first use; one image embedding is kept (the last image segmented)."""

    def __init__(self, checkpoint: Path, *, device: str = "cpu") -> None:
        self.checkpoint = Path(checkpoint)
        self.device = device
        self._predictor: Any = None
        self._image_key: str | None = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        from safetensors.torch import load_file
        from segment_anything import SamPredictor, sam_model_registry

        if self.checkpoint.suffix != ".safetensors":
            raise ValueError(f"{self.checkpoint.name}: only .safetensors SAM checkpoints are loaded (no pickles)")
        sam = sam_model_registry[model_type(self.checkpoint)]()  # random weights, replaced strictly below
        sam.load_state_dict(load_file(str(self.checkpoint)), strict=True)
        sam.to(device=self.device)
        return SamPredictor(sam)

    def propose(self, image: Image.Image, image_key: str, xy: tuple[float, float]) -> np.ndarray:
        """bool [H, W]: the best-scoring of SAM's masks for a positive click at pixel ``xy``."""
        with self._lock:
            if self._predictor is None:
                self._predictor = self._load()
            if self._image_key != image_key:
                self._predictor.set_image(np.asarray(image.convert("RGB")))
                self._image_key = image_key
            masks, scores, _ = self._predictor.predict(point_coords=np.array([[float(xy[0]), float(xy[1])]]),
                                                       point_labels=np.array([1]), multimask_output=True)
        masks = np.asarray(masks)
        best = int(np.argmax(np.asarray(scores)))
        return masks[best].astype(bool)
