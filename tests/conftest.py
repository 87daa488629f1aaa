"""Shared test fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run a module single-threaded.

    Tiny CPU forwards gain nothing from a second thread, and on a busy 2-core machine
    OpenMP's spinning threads make them 10-100x slower. Speed is not under test here.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
