"""VAE reconstruction view: what the shape VAE kept of a shape, as a mesh beside it.

The explorer's button "VAE reconstruction" shows, left of the first shape and at the same
scale, the mesh that ``Tango3D.reconstruct`` extracts from the shape VAE's occupancy (marching
cubes on a ``RESOLUTION``^3 grid over the bounding box). Only a provider backed by a Tango3D
model has a shape VAE; :func:`tango3d_model` finds it, or says there is none (the search's pose
re-rank uses it too).

    model = tango3d_model(provider)                 # the Tango3D model behind it, or None
    rec = reconstruct(model, mesh, key=...)         # Reconstruction: mesh, tokens, faces, seconds
    rec.summary()                                   # "1024 tokens, 17,990 faces, 1.9 s"

The reconstruction is in the input mesh's own frame (units and position), so the viewer draws
it with the input's display frame, only moved aside (``app.viewer.recon_frame``).
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import trimesh

__all__ = ["RESOLUTION", "Reconstruction", "reconstruct", "tango3d_model"]

# Marching-cubes grid per axis: a few seconds at most with the bundled model on two CPU cores.
RESOLUTION = 48


@dataclass(frozen=True)
class Reconstruction:
    """One reconstruction, as cached in the session.

    key         what it was computed from: (provider fingerprint, mesh key, resolution, points)
    mesh        the reconstructed surface, in the input mesh's coordinates
    tokens      latent tokens the shape was encoded into
    resolution  marching-cubes grid per axis
    seconds     wall-clock time of the computation
    """

    key: Hashable
    mesh: trimesh.Trimesh
    tokens: int
    resolution: int
    seconds: float

    @property
    def faces(self) -> int:
        return len(self.mesh.faces)

    def summary(self) -> str:
        return f"{self.tokens} tokens, {self.faces:,} faces, {self.seconds:.1f} s"


def tango3d_model(provider: Any) -> Any:
    """The Tango3D model behind ``provider`` (its ``model``), or None when it is not backed by one
    (e.g. back-projection of a 2D encoder, or a provider of the researcher's own)."""
    from tango3d_core.models.tango3d import Tango3D

    model = getattr(provider, "model", None)
    return model if isinstance(model, Tango3D) else None


def reconstruct(model: Any, mesh: trimesh.Trimesh, *, key: Hashable, resolution: int = RESOLUTION,
                num_points: int = 8192) -> Reconstruction:
    """``model.reconstruct(mesh)`` at ``resolution`` with ``model.reconstruction_tokens`` tokens
    (its default, recorded for the status line), timed.

    Raises ValueError (from the model) when the occupancy has no surface in the box.
    """
    tokens = model.reconstruction_tokens
    t0 = time.perf_counter()
    out = model.reconstruct(mesh, resolution=resolution, num_latents=tokens, num_points=num_points, seed=0)
    return Reconstruction(key=key, mesh=out, tokens=tokens, resolution=resolution,
                          seconds=time.perf_counter() - t0)
