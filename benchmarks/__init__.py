"""Tango3D benchmarks: every speed claim, measured the same way every time.

``python -m benchmarks`` runs every case below and writes ``docs/performance.md`` (table, machine
details, scaling figure); ``python -m benchmarks --smoke`` runs them at toy sizes in under a
minute (a check that they run, not a measurement). Each row compares one of our figures with a
baseline measured in the same run: an alternative, a hardware limit, a budget or an expected
growth (see :mod:`benchmarks.common`).

Cases (one module each, each runnable with ``python -m benchmarks.<module>``):

- :mod:`~benchmarks.hardware`         copy bandwidth and GEMM peak of this machine (the limits)
- :mod:`~benchmarks.click`            click similarity vs the memory-bandwidth limit
- :mod:`~benchmarks.shape_features`   encode_shape vs multi-view back-projection (time + accuracy)
- :mod:`~benchmarks.render_throughput` Open3D ray casting vs trimesh's ray query
- ``benchmarks.retrieval``            exact / approximate index vs brute-force numpy (issue #6)
- :mod:`~benchmarks.training`         samples/s per training stage vs the FLOP limit
- :mod:`~benchmarks.scaling`          time vs points, image size and gallery size
- :mod:`~benchmarks.encode_speed`, :mod:`~benchmarks.mesh_load`, :mod:`~benchmarks.app_click`
  the older scripts (each still runs on its own as ``python benchmarks/<name>.py``)
"""
