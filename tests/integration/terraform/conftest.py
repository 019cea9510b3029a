"""Fixtures for the terraform tests: a moto server on a free port, pinned HOME/CLI config.

These tests run the real terraform CLI against a real S3 backend (moto over HTTP), never a
fake terraform.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dr_engine.world.loopback import free_port


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto server of our own on a free port, stopped by PID afterwards."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("moto server did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def pinned_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Pin HOME and TF_CLI_CONFIG_FILE so a developer's ~/.terraform.d cannot make a test pass."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(tmp_path / "no-such-terraformrc"))
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "TF_WORKSPACE", "TF_DATA_DIR", "DR_TERRAFORM_BIN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
