"""Data engine: mesh I/O, procedural shapes, exact ray-cast rendering, dataset shards.

Submodules are imported on demand (``from tango3d_core.data import shapes, render``)
so that importing the package stays cheap.
"""
