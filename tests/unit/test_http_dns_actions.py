"""Decision logic and parameters of http.verify, dns.shift and dns.verify (no network)."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from dr_engine.actions.dns import Shift, ShiftParams
from dr_engine.actions.dns import Verify as DnsVerify
from dr_engine.actions.endpoints import parse_server
from dr_engine.actions.http import Verify, VerifyParams, judge
from dr_engine.actions.registry import lookup
from dr_engine.capabilities import Capability
from dr_engine.clock import Deadline
from dr_engine.errors import VerificationFailed
from dr_engine.model import DrillBehaviour, Step
from dr_engine.providers.http import HttpAnswer, redact_url
from dr_engine.testing.clock import FakeClock
from dr_engine.testing.step_context import step_context

SECRET = "c2VjcmV0LWNhbmFyeS12YWx1ZS0xMjM0NTY3ODkwYWI="


def ok(body: str = "ok") -> HttpAnswer:
    return HttpAnswer(200, body, None, "127.0.2.1", 0.001)


def down(status: int = 503) -> HttpAnswer:
    return HttpAnswer(status, "unhealthy: database is a standby", None, "127.0.2.1", 0.001)


class ScriptedVerify(Verify):
    """http.verify whose probes answer from a script, on a fake clock (the last answer repeats)."""

    def __init__(self, answers: list[HttpAnswer]) -> None:
        self.answers = deque(answers)
        self.timeouts: list[float] = []

    def probe(self, params: VerifyParams, timeout: float) -> HttpAnswer:
        self.timeouts.append(timeout)
        return self.answers.popleft() if len(self.answers) > 1 else self.answers[0]


def params(**extra: object) -> VerifyParams:
    return VerifyParams.model_validate({"url": "http://127.0.2.1:18080/healthz", "consecutive": 3,
                                        "interval": "1s", **extra})


@pytest.mark.parametrize("name", ["http.verify", "dns.shift", "dns.verify"])
def test_examples_validate(name: str) -> None:
    action = lookup(name)
    assert action is not None
    step = Step.model_validate(yaml.safe_load(action.example))
    assert step.action == name
    action.Params.model_validate(step.with_)
    assert action.permissions == ()
    assert action.__doc__


def test_capabilities_and_drill_behaviour() -> None:
    assert Verify.capability is Capability.HEALTH_VERIFY
    assert Shift.capability is Capability.TRAFFIC_SHIFT
    assert DnsVerify.capability is Capability.TRAFFIC_VERIFY
    assert Shift.drill_default is DrillBehaviour.SKIP


def test_streak_needs_consecutive_successes(tmp_path: Path) -> None:
    clock = FakeClock()
    action = ScriptedVerify([ok(), down(), ok(), ok(), down(), ok(), ok(), ok()])
    result = action.run(params(), step_context(state_dir=tmp_path, clock=clock, timeout=60))
    assert result.facts["probes"] == 8
    assert result.facts["streak_resets"] == 2
    assert clock.sleeps == [1.0] * 7


def test_gives_up_once_the_streak_cannot_fit_before_the_deadline(tmp_path: Path) -> None:
    clock = FakeClock()
    action = ScriptedVerify([down()])
    ctx = step_context(state_dir=tmp_path, clock=clock, timeout=10)
    with pytest.raises(VerificationFailed) as info:
        action.run(params(), ctx)
    # Probe k runs at t=k-1 s. After the 8th (t=7 s) three more probes would need the whole 3 s
    # left, the last one with no time to answer: probing stops instead of burning the deadline.
    assert len(action.timeouts) == 8
    assert "0/3 consecutive ok" in info.value.message
    assert "status 503" in info.value.message
    assert not ctx.deadline.expired


def test_probe_timeout_is_capped_by_the_deadline(tmp_path: Path) -> None:
    clock = FakeClock()
    action = ScriptedVerify([ok()])
    action.run(params(consecutive=1, probe_timeout="30s"), step_context(state_dir=tmp_path, clock=clock, timeout=5))
    assert action.timeouts == [5.0]


def test_unbounded_step_still_ends(tmp_path: Path) -> None:
    clock = FakeClock()
    action = ScriptedVerify([down()])
    ctx = step_context(state_dir=tmp_path, clock=clock)
    ctx.deadline = Deadline(clock, None)  # a step without timeout: max_wait bounds the probing
    with pytest.raises(VerificationFailed):
        action.run(params(max_wait="10s"), ctx)
    assert sum(clock.sleeps) <= 10


def test_unbounded_step_defaults_to_five_minutes(tmp_path: Path) -> None:
    clock = FakeClock()
    ctx = step_context(state_dir=tmp_path, clock=clock)
    ctx.deadline = Deadline(clock, None)
    with pytest.raises(VerificationFailed):
        ScriptedVerify([down()]).run(params(), ctx)
    assert 290 <= sum(clock.sleeps) <= 300


def test_judge() -> None:
    p = params(expect_body="ok", expect_status=[200, 204])
    assert judge(p, ok())[0] is True
    assert judge(p, HttpAnswer(204, "ok", None, "", 0))[0] is True
    assert judge(p, ok("degraded")) == (False, "status 200 body 'degraded' (missing 'ok')")
    assert judge(p, HttpAnswer(None, "", "ConnectionRefusedError: refused", "", 0)) == (
        False, "error: ConnectionRefusedError: refused")


def test_http_params() -> None:
    assert params(expect_status=204).expect_status == [204]
    with pytest.raises(ValidationError, match="http:// or https://"):
        params(url="ftp://x/healthz")
    with pytest.raises(ValidationError):
        params(resolve_via="127.0.0.1:notaport")
    assert params(url="${target.health_url}").url == "${target.health_url}"  # resolved at run time


def test_parse_server() -> None:
    assert parse_server("127.0.0.1:15353") == ("127.0.0.1", 15353)
    assert parse_server("10.0.0.53") == ("10.0.0.53", 53)
    with pytest.raises(ValueError, match="out of range"):
        parse_server("127.0.0.1:70000")


def test_redact_url() -> None:
    assert redact_url("http://user:pw@host:8080/healthz?x=1") == "http://host:8080/healthz?x=1"
    assert redact_url("http://host/healthz") == "http://host/healthz"


def shift(**extra: object) -> ShiftParams:
    base: dict[str, object] = {"server": "127.0.0.1:15353", "zone": "bank.test", "name": "ledger",
                               "value": "127.0.2.1", "key_name": "k", "key_secret": SECRET}
    base.update(extra)
    return ShiftParams.model_validate(base)


def test_shift_params_need_exactly_one_secret_source() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        shift(key_secret=None)
    with pytest.raises(ValidationError, match="exactly one"):
        shift(key_secret_name="tsig_key")
    assert shift(key_secret=None, key_secret_name="tsig_key").key_secret is None


def test_shift_ttl_is_whole_seconds() -> None:
    assert shift(ttl="5m").ttl.total_seconds() == 300
    with pytest.raises(ValidationError, match="whole number of seconds"):
        shift(ttl="1500ms")


def test_shift_secret_never_shows() -> None:
    p = shift()
    assert SECRET not in repr(p)
    assert SECRET not in str(p.model_dump())
    assert SECRET not in Shift().describe(p)
