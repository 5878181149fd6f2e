"""Fixtures every test folder shares."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run each test single-threaded: the tensors are tiny, and on a shared 2-core machine
    OpenMP threads waiting for each other make such tests 10-20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
