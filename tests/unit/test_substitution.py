"""``${...}`` references: parsing, finding and substituting."""

from __future__ import annotations

from typing import Any

import pytest

from dr_engine.model.substitution import Reference, find_references, parse_reference, substitute


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("source.db_dsn", Reference("source.db_dsn", "region", region="source", key="db_dsn")),
        ("target.health_url", Reference("target.health_url", "region", region="target", key="health_url")),
        ("target.secrets.db_password",
         Reference("target.secrets.db_password", "secret", region="target", key="db_password")),
        ("steps.fence-db.lsn", Reference("steps.fence-db.lsn", "step", step="fence-db", key="lsn")),
        ("runbook.name", Reference("runbook.name", "run", key="runbook.name")),
        ("run.id", Reference("run.id", "run", key="run.id")),
        ("run.mode", Reference("run.mode", "run", key="run.mode")),
    ],
)
def test_parse_valid(text: str, expected: Reference) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize(
    "text", ["", "target", "region.addr", "target.Health", "steps.a", "steps.A.x", "run.user", "target.secrets.Bad"]
)
def test_parse_invalid(text: str) -> None:
    assert parse_reference(text) is None


def test_find_references_reports_field_paths() -> None:
    params = {"url": "${target.health_url}/x", "argv": ["a", "${steps.s.out} ${run.id}"], "n": {"m": "$${lit}"}}
    assert find_references(params) == [
        ("url", "target.health_url"),
        ("argv[1]", "steps.s.out"),
        ("argv[1]", "run.id"),
    ]


def resolver(ref: Reference) -> Any:
    table = {"target.port": 5432, "target.addr": "127.0.2.1", "run.id": "r-1"}
    return table[ref.text]


def test_whole_value_keeps_type_and_text_interpolates() -> None:
    assert substitute("${target.port}", resolver) == 5432
    assert substitute("${target.addr}:${target.port}", resolver) == "127.0.2.1:5432"
    assert substitute({"a": ["${run.id}", 3, None]}, resolver) == {"a": ["r-1", 3, None]}


def test_escape_writes_a_literal() -> None:
    assert substitute("cost $${HOME} at ${target.addr}", resolver) == "cost ${HOME} at 127.0.2.1"
    assert find_references("$${target.addr}") == []


def test_unresolved_kept_or_raised() -> None:
    assert substitute("x ${steps.a.b}", resolver, keep_unresolved=True) == "x ${steps.a.b}"
    with pytest.raises(KeyError):
        substitute("x ${steps.a.b}", resolver)
    with pytest.raises(KeyError):
        substitute("${not valid}", resolver, keep_unresolved=True)
