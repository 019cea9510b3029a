"""Secret values the process resolved are masked by value in audit events, logs and consoles.

Values are registered process-wide, so each test uses its own canary (never a word that other
tests print).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from rich.table import Table

from dr_engine.config.bindings import read_secret
from dr_engine.evidence.audit import AuditLog, read_events, verify
from dr_engine.evidence.secrets_scrub import MASK, MIN_LENGTH, ScrubbingStream, register, scrub_text, scrub_value
from dr_engine.model import Region


def encoded_forms(value: str) -> list[str]:
    """Every form a dependency may quote a value in."""
    raw = value.encode()
    b64 = [base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]
    return [value, quote(value), quote(value, safe=""), quote_plus(value), *b64, *(b.rstrip("=") for b in b64)]


def test_every_form_of_a_value_is_masked_whatever_surrounds_it() -> None:
    canary = "Tr1cky/Canary+Pw?x=1 ü"
    assert register(canary)
    for form in encoded_forms(canary):
        text = f"FATAL: password {form} rejected;password{form}!"
        assert scrub_text(text) == f"FATAL: password {MASK} rejected;password{MASK}!", form
    assert canary not in json.loads(scrub_text(json.dumps({"e": f"bad {canary}"})))["e"]
    assert scrub_value({"k": [f"x{canary}", 3, None], canary: True}) == {"k": [f"x{MASK}", 3, None], MASK: True}


def test_a_longer_value_is_masked_whole_before_one_it_contains() -> None:
    assert register("NestedCanary")
    assert register("NestedCanary-and-more-77")
    assert scrub_text("a NestedCanary-and-more-77 b NestedCanary c") == f"a {MASK} b {MASK} c"


def test_values_too_short_to_mask_are_refused_and_do_not_blank_out_text() -> None:
    assert not register("q7z")
    assert len("q7z") < MIN_LENGTH
    assert scrub_text("q7z at 2026-01-01T00:00:00Z") == "q7z at 2026-01-01T00:00:00Z"


def test_read_secret_registers_the_value_and_warns_about_short_ones_by_name(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SCRUB_TEST_LONG", "ReadSecretCanary-5e1")
    monkeypatch.setenv("SCRUB_TEST_SHORT", "k9")
    region = Region.model_validate({"name": "west", "secrets": {"long": {"env": "SCRUB_TEST_LONG"},
                                                                 "short": {"env": "SCRUB_TEST_SHORT"}}})
    assert read_secret(region, "long").get_secret_value() == "ReadSecretCanary-5e1"
    assert scrub_text("login ReadSecretCanary-5e1 failed") == f"login {MASK} failed"
    with caplog.at_level(logging.WARNING, logger="dr_engine.config.bindings"):
        read_secret(region, "short")
        read_secret(region, "short")
    warnings = [r.getMessage() for r in caplog.records if "too short" in r.getMessage() or "shorter" in r.getMessage()]
    assert len(warnings) == 1 and "'short'" in warnings[0] and "k9" not in warnings[0]


def test_audit_events_are_masked_before_they_are_hashed(tmp_path: Path) -> None:
    canary = "AuditCanary-93b1"
    register(canary)
    log = AuditLog(tmp_path / "audit.jsonl", "run-1")
    quoted = [quote_plus(canary), base64.b64encode(canary.encode()).decode()]
    log.append("step.failed", step="db", error={"message": f"FATAL: password {canary}", "details": quoted})
    log.append("run.finished", status="halted")
    text = (tmp_path / "audit.jsonl").read_text()
    assert canary not in text and quote_plus(canary) not in text
    assert read_events(tmp_path / "audit.jsonl")[0]["data"]["error"]["message"] == f"FATAL: password {MASK}"
    assert verify(tmp_path / "audit.jsonl").ok  # what was hashed is what was written


def test_log_records_are_masked_for_handlers_added_before_and_after(tmp_path: Path) -> None:
    canary = "LogCanary-c4d2"
    register(canary)
    logger = logging.getLogger("dr_engine.test_scrub")
    early, late = io.StringIO(), io.StringIO()
    handlers = [logging.StreamHandler(early)]
    logger.addHandler(handlers[0])
    try:
        register("LogCanary-registered-later-1")
        handlers.append(logging.StreamHandler(late))
        logger.addHandler(handlers[1])
        logger.warning("connect failed: password %s (%s)", canary, quote(canary, safe=""))
        try:
            raise RuntimeError(f"server said: password {canary}")
        except RuntimeError:
            logger.exception("step crashed")
        logger.warning("plain %d%%", 5)  # a message without secrets keeps its arguments
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
    for stream in (early, late):
        text = stream.getvalue()
        assert canary not in text and quote(canary, safe="") not in text
        assert f"connect failed: password {MASK} ({MASK})" in text
        assert f"RuntimeError: server said: password {MASK}" in text and "plain 5%" in text


def test_console_output_is_masked_even_when_a_table_wraps_the_value() -> None:
    from rich.console import Console

    from dr_engine.cli.common import _ScrubbingConsole

    canary = "ConsoleCanaryWrapsAcrossLines-0f9a"
    register(canary)
    sink = io.StringIO()
    console = _ScrubbingConsole(file=ScrubbingStream(sink), width=24, no_color=True)  # type: ignore[arg-type]
    table = Table("error")
    table.add_row(f"password {canary}")
    console.print(table)
    console.print(f"error: password {canary}", markup=False)
    text = sink.getvalue()
    assert canary not in text.replace("\n", "").replace("│", "").replace(" ", "")
    assert MASK in text
    # Without masking, the wrapped value would have slipped through a plain stream check.
    plain = io.StringIO()
    Console(file=plain, width=24, no_color=True).print(table)
    assert canary not in plain.getvalue() and canary[:8] in plain.getvalue()
