"""Fixtures: embedded worlds on this test run's own loopback addresses and ports."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dr_engine.world import World, WorldConfig

WorldFactory = Callable[..., World]


@pytest.fixture(scope="session")
def make_world() -> Iterator[WorldFactory]:
    """Start worlds on demand (a failover consumes one); stop every one at session end."""
    worlds: list[World] = []

    def make(**overrides: object) -> World:
        config = WorldConfig.for_tests(moto=False, **overrides)
        world = World(config, root=Path(tempfile.mkdtemp(prefix="dr-test-world-")))
        worlds.append(world)
        return world.start()

    yield make
    for world in worlds:
        world.stop()
