"""Shared tiny configurations so model tests run in milliseconds."""

from __future__ import annotations

import pytest

from tango3d_core.config import Tango3DConfig, toy_config


def micro_config(**overrides) -> Tango3DConfig:
    """A few-thousand-parameter model with every component of the real one."""
    return toy_config("micro", **overrides)


@pytest.fixture
def micro() -> Tango3DConfig:
    return micro_config()

