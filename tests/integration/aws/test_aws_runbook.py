"""The shipped core-banking-aws runbook against moto: pre-flight in `dr plan`, then a full engine run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dr_engine.cli import build_app
from dr_engine.config.loader import load_runbook
from dr_engine.engine.run import RunOptions, start_run
from dr_engine.model import RunMode
from dr_engine.planning.plan import build_plan
from dr_engine.planning.preflight import failed, run_preflight
from dr_engine.world.aws_seed import seed_aws_world
from dr_engine.world.moto_server import MotoServer

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def repo(moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the runbook, its template and the regions, pointed at the test moto server."""
    (tmp_path / "runbooks").mkdir()
    shutil.copy(REPO / "runbooks" / "core-banking-aws.yaml", tmp_path / "runbooks")
    shutil.copytree(REPO / "stacks" / "cloudformation", tmp_path / "stacks" / "cloudformation")
    (tmp_path / "regions").mkdir()
    for name, addr in (("us-east-1", "127.0.1.1"), ("us-west-2", "127.0.2.1")):
        region = {"name": name, "aws": {"region": name, "endpoint_url": moto.endpoint_url}, "params": {"addr": addr}}
        (tmp_path / "regions" / f"{name}.yaml").write_text(yaml.safe_dump(region))
    monkeypatch.chdir(tmp_path)  # templates are found relative to the repository root
    monkeypatch.delenv("DR_REGIONS_DIR", raising=False)
    return tmp_path


def _plan_json(args: list[str]) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(build_app(), ["plan", "runbooks/core-banking-aws.yaml", "--output", "json", *args])
    return result.exit_code, json.loads(result.stdout)


def test_plan_runs_preflight_and_fails_on_a_missing_world(repo: Path) -> None:
    code, plan = _plan_json([])
    assert code == 1
    assert plan["rto_stop"] == "verify-healthy"  # the plan is still printed
    pre = plan["preflight"]
    assert not pre["ok"] and pre["failed"] > 0
    scale = {c["name"]: c for c in pre["steps"]["scale-app"]}
    assert scale["Auto Scaling group ledger-app-usw2"]["ok"] is False
    assert scale["AWS credentials for us-west-2 (sts:GetCallerIdentity)"]["ok"] is True


def test_plan_preflight_passes_on_the_seeded_world_and_changes_nothing(repo: Path, moto: MotoServer) -> None:
    seed_aws_world(moto.endpoint_url)
    code, plan = _plan_json([])
    assert code == 0, plan["preflight"]
    assert plan["preflight"]["ok"]
    assert set(plan["preflight"]["steps"]) == {s["id"] for wave in plan["waves"] for s in wave}
    results = run_preflight(build_plan(load_runbook(repo / "runbooks" / "core-banking-aws.yaml")))
    assert failed(results) == 0
    apply = {c.name: c.detail for c in results["apply-stack"]}
    assert apply["stack ledger-app in us-west-2"] == "does not exist yet: it will be created"  # still nothing
    code, plain = _plan_json(["--no-preflight"])
    assert code == 0 and "preflight" not in plain


def test_full_run_against_moto_then_rerun_is_idempotent(repo: Path, moto: MotoServer) -> None:
    seed_aws_world(moto.endpoint_url)
    plan = build_plan(load_runbook(repo / "runbooks" / "core-banking-aws.yaml"))
    record = start_run(plan, RunOptions(state_dir=repo / ".dr", triggered_by="test"))
    steps = {s.id: s for s in record.steps}
    assert record.status.value == "succeeded", {k: (v.status, v.error) for k, v in steps.items()}
    assert steps["apply-stack"].outputs["AppAddress"] == "127.0.2.1"
    assert steps["shift-dns"].outputs["value"] == "127.0.2.1"  # the stack output fed the DNS shift
    assert steps["sync-documents"].outputs["copied"] == "3"
    assert steps["scale-app"].outputs["in_service"] == "2"

    again = start_run(plan, RunOptions(state_dir=repo / ".dr", triggered_by="test"))
    assert again.status.value == "succeeded"
    changed = {s.id for s in again.steps if s.changed}
    assert changed == set(), f"a second failover must change nothing, changed: {changed}"


def test_dr_failover_runs_the_aws_runbook_in_a_real_prefect_flow(repo: Path, moto: MotoServer,
                                                                   tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from dr_engine.flows.settings import EMBEDDED_SETTINGS

    seed_aws_world(moto.endpoint_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_") and k != "DR_STATE_DIR"}
    env.update(EMBEDDED_SETTINGS)
    env.update({"PREFECT_HOME": str(tmp_path / "prefect-home"), "NO_COLOR": "1"})
    done = subprocess.run([str(Path(sys.executable).parent / "dr"), "failover", "core-banking-aws", "--yes",
                           "--reason", "aws e2e"], cwd=repo, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCEEDED" in done.stdout
    record = json.loads(next((repo / ".dr" / "runs").glob("*/run.json")).read_text())
    assert [s["status"] for s in record["steps"]] == ["succeeded"] * 10
    r53 = seed_client(moto, "route53")
    zone = r53.list_hosted_zones_by_name(DNSName="bank.example.")["HostedZones"][0]["Id"]
    primary = [r for r in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
               if r.get("Failover") == "PRIMARY"]
    assert primary[0]["ResourceRecords"] == [{"Value": "127.0.2.1"}]


def test_drill_applies_a_copy_of_the_stack_and_leaves_aws_as_it_found_it(repo: Path, moto: MotoServer) -> None:
    seed_aws_world(moto.endpoint_url)
    cfn = seed_client(moto, "cloudformation", "us-west-2")
    asg = seed_client(moto, "autoscaling", "us-west-2")

    def size() -> tuple[int, int, int]:
        group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["ledger-app-usw2"])["AutoScalingGroups"][0]
        return int(group["MinSize"]), int(group["DesiredCapacity"]), int(group["MaxSize"])

    def live_stacks() -> set[str]:
        return {st["StackName"] for st in cfn.describe_stacks()["Stacks"] if st["StackStatus"] != "DELETE_COMPLETE"}

    pilot_light = size()
    plan = build_plan(load_runbook(repo / "runbooks" / "core-banking-aws.yaml"))
    record = start_run(plan, RunOptions(mode=RunMode.DRILL, state_dir=repo / ".dr", triggered_by="test",
                                        reason="quarterly drill"))

    steps = {st.id: st for st in record.steps}
    assert record.status.value == "succeeded", {k: (v.status, v.error) for k, v in steps.items()}
    assert steps["apply-stack"].facts["stack"] == "ledger-app-drill"  # a copy, under its own name
    assert steps["apply-stack"].outputs["AppAddress"] == "127.0.2.1"
    assert steps["scale-app"].outputs["in_service"] == "2"  # the pilot light really warmed up...
    assert steps["shift-dns"].status.value == "skipped"
    drill = (record.model_extra or {})["drill"]
    assert {"cloudformation-stack", "autoscaling-size"} <= {r["kind"] for r in drill["resources"]}
    assert all(c["ok"] for c in drill["cleaned"]) and drill["cleanup"]["failed"] == []
    assert size() == pilot_light  # ...and went back to pilot light
    assert live_stacks() == set()  # the copy is deleted; the real stack was never created
    primary = _primary_record(moto)
    assert primary["ResourceRecords"] == [{"Value": "127.0.1.1"}]  # traffic never moved


def _primary_record(moto: MotoServer) -> dict[str, Any]:
    r53 = seed_client(moto, "route53")
    zone = r53.list_hosted_zones_by_name(DNSName="bank.example.")["HostedZones"][0]["Id"]
    found: dict[str, Any] = next(r for r in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
                                 if r.get("Failover") == "PRIMARY")
    return found


def seed_client(moto: MotoServer, service: str, region: str = "us-east-1") -> Any:
    """A raw client to inspect the moto server's state."""
    from dr_engine.providers.aws.session import AwsTarget, client

    return client(AwsTarget(region, moto.endpoint_url), service)
