"""Fixtures shared by several test modules."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread.

    The graph and mask tests use tiny tensors: extra threads only add synchronisation, and on a
    busy 2-core machine every parallel region waits for a descheduled thread (ODE tests ran 20x slower).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
