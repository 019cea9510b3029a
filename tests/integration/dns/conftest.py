"""Fixtures: a real BIND (named) on this test run's own loopback address and free port."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dr_engine.providers.dns.client import replace_record
from dr_engine.world.dns import BindServer
from dr_engine.world.loopback import free_udp_tcp_port, region_addresses


@pytest.fixture(scope="session")
def addresses() -> tuple[str, str]:
    """Source and target region addresses of this run (not the demo's)."""
    return region_addresses()


@pytest.fixture(scope="session")
def bind(addresses: tuple[str, str]) -> Iterator[BindServer]:
    """One named for the session on 127.0.0.1 (BIND listens only on interface addresses), own port."""
    src, _ = addresses
    root = Path(tempfile.mkdtemp(prefix="dr-test-dns-"))
    root.chmod(0o755)  # named runs as `bind` when we are root: parents must be traversable
    server = BindServer(root / "named", port=free_udp_tcp_port(), records={"ledger": src})
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_root() -> Iterator[Path]:
    """A new directory under /tmp that the `bind` user can traverse; removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="dr-test-dns-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def record(bind: BindServer, addresses: tuple[str, str]) -> str:
    """A fresh record name for one test, pointing at the source address (ttl 5s)."""
    name = f"app-{uuid.uuid4().hex[:8]}"
    replace_record(bind.server, bind.zone, name, "A", addresses[0], 5, bind.tsig_key)
    return bind.fqdn(name)
