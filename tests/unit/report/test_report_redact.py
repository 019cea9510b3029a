"""Redaction: anything that looks like a credential is masked before it reaches a report."""

from __future__ import annotations

import pytest

from dr_engine.evidence.redact import MASK, is_secret_key, looks_secret, redact_text, redact_value


@pytest.mark.parametrize(("text", "secret"), [
    ("postgresql://app:S3cr3t-pw@db.internal:5432/ledger", "S3cr3t-pw"),
    ("host=db port=5432 password=S3cr3t-pw user=app", "S3cr3t-pw"),
    ("PGPASSWORD=S3cr3t-pw psql", "S3cr3t-pw"),
    ('{"api_key": "S3cr3t-pw"}', "S3cr3t-pw"),
    ("token: S3cr3t-pw", "S3cr3t-pw"),
    ("Authorization: Bearer S3cr3tS3cr3tS3cr3t", "S3cr3tS3cr3tS3cr3t"),
    ("aws_secret_access_key=" + "A" * 40, "A" * 40),
    ("<td>token=S3cr3t-pw</td><td>bob</td>", "S3cr3t-pw"),
])
def test_credentials_are_masked(text: str, secret: str) -> None:
    redacted = redact_text(text)
    assert secret not in redacted
    assert MASK in redacted
    assert looks_secret(text)


def test_markup_around_a_secret_survives() -> None:
    assert redact_text("<td>token=abc</td><td>bob</td>") == "<td>token=***</td><td>bob</td>"


@pytest.mark.parametrize("text", [
    "postgresql://postgres@127.0.1.1:15432/ledger",
    "key_secret: ${target.secrets.tsig_key}",
    "password: {env: PGPASSWORD}",
    "secrets:\n  tsig_key: {file: /tmp/tsig.key}",
    "passed: 3 steps, 0 rows lost",
    "https://example.com/healthz",
    '{"text": "failover lock taken, fencing token 1", "token": 1}',
])
def test_harmless_text_is_kept(text: str) -> None:
    assert redact_text(text) == text
    assert not looks_secret(text)


def test_values_under_secret_keys_are_masked_recursively() -> None:
    value = {"facts": {"db_password": "x", "api-key": "y", "rows": 3, "passed": True},
             "outputs": [{"session_token": "z"}], "summary": "ok"}
    assert redact_value(value) == {"facts": {"db_password": MASK, "api-key": MASK, "rows": 3, "passed": True},
                                   "outputs": [{"session_token": MASK}], "summary": "ok"}


@pytest.mark.parametrize(("key", "secret"), [
    ("password", True), ("PGPASSWORD", True), ("client_secret", True), ("authToken", True),
    ("passed", False), ("rows_lost", False), ("runbook_sha256", False), ("bypass", False),
])
def test_secret_key_names(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret
