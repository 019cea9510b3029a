"""Loopback addresses and free ports for tests that run next to the demo and each other.

Every address in 127.0.0.0/8 works on Linux loopback without setup, so each test world gets
its own pair of region addresses (random, away from the demo's 127.0.1.1/127.0.2.1) and
ports found by binding to port 0.
"""

from __future__ import annotations

import os
import random
import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_udp_tcp_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on ``host`` (DNS servers listen on both)."""
    for _ in range(50):
        port = free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no port free for both TCP and UDP on {host}")


def region_addresses() -> tuple[str, str]:
    """Two distinct loopback addresses for a test's source and target regions."""
    rng = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "big"))
    second = rng.randrange(10, 250)
    third = rng.randrange(1, 250)
    return f"127.{second}.{third}.1", f"127.{second}.{third}.2"
