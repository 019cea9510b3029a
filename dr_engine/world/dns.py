"""The embedded world's authoritative DNS server: BIND 9 (``named``) on a loopback address.

:class:`BindServer` writes its own configuration and zone into a directory it owns, runs
``named`` in the foreground (``-g``: logs to stderr, captured in ``named.log``), waits until the
zone answers, and stops the process by its PID. It serves one zone (default ``bank.test.``)
whose records (default ``ledger`` -> the source region's address) can be changed only by
RFC 2136 updates signed with the server's TSIG key (hmac-sha256); unsigned updates are refused.

As root, ``named`` drops to the ``bind`` user (``-u bind``): the directory is chowned to it and
every parent must be traversable, otherwise named exits without a useful message. As a normal
user named simply runs as that user.

Example::

    with BindServer(Path("/tmp/dr-dns"), records={"ledger": "127.0.1.1"}) as bind:
        bind.server          # DnsServer("127.0.0.1", 15353) for the dns provider
        bind.tsig_key        # TsigKey(name="dr-engine-key.", secret=SecretStr(...))
"""

from __future__ import annotations

import base64
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from dr_engine.providers.dns.client import DnsServer, TsigKey, absolute_name, is_listening
from dr_engine.world.pids import pid_runs, stop_pid

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 15353
DEFAULT_ZONE = "bank.test."
DEFAULT_KEY_NAME = "dr-engine-key."
BIND_USER = "bind"


class BindError(RuntimeError):
    """named could not be started (the message carries the tail of its log)."""


def generate_tsig_secret() -> SecretStr:
    """A fresh random 256-bit TSIG secret (base64), as ``tsig-keygen -a hmac-sha256`` makes."""
    return SecretStr(base64.b64encode(secrets.token_bytes(32)).decode("ascii"))


class BindServer:
    """One ``named`` process serving one zone, configured from scratch in ``root``.

    ``records`` maps relative names (``ledger``) to an IPv4 address (A record) or to a name
    ending in ``.`` (CNAME). ``ttl`` is the zone's default TTL, kept short so that clients
    notice a shift quickly. ``secret`` defaults to a freshly generated one.
    """

    def __init__(
        self,
        root: Path,
        *,
        address: str = DEFAULT_ADDRESS,
        port: int = DEFAULT_PORT,
        zone: str = DEFAULT_ZONE,
        records: Mapping[str, str] | None = None,
        ttl: int = 5,
        key_name: str = DEFAULT_KEY_NAME,
        secret: SecretStr | None = None,
        named: str = "named",
    ) -> None:
        self.root = Path(root)
        self.address = address
        self.port = port
        self.zone = absolute_name(zone)
        self.records = dict(records if records is not None else {"ledger": "127.0.1.1"})
        self.ttl = ttl
        self.key_name = absolute_name(key_name)
        self._secret = secret if secret is not None else generate_tsig_secret()
        self._named = named
        self._process: subprocess.Popen[bytes] | None = None
        self._adopted_pid: int | None = None  # a named started by another process (from_dict)
        self._log_handle: int | None = None

    # -- what clients need -------------------------------------------------------------------

    @property
    def server(self) -> DnsServer:
        """Address and port of this server, for the dns provider."""
        return DnsServer(self.address, self.port)

    @property
    def tsig_key(self) -> TsigKey:
        """The TSIG key the zone's update-policy grants."""
        return TsigKey(self.key_name, self._secret, "hmac-sha256")

    @property
    def log_path(self) -> Path:
        """named's log (stderr in foreground mode)."""
        return self.root / "named.log"

    @property
    def secret_file(self) -> Path:
        """File holding the TSIG secret (mode 0600), usable as a region's ``secrets: {file: ...}``."""
        return self.root / "tsig.secret"

    @property
    def pid(self) -> int | None:
        """PID of the running named, or None."""
        if self._process is not None:
            return self._process.pid if self._process.poll() is None else None
        if self._adopted_pid is not None and pid_runs(self._adopted_pid, "named"):
            return self._adopted_pid
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description for a state file (no secret: it stays in :attr:`secret_file`)."""
        return {"root": str(self.root), "address": self.address, "port": self.port, "zone": self.zone,
                "ttl": self.ttl, "key_name": self.key_name, "records": self.records, "pid": self.pid}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BindServer:
        """Re-attach to a server described by :meth:`to_dict` (e.g. for ``dr world down``)."""
        root = Path(data["root"])
        try:
            secret: SecretStr | None = SecretStr((root / "tsig.secret").read_text().strip())
        except OSError:
            secret = None
        server = cls(root, address=data["address"], port=int(data["port"]), zone=data["zone"],
                     records=data.get("records"), ttl=int(data.get("ttl", 5)), key_name=data["key_name"],
                     secret=secret)
        server._adopted_pid = int(data["pid"]) if data.get("pid") else None
        return server

    def fqdn(self, name: str) -> str:
        """``ledger`` -> ``ledger.bank.test.``."""
        return absolute_name(name, self.zone)

    def write_secret_file(self, path: Path) -> Path:
        """Write the TSIG secret to ``path`` (mode 0600) so a region can reference it as ``file:``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self._secret.get_secret_value())
        return path

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Write the configuration, start named in the foreground and wait until it answers."""
        if self.pid is not None:
            return
        named = shutil.which(self._named) or shutil.which(self._named, path="/usr/sbin:/usr/local/sbin")
        if named is None:
            raise BindError("`named` not found; install Debian's bind9 package (apt-get install bind9)")
        as_root = os.geteuid() == 0
        self._prepare_directory(as_root)
        argv = [named, "-g", "-4", "-n", "1", "-c", str(self.root / "named.conf")]
        if as_root:
            argv += ["-u", BIND_USER]
        self._log_handle = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=self._log_handle,
            start_new_session=True,  # a terminal's Ctrl-C goes to us; we stop named ourselves
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._cleanup()
                raise BindError(f"named exited with code {code} during start-up:\n{self.log_tail()}")
            if is_listening(self.server, self.zone, timeout=0.2):
                return
            if self._running_without_socket():
                self.stop()
                raise BindError(
                    f"named runs but does not listen on {self.address}: BIND only listens on addresses "
                    "configured on an interface (127.0.0.1 on loopback; another 127.x address needs "
                    f"`ip addr add {self.address}/32 dev lo`). Use address 127.0.0.1 with its own port."
                )
            time.sleep(0.02)
        self.stop()
        raise BindError(
            f"named did not answer for {self.zone} at {self.server} within {timeout:g}s:\n{self.log_tail()}"
        )

    def _running_without_socket(self) -> bool:
        """named logs ``running`` after binding: without a ``listening on`` line for us, it never will."""
        text = self.log_tail(200)
        messages = [line.split(" ", 2)[-1].strip() for line in text.splitlines()]
        return "running" in messages and f"{self.address}#{self.port}" not in text

    def ready(self) -> bool:
        """True when named runs and answers the zone's SOA."""
        return self.pid is not None and is_listening(self.server, self.zone, timeout=0.3)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop named by its PID: SIGTERM, then SIGKILL after ``timeout``. Safe to call twice."""
        if self._adopted_pid is not None:
            stop_pid(self._adopted_pid, "named", timeout)
            self._adopted_pid = None
        process = self._process
        if process is not None and process.poll() is None:
            # A SIGSTOPped named (region outage simulation) must be continued to handle SIGTERM.
            for sig in (signal.SIGCONT, signal.SIGTERM):
                try:
                    os.kill(process.pid, sig)
                except ProcessLookupError:
                    break
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._cleanup()

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of named's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> BindServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- configuration -----------------------------------------------------------------------

    def _cleanup(self) -> None:
        if self._log_handle is not None:
            os.close(self._log_handle)
            self._log_handle = None

    def _prepare_directory(self, as_root: bool) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if as_root:
            _check_traversable(self.root)
        zone_file = self.root / f"{self.zone.rstrip('.')}.zone"
        # A journal from an earlier run would replay old updates over the fresh zone file.
        for stale in self.root.glob("*.jnl"):
            stale.unlink()
        conf = self.root / "named.conf"
        _write_private(conf, self._config(zone_file))
        _write_private(zone_file, self._zone_text())
        self.write_secret_file(self.secret_file)
        if as_root:
            entry = pwd.getpwnam(BIND_USER)
            for path in (self.root, conf, zone_file):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            self.root.chmod(0o750)

    def _config(self, zone_file: Path) -> str:
        root = self.root
        zone = self.zone.rstrip(".")
        return f"""// Written by dr-engine's embedded world; regenerated on every start.
options {{
    directory "{root}";
    pid-file none;
    session-keyfile none;
    managed-keys-directory "{root}";
    listen-on port {self.port} {{ {self.address}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    allow-query {{ any; }};
    allow-transfer {{ none; }};
    dnssec-validation no;
    notify no;
}};

controls {{ }};

key "{self.key_name}" {{
    algorithm hmac-sha256;
    secret "{self._secret.get_secret_value()}";
}};

zone "{zone}" {{
    type primary;
    file "{zone_file}";
    // Only updates signed with the key are accepted; unsigned ones get REFUSED.
    update-policy {{ grant "{self.key_name}" zonesub ANY; }};
}};
"""

    def _zone_text(self) -> str:
        lines = [
            f"$ORIGIN {self.zone}",
            f"$TTL {self.ttl}",
            f"@ IN SOA ns1.{self.zone} hostmaster.{self.zone} (1 60 60 3600 {self.ttl})",
            f"@ IN NS ns1.{self.zone}",
            f"ns1 IN A {self.address}",
        ]
        for name, value in self.records.items():
            rdtype = "CNAME" if value.endswith(".") else "A"
            lines.append(f"{name} IN {rdtype} {value}")
        return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _check_traversable(root: Path) -> None:
    """Refuse early when the ``bind`` user could not reach ``root`` (named would die silently)."""
    for parent in root.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise BindError(
                f"{parent} is not traversable by other users (mode {stat.filemode(mode)}), so named running "
                f"as {BIND_USER!r} cannot reach {root}; use a directory under /tmp created with mode 0755 "
                "or `chmod o+x` the parent"
            )
