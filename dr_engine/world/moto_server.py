"""A moto server as a child process, with fault injection, for the embedded world and tests.

A subprocess (not a thread) so that a region outage can be simulated with SIGSTOP/SIGCONT and a
restart really loses state. The child runs moto's WSGI app wrapped in
:class:`dr_engine.world.faults.FaultInjector` (a pass-through until a rule is added), binds
``host:port`` (port 0: a free port) and prints ``ready URL`` once listening.

Run it by hand with ``python -m dr_engine.world.moto_server --port 45800``. The demo listens on
127.0.0.1:45800, the address the shipped ``regions/*.yaml`` point at.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from dr_engine.world.aws_seed import AwsWorld, seed_aws_world

DEMO_HOST = "127.0.0.1"
DEMO_PORT = 45800

__all__ = ["DEMO_HOST", "DEMO_PORT", "AwsWorld", "MotoServer", "seed_aws_world", "serve"]


class MotoServer:
    """Start, stop, pause and reset one moto server process (stop it by its pid only)."""

    def __init__(self, host: str = DEMO_HOST, port: int = DEMO_PORT, log_path: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint_url = ""

    @property
    def pid(self) -> int | None:
        """The child's pid while it runs."""
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30.0) -> str:
        """Spawn the server, wait until it listens; return its endpoint URL.

        Raises :class:`~dr_engine.world.core.WorldExtraMissing` when moto is not installed.
        """
        if self.running:
            return self.endpoint_url
        # Imported here: the world's core starts this module's server lazily (no import circle).
        from dr_engine.world.extras import require_moto

        require_moto()
        log: Any = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("ab")
        env = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dr_engine.world.moto_server", "--host", self.host, "--port", str(self.port)],
            stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True,
        )
        if log is not subprocess.DEVNULL:
            log.close()
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("ready "):
            self.stop()
            raise RuntimeError(f"moto server on {self.host}:{self.port} did not start within {timeout:g}s "
                               f"(got {line!r}); is the port in use?")
        self.endpoint_url = line.split(" ", 1)[1]
        self.port = int(self.endpoint_url.rsplit(":", 1)[1])
        return self.endpoint_url

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the child (SIGCONT first in case it is paused), then kill it if needed."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if process.stdout is not None:
            process.stdout.close()

    def pause(self) -> None:
        """SIGSTOP: connections hang like in a region outage."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def reset(self, timeout: float = 30.0) -> None:
        """Forget every fault rule and every resource (``POST /moto-api/reset``)."""
        # Faults first, so that nothing still in flight is delayed or failed after the reset.
        for method, path in (("DELETE", "/_dr/faults"), ("POST", "/moto-api/reset")):
            request = urllib.request.Request(self.endpoint_url + path, data=b"", method=method)
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read()

    def __enter__(self) -> MotoServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def serve(host: str, port: int) -> None:
    """Serve moto (wrapped in the fault injector) until SIGTERM/SIGINT; print ``ready URL`` first."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    from dr_engine.world.faults import FaultInjector

    app = FaultInjector(DomainDispatcherApplication(create_backend_app))
    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler)
    bound = server.server_address[1]
    # moto builds some URLs (e.g. SQS queue URLs) from MOTO_PORT.
    os.environ.setdefault("MOTO_PORT", str(bound))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stdout.write(f"ready http://{host}:{bound}\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    """``python -m dr_engine.world.moto_server [--host H] [--port P]``."""
    parser = argparse.ArgumentParser(description="moto server with dr-engine fault injection")
    parser.add_argument("--host", default=DEMO_HOST)
    parser.add_argument("--port", type=int, default=DEMO_PORT)
    args = parser.parse_args(argv)
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
