"""pytest fixtures: one moto server per test session, reset before every test.

Import them into a ``conftest.py``::

    from dr_engine.testing.moto_fixtures import aws_context, aws_regions, faults, moto, moto_server  # noqa: F401

``moto_server`` is session-scoped (a child process on a free loopback port, stopped by pid at
the end); ``moto`` resets it (``POST /moto-api/reset`` and no fault rules) before each test.
They need pytest and moto: ``pip install 'dr-engine[dev]'`` (the ``dev`` extra includes ``world``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

try:
    import pytest
except ImportError as exc:  # a plain install has no pytest; say which extra brings it
    raise ImportError("dr_engine.testing.moto_fixtures are pytest fixtures: install dr-engine[dev] "
                      "(pip install 'dr-engine[dev]')") from exc

from dr_engine.actions.base import StepContext
from dr_engine.model import Region
from dr_engine.testing.step_context import step_context
from dr_engine.world.faults import FaultControl
from dr_engine.world.moto_server import MotoServer

SOURCE_REGION, TARGET_REGION = "us-east-1", "us-west-2"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """A moto server (with fault injection) on 127.0.0.1 and a free port, for the whole session."""
    server = MotoServer(port=0, log_path=tmp_path_factory.mktemp("moto") / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto(moto_server: MotoServer) -> MotoServer:
    """The session's moto server, emptied and free of fault rules."""
    if not moto_server.running:  # a test that killed it: bring a fresh one up
        moto_server.start()
    moto_server.resume()
    moto_server.reset()
    return moto_server


@pytest.fixture
def faults(moto: MotoServer) -> FaultControl:
    """Fault rules for the test's moto server (cleared before every test)."""
    return FaultControl(moto.endpoint_url)


def aws_region(name: str, endpoint_url: str, **params: Any) -> Region:
    """A dr-engine region whose AWS calls go to ``endpoint_url``."""
    return Region.model_validate({"name": name, "aws": {"region": name, "endpoint_url": endpoint_url},
                                  "params": params})


@pytest.fixture
def aws_regions(moto: MotoServer) -> tuple[Region, Region]:
    """(source, target) regions us-east-1 and us-west-2 pointing at the test moto server."""
    return aws_region(SOURCE_REGION, moto.endpoint_url), aws_region(TARGET_REGION, moto.endpoint_url)


@pytest.fixture
def aws_context(aws_regions: tuple[Region, Region], tmp_path: Path) -> Callable[..., StepContext]:
    """Factory of step contexts for the test regions: ``aws_context(timeout=30, **step_context_kwargs)``."""

    def build(**kwargs: Any) -> StepContext:
        source, target = aws_regions
        kwargs.setdefault("timeout", 30.0)
        return step_context(state_dir=tmp_path, source=source, target=target, **kwargs)

    return build
