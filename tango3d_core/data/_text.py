"""Wording shared by the loaders' error messages."""

from __future__ import annotations

__all__ = ["fmt_bytes"]


def fmt_bytes(n: int) -> str:
    """A byte count for a message: ``"12.3 MB"``, ``"4.0 kB"``, ``"17 bytes"`` (binary units)."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} kB"
    return f"{n} bytes"
