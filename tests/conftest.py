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


@pytest.fixture(scope="module")
def sinabs():
    """The sinabs package, or a skip saying how to install it (an optional peer)."""
    return pytest.importorskip(
        "sinabs",
        reason="sinabs not installed: pip install --no-deps sinabs==3.1.3 nir nirtorch pbr h5py",
    )
