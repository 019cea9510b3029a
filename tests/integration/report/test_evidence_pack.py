"""Evidence packs: a pack verifies, and every kind of tampering is detected."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from dr_engine.audit import canonical
from dr_engine.report.evidence import MANIFEST, build_evidence, verify_evidence
from dr_engine.testing.sample_runs import CANARIES, SampleRuns

pytestmark = pytest.mark.integration

Members = dict[str, bytes]


@pytest.fixture(scope="module")
def pack(samples: SampleRuns, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An evidence pack of the drill (built once; tests tamper with copies)."""
    return build_evidence(samples.runs["drill"], tmp_path_factory.mktemp("pack") / "drill.zip").path


def read_pack(path: Path) -> tuple[Members, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}, archive.comment


def write_pack(path: Path, members: Members, comment: bytes) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        archive.comment = comment
    return path


def tampered(pack: Path, tmp_path: Path, change: Callable[[Members], None], comment: bytes | None = None) -> Path:
    members, original_comment = read_pack(pack)
    change(members)
    return write_pack(tmp_path / "tampered.zip", members, original_comment if comment is None else comment)


def test_a_fresh_pack_verifies_and_holds_everything(pack: Path, samples: SampleRuns) -> None:
    outcome = verify_evidence(pack)
    assert outcome.ok, outcome.problems
    members, comment = read_pack(pack)
    assert {"manifest.json", "run.json", "audit.jsonl", "report/report.html", "report/report.pdf",
            "report/report.md", "report/report.json", "report/timeline.png", "config/runbook/payments.yaml",
            "config/regions/east.yaml", "config/regions/west.yaml"} <= set(members)
    assert outcome.checked == len(members) - 1
    assert outcome.run_id == samples.run_id("drill")
    manifest = json.loads(members[MANIFEST])
    assert manifest["config"]["runbook"]["matches_run"] is True
    assert manifest["audit_chain"]["ok"] is True
    assert b"manifest-sha256=" in comment
    assert members["audit.jsonl"] == (samples.runs["drill"] / "audit.jsonl").read_bytes()
    for name in ("report/report.html", "report/report.md", "report/report.json"):
        assert not any(c.encode() in members[name] for c in CANARIES)


def _member_names(pack_path: Path) -> list[str]:
    with zipfile.ZipFile(pack_path) as archive:
        return archive.namelist()


@pytest.mark.parametrize("member", ["manifest.json", "run.json", "audit.jsonl", "report/report.html",
                                    "report/report.pdf", "report/report.md", "report/report.json",
                                    "report/timeline.png", "config/runbook/payments.yaml",
                                    "config/regions/east.yaml", "config/regions/west.yaml"])
def test_a_changed_byte_in_any_member_is_detected(pack: Path, tmp_path: Path, member: str) -> None:
    assert member in _member_names(pack)

    def flip(members: Members) -> None:
        data = bytearray(members[member])
        middle = len(data) // 2
        data[middle] = data[middle] ^ 0x01
        members[member] = bytes(data)

    outcome = verify_evidence(tampered(pack, tmp_path, flip))
    assert not outcome.ok
    assert any(member in p or "manifest" in p for p in outcome.problems), outcome.problems


@pytest.mark.parametrize("member", ["audit.jsonl", "run.json", "report/report.pdf", "config/runbook/payments.yaml",
                                    "manifest.json"])
def test_a_removed_member_is_detected(pack: Path, tmp_path: Path, member: str) -> None:
    outcome = verify_evidence(tampered(pack, tmp_path, lambda members: members.pop(member)))
    assert not outcome.ok
    assert any("missing" in p or "cannot be verified" in p for p in outcome.problems), outcome.problems


def test_an_added_member_is_detected(pack: Path, tmp_path: Path) -> None:
    outcome = verify_evidence(tampered(pack, tmp_path, lambda m: m.update({"report/addendum.html": b"<p>ok</p>"})))
    assert not outcome.ok
    assert outcome.problems == ["report/addendum.html: not listed in the manifest (added after packing)"]


def test_an_edited_audit_line_is_detected_even_with_a_consistent_manifest(pack: Path, tmp_path: Path) -> None:
    """The forger edits an event and recomputes every digest: the hash chain still catches it."""
    members, _ = read_pack(pack)
    lines = members["audit.jsonl"].decode().splitlines()
    index = next(i for i, line in enumerate(lines) if '"step.attempt"' in line)
    event = json.loads(lines[index])
    event["data"]["error"]["message"] = "nothing happened here"
    lines[index] = canonical(event).decode()
    members["audit.jsonl"] = ("\n".join(lines) + "\n").encode()
    manifest = json.loads(members[MANIFEST])
    for entry in manifest["files"]:
        if entry["path"] in members:
            entry["sha256"] = hashlib.sha256(members[entry["path"]]).hexdigest()
            entry["bytes"] = len(members[entry["path"]])
    members[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    digest = hashlib.sha256(members[MANIFEST]).hexdigest()
    path = write_pack(tmp_path / "forged.zip", members, b"dr-engine evidence pack; manifest-sha256=" + digest.encode())
    outcome = verify_evidence(path)
    assert not outcome.ok
    assert any(p.startswith(f"audit.jsonl: chain verification failed at line {index + 1}") for p in outcome.problems)
    assert "audit.jsonl differs from the audit log the report was built from" in outcome.problems


def test_a_duplicate_member_is_detected(pack: Path, tmp_path: Path) -> None:
    members, comment = read_pack(pack)
    path = tmp_path / "dup.zip"
    write_pack(path, members, comment)
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as archive:
        archive.writestr("run.json", b"{}")
    outcome = verify_evidence(path)
    assert not outcome.ok
    assert any("duplicate members" in p for p in outcome.problems)


def test_not_a_zip(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    outcome = verify_evidence(junk)
    assert not outcome.ok and "not a readable zip" in outcome.problems[0]


def test_a_runbook_changed_since_the_run_is_flagged(samples: SampleRuns, tmp_path: Path) -> None:
    # The failed run used a runbook whose traffic shift failed; the file has been fixed since.
    result = build_evidence(samples.runs["failed"], tmp_path / "failed.zip")
    runbook = result.manifest["config"]["runbook"]
    assert runbook["matches_run"] is False
    assert runbook["recorded_sha256"] != runbook["packed_sha256"]
    assert any("changed since the run" in w for w in result.warnings)
    outcome = verify_evidence(result.path)
    assert outcome.ok  # the pack itself is intact ...
    assert any("changed since the run" in w for w in outcome.warnings)  # ... and says what it found
