"""Embedded worlds for the reliability suite, and probes of their real state."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dr_engine.world import World, WorldConfig


@contextlib.contextmanager
def started_world(**overrides: Any) -> Iterator[World]:
    """A fresh world (moto included: Terraform state and the AWS half) on its own addresses and ports."""
    config = WorldConfig.for_tests(**overrides)
    root = Path(tempfile.mkdtemp(prefix="dr-rel-world-"))
    root.chmod(0o755)  # the postgres and bind users must traverse it
    world = World(config, root=root)
    world.start()
    try:
        world.ack_file.touch()  # reconcile reads it even when no load ran
        yield world
    finally:
        world.stop_load()
        world.stop()


def writable_primaries(world: World, timeout: float = 3.0) -> list[str]:
    """Regions whose PostgreSQL accepts writes right now (call after frozen processes continued)."""
    import psycopg

    ends = world.endpoints()
    found = []
    for region in (world.config.source, world.config.target):
        try:
            with psycopg.connect(ends.dsn(region), connect_timeout=int(timeout), autocommit=True) as conn:
                recovery, read_only = conn.execute(
                    "select pg_is_in_recovery(), current_setting('default_transaction_read_only')").fetchone() or (
                    True, "on")
        except psycopg.Error:
            continue  # down or fenced: not writable
        if not recovery and read_only == "off":
            found.append(region)
    return found


def dns_answer(world: World) -> list[str]:
    """What the world's DNS server answers for the public name."""
    from dr_engine.providers.dns.client import DnsServer, query

    ends = world.endpoints()
    host, port = ends.dns_server.rsplit(":", 1)
    return list(query(DnsServer(host, int(port)), ends.public_name, "A", timeout=2).values)


def safety_probe(world: World, verified_target: bool) -> list[str]:
    """Real-state violations after a scenario: split brain, or traffic on an unverified region.

    Continues every frozen process first: a frozen old primary that comes back writable is
    exactly the split brain to catch.
    """
    problems: list[str] = []
    world.restore_region(world.config.source)
    world.restore_region(world.config.target)
    primaries = writable_primaries(world)
    if len(primaries) > 1:
        problems.append(f"two writable primaries: {primaries}")
    with contextlib.suppress(Exception):  # BIND may be down in that scenario: checked by the test
        answer = dns_answer(world)
        if answer == [world.config.target_addr] and not verified_target:
            problems.append("public name points at the target although it was never verified")
    return problems
