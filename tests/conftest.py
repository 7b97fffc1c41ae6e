from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ddp_pool import WorkerPool


@pytest.fixture(scope="session")
def ddp2() -> Iterator[WorkerPool]:
    """Two gloo ranks, shared by the whole test session."""
    pool = WorkerPool(2)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def ddp3() -> Iterator[WorkerPool]:
    """Three gloo ranks, shared by the whole test session."""
    pool = WorkerPool(3)
    yield pool
    pool.close()
