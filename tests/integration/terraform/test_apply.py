"""terraform.apply / terraform.plan with the real CLI and an S3 backend on moto."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tf_support import REPO, context, region, s3

from dr_engine.actions.terraform import (
    Apply,
    CheckState,
    CheckStateParams,
    Plan,
    PlanParams,
    StackParams,
    destroy_drill_workspace,
)
from dr_engine.errors import PreconditionFailed
from dr_engine.model.substitution import Reference, substitute
from dr_engine.providers.terraform.backend import ensure_state_backend

pytestmark = pytest.mark.integration


def _ready(endpoint: str, target_region: str, bucket: str) -> None:
    ensure_state_backend(bucket=bucket, region=target_region, endpoint=endpoint)


def _state(endpoint: str, aws_region: str, bucket: str, key: str) -> dict[str, object]:
    body = s3(endpoint, aws_region).get_object(Bucket=bucket, Key=key)["Body"].read()
    return dict(json.loads(body))


def test_apply_in_two_regions_keeps_separate_state_in_each_target(moto_endpoint: str, tmp_path: Path) -> None:
    west = region(moto_endpoint, "us-west-2", addr="127.0.2.9")
    east = region(moto_endpoint, "us-east-1", addr="127.0.1.9")
    results = {}
    for target in (west, east):
        assert target.aws is not None
        _ready(moto_endpoint, target.aws.region, f"dr-tfstate-{target.name}")
        params = StackParams(stack="stacks/ledger", vars={"app_address": target.params["addr"]})
        results[target.name] = Apply().run(params, context(tmp_path, target))

    for target in (west, east):
        assert target.aws is not None
        result = results[target.name]
        assert result.changed is True
        assert result.outputs["region"] == target.name
        assert result.outputs["endpoint"] == f"http://{target.params['addr']}:18080"
        bucket = f"dr-tfstate-{target.name}"
        # The state is in the target region's own bucket, under the region's own key.
        location = s3(moto_endpoint, target.aws.region).get_bucket_location(Bucket=bucket)["LocationConstraint"]
        assert (location or "us-east-1") == target.aws.region
        state = _state(moto_endpoint, target.aws.region, bucket, f"ledger/{target.name}/terraform.tfstate")
        text = json.dumps(state)
        assert str(target.params["addr"]) in text
        other = east if target is west else west
        assert str(other.params["addr"]) not in text
        assert {r["name"] for r in state["resources"]} == {"database", "app", "service_record"}  # type: ignore[union-attr]


def test_reapply_is_idempotent_and_keeps_outputs(moto_endpoint: str, tmp_path: Path) -> None:
    target = region(moto_endpoint)
    _ready(moto_endpoint, "us-west-2", f"dr-tfstate-{target.name}")
    params = StackParams(stack="stacks/ledger", vars={"app_address": "127.0.2.9"})
    first = Apply().run(params, context(tmp_path, target))
    second = Apply().run(params, context(tmp_path, target))
    assert first.changed is True and first.facts["add"] == 3
    assert second.changed is False
    assert second.summary.startswith("no changes")
    assert second.outputs == first.outputs
    # A fresh machine (new data dir, same backend) sees the same state: nothing to do.
    third = Apply().run(params, context(tmp_path / "elsewhere", target))
    assert third.changed is False and third.outputs["app_id"] == first.outputs["app_id"]


def test_outputs_feed_a_later_step_through_substitution(moto_endpoint: str, tmp_path: Path) -> None:
    target = region(moto_endpoint)
    _ready(moto_endpoint, "us-west-2", f"dr-tfstate-{target.name}")
    applied = Apply().run(StackParams(stack="stacks/ledger", vars={"app_address": "127.0.2.7", "app_port": 9000}),
                          context(tmp_path, target))
    outputs = {"apply-ledger": applied.outputs}

    def resolve(ref: Reference) -> object:
        return outputs[ref.step or ""][ref.key or ""]

    later = substitute({"url": "${steps.apply-ledger.health_url}", "name": "${steps.apply-ledger.service_name}"},
                       resolve)
    assert later == {"url": "http://127.0.2.7:9000/healthz", "name": f"ledger.{target.name}.internal"}


def test_drift_after_a_config_change_shows_in_plan_and_preflight(moto_endpoint: str, tmp_path: Path) -> None:
    target = region(moto_endpoint)
    _ready(moto_endpoint, "us-west-2", f"dr-tfstate-{target.name}")
    stack = tmp_path / "ledger"
    shutil.copytree(REPO / "stacks" / "ledger", stack)
    vars_ = {"app_address": "127.0.2.9"}
    Apply().run(StackParams(stack=str(stack), vars=vars_), context(tmp_path, target))
    clean = Plan().run(PlanParams(stack=str(stack), vars=vars_, fail_on_changes=True), context(tmp_path, target))
    assert clean.outputs["drift"] == "false" and clean.changed is False

    main = stack / "main.tf"
    main.write_text(main.read_text().replace('engine  = "postgres"', 'engine  = "aurora-postgresql"'))
    report = Plan().run(PlanParams(stack=str(stack), vars=vars_), context(tmp_path, target))
    assert report.outputs["drift"] == "true"
    assert report.facts["change"] == 1 or report.facts["add"] >= 1  # database updated, app replaced
    assert any("terraform_data.database" in a for a in report.facts["addresses"])

    with pytest.raises(PreconditionFailed, match="drifted from its code"):
        Plan().run(PlanParams(stack=str(stack), vars=vars_, fail_on_changes=True), context(tmp_path, target))
    checks = Plan().preflight(PlanParams(stack=str(stack), vars=vars_), context(tmp_path, target))
    drift = [c for c in checks if "no drift" in c.name]
    assert len(drift) == 1 and drift[0].ok is False and "terraform_data.database" in drift[0].detail


def test_drift_after_a_state_change_is_detected(moto_endpoint: str, tmp_path: Path) -> None:
    target = region(moto_endpoint)
    bucket, key = f"dr-tfstate-{target.name}", f"ledger/{target.name}/terraform.tfstate"
    _ready(moto_endpoint, "us-west-2", bucket)
    vars_ = {"app_address": "127.0.2.9"}
    Apply().run(StackParams(stack="stacks/ledger", vars=vars_), context(tmp_path, target))

    # Someone removes a resource from the state behind terraform's back.
    state = _state(moto_endpoint, "us-west-2", bucket, key)
    state["resources"] = [r for r in state["resources"] if r["name"] != "service_record"]  # type: ignore[union-attr]
    state["serial"] = int(state["serial"]) + 1  # type: ignore[call-overload]
    s3(moto_endpoint, "us-west-2").put_object(Bucket=bucket, Key=key, Body=json.dumps(state).encode())

    result = Plan().run(PlanParams(stack="stacks/ledger", vars=vars_), context(tmp_path, target))
    assert result.outputs["drift"] == "true"
    assert result.outputs["add"] == "1"
    assert result.facts["addresses"] == ["terraform_data.service_record (create)"]
    # Re-applying repairs it.
    assert Apply().run(StackParams(stack="stacks/ledger", vars=vars_), context(tmp_path, target)).changed is True


def test_full_failover_run_feeds_outputs_to_a_health_check(moto_endpoint: str, tmp_path: Path) -> None:
    """The engine runs check_state -> apply -> http.verify on the URL the stack reported."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from dr_engine.config.loader import load_runbook
    from dr_engine.engine.run import RunOptions, start_run
    from dr_engine.model import RunMode
    from dr_engine.planning.plan import build_plan
    from dr_engine.world.loopback import free_port, region_addresses

    source_addr, target_addr = region_addresses()

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            del args

    server = ThreadingHTTPServer((target_addr, free_port(target_addr)), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        regions = tmp_path / "regions"
        regions.mkdir()
        for name, aws_region, addr in (("tf-src", "us-east-1", source_addr), ("tf-dst", "us-west-2", target_addr)):
            (regions / f"{name}.yaml").write_text(
                f"name: {name}\naws: {{region: {aws_region}, endpoint_url: '{moto_endpoint}'}}\n"
                f"params: {{addr: '{addr}', app_port: {server.server_address[1]}}}\n")
        runbook = tmp_path / "runbooks" / "ledger-tf.yaml"
        runbook.parent.mkdir()
        shipped = (REPO / "runbooks" / "ledger-terraform.yaml").read_text()
        runbook.write_text(
            shipped.replace("source: us-east-1", "source: tf-src").replace("target: us-west-2", "target: tf-dst")
            .replace("runbook: ledger-terraform", "runbook: ledger-tf")
            .replace("app_address: ${target.addr}", "app_address: ${target.addr}\n        app_port: ${target.app_port}")
            .replace("stack: stacks/ledger", f"stack: {REPO / 'stacks' / 'ledger'}"))
        plan = build_plan(load_runbook(runbook, regions_dir=regions))
        record = start_run(plan, RunOptions(mode=RunMode.FAILOVER, state_dir=tmp_path / "state"))
        steps = {s.id: s for s in record.steps}
        assert record.status.value == "succeeded", [(s.id, s.status, s.error) for s in record.steps]
        assert steps["state-ready"].facts["created"] == ["s3://dr-tfstate-tf-dst (us-west-2)"]
        assert steps["apply-ledger"].outputs["health_url"] == (
            f"http://{target_addr}:{server.server_address[1]}/healthz")
        assert steps["ledger-healthy"].status.value == "succeeded"
        state = _state(moto_endpoint, "us-west-2", "dr-tfstate-tf-dst", "ledger/tf-dst/terraform.tfstate")
        assert target_addr in json.dumps(state)
    finally:
        server.shutdown()
        server.server_close()


def test_check_state_reports_a_reachable_unlocked_backend(moto_endpoint: str, tmp_path: Path) -> None:
    target = region(moto_endpoint)
    params = CheckStateParams(stack="stacks/ledger", create_missing=True)
    first = CheckState().run(params, context(tmp_path, target))
    assert first.changed is True and first.outputs == {"locked": "false"}
    again = CheckState().run(params, context(tmp_path, target))
    assert again.changed is False and "reachable and unlocked" in again.summary


def test_a_drill_applies_into_its_own_workspace_not_the_real_state(moto_endpoint: str, tmp_path: Path) -> None:
    import dataclasses

    from dr_engine.model import RunMode

    target = region(moto_endpoint)
    bucket, key = f"dr-tfstate-{target.name}", f"ledger/{target.name}/terraform.tfstate"
    _ready(moto_endpoint, "us-west-2", bucket)
    ctx = dataclasses.replace(context(tmp_path, target), mode=RunMode.DRILL)
    result = Apply().run(StackParams(stack="stacks/ledger", vars={"app_address": "127.0.2.9"}), ctx)
    assert result.changed is True and "workspace dr-drill" in result.facts["state"]
    keys = [o["Key"] for o in s3(moto_endpoint, "us-west-2").list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert f"env:/dr-drill/{key}" in keys and key not in keys
    # Drill cleanup: destroy what the drill built, delete the workspace; the real state stays absent.
    summary = destroy_drill_workspace(StackParams(stack="stacks/ledger", vars={"app_address": "127.0.2.9"}), ctx)
    assert summary.startswith("destroyed") and "workspace deleted" in summary
    keys = [o["Key"] for o in s3(moto_endpoint, "us-west-2").list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert not [k for k in keys if k.startswith("env:/dr-drill/")] and key not in keys


def test_drill_cleanup_of_a_workspace_only_checked_destroys_nothing(moto_endpoint: str, tmp_path: Path) -> None:
    import dataclasses

    from dr_engine.model import RunMode

    target = region(moto_endpoint)
    bucket = f"dr-tfstate-{target.name}"
    _ready(moto_endpoint, "us-west-2", bucket)
    ctx = dataclasses.replace(context(tmp_path, target), mode=RunMode.DRILL)
    CheckState().run(CheckStateParams(stack="stacks/ledger"), ctx)  # selects (creates) the drill workspace
    # No variables: a destroy would fail on the stack's required app_address; nothing was built.
    summary = destroy_drill_workspace(StackParams(stack="stacks/ledger"), ctx)
    assert summary.startswith("nothing to destroy") and "workspace deleted" in summary
    with pytest.raises(PreconditionFailed, match="outside a drill"):
        destroy_drill_workspace(StackParams(stack="stacks/ledger"), context(tmp_path, target))
