"""Evidence packs: a pack verifies, and every kind of tampering is detected."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from dr_engine.evidence.audit import canonical
from dr_engine.report.evidence import MANIFEST, build_evidence, verify_evidence
from dr_engine.report.model import build_run_report, content_digest
from dr_engine.report.publish import render_run_files
from dr_engine.report.render import render_pdf
from dr_engine.report.source import load_run
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


DR = Path(sys.executable).with_name("dr")


def dr_verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DR), "evidence", "verify", str(path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_COLOR": "1"}, check=False)


def reforge(pack: Path, tmp_path: Path, members: Members) -> Path:
    """Write ``members`` as a pack whose manifest digests and zip comment are all recomputed (a careful forger)."""
    manifest = json.loads(members[MANIFEST])
    for entry in manifest["files"]:
        entry["sha256"] = hashlib.sha256(members[entry["path"]]).hexdigest()
        entry["bytes"] = len(members[entry["path"]])
    members[MANIFEST] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    digest = hashlib.sha256(members[MANIFEST]).hexdigest()
    return write_pack(tmp_path / "forged.zip", members, b"dr-engine evidence pack; manifest-sha256=" + digest.encode())


FLIPS = {
    "report/report.json": (b'"verdict": "PASSED"', b'"verdict": "FAILED"'),
    "report/report.html": (b'<span class="verdict PASSED">PASSED</span>',
                           b'<span class="verdict FAILED">FAILED</span>'),
    "report/report.md": (b"**Verdict: PASSED**", b"**Verdict: FAILED**"),
}


@pytest.mark.parametrize("member", sorted(FLIPS))
def test_a_report_edited_with_consistent_digests_is_refused(pack: Path, tmp_path: Path, member: str) -> None:
    members, _ = read_pack(pack)
    before, after = FLIPS[member]
    assert members[member].count(before) == 1
    members[member] = members[member].replace(before, after)
    forged = reforge(pack, tmp_path, members)
    done = dr_verify(forged)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "VERIFICATION FAILED" in done.stderr and "Traceback" not in done.stderr
    assert f"{member} disagrees with the report rebuilt from the packed run.json and audit.jsonl" in done.stderr
    if member == "report/report.json":
        assert "verdict is 'FAILED' where the logs give 'PASSED'" in done.stderr
    else:
        assert "where the logs give" in done.stderr and "PASSED" in done.stderr


def test_a_pdf_laid_out_from_an_edited_report_is_refused(pack: Path, tmp_path: Path) -> None:
    members, _ = read_pack(pack)
    before, after = FLIPS["report/report.html"]
    members["report/report.pdf"] = render_pdf(members["report/report.html"].replace(before, after).decode())
    done = dr_verify(reforge(pack, tmp_path, members))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "report/report.pdf disagrees with the report rebuilt from the packed run.json and audit.jsonl: it is " \
        "not the layout of the rebuilt report" in done.stderr


def test_a_forged_run_record_with_reports_rebuilt_from_it_is_refused(pack: Path, tmp_path: Path) -> None:
    """The forger edits run.json (RTO missed) and renders every report again from it: the log disagrees."""
    members, _ = read_pack(pack)
    record = json.loads(members["run.json"])
    record["rto_met"] = False
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_bytes(json.dumps(record, indent=2).encode())
    (run_dir / "audit.jsonl").write_bytes(members["audit.jsonl"])
    packed_report = json.loads(members["report/report.json"])
    report = build_run_report(load_run(run_dir), now=datetime.fromisoformat(packed_report["generated_at"]))
    report.integrity.retained_at = packed_report["integrity"]["retained_at"]
    report.integrity.content_sha256 = content_digest(report)
    members["run.json"] = (run_dir / "run.json").read_bytes()
    for name, data in render_run_files(report, ("html", "pdf", "md", "json")).items():
        members[f"report/{name}"] = data
    manifest = json.loads(members[MANIFEST])
    manifest["report_content_sha256"] = report.integrity.content_sha256
    members[MANIFEST] = json.dumps(manifest).encode()
    done = dr_verify(reforge(pack, tmp_path, members))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "run.json: run.json disagrees with the audit log on rto_met" in done.stderr


def test_a_region_file_changed_since_the_run_is_flagged(fresh_samples: SampleRuns, tmp_path: Path) -> None:
    west = fresh_samples.project / "regions" / "west.yaml"
    west.write_text(west.read_text(encoding="utf-8") + "# edited after the drill\n", encoding="utf-8")
    run_id = fresh_samples.run_id("drill")
    target = tmp_path / "drill.zip"
    built = subprocess.run([str(DR), "evidence", run_id, "-o", str(target)], capture_output=True, text=True,
                           timeout=300, check=False, cwd=tmp_path,
                           env={**os.environ, "NO_COLOR": "1", "DR_STATE_DIR": str(fresh_samples.state_dir)})
    assert built.returncode == 0, built.stderr
    assert f"warning: region file {west} changed since the run" in built.stderr
    members, _ = read_pack(target)
    regions = {r["region"]: r for r in json.loads(members[MANIFEST])["config"]["regions"]}
    assert regions["west"]["matches_run"] is False and regions["east"]["matches_run"] is True
    assert regions["west"]["recorded_sha256"] == fresh_samples.records["drill"].region_sha256["west"]
    done = dr_verify(target)
    assert done.returncode == 0, done.stderr  # the pack is intact and says what it found
    assert "region file" in done.stderr and "changed since the run" in done.stderr


def test_a_pack_without_renderer_versions_whose_reports_disagree_says_to_rebuild_it(pack: Path,
                                                                                   tmp_path: Path) -> None:
    members, _ = read_pack(pack)
    manifest = json.loads(members[MANIFEST])
    del manifest["renderer"]  # as in packs made before reports were checked against the logs
    members[MANIFEST] = json.dumps(manifest).encode()
    assert verify_evidence(reforge(pack, tmp_path, dict(members))).ok  # matching reports still verify
    before, after = FLIPS["report/report.md"]
    members["report/report.md"] = members["report/report.md"].replace(before, after)
    outcome = verify_evidence(reforge(pack, tmp_path, members))
    assert any(p.startswith("report/report.md disagrees") for p in outcome.problems), outcome.problems
    assert any("made by an earlier dr-engine" in p and "dr evidence RUN_ID -o FILE.zip" in p
               for p in outcome.problems), outcome.problems
