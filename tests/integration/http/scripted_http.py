"""A real HTTP server whose answers a test scripts (status, body, delay per request)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Script:
    """Answers to give, in order (the last one repeats); each is (status, body, delay seconds)."""

    answers: list[tuple[int, str, float]] = field(default_factory=lambda: [(200, "ok", 0.0)])
    seen: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self, headers: dict[str, str]) -> tuple[int, str, float]:
        with self.lock:
            self.seen.append(headers)
            index = min(len(self.seen) - 1, len(self.answers) - 1)
            return self.answers[index]


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        status, body, delay = self.server.script.next(dict(self.headers.items()))
        if delay:
            time.sleep(delay)
        data = body.replace("{host}", self.headers.get("Host", "")).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the prober gave up first
            pass


class ScriptedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: str) -> None:
        super().__init__((address, 0), _Handler)
        self.script = Script()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/healthz"
