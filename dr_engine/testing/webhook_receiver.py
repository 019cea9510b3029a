"""A real HTTP webhook receiver (``ThreadingHTTPServer``) that keeps every JSON payload it gets.

Use it to test notifications end to end::

    with WebhookReceiver() as hook:
        ...  # configure DR_NOTIFY_WEBHOOKS=hook.url and run
        assert hook.wait_for(2)[0]["text"]

``status`` and ``delay`` script its answers (e.g. 500, or slower than the sender's timeout).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        owner = self.server.owner
        if owner.delay:
            time.sleep(owner.delay)
        with owner.lock:
            owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            owner.changed.notify_all()
        self.send_response(owner.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: WebhookReceiver


class WebhookReceiver:
    """Collects POSTed bodies; start/stop it or use it as a context manager."""

    def __init__(self, host: str = "127.0.0.1", *, status: int = 200, delay: float = 0.0,
                 path: str = "/hooks/T000/B000/receiver") -> None:
        self.status = status
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._server = _Server((host, 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self.url = f"http://{host}:{self._server.server_address[1]}{path}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Shut the server down (if it was started) and close its socket."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()

    @property
    def payloads(self) -> list[dict[str, Any]]:
        """The JSON bodies received so far, in order."""
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``count`` payloads arrived (hang guard ``timeout``); return them all."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.requests) >= count, timeout=timeout)
        return self.payloads


__all__ = ["WebhookReceiver"]
