"""A standalone ``prefect server`` and a serve runner as child processes (``make drill-server``, tests).

Scheduled drills need a real Prefect API server: an ephemeral one refuses to schedule. This
module starts ``prefect server start --host H --port P`` with its own ``PREFECT_HOME`` and the
quiet settings of :mod:`dr_engine.flows.settings`, waits for ``/api/health``, and starts the serve
runner (``python -m dr_engine.flows.deployments serve ...``) pointed at it. Each process runs in its own
session and is stopped by its pid (SIGTERM, then SIGKILL), never by name.

No Prefect import here: the children read their settings from the environment we give them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any

from dr_engine.flows.settings import EMBEDDED_SETTINGS

#: Server-side settings: no analytics, a generous start-up. The scheduler and late-run services
#: stay on (they are what makes cron schedules fire).
SERVER_SETTINGS: dict[str, str] = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # SQLite "database is locked" otherwise turns into HTTP 503 and client retries (PLATFORM.md).
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED": "false",
}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def client_env(api_url: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process that talks to the server at ``api_url``."""
    env = {k: v for k, v in (base if base is not None else os.environ).items()
           if not k.startswith("PREFECT_") or k == "PREFECT_HOME"}
    env.update({k: v for k, v in EMBEDDED_SETTINGS.items() if not k.startswith("PREFECT_SERVER_")})
    env.update({"PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    return env


def _stop(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)  # its own session: the group id is its pid
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


class PrefectServer:
    """One ``prefect server start`` child process."""

    def __init__(self, home: Path, *, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None) -> None:
        self.home = Path(home)
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path or self.home / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        """``http://host:port/api``."""
        return f"http://{self.host}:{self.port}/api"

    def healthy(self) -> bool:
        """True when ``/api/health`` answers."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                return int(response.status) == 200
        except (OSError, ValueError):
            return False

    def start(self, timeout: float = 180.0) -> str:
        """Start the server and wait until it is healthy; return the API URL."""
        self.home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(SERVER_SETTINGS)
        env["PREFECT_HOME"] = str(self.home)
        prefect = str(Path(sys.executable).with_name("prefect"))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [prefect, "server", "start", "--host", self.host, "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        end = time.monotonic() + timeout
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > end:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"prefect server on {self.host}:{self.port} did not become healthy:\n{tail}")
            time.sleep(0.25)
        return self.api_url

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the server by its pid."""
        _stop(self.process, timeout)


class ServeRunner:
    """``python -m dr_engine.flows.deployments serve ...`` as a child process against a server."""

    def __init__(self, api_url: str, args: list[str], *, cwd: Path | None = None, log_path: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.api_url = api_url
        self.args = args
        self.cwd = cwd
        self.log_path = log_path
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Spawn the runner (it registers the deployments, then polls for runs)."""
        env = client_env(self.api_url, self.env)
        # Pick scheduled runs up quickly; the default polls every 10 s.
        env.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "2")
        log: IO[bytes] | int = subprocess.DEVNULL
        if self.log_path is not None:
            log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen([sys.executable, "-m", "dr_engine.flows.deployments", "serve", *self.args],
                                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.cwd,
                                            start_new_session=True)
        finally:
            if not isinstance(log, int):
                log.close()

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the runner by its pid."""
        _stop(self.process, timeout)


#: Answers a busy Prefect server gives while it is still fine (SQLite "database is locked" -> 503).
_BUSY = {429, 502, 503, 504}


def api_call(api_url: str, method: str, path: str, body: Any = None, timeout: float = 10.0,
             busy_for: float = 60.0) -> Any:
    """A JSON call to the Prefect REST API (used to check and trigger deployments without a client).

    A busy server (429/502/503/504 or a refused connection) is asked again with a growing pause for
    up to ``busy_for`` seconds, like Prefect's own client does; any other HTTP error is raised at once.
    """
    import json

    data = None if body is None else json.dumps(body).encode()
    give_up = time.monotonic() + busy_for
    pause = 0.2
    while True:
        request = urllib.request.Request(f"{api_url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
            return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            if exc.code not in _BUSY or time.monotonic() + pause > give_up:
                raise
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ConnectionRefusedError) or time.monotonic() + pause > give_up:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


__all__ = ["SERVER_SETTINGS", "PrefectServer", "ServeRunner", "api_call", "client_env", "free_port"]
