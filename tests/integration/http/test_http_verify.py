"""http.verify against real HTTP servers (and a real BIND for verification through the public name)."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from scripted_http import ScriptedServer

from dr_engine.actions.http import Verify, VerifyParams
from dr_engine.errors import VerificationFailed
from dr_engine.testing.step_context import step_context
from dr_engine.world.dns import BindServer
from dr_engine.world.loopback import free_port, free_udp_tcp_port

pytestmark = pytest.mark.integration


def params(url: str, **extra: object) -> VerifyParams:
    data: dict[str, object] = {"url": url, "consecutive": 3, "interval": "10ms", "probe_timeout": "1s"}
    data.update(extra)
    return VerifyParams.model_validate(data)


def test_healthy_after_n_consecutive_probes(web: ScriptedServer, tmp_path: Path) -> None:
    result = Verify().run(params(web.url, expect_body="ok"), step_context(state_dir=tmp_path, timeout=10))
    assert result.changed is False
    assert result.facts["probes"] == 3
    assert result.facts["healthy_probes"] == 3
    assert result.facts["last_status"] == 200
    assert len(web.script.seen) == 3


def test_becomes_healthy_after_failures(web: ScriptedServer, tmp_path: Path) -> None:
    web.script.answers = [(503, "starting", 0.0)] * 2 + [(200, "ok", 0.0)]
    result = Verify().run(params(web.url), step_context(state_dir=tmp_path, timeout=10))
    assert result.facts["probes"] == 5
    assert result.facts["streak_resets"] == 0


def test_flapping_endpoint_resets_the_streak(web: ScriptedServer, tmp_path: Path) -> None:
    web.script.answers = [(200, "ok", 0.0), (200, "ok", 0.0), (503, "db down", 0.0), (200, "ok", 0.0)]
    result = Verify().run(params(web.url), step_context(state_dir=tmp_path, timeout=10))
    assert result.facts["probes"] == 6
    assert result.facts["streak_resets"] == 1
    assert result.facts["healthy_probes"] == 5


def test_endpoint_that_keeps_flapping_never_passes(web: ScriptedServer, tmp_path: Path) -> None:
    web.script.answers = [(200, "ok", 0.0), (503, "db down", 0.0)] * 20 + [(503, "db down", 0.0)]
    with pytest.raises(VerificationFailed) as info:
        Verify().run(params(web.url, max_wait="400ms"), step_context(state_dir=tmp_path, timeout=10))
    assert "0/3 consecutive ok" in info.value.message or "1/3 consecutive ok" in info.value.message
    assert "streak reset" in info.value.message


def test_unhealthy_target_fails_with_the_last_answer(web: ScriptedServer, tmp_path: Path) -> None:
    web.script.answers = [(503, "unhealthy region=us-west-2: database is a standby in recovery", 0.0)]
    with pytest.raises(VerificationFailed) as info:
        Verify().run(params(web.url, interval="50ms"), step_context(state_dir=tmp_path, timeout=1))
    message = info.value.message
    assert "not healthy" in message
    assert "status 503" in message
    assert "standby in recovery" in message
    assert info.value.hint is not None


def test_wrong_body_is_unhealthy(web: ScriptedServer, tmp_path: Path) -> None:
    web.script.answers = [(200, "degraded", 0.0)]
    with pytest.raises(VerificationFailed, match="missing 'ok'"):
        Verify().run(params(web.url, expect_body="ok", max_wait="200ms"), step_context(state_dir=tmp_path))


def test_other_expected_status(web: ScriptedServer, tmp_path: Path) -> None:
    web.script.answers = [(204, "", 0.0)]
    result = Verify().run(params(web.url, expect_status=[200, 204], consecutive=1), step_context(state_dir=tmp_path))
    assert result.facts["last_status"] == 204


def test_refused_connection_is_unhealthy(address: str, tmp_path: Path) -> None:
    url = f"http://{address}:{free_port(address)}/healthz"
    with pytest.raises(VerificationFailed, match="ConnectionRefusedError"):
        Verify().run(params(url, max_wait="200ms"), step_context(state_dir=tmp_path))


def test_probe_timeout_is_capped_by_the_step_deadline(web: ScriptedServer, tmp_path: Path) -> None:
    web.script.answers = [(200, "ok", 3.0)]  # answers far too late
    ctx = step_context(state_dir=tmp_path, timeout=0.4)
    with pytest.raises(VerificationFailed) as info:
        Verify().run(params(web.url, probe_timeout="30s"), ctx)
    # The only probe was cut at what was left of the 0.4 s step, not at the 30 s probe timeout.
    assert re.search(r"no answer within 0\.[0-4]\d*s", info.value.message), info.value.message
    assert ctx.deadline.expired
    assert len(web.script.seen) == 1


def test_host_header_is_sent(web: ScriptedServer, tmp_path: Path) -> None:
    web.script.answers = [(200, "ok host={host}", 0.0)]
    result = Verify().run(params(web.url, consecutive=1, host_header="ledger.bank.test",
                                 expect_body="host=ledger.bank.test"), step_context(state_dir=tmp_path))
    assert result.facts["probes"] == 1
    assert web.script.seen[0]["Host"] == "ledger.bank.test"


@pytest.fixture(scope="module")
def bind(address: str) -> Iterator[BindServer]:
    root = Path(tempfile.mkdtemp(prefix="dr-test-http-dns-"))
    root.chmod(0o755)
    server = BindServer(root / "named", port=free_udp_tcp_port(), records={"ledger": address})
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_verify_through_the_public_name(web: ScriptedServer, bind: BindServer, address: str,
                                        tmp_path: Path) -> None:
    web.script.answers = [(200, "ok host={host}", 0.0)]
    port = web.server_address[1]
    result = Verify().run(
        params(f"http://ledger.bank.test:{port}/healthz", expect_body=f"host=ledger.bank.test:{port}",
               resolve_via=f"{bind.address}:{bind.port}"),
        step_context(state_dir=tmp_path, timeout=10),
    )
    assert result.facts["address"] == address
    assert result.outputs["address"] == address


def test_name_without_record_is_unhealthy(bind: BindServer, tmp_path: Path) -> None:
    with pytest.raises(VerificationFailed, match="no A record"):
        Verify().run(params("http://nothing.bank.test/healthz", resolve_via=f"{bind.address}:{bind.port}",
                            max_wait="200ms"), step_context(state_dir=tmp_path))


def test_a_name_goes_through_the_system_resolver_within_the_deadline(tmp_path: Path) -> None:
    import threading

    server = ScriptedServer("127.0.0.1")
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = server.url.replace("127.0.0.1", "localhost")  # /etc/hosts: the system resolver answers
        result = Verify().run(params(url, expect_body="ok"), step_context(state_dir=tmp_path, timeout=10))
        assert result.facts["healthy_probes"] == 3 and len(server.script.seen) == 3
    finally:
        server.shutdown()
        server.server_close()


def test_a_name_the_system_cannot_resolve_is_unhealthy_and_says_so(tmp_path: Path) -> None:
    # .invalid never resolves (RFC 2606); whether the resolver says so or hangs, the probe ends
    # as an unhealthy answer that names the lookup, not as an error or a hang past the deadline.
    with pytest.raises(VerificationFailed, match=r"DNS: .*(cannot resolve|did not resolve) no-such-host\.invalid"):
        Verify().run(params("http://no-such-host.invalid:8080/healthz", max_wait="300ms", probe_timeout="200ms"),
                     step_context(state_dir=tmp_path, timeout=5))
