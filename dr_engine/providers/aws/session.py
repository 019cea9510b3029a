"""One client factory per region: credential chain/profile, endpoint override, bounded I/O.

Every client gets botocore's *standard* retry mode with a small ``total_max_attempts`` (wire-level
throttling only; operation-level retries belong to the engine, bounded by the step deadline) and
connect/read timeouts capped by the step :class:`~dr_engine.clock.Deadline`, because a thread
blocked in a socket read cannot be interrupted from outside.

Credentials follow the standard chain (environment, shared config/credentials files, SSO,
container and instance metadata) for the region's ``aws.profile``. For a *loopback*
``endpoint_url`` (moto, LocalStack) with no credentials in the environment and no profile, fixed
dummy credentials are used so a local world needs no set-up and never probes instance metadata.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dr_engine.clock import Deadline
from dr_engine.errors import ProviderError
from dr_engine.model import Region

#: Tries per call including the first one (botocore ``total_max_attempts``): small on purpose.
WIRE_ATTEMPTS = 3
#: Upper bounds on socket timeouts; the step deadline lowers them further.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
#: Credentials used only against loopback emulators when nothing else is configured.
LOCAL_DUMMY_KEY = "testing"

_lock = threading.Lock()
_sessions: dict[str | None, Any] = {}


@dataclass(frozen=True)
class AwsTarget:
    """Where and how to call AWS for one region (derived from ``regions/NAME.yaml``)."""

    region_name: str
    endpoint_url: str | None = None
    profile: str | None = None
    label: str = ""

    @classmethod
    def of(cls, region: Region) -> AwsTarget:
        """The AWS settings of a dr-engine region; ProviderError when it has none."""
        if region.aws is None:
            raise ProviderError(
                f"region '{region.name}' has no `aws:` settings, so AWS actions cannot reach it",
                hint=f"add `aws: {{region: ...}}` to regions/{region.name}.yaml",
            )
        return cls(region.aws.region, region.aws.endpoint_url, region.aws.profile, region.name)

    @property
    def is_loopback(self) -> bool:
        """True when the endpoint is a local emulator on 127.0.0.0/8 or localhost."""
        if not self.endpoint_url:
            return False
        host = urlsplit(self.endpoint_url).hostname or ""
        return host == "localhost" or host.startswith("127.") or host == "::1"


def _session(profile: str | None) -> Any:
    import boto3

    # boto3 sessions are not thread-safe; steps of one wave run in parallel threads.
    with _lock:
        session = _sessions.get(profile)
        if session is None:
            try:
                session = boto3.session.Session(profile_name=profile)
            except Exception as exc:  # botocore.exceptions.ProfileNotFound and config parse errors
                raise ProviderError(
                    f"cannot load AWS profile {profile!r}: {exc}",
                    hint="check ~/.aws/config or the region's `aws.profile`",
                ) from exc
            _sessions[profile] = session
        return session


def client_config(deadline: Deadline | None) -> Any:
    """botocore Config: standard retries with a small budget, timeouts capped by the deadline."""
    from botocore.config import Config

    connect = CONNECT_TIMEOUT if deadline is None else deadline.remaining(CONNECT_TIMEOUT)
    read = READ_TIMEOUT if deadline is None else deadline.remaining(READ_TIMEOUT)
    return Config(
        retries={"mode": "standard", "total_max_attempts": WIRE_ATTEMPTS},
        connect_timeout=connect,
        read_timeout=read,
        user_agent_extra="dr-engine",
    )


def client(target: AwsTarget, service: str, deadline: Deadline | None = None) -> Any:
    """A boto3 client for ``service`` in ``target``'s region (thread-safe to use once built)."""
    kwargs: dict[str, Any] = {"region_name": target.region_name, "config": client_config(deadline)}
    if target.endpoint_url:
        kwargs["endpoint_url"] = target.endpoint_url
    if target.is_loopback and target.profile is None and "AWS_ACCESS_KEY_ID" not in os.environ:
        kwargs["aws_access_key_id"] = LOCAL_DUMMY_KEY
        kwargs["aws_secret_access_key"] = LOCAL_DUMMY_KEY
    session = _session(target.profile)
    with _lock:
        return session.client(service, **kwargs)
