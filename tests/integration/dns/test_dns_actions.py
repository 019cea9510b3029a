"""dns.shift / dns.verify against a real BIND: answers change at the server, TSIG is enforced."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import dns.query
import dns.rcode
import dns.update
import pytest
from pydantic import SecretStr

from dr_engine.actions.dns import Shift, ShiftParams, Verify, VerifyParams
from dr_engine.errors import PreconditionFailed, ProviderError, TransientError, VerificationFailed
from dr_engine.model import Region
from dr_engine.providers.dns.client import query
from dr_engine.testing.step_context import step_context
from dr_engine.world.dns import BindError, BindServer
from dr_engine.world.loopback import free_udp_tcp_port

pytestmark = pytest.mark.integration

WRONG_SECRET = base64.b64encode(b"not-the-key-" * 3).decode()


def shift_params(bind: BindServer, name: str, value: str, **extra: object) -> ShiftParams:
    data: dict[str, object] = {
        "server": f"{bind.address}:{bind.port}",
        "zone": "bank.test",
        "name": name,
        "value": value,
        "ttl": "30s",
        "key_name": bind.key_name.rstrip("."),  # runbooks usually write the name without the dot
        "key_secret": bind.tsig_key.secret.get_secret_value(),
        "query_timeout": "500ms",
    }
    data.update(extra)
    return ShiftParams.model_validate(data)


def answer(bind: BindServer, name: str, rdtype: str = "A") -> tuple[str, ...]:
    return query(bind.server, name, rdtype).values


def test_shift_changes_the_answer_at_the_server(bind: BindServer, record: str, addresses: tuple[str, str],
                                                tmp_path: Path) -> None:
    src, dst = addresses
    assert answer(bind, record) == (src,)
    result = Shift().run(shift_params(bind, record, dst), step_context(state_dir=tmp_path))
    assert result.changed is True
    assert answer(bind, record) == (dst,)
    assert query(bind.server, record).ttl == 30
    assert result.facts["previous"] == [src]
    assert result.facts["ttl"] == 30
    assert result.facts["max_stale_seconds"] == 5  # the old record's TTL: caches may hold it that long
    assert result.outputs == {"name": record, "value": dst, "ttl": "30", "previous": src}

    verified = Verify().run(
        VerifyParams(server=f"{bind.address}:{bind.port}", name=record, expected=[dst]),
        step_context(state_dir=tmp_path, timeout=5),
    )
    assert verified.facts["answer"] == [dst]


def test_shift_again_is_a_no_op(bind: BindServer, record: str, addresses: tuple[str, str], tmp_path: Path) -> None:
    params = shift_params(bind, record, addresses[1])
    assert Shift().run(params, step_context(state_dir=tmp_path)).changed is True
    again = Shift().run(params, step_context(state_dir=tmp_path))
    assert again.changed is False
    assert "already points" in again.summary
    assert answer(bind, record) == (addresses[1],)


def test_a_new_ttl_alone_is_applied(bind: BindServer, record: str, addresses: tuple[str, str],
                                    tmp_path: Path) -> None:
    result = Shift().run(shift_params(bind, record, addresses[0], ttl="2m"), step_context(state_dir=tmp_path))
    assert result.changed is True
    assert result.facts["max_stale_seconds"] == 0  # same address: nothing stale
    assert query(bind.server, record).ttl == 120


def test_shift_to_a_cname_replaces_the_address(bind: BindServer, record: str, tmp_path: Path) -> None:
    result = Shift().run(shift_params(bind, record, "ns1.bank.test", record_type="CNAME"),
                         step_context(state_dir=tmp_path))
    assert result.changed is True
    got = query(bind.server, record, "A")
    assert (got.rdtype, got.values) == ("CNAME", ("ns1.bank.test.",))


def test_secret_from_the_target_region(bind: BindServer, record: str, addresses: tuple[str, str],
                                       tmp_path: Path) -> None:
    target = Region(name="us-west-2")
    ctx = step_context(state_dir=tmp_path, target=target,
                       secrets={"us-west-2.tsig_key": bind.tsig_key.secret.get_secret_value()})
    params = shift_params(bind, record, addresses[1], key_secret=None, key_secret_name="tsig_key")
    assert Shift().run(params, ctx).changed is True
    assert answer(bind, record) == (addresses[1],)

    missing = shift_params(bind, record, addresses[0], key_secret=None, key_secret_name="nope")
    with pytest.raises(PreconditionFailed, match="TSIG secret 'nope' of region us-west-2"):
        Shift().run(missing, ctx)


def test_bad_tsig_secret_is_refused_with_a_clear_error(bind: BindServer, record: str, addresses: tuple[str, str],
                                                       tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    params = shift_params(bind, record, addresses[1], key_secret=WRONG_SECRET)
    with pytest.raises(ProviderError) as info:
        Shift().run(params, step_context(state_dir=tmp_path))
    assert "rejected the TSIG signature" in info.value.message
    assert info.value.hint is not None and "secret" in info.value.hint
    assert answer(bind, record) == (addresses[0],)  # unchanged
    for text in (str(info.value), caplog.text):
        assert WRONG_SECRET not in text
        assert bind.tsig_key.secret.get_secret_value() not in text


def test_unknown_key_name_is_refused(bind: BindServer, record: str, addresses: tuple[str, str],
                                     tmp_path: Path) -> None:
    params = shift_params(bind, record, addresses[1], key_name="someone-else")
    with pytest.raises(ProviderError, match="PeerBadKey"):
        Shift().run(params, step_context(state_dir=tmp_path))
    assert answer(bind, record) == (addresses[0],)


def test_unsigned_update_is_refused_by_the_server(bind: BindServer, record: str, addresses: tuple[str, str]) -> None:
    update = dns.update.UpdateMessage("bank.test.")
    update.replace(record, 30, "A", addresses[1])
    response = dns.query.tcp(update, bind.address, port=bind.port, timeout=5)
    assert dns.rcode.to_text(response.rcode()) == "REFUSED"
    assert answer(bind, record) == (addresses[0],)


def test_bind_down_is_transient(addresses: tuple[str, str], tmp_path: Path, fresh_root: Path) -> None:
    down = BindServer(fresh_root / "named", port=free_udp_tcp_port())
    down.start()
    assert down.ready()
    pid = down.pid
    down.stop()
    assert pid is not None and down.pid is None and not down.ready()
    params = shift_params(down, "ledger", addresses[1])
    with pytest.raises(TransientError, match=r"did not answer|unreachable"):
        Shift().run(params, step_context(state_dir=tmp_path, timeout=5))
    with pytest.raises(TransientError, match="never answered"):
        Verify().run(VerifyParams(server=f"{down.address}:{down.port}", name="ledger.bank.test",
                                  expected=[addresses[1]], interval="50ms", query_timeout="200ms",
                                  max_wait="600ms"),
                     step_context(state_dir=tmp_path, timeout=5))


def test_verify_reports_the_wrong_answer(bind: BindServer, record: str, addresses: tuple[str, str],
                                         tmp_path: Path) -> None:
    params = VerifyParams(server=f"{bind.address}:{bind.port}", name=record, expected=[addresses[1]],
                          interval="50ms", max_wait="300ms")
    with pytest.raises(VerificationFailed) as info:
        Verify().run(params, step_context(state_dir=tmp_path, timeout=5))
    assert f"answers {addresses[0]}, expected {addresses[1]}" in info.value.message


def test_preflight_checks_the_record_and_the_key(bind: BindServer, record: str, addresses: tuple[str, str],
                                                 tmp_path: Path) -> None:
    good = Shift().preflight(shift_params(bind, record, addresses[1]), step_context(state_dir=tmp_path))
    assert [c.ok for c in good] == [True, True]
    assert addresses[0] in good[0].detail
    bad = Shift().preflight(shift_params(bind, record, addresses[1], key_secret=WRONG_SECRET),
                            step_context(state_dir=tmp_path))
    assert [c.ok for c in bad] == [True, False]
    assert "TSIG" in bad[1].detail
    assert answer(bind, record) == (addresses[0],)  # preflight is read-only


def test_private_parent_directory(fresh_root: Path) -> None:
    """As root named runs as `bind`, which cannot traverse a 0700 directory: refused up front."""
    import os

    hidden = fresh_root / "private"
    hidden.mkdir(mode=0o700)
    server = BindServer(hidden / "named", port=free_udp_tcp_port())
    if os.geteuid() == 0:
        with pytest.raises(BindError, match="not traversable"):
            server.start()
        assert server.pid is None
    else:  # a normal user's named runs as that user and reaches its own directory
        with server:
            assert server.ready()


def test_an_address_bind_cannot_listen_on_is_reported(addresses: tuple[str, str], fresh_root: Path) -> None:
    server = BindServer(fresh_root / "named", address=addresses[1], port=free_udp_tcp_port(addresses[1]))
    with pytest.raises(BindError, match="only listens on addresses configured on an interface"):
        server.start()
    assert server.pid is None


def test_secret_file_is_private(bind: BindServer, tmp_path: Path) -> None:
    path = bind.write_secret_file(tmp_path / "tsig.key")
    assert path.read_text() == bind.tsig_key.secret.get_secret_value()
    assert path.stat().st_mode & 0o077 == 0
    assert isinstance(bind.tsig_key.secret, SecretStr)


def test_another_process_can_stop_it_by_recorded_pid(fresh_root: Path) -> None:
    started = BindServer(fresh_root / "named", port=free_udp_tcp_port())
    started.start()
    try:
        state = started.to_dict()
        assert started.tsig_key.secret.get_secret_value() not in str(state)
        attached = BindServer.from_dict(state)
        assert attached.pid == started.pid
        assert attached.ready()
        assert attached.tsig_key.secret.get_secret_value() == started.tsig_key.secret.get_secret_value()
        attached.stop()
        assert attached.pid is None
        assert not started.ready()
    finally:
        started.stop()
    assert started.pid is None
