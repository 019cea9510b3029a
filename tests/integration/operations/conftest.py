"""Fixtures for operations tests: embedded worlds on this run's own addresses and ports."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dr_engine.world import World, WorldConfig

WorldFactory = Callable[..., World]


@pytest.fixture
def make_world() -> Iterator[WorldFactory]:
    """Start worlds on demand; stop every one (and its processes) when the test ends."""
    worlds: list[World] = []

    def make(**overrides: object) -> World:
        config = WorldConfig.for_tests(**overrides)  # moto: the runbook's AWS and Terraform steps
        world = World(config, root=Path(tempfile.mkdtemp(prefix="dr-test-ops-")))
        worlds.append(world)
        return world.start()

    yield make
    for world in worlds:
        world.stop()
