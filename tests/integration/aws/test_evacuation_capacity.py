"""The capacity check of an evacuation against a moto server over HTTP: groups, conflicts, quotas."""

from __future__ import annotations

from pathlib import Path

import pytest

from dr_engine.config.evacuation import load_evacuation
from dr_engine.planning.capacity import check_capacity
from dr_engine.planning.evacuation import build_evacuation_plan
from dr_engine.world.aws_seed import AwsWorld
from dr_engine.world.moto_server import MotoServer

pytestmark = pytest.mark.integration

RUNBOOK = """runbook: {name}
source: us-east-1
target: us-west-2
objectives: {{rto: 5m, rpo: 0s}}
steps:
  - id: scale
    action: autoscaling.scale
    with: {{group: {group}, min_size: {size}, desired: {size}}}
  - id: healthy
    action: shell.verify
    with: {{command: ["true"]}}
    after: [scale]
"""


def _plan(tmp_path: Path, moto: MotoServer, apps: list[tuple[str, str, int]]):  # type: ignore[no-untyped-def]
    (tmp_path / "regions").mkdir()
    for name in ("us-east-1", "us-west-2"):
        (tmp_path / "regions" / f"{name}.yaml").write_text(
            f"name: {name}\naws: {{region: {name}, endpoint_url: '{moto.endpoint_url}'}}\n")
    (tmp_path / "runbooks").mkdir()
    for name, group, size in apps:
        (tmp_path / "runbooks" / f"{name}.yaml").write_text(RUNBOOK.format(name=name, group=group, size=size))
    body = "".join(f"  - {{name: {name}, runbook: {name}}}\n" for name, _, _ in apps)
    path = tmp_path / "runbooks" / "evacuate.yaml"
    path.write_text("kind: evacuation\nevacuation: evacuate\nsource: us-east-1\ntarget: us-west-2\n"
                    f"objectives: {{rto: 30m}}\napplications:\n{body}")
    return build_evacuation_plan(load_evacuation(path, regions_dir=tmp_path / "regions"))


def test_a_plan_that_fits_reads_each_group_and_says_the_quota_is_not_answered(
        tmp_path: Path, world: AwsWorld, moto: MotoServer) -> None:
    report = check_capacity(_plan(tmp_path, moto, [("ledger", world.group, 2)]))
    assert report.ok
    (group,) = report.groups
    assert (group.region, group.group, group.applications) == ("us-west-2", world.group, ["ledger"])
    assert (group.current_desired, group.wanted, group.added) == (0, 2, 2) and group.current_max == 4
    # The local endpoint has no EC2 quotas: said, not guessed.
    assert report.quotas["us-west-2"].startswith("not answered")


def test_conflicts_over_max_and_missing_groups_are_problems(
        tmp_path: Path, world: AwsWorld, moto: MotoServer) -> None:
    report = check_capacity(_plan(tmp_path, moto, [("ledger", world.group, 2), ("cards", world.group, 3),
                                                   ("reports", "no-such-group", 1), ("big", "big-group", 1)]))
    problems = {g.group: g.problem for g in report.groups}
    assert not report.ok
    assert problems[world.group] == "scaled by ledger, cards: each would undo the other's size"
    assert problems["no-such-group"] == "no Auto Scaling group no-such-group in us-west-2"
    assert report.to_dict()["groups"][0]["applications"] == ["ledger", "cards"]


def test_a_size_over_the_groups_maximum_is_a_problem(tmp_path: Path, world: AwsWorld, moto: MotoServer) -> None:
    report = check_capacity(_plan(tmp_path, moto, [("ledger", world.group, 9)]))
    assert report.groups[0].problem == "wants 9 instances, the group's maximum is 4"
