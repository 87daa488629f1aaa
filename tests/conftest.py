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


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Exports and measured backend choices go to a folder of this test session, never to the
    user's ~/.cache/depthsmith (a stale choice there must not change what tests run)."""
    import os

    old = os.environ.get("DEPTHSMITH_CACHE")
    os.environ["DEPTHSMITH_CACHE"] = str(tmp_path_factory.mktemp("depthsmith-cache"))
    yield
    if old is None:
        os.environ.pop("DEPTHSMITH_CACHE", None)
    else:
        os.environ["DEPTHSMITH_CACHE"] = old
