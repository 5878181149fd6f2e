"""Procedural, part-labelled shape families.

``generate(category, seed)`` is deterministic: the same pair always gives the
same mesh, parts, materials and caption. See ``_base`` for the canonical pose.
"""

from __future__ import annotations

import zlib

import numpy as np

from . import _furniture, _objects, _organic  # noqa: F401  (register families)
from ._base import FAMILIES, ORGANIC, PARTS, Material, Shape

CATEGORIES: list[str] = sorted(FAMILIES)
"""Every category name, sorted."""

ORGANIC_CATEGORIES: list[str] = sorted(ORGANIC)


def generate(category: str, seed: int) -> Shape:
    """Generate instance ``seed`` of ``category``.

    Raises:
        ValueError: unknown category or negative seed.
    """
    if category not in FAMILIES:
        raise ValueError(f"unknown category {category!r}; choose one of {CATEGORIES}")
    if int(seed) < 0:
        raise ValueError("seed must be >= 0")
    # crc32 (not hash()) so the stream is the same in every process.
    rng = np.random.default_rng([zlib.crc32(category.encode()), int(seed)])
    return FAMILIES[category](rng, int(seed))


def category_prompt(category: str) -> str:
    """The short text for a category, ``"a <category>"`` (underscores read as spaces).

    One definition for the places that must agree: the category queries of the retrieval
    evaluation and the prompts a precomputed text table carries for it (``--prompts``), which
    training code builds without importing the evaluation.
    """
    return f"a {category.replace('_', ' ')}"


__all__ = ["CATEGORIES", "ORGANIC_CATEGORIES", "PARTS", "Material", "Shape", "category_prompt", "generate"]
