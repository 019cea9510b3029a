"""Faults from the AWS endpoint for every AWS action kind of core-banking-aws (moto over HTTP).

Faults come from the fault-injecting WSGI wrapper in front of moto
(:mod:`dr_engine.world.faults`): throttling, 503 and delays past the step deadline, added
the moment the chosen step starts (:class:`reliability_kit.InjectAt`), so they hit that step
and not an earlier one. Plus: the endpoint refusing connections (moto stopped) and moto
restarted mid-run (every resource forgotten). After a halt the fault is cleared and the run is
resumed to success.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import reliability_kit as kit
import yaml
from reliability_kit import REPO

from dr_engine.config.loader import load_runbook
from dr_engine.engine.run import RunOptions, resume_run, start_run
from dr_engine.evidence.record import RunStatus
from dr_engine.planning.plan import build_plan
from dr_engine.providers.aws.session import AwsTarget, client
from dr_engine.testing.moto_fixtures import faults, moto, moto_server  # noqa: F401
from dr_engine.world.aws_seed import seed_aws_world
from dr_engine.world.faults import FaultControl
from dr_engine.world.moto_server import MotoServer

pytestmark = pytest.mark.integration

TARGET_ADDR = "127.0.2.1"
#: action kind -> (step that uses it first, signing service name)
KINDS: dict[str, tuple[str, str]] = {
    "secretsmanager.verify_replica": ("verify-secret", "secretsmanager"),
    "dynamodb.verify_replica": ("verify-sessions", "dynamodb"),
    "s3.sync": ("sync-documents", "s3"),
    "s3.verify": ("verify-documents", "s3"),
    "cloudformation.apply": ("apply-stack", "cloudformation"),
    "autoscaling.scale": ("scale-app", "autoscaling"),
    "cloudwatch.verify_alarms": ("verify-alarms", "cloudwatch"),
    "route53.shift": ("shift-dns", "route53"),
    "route53.verify": ("verify-dns", "route53"),
}
UNAVAILABLE = r"unavailable|503|throttl|slow ?down"
TIMEOUT = r"deadline|timed? ?out|within|timeout"


def _repo(tmp_path: Path, endpoint: str, short_timeout: str | None = None) -> Path:
    """A copy of the runbook, its template and regions pointed at ``endpoint``."""
    (tmp_path / "runbooks").mkdir()
    text = (REPO / "runbooks" / "core-banking-aws.yaml").read_text()
    if short_timeout:
        step, timeout = short_timeout.split("=")
        data = yaml.safe_load(text)
        for s in data["steps"]:
            if s["id"] == step:
                s["timeout"] = timeout
        text = yaml.safe_dump(data, sort_keys=False)
    (tmp_path / "runbooks" / "core-banking-aws.yaml").write_text(text)
    shutil.copytree(REPO / "stacks" / "cloudformation", tmp_path / "stacks" / "cloudformation")
    (tmp_path / "regions").mkdir()
    for name, addr in (("us-east-1", "127.0.1.1"), ("us-west-2", TARGET_ADDR)):
        region = {"name": name, "aws": {"region": name, "endpoint_url": endpoint}, "params": {"addr": addr}}
        (tmp_path / "regions" / f"{name}.yaml").write_text(yaml.safe_dump(region))
    return tmp_path


def _primary_value(endpoint: str) -> str | None:
    """The value of the Route 53 PRIMARY failover record (None if it cannot be read)."""
    try:
        r53 = client(AwsTarget("us-east-1", endpoint), "route53")
        zone = r53.list_hosted_zones_by_name(DNSName="bank.example.")["HostedZones"][0]["Id"]
        records = r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    except Exception:
        return None
    primary = [r for r in records if r.get("Failover") == "PRIMARY" and r.get("ResourceRecords")]
    return str(primary[0]["ResourceRecords"][0]["Value"]) if primary else None


def _scenario(name: str, tmp_path: Path, moto: MotoServer, inject: kit.InjectAt | None, expect: kit.Expect,  # noqa: F811
              *, short_timeout: str | None = None,
              clear: Callable[[], None] | None = None, monkeypatch: pytest.MonkeyPatch) -> Any:
    repo = _repo(tmp_path, moto.endpoint_url, short_timeout)
    monkeypatch.chdir(repo)  # templates are found relative to the repository root
    monkeypatch.delenv("DR_REGIONS_DIR", raising=False)
    seed_aws_world(moto.endpoint_url)
    plan = kit.remember_plan(build_plan(load_runbook(repo / "runbooks" / "core-banking-aws.yaml")))
    state = repo / ".dr"
    record = start_run(plan, RunOptions(state_dir=state, triggered_by="reliability", seed=7), progress=inject)
    real: list[str] = []
    shifted = _primary_value(moto.endpoint_url) == TARGET_ADDR
    verified = {s.id: s.status.value for s in record.steps}.get("verify-alarms") == "succeeded"
    if shifted and not verified:
        real.append("Route 53 primary record points at the target, which was never verified")
    verdict = kit.judge(name, "aws", expect, plan, record, state, real_checks=real)
    kit.assert_verdict(verdict, expect, record)
    if expect.outcome == "halted":
        assert not shifted or record.halted_at_step in ("verify-dns", "verify-healthy")
        if clear is not None:
            clear()
            if short_timeout:
                # What an operator does after a timeout: restore the real deadline, resume with
                # --force (audited as runbook-changed).
                shutil.copy(REPO / "runbooks" / "core-banking-aws.yaml", repo / "runbooks")
            again = resume_run(state, record.run_id, force=bool(short_timeout))
            assert again.status is RunStatus.SUCCEEDED, again.error
            assert _primary_value(moto.endpoint_url) == TARGET_ADDR
    else:
        assert shifted
    return record


# ----------------------------------------------------------------------- fast subset


def test_route53_throttling_recovers(tmp_path: Path, moto: MotoServer, faults: FaultControl,  # noqa: F811
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    inject = kit.InjectAt("shift-dns", lambda: faults.add("route53", "ChangeResourceRecordSets", "throttle", 4))
    _scenario("route53.shift throttled 4x", tmp_path, moto, inject, kit.Expect("recovered", step="shift-dns"),
              monkeypatch=monkeypatch)
    assert faults.hits("route53", "ChangeResourceRecordSets") == 4


def test_secretsmanager_5xx_halts_then_resumes(tmp_path: Path, moto: MotoServer, faults: FaultControl,  # noqa: F811
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    inject = kit.InjectAt("verify-secret", lambda: faults.add("secretsmanager", "*", "unavailable", -1))
    _scenario("secretsmanager.verify_replica 503", tmp_path, moto, inject,
              kit.Expect("halted", "verify-secret", ("TransientError", "StepTimeout"), UNAVAILABLE),
              clear=faults.clear, monkeypatch=monkeypatch)


def test_cloudwatch_delay_past_deadline_halts(tmp_path: Path, moto: MotoServer, faults: FaultControl,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    inject = kit.InjectAt("verify-alarms", lambda: faults.add("cloudwatch", "*", "delay", -1, delay=4.0))
    _scenario("cloudwatch.verify_alarms delayed past deadline", tmp_path, moto, inject,
              kit.Expect("halted", "verify-alarms", ("StepTimeout", "TransientError", "VerificationFailed"), TIMEOUT),
              short_timeout="verify-alarms=2s", clear=faults.clear, monkeypatch=monkeypatch)


def test_endpoint_refusing_connections_halts(tmp_path: Path, moto: MotoServer,  # noqa: F811
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    inject = kit.InjectAt("shift-dns", moto.stop)
    record = _scenario("AWS endpoint refuses connections at route53.shift", tmp_path, moto, inject,
                       kit.Expect("halted", "shift-dns", ("TransientError", "StepTimeout"),
                                  r"connect|refused|endpoint"), monkeypatch=monkeypatch)
    moto.start()  # the moto fixture of the next test expects it running
    assert record.halted_at_step == "shift-dns"


def test_moto_restarted_mid_run_halts_precisely_then_resumes(tmp_path: Path, moto: MotoServer,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def restart() -> None:
        moto.stop()
        moto.start()  # same port: every resource is gone

    def reseed() -> None:
        seed_aws_world(moto.endpoint_url)

    inject = kit.InjectAt("scale-app", restart)
    _scenario("moto restarted before autoscaling.scale", tmp_path, moto, inject,
              kit.Expect("halted", "scale-app", ("PreconditionFailed", "ProviderError", "TransientError"),
                         r"ledger-app-usw2|not found|does not exist|no auto scaling group"),
              clear=reseed, monkeypatch=monkeypatch)


# ----------------------------------------------------------------------- full matrix

MATRIX = [(kind, fault) for kind in KINDS for fault in ("throttle", "unavailable", "delay")]


@pytest.mark.reliability_full
@pytest.mark.parametrize(("kind", "fault"), MATRIX, ids=[f"{k}-{f}" for k, f in MATRIX])
def test_every_aws_action_kind_under_every_endpoint_fault(kind: str, fault: str, tmp_path: Path, moto: MotoServer,  # noqa: F811
                                                          faults: FaultControl,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    step, service = KINDS[kind]
    if fault == "throttle":
        # Two throttled answers: botocore's wire retries (or the step's retry) absorb them.
        inject = kit.InjectAt(step, lambda: faults.add(service, "*", "throttle", 2))
        _scenario(f"{kind} throttled 2x", tmp_path, moto, inject, kit.Expect("recovered"), monkeypatch=monkeypatch)
        assert faults.hits(service, "*") == 2
    elif fault == "unavailable":
        inject = kit.InjectAt(step, lambda: faults.add(service, "*", "unavailable", -1))
        _scenario(f"{kind} 503 until cleared", tmp_path, moto, inject,
                  kit.Expect("halted", step, ("TransientError", "StepTimeout", "VerificationFailed",
                                              "ProviderError"), UNAVAILABLE),
                  clear=faults.clear, monkeypatch=monkeypatch)
    else:
        inject = kit.InjectAt(step, lambda: faults.add(service, "*", "delay", -1, delay=4.0))
        _scenario(f"{kind} delayed past its deadline", tmp_path, moto, inject,
                  kit.Expect("halted", step, ("StepTimeout", "TransientError", "VerificationFailed"), TIMEOUT),
                  short_timeout=f"{step}=2s", clear=faults.clear, monkeypatch=monkeypatch)


@pytest.mark.reliability_full
def test_html_500_from_cloudformation_halts(tmp_path: Path, moto: MotoServer, faults: FaultControl,  # noqa: F811
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    inject = kit.InjectAt("apply-stack", lambda: faults.add("cloudformation", "*", "html500", -1))
    _scenario("cloudformation.apply answers HTML 500", tmp_path, moto, inject,
              kit.Expect("halted", "apply-stack", ("TransientError", "ProviderError", "StepTimeout"),
                         r"500|unparseable|parse|internal"),
              clear=faults.clear, monkeypatch=monkeypatch)
