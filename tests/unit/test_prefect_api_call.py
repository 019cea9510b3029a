"""`api_call` rides out a busy Prefect server (503) but not real errors; against a real HTTP server."""

from __future__ import annotations

import json
import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dr_engine.flows.server import api_call


class _Scripted(BaseHTTPRequestHandler):
    codes: list[int] = []
    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        code = type(self).codes.pop(0) if type(self).codes else 200
        body = json.dumps({"ok": code == 200}).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        del args


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Scripted.seen.clear()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_busy_answers_are_retried_until_the_server_answers(server: str) -> None:
    _Scripted.codes = [503, 503, 200]
    assert api_call(server, "GET", "/flow_runs/x") == {"ok": True}
    assert _Scripted.seen == ["/flow_runs/x"] * 3


def test_other_errors_are_raised_at_once(server: str) -> None:
    _Scripted.codes = [404]
    with pytest.raises(urllib.error.HTTPError) as caught:
        api_call(server, "GET", "/deployments/name/missing")
    assert caught.value.code == 404 and len(_Scripted.seen) == 1


def test_a_server_busy_for_too_long_gives_up(server: str) -> None:
    _Scripted.codes = [503] * 50
    with pytest.raises(urllib.error.HTTPError) as caught:
        api_call(server, "GET", "/health", busy_for=0.5)
    assert caught.value.code == 503 and 1 < len(_Scripted.seen) < 50
