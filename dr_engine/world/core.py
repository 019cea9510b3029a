"""The embedded two-region world: PostgreSQL pair, ledger apps, BIND, moto, load, outages.

Everything runs on loopback, each region on its own address (``127.0.1.1`` = us-east-1,
``127.0.2.1`` = us-west-2 by default). Parts are optional (``WorldConfig.dns/apps/moto``),
so tests can start only what they need.

The world writes a ``regions/`` directory describing itself (addresses, ports, DSNs, data
dirs, DNS server, secrets as files). With the default configuration those files equal the
shipped ``regions/*.yaml``, so ``dr plan runbooks/core-banking.yaml`` works against either.

It also writes ``world.json`` so that ``dr world up``, ``status`` and ``down`` work across
CLI invocations: processes outlive ``dr world up`` (own sessions) and are stopped by their
recorded PIDs (checked against their command lines), never by name.

Region outage: :meth:`World.fail_region` freezes the region's processes (SIGSTOP of every
process of its PostgreSQL server and of the ledger app): connections hang, exactly like a host
that stopped answering. :meth:`World.restore_region` continues them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import SecretStr

from dr_engine.providers.postgres.processes import signal_server
from dr_engine.world import processes
from dr_engine.world.extras import MOTO_MODULES as MOTO_MODULES  # re-exported
from dr_engine.world.extras import WorldError as WorldError  # re-exported: the world's error
from dr_engine.world.extras import WorldExtraMissing as WorldExtraMissing  # re-exported
from dr_engine.world.extras import require_moto as require_moto  # re-exported
from dr_engine.world.postgres import NodeSpec, PgNode, PostgresPair, stop_node

#: Where the default (demo) world lives: under /tmp because the ``postgres`` and ``bind``
#: users must traverse every parent (home directories are often 0700).
DEFAULT_ROOT = Path(tempfile.gettempdir()) / "dr-engine-world"
STATE_FILE = "world.json"


@dataclass(frozen=True)
class WorldConfig:
    """Addresses, ports and parts of a world. The defaults are the demo's fixed ones."""

    source: str = "us-east-1"
    target: str = "us-west-2"
    source_addr: str = "127.0.1.1"
    target_addr: str = "127.0.2.1"
    pg_port: int = 15432
    app_port: int = 18080
    dns_addr: str = "127.0.0.1"
    dns_port: int = 15353
    moto_port: int = 45800
    zone: str = "bank.test"
    app_name: str = "ledger"
    dns_ttl: int = 5
    database: str = "ledger"
    synchronous: bool = True
    #: Database password; None = a fresh random one per world (written to ``<root>/pg-password``).
    pg_password: str | None = None
    postgres: bool = True
    apps: bool = True
    dns: bool = True
    moto: bool = True

    @classmethod
    def for_tests(cls, **overrides: Any) -> WorldConfig:
        """A configuration on fresh loopback addresses and free ports (never the demo's)."""
        from dr_engine.world.loopback import free_port, free_udp_tcp_port, region_addresses

        src, dst = region_addresses()
        base: dict[str, Any] = {
            "source_addr": src, "target_addr": dst, "pg_port": free_port(src), "app_port": free_port(src),
            # BIND listens only on addresses configured on an interface: 127.0.0.1 with its own port.
            "dns_addr": "127.0.0.1", "dns_port": free_udp_tcp_port("127.0.0.1"), "moto_port": free_port("127.0.0.1")}
        # Both regions use the same port numbers on their own addresses: make sure they are free there too.
        for key in ("pg_port", "app_port"):
            while not _port_free(dst, base[key]) or (key == "app_port" and base[key] == base["pg_port"]):
                base[key] = free_port(src)
        return cls(**{**base, **overrides})

    def addr(self, region: str) -> str:
        """The loopback address of ``region``."""
        return {self.source: self.source_addr, self.target: self.target_addr}[region]

    @property
    def public_name(self) -> str:
        """The app's public DNS name, e.g. ``ledger.bank.test``."""
        return f"{self.app_name}.{self.zone}"


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class RegionEndpoints:
    """What one region exposes."""

    name: str
    addr: str
    pg_dsn: str
    app_url: str
    health_url: str


@dataclass
class WorldEndpoints:
    """Everything a client of the world needs (secrets as SecretStr; DSNs carry no password)."""

    regions: dict[str, RegionEndpoints]
    dns_server: str
    zone: str
    public_name: str
    public_health_url: str
    tsig_key_name: str
    tsig_secret: SecretStr | None
    moto_endpoint_url: str | None
    ack_file: Path
    regions_dir: Path
    pg_password: SecretStr | None = None

    def dsn(self, region: str) -> str:
        """``region``'s DSN with the password in it (for clients; never print it)."""
        from dr_engine.world.postgres import build_dsn

        ends = self.regions[region]
        host, _, rest = ends.pg_dsn.removeprefix("postgresql://postgres@").partition(":")
        port, _, db = rest.partition("/")
        password = None if self.pg_password is None else self.pg_password.get_secret_value()
        return build_dsn(host, int(port), db, password=password)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the TSIG secret is not included)."""
        data = asdict(self)
        data["tsig_secret"] = None if self.tsig_secret is None else "**********"
        data["pg_password"] = None if self.pg_password is None else "**********"
        data["ack_file"], data["regions_dir"] = str(self.ack_file), str(self.regions_dir)
        return data


@dataclass
class World:
    """The embedded world; use as a context manager (``with World(...) as world:``).

    ``root`` holds everything (data, logs, regions, state); by default the demo's fixed
    directory, for tests a fresh temporary directory.
    """

    config: WorldConfig = field(default_factory=WorldConfig)
    root: Path = DEFAULT_ROOT
    keep_root: bool = False
    pg: PostgresPair | None = None
    _apps: dict[str, Any] = field(default_factory=dict)
    _bind: Any = None
    _moto: Any = None
    _tsig_secret: SecretStr | None = None
    _load: Any = None
    _state: dict[str, Any] = field(default_factory=dict)
    #: Ids of the AWS resources seeded into moto (zone id, group, buckets, state buckets); empty without moto.
    aws_resources: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> World:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> World:
        """Start every configured part; on failure stop what was started and re-raise."""
        if self.config.moto:
            require_moto()
        existing = read_state(self.root)
        if existing is not None and any(processes.alive(p) for p in _state_pids(existing)):
            raise WorldError(f"a world is already running in {self.root}",
                             hint="stop it with `dr world down` first")
        if os.geteuid() == 0:
            _check_traversable(self.root)
        if self.root.exists():
            if any(self.root.iterdir()) and existing is None:
                # Never wipe a directory the world did not create.
                raise WorldError(f"{self.root} exists, is not empty and holds no world",
                                 hint="choose an empty or new directory with --root")
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        self.root.chmod(0o755)  # the postgres and bind users must traverse it
        (self.root / "logs").mkdir()
        try:
            self._start_parts()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_parts(self) -> None:
        cfg = self.config
        self._state = {"config": {**asdict(cfg), "pg_password": None}, "root": str(self.root),
                       "failed_regions": [], "pid": os.getpid()}
        self._write_state()
        # Empty until load runs: `postgres.reconcile` of a failover without load then finds 0 rows to check.
        self.ack_file.touch()
        if cfg.postgres:
            # Loopback connections need a password, so secret handling is exercised end to end.
            password = cfg.pg_password or random_password()
            _write_private(self.root / "pg-password", password)
            self.pg = PostgresPair(self.root / "pg", NodeSpec(cfg.source, cfg.source_addr, cfg.pg_port),
                                   NodeSpec(cfg.target, cfg.target_addr, cfg.pg_port),
                                   synchronous=cfg.synchronous, password=password, database=cfg.database)
            self.pg.start()
            self._state["postgres"] = self.pg.to_dict()
            self._write_state()
            if cfg.apps:
                from dr_engine.world.ledger_app import ensure_schema

                ensure_schema(self.pg.dsn(cfg.source))
        if cfg.dns:
            self._start_dns()
        if cfg.apps and self.pg is not None:
            self._start_apps()
        if cfg.moto:
            self._start_moto()
        self.write_regions()
        self._write_state()

    def _start_dns(self) -> None:
        from dr_engine.world.dns import BindServer, generate_tsig_secret

        cfg = self.config
        self._tsig_secret = generate_tsig_secret()
        bind_root = self.root / "dns"
        self._bind = BindServer(bind_root, address=cfg.dns_addr, port=cfg.dns_port, zone=cfg.zone,
                                records={cfg.app_name: cfg.source_addr}, ttl=cfg.dns_ttl,
                                secret=self._tsig_secret)
        self._bind.start()
        _write_private(self.root / "tsig.key", self._tsig_secret.get_secret_value())
        self._state["dns"] = {"pid": self._bind.pid, "marker": "named", "root": str(bind_root),
                              "key_name": self._bind.key_name}
        self._write_state()

    def _start_apps(self) -> None:
        from dr_engine.world.ledger_app import LedgerProcess

        cfg = self.config
        assert self.pg is not None
        self._state["apps"] = {}
        for region in (cfg.source, cfg.target):
            app = LedgerProcess(cfg.addr(region), cfg.app_port, self.pg.dsn(region), region,
                                log_file=self.root / "logs" / f"ledger-{region}.log")
            app.start()
            self._apps[region] = app
            self._state["apps"][region] = {"pid": app.pid, "marker": "dr_engine.world.ledger_app", "url": app.url}
            self._write_state()

    def _start_moto(self) -> None:
        from dr_engine.world.moto_server import MotoServer

        self._moto = MotoServer("127.0.0.1", self.config.moto_port, log_path=self.root / "logs" / "moto.log")
        self._moto.start()
        self._state["moto"] = {"pid": self._moto.pid, "marker": "dr_engine.world.moto_server",
                               "endpoint_url": self._moto.endpoint_url}
        self._write_state()  # recorded before seeding, so `down` stops it even if seeding fails
        self.aws_resources = seed_world_aws(self.config, self._moto.endpoint_url)
        self._state["moto"]["seeded"] = self.aws_resources

    def stop(self) -> None:
        """Stop everything this world started (load, apps, DNS, moto, databases)."""
        self.stop_load()
        for app in self._apps.values():
            with contextlib.suppress(Exception):
                app.stop()
        self._apps.clear()
        if self._bind is not None:
            with contextlib.suppress(Exception):
                self._bind.stop()
            self._bind = None
        if self._moto is not None:
            with contextlib.suppress(Exception):
                self._moto.stop()
            self._moto = None
        if self.pg is not None and self.pg.nodes:
            self.pg.stop()
        down(self.root, remove=not self.keep_root)

    @property
    def moto_endpoint_url(self) -> str | None:
        """The local AWS endpoint (moto) of this world; None when the AWS part is off."""
        return None if self._moto is None else str(self._moto.endpoint_url)

    # ------------------------------------------------------------------ state
    def _write_state(self) -> None:
        path = self.root / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state, indent=2, default=str))
        tmp.replace(path)

    # ------------------------------------------------------------------ endpoints
    @property
    def regions_dir(self) -> Path:
        """The regions directory describing this world."""
        return self.root / "regions"

    @property
    def ack_file(self) -> Path:
        """Where the load generator appends acknowledged ``ack_seq`` values."""
        return self.root / "acked.log"

    def endpoints(self) -> WorldEndpoints:
        """Addresses, DSNs, URLs, DNS and AWS endpoints of this world."""
        ends = endpoints_of(self.config, self.root, tsig_secret=self._tsig_secret,
                            moto_url=None if self._moto is None else str(self._moto.endpoint_url))
        if self.pg is not None and self.pg.password is not None:
            ends.pg_password = SecretStr(self.pg.password)
        return ends

    def write_regions(self) -> Path:
        """Write ``regions/<name>.yaml`` for both regions with this world's real values."""
        self.regions_dir.mkdir(exist_ok=True)
        moto = None if self._moto is None else str(self._moto.endpoint_url)
        for region in (self.config.source, self.config.target):
            text = region_yaml(self.config, self.root, region, moto_url=moto)
            (self.regions_dir / f"{region}.yaml").write_text(text)
        return self.regions_dir

    # ------------------------------------------------------------------ outage
    def fail_region(self, region: str) -> list[int]:
        """Freeze every process of ``region`` (SIGSTOP); returns the PIDs frozen."""
        return signal_region(self.root, region, signal.SIGSTOP)

    def restore_region(self, region: str) -> list[int]:
        """Continue the processes of ``region`` frozen by :meth:`fail_region` (SIGCONT)."""
        return signal_region(self.root, region, signal.SIGCONT)

    # ------------------------------------------------------------------ load
    def start_load(self, *, interval: float = 0.02, max_duration: float = 600.0) -> Any:
        """Start the load generator on the public name (it follows DNS); returns it."""
        from dr_engine.providers.dns.client import DnsServer
        from dr_engine.world.load import LoadGenerator

        cfg = self.config
        if not (cfg.apps and cfg.dns and cfg.postgres):
            raise WorldError("load needs the postgres, apps and dns parts", hint="enable them in WorldConfig")
        self._load = LoadGenerator(f"http://{cfg.public_name}:{cfg.app_port}/transfer",
                                   resolve_via=DnsServer(cfg.dns_addr, cfg.dns_port), ack_file=self.ack_file,
                                   ack_log=self.root / "acked.jsonl", interval=interval, request_timeout=1.0,
                                   max_duration=max_duration)
        self._load.start()
        return self._load

    def stop_load(self) -> None:
        """Stop the load generator if it runs."""
        if self._load is not None:
            self._load.stop()
            self._load = None


# ---------------------------------------------------------------------- shared by CLI & World
def endpoints_of(cfg: WorldConfig, root: Path, *, tsig_secret: SecretStr | None = None,
                 moto_url: str | None = None) -> WorldEndpoints:
    """The endpoints of a world with configuration ``cfg`` living in ``root``."""
    from dr_engine.world.postgres import build_dsn

    regions = {}
    for name in (cfg.source, cfg.target):
        addr = cfg.addr(name)
        regions[name] = RegionEndpoints(name=name, addr=addr,
                                        pg_dsn=build_dsn(addr, cfg.pg_port, cfg.database),
                                        app_url=f"http://{addr}:{cfg.app_port}",
                                        health_url=f"http://{addr}:{cfg.app_port}/healthz")
    return WorldEndpoints(regions=regions, dns_server=f"{cfg.dns_addr}:{cfg.dns_port}", zone=cfg.zone,
                          public_name=cfg.public_name,
                          public_health_url=f"http://{cfg.public_name}:{cfg.app_port}/healthz",
                          tsig_key_name="dr-engine-key", tsig_secret=tsig_secret,
                          moto_endpoint_url=moto_url or f"http://127.0.0.1:{cfg.moto_port}",
                          ack_file=root / "acked.log", regions_dir=root / "regions")


def seed_world_aws(cfg: WorldConfig, endpoint_url: str) -> dict[str, str]:
    """Create the AWS half of the world in moto: the demo resources and each region's Terraform state bucket.

    The state buckets exist beforehand, as in a real estate, so ``dr plan`` can pre-flight a
    ``terraform.apply`` against the target region's state before any failover ran.
    """
    from dr_engine.providers.terraform.backend import ensure_state_backend
    from dr_engine.world.aws_seed import AwsWorld, seed_aws_world

    seeded = seed_aws_world(endpoint_url, AwsWorld(source_region=cfg.source, target_region=cfg.target,
                                                   source_addr=cfg.source_addr, target_addr=cfg.target_addr))
    for region in (cfg.source, cfg.target):
        ensure_state_backend(bucket=f"dr-tfstate-{region}", region=region, endpoint=endpoint_url)
        seeded[f"state_bucket_{region}"] = f"dr-tfstate-{region}"
    return seeded


def region_yaml(cfg: WorldConfig, root: Path, region: str, *, moto_url: str | None = None) -> str:
    """The text of ``regions/<region>.yaml`` for a world (the shipped files are the default's)."""
    from dr_engine.world.postgres import build_dsn

    role = "Primary" if region == cfg.source else "Recovery"
    addr = cfg.addr(region)
    pg_root = root / "pg"
    lines = [
        f"# {role} region of the embedded local world (written by `dr world up`; every address is loopback).",
        f"name: {region}",
        f"description: {role} region (embedded world address {addr})",
        "aws:",
        f"  region: {region}",
        f"  endpoint_url: {moto_url or f'http://127.0.0.1:{cfg.moto_port}'}",
        "params:",
        f"  addr: {addr}",
        f"  health_url: http://{addr}:{cfg.app_port}/healthz",
        f"  app_url: http://{addr}:{cfg.app_port}",
        f"  app_port: {cfg.app_port}",
        f"  pg_dsn: {build_dsn(addr, cfg.pg_port, cfg.database)}",
        f"  pg_data_dir: {pg_root / 'data' / region}",
        f"  pg_synchronous: {'true' if cfg.synchronous else 'false'}",
        f"  dns_server: {cfg.dns_addr}:{cfg.dns_port}",
        f"  dns_zone: {cfg.zone}",
        "  dns_key_name: dr-engine-key",
        f"  app_name: {cfg.app_name}",
        f"  public_name: {cfg.public_name}",
        f"  public_health_url: http://{cfg.public_name}:{cfg.app_port}/healthz",
        f"  ack_file: {root / 'acked.log'}",
        "secrets:",
        f"  tsig_key: {{file: {root / 'tsig.key'}}}",
    ]
    lines.append(f"  pg_password: {{file: {root / 'pg-password'}}}")
    return "\n".join(lines) + "\n"


def read_state(root: Path) -> dict[str, Any] | None:
    """The state file of the world in ``root`` (None when there is none)."""
    try:
        data: dict[str, Any] = json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data


def _state_pids(state: dict[str, Any]) -> list[int]:
    pids: list[int] = []
    for node in _pg_nodes(state):
        pid = node.pid()
        if pid is not None:
            pids.append(pid)
    for app in (state.get("apps") or {}).values():
        if app.get("pid"):
            pids.append(int(app["pid"]))
    for part in ("dns", "moto"):
        info = state.get(part) or {}
        if info.get("pid"):
            pids.append(int(info["pid"]))
    return pids


def _pg_nodes(state: dict[str, Any]) -> list[PgNode]:
    pg = state.get("postgres") or {}
    return [PgNode.from_dict(pg[k]) for k in ("primary", "standby") if k in pg]


def signal_region(root: Path, region: str, sig: signal.Signals) -> list[int]:
    """Send ``sig`` to every process of ``region`` (its PostgreSQL server, its ledger app)."""
    state = read_state(root)
    if state is None:
        raise WorldError(f"no world in {root}", hint="start one with `dr world up`")
    cfg = state.get("config", {})
    if region not in (cfg.get("source"), cfg.get("target")):
        raise WorldError(f"unknown region {region!r}",
                         hint=f"the world's regions are {cfg.get('source')} and {cfg.get('target')}")
    done: list[int] = []
    for node in _pg_nodes(state):
        if node.region == region:
            # The whole cluster (orphans of a dead postmaster too), not the postmaster's process
            # group: each PostgreSQL child makes itself a group leader.
            done += signal_server(node.pid(), node.data_dir, sig)
    app = (state.get("apps") or {}).get(region)
    if app and app.get("pid") and processes.is_ours(int(app["pid"]), app["marker"]):
        processes.send(int(app["pid"]), sig)
        done.append(int(app["pid"]))
    failed = set(state.get("failed_regions", []))
    failed = failed | {region} if sig is signal.SIGSTOP else failed - {region}
    state["failed_regions"] = sorted(failed)
    (root / STATE_FILE).write_text(json.dumps(state, indent=2, default=str))
    return done


def status(root: Path) -> dict[str, Any]:
    """What runs in the world at ``root``: per part, PID and whether it is alive."""
    state = read_state(root)
    if state is None:
        return {"root": str(root), "running": False}
    parts: dict[str, Any] = {}
    for node in _pg_nodes(state):
        pid = node.pid()
        parts[f"postgres {node.region}"] = {"pid": pid, "alive": pid is not None,
                                            "address": f"{node.host}:{node.port}"}
    for region, app in (state.get("apps") or {}).items():
        pid = int(app["pid"]) if app.get("pid") else None
        parts[f"ledger app {region}"] = {"pid": pid, "alive": bool(pid and processes.is_ours(pid, app["marker"])),
                                         "address": app.get("url")}
    for part in ("dns", "moto"):
        info = state.get(part)
        if info:
            pid = info.get("pid")
            parts[part] = {"pid": pid, "alive": bool(pid and processes.is_ours(int(pid), info["marker"])),
                           "address": info.get("endpoint_url") or state["config"].get("dns_addr", "") + ":"
                           + str(state["config"].get("dns_port", ""))}
    return {"root": str(root), "running": any(p["alive"] for p in parts.values()), "parts": parts,
            "failed_regions": state.get("failed_regions", []), "config": state.get("config", {})}


def down(root: Path, *, remove: bool = True) -> list[str]:
    """Stop every process recorded in ``root``'s state file by PID; remove ``root`` unless told not to."""
    state = read_state(root)
    stopped: list[str] = []
    if state is not None:
        for region, app in (state.get("apps") or {}).items():
            if app.get("pid") and processes.stop_pid(int(app["pid"]), app["marker"]):
                stopped.append(f"ledger app {region}")
        for part in ("dns", "moto"):
            info = state.get(part)
            if info and info.get("pid") and processes.stop_pid(int(info["pid"]), info["marker"]):
                stopped.append(part)
        pg = state.get("postgres") or {}
        for node in _pg_nodes(state):
            if node.pid() is not None:
                stop_node(node, Path(pg.get("bin_dir", "/usr/lib/postgresql/15/bin")), root)
                stopped.append(f"postgres {node.region}")
    if remove and root.exists() and (state is not None or not any(root.iterdir())):
        shutil.rmtree(root, ignore_errors=True)
    return stopped


def _check_traversable(root: Path) -> None:
    """As root the servers run as other users, who must be able to reach ``root``."""
    import stat

    for parent in root.resolve().parents:
        if parent.exists() and not parent.stat().st_mode & stat.S_IXOTH:
            raise WorldError(f"{parent} is not traversable by other users, so the postgres and bind users "
                             f"cannot reach {root}",
                             hint="use a directory under /tmp (the default), or `chmod o+x` that parent")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def random_password() -> str:
    """A random password (for worlds that require one)."""
    return secrets.token_urlsafe(18)


__all__ = ["DEFAULT_ROOT", "World", "WorldConfig", "WorldEndpoints", "WorldError", "down", "read_state",
           "region_yaml", "seed_world_aws", "signal_region", "status"]
