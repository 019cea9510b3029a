"""Fixtures: real HTTP servers on this run's own loopback address whose answers a test scripts."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from scripted_http import ScriptedServer

from dr_engine.world.loopback import region_addresses


@pytest.fixture(scope="session")
def address() -> str:
    """This run's own loopback address."""
    return region_addresses()[1]


@pytest.fixture
def web(address: str) -> Iterator[ScriptedServer]:
    """A fresh scripted server per test (answers 200 ok until told otherwise)."""
    server = ScriptedServer(address)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)
