"""Parsing of ``ADDRESS[:PORT]`` endpoint strings used in step parameters (pure, no I/O)."""

from __future__ import annotations


def parse_server(text: str, default_port: int = 53) -> tuple[str, int]:
    """``"127.0.0.1:15353"`` -> ``("127.0.0.1", 15353)``; the port defaults to ``default_port``."""
    address, _, port = text.strip().partition(":")
    if not address:
        raise ValueError(f"expected ADDRESS[:PORT], got {text!r}")
    try:
        number = int(port) if port else default_port
    except ValueError as exc:
        raise ValueError(f"port in {text!r} is not a number") from exc
    if not 0 < number < 65536:
        raise ValueError(f"port {number} out of range (1-65535)")
    return address, number
