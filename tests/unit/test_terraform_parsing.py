"""Parsing terraform's output: lock holders, error blocks, plan counts (no CLI needed)."""

from __future__ import annotations

from datetime import UTC, datetime

from dr_engine.providers.terraform.cli import summarise_plan
from dr_engine.providers.terraform.diagnostics import Failure, classify, first_error, parse_go_time, parse_lock_info
from dr_engine.providers.terraform.process import Redactor

LOCKED = """
Error: Error acquiring the state lock

Error message: operation error DynamoDB: PutItem, ConditionalCheckFailedException
Lock Info:
  ID:        9f64ab77-e819-e1f7-e0af-f09c4fce1674
  Path:      state-west/ledger/us-west-2.tfstate
  Operation: OperationTypeApply
  Who:       ci@runner-7
  Version:   1.11.4
  Created:   2026-01-31 10:00:00.215161374 +0000 UTC
  Info:
"""


def test_lock_info_is_parsed_with_holder_and_age() -> None:
    lock = parse_lock_info(LOCKED)
    assert lock is not None
    assert (lock.id, lock.who, lock.operation) == ("9f64ab77-e819-e1f7-e0af-f09c4fce1674", "ci@runner-7",
                                                   "OperationTypeApply")
    assert lock.created == datetime(2026, 1, 31, 10, 0, 0, 215161, tzinfo=UTC)
    now = datetime(2026, 1, 31, 10, 5, 0, 215161, tzinfo=UTC)
    assert lock.age_seconds(now) == 300
    assert lock.describe(now) == ("held by ci@runner-7 (Apply, terraform 1.11.4) for 300s, "
                                  "lock id 9f64ab77-e819-e1f7-e0af-f09c4fce1674")
    assert classify(LOCKED) is Failure.LOCKED


def test_go_time_with_offset_and_without_fraction() -> None:
    assert parse_go_time("2026-01-31 12:00:00 +0200 CEST") == datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    assert parse_go_time("yesterday") is None
    assert parse_lock_info("Error: something else") is None


def test_first_error_block_and_classification() -> None:
    text = ("Initializing...\n\nError: Unsupported argument\n\n  on main.tf line 10, in resource:\n"
            "  10:   inptu = 1\n\nAn argument named \"inptu\" is not expected here.\n\nError: second\n")
    block = first_error(text)
    assert block.startswith("Error: Unsupported argument") and "main.tf line 10" in block
    assert "second" not in block
    assert classify(text) is Failure.CONFIG
    assert classify("dial tcp 127.0.0.1:1: connect: connection refused") is Failure.TRANSIENT
    assert classify("Error: S3 bucket \"x\" does not exist.") is Failure.BACKEND_MISSING
    assert classify("Error: Unsupported Terraform Core version") is Failure.TOO_OLD
    assert first_error("") == "(no output)"


def test_plan_counts_replacements_as_add_and_destroy() -> None:
    plan = {
        "resource_changes": [
            {"address": "a", "change": {"actions": ["no-op"]}},
            {"address": "b", "change": {"actions": ["create"]}},
            {"address": "c", "change": {"actions": ["update"]}},
            {"address": "d", "change": {"actions": ["delete", "create"]}},
            {"address": "e", "change": {"actions": ["delete"]}},
        ],
        "resource_drift": [{"address": "c", "change": {"actions": ["update"]}}],
        "output_changes": {"url": {"actions": ["update"]}, "same": {"actions": ["no-op"]}},
    }
    summary = summarise_plan(plan, changes=True)
    assert (summary.add, summary.change, summary.destroy) == (2, 1, 2)
    assert summary.addresses == ("b (create)", "c (update)", "d (delete/create)", "e (delete)")
    assert summary.drifted == ("c",) and summary.outputs_changed == ("url",)
    assert "changed outside terraform: c" in summary.describe()


def test_redactor_masks_secrets_and_url_passwords() -> None:
    redact = Redactor(["hunter22", "ab"])
    assert redact("pw hunter22 in postgres://app:s3cret@db:5432/x ab") == "pw *** in postgres://app:***@db:5432/x ab"
