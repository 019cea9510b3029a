"""postgres.fence decisions that need no server: a primary that does not answer is not proof."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from dr_engine.actions.postgres import Fence
from dr_engine.errors import FencingFailed
from dr_engine.testing.step_context import step_context


def _closed_port_dsn() -> str:
    # Bind to port 0 to get a free port, then close it: nothing answers there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"postgresql://postgres@127.0.0.1:{port}/ledger"


def test_failed_fence_command_without_pid_file_is_not_fenced(tmp_path: Path) -> None:
    params = Fence.Params(dsn=_closed_port_dsn(), fence_command=[sys.executable, "-c", "raise SystemExit(3)"],
                          probe_timeout="200ms", cluster="ledger")
    with pytest.raises(FencingFailed, match=r"fence command .* failed") as failed:
        Fence().run(params, step_context(state_dir=tmp_path, timeout=5))
    assert "dr skip" in (failed.value.hint or "")


def test_successful_fence_command_with_silent_primary_is_fenced(tmp_path: Path) -> None:
    params = Fence.Params(dsn=_closed_port_dsn(), fence_command=[sys.executable, "-c", "pass"],
                          probe_timeout="200ms", cluster="ledger")
    result = Fence().run(params, step_context(state_dir=tmp_path, timeout=5))
    assert result.facts["method"] == ["fence command: ok"]
