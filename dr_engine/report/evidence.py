"""Evidence packs: one zip per run that an auditor can verify without dr-engine's state dir.

Layout of ``dr evidence RUN_ID -o FILE.zip``::

    manifest.json              format, run id, every member's SHA-256 and size, checks made
    run.json                   the run record, byte for byte
    audit.jsonl                the hash-chained audit log, byte for byte
    notes/audit.jsonl          remediation notes log (when the run has notes)
    report/report.{html,pdf,md,json}, report/timeline.png
    config/runbook/<file>      the runbook file as run (flagged when its SHA-256 changed since)
    config/regions/<file>      the source and target region files

The zip comment carries the SHA-256 of ``manifest.json``, so editing the manifest is
detected too. :func:`verify_evidence` checks the comment, every digest, that no member is
missing or added, the audit chain (and the notes chain), that ``run.json`` is what the
audit log says (:mod:`dr_engine.evidence.record_check`), and that the reports say what the packed
logs say: digests alone prove nothing when whoever edits a report also rewrites the manifest.

How the reports are tied to the logs: the report is rebuilt from the packed ``run.json``,
``audit.jsonl`` and notes log (with the report time and retention path the manifest
recorded) and rendered again. Rendering is deterministic, so ``report.json`` and
``report.md`` must be byte for byte what the rebuild renders, and ``report.html`` too except
its embedded chart images, which matplotlib draws with the machine's fonts (they picture the
timeline that the checked tables state; their bytes are covered by the manifest only, like
``timeline.png``). ``report.pdf`` is rendered again from the rebuilt report and must match
byte for byte: that needs the WeasyPrint and matplotlib versions and fonts the pack was made
with (the manifest records the versions, and a mismatch names them).

Limit: digests prove the pack is unchanged since it was made, not who made it; anyone can
rebuild a consistent pack from forged inputs. Anchor the audit head hash (shown in every
report) or the pack's SHA-256 in a system you trust (ticket, WORM storage) to close that gap.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dr_engine import __version__
from dr_engine.clock import utc_iso
from dr_engine.config.runbooks import runbooks_dir
from dr_engine.errors import RunStateError
from dr_engine.evidence.audit import default_actor
from dr_engine.evidence.record import AUDIT_FILE, RUN_FILE, load_record
from dr_engine.evidence.record_check import chain_reason
from dr_engine.evidence.redact import looks_secret, redact_text
from dr_engine.report.charts import timeline_chart
from dr_engine.report.formatting import parse_ts
from dr_engine.report.model import RunReport, build_run_report, content_digest
from dr_engine.report.publish import render_run_files, run_html, run_markdown
from dr_engine.report.render import render_json, render_pdf
from dr_engine.report.source import NOTES_DIR, NOTES_FILE, RunSource, load_run, notes_path

EVIDENCE_FORMAT = "dr-engine-evidence/1"
MANIFEST = "manifest.json"
_COMMENT = re.compile(rb"manifest-sha256=([0-9a-f]{64})")
#: Embedded chart images of the HTML report, left out of its comparison with a re-render.
_SVG_URI = re.compile(r"data:image/svg\+xml;base64,[A-Za-z0-9+/=]*")


@dataclass
class EvidenceResult:
    """What :func:`build_evidence` wrote."""

    path: Path
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class VerifyOutcome:
    """What :func:`verify_evidence` found. ``ok`` is False when anything is wrong."""

    path: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: int = 0
    run_id: str = ""

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return not self.problems


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _candidates(recorded: str, run_dir: Path, fallback_dir: Path | None, name: str) -> list[Path]:
    given = Path(recorded) if recorded else None
    found: list[Path] = []
    if given is not None:
        found.append(given)
        parents = run_dir.resolve().parents
        if not given.is_absolute() and len(parents) > 2:
            # The path was recorded as given on the command line; the state dir usually sits in
            # the project root (``.dr``), so also try relative to that root.
            found.append(parents[2] / given)
    if fallback_dir is not None:
        found += [fallback_dir / f"{name}.yaml", fallback_dir / f"{name}.yml"]
    return found


def _first_file(paths: list[Path]) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def _region_file(directory: Path | None, name: str) -> Path | None:
    if directory is None or not directory.is_dir():
        return None
    direct = _first_file([directory / f"{name}.yaml", directory / f"{name}.yml"])
    if direct is not None:
        return direct
    pattern = re.compile(rf"^name:\s*['\"]?{re.escape(name)}['\"]?\s*$", re.MULTILINE)
    return next((p for p in sorted(directory.glob("*.y*ml")) if pattern.search(p.read_text("utf-8", "replace"))),
                None)


def _packable(data: bytes) -> bytes:
    """A config file as packed: redacted when it holds a credential (e.g. a DSN with a password).

    Packs leave the team; the original's SHA-256 still goes into the manifest (``source_sha256``),
    so the file can be compared with the run without shipping its secret.
    """
    text = data.decode("utf-8", "replace")
    return redact_text(text).encode("utf-8") if looks_secret(text) else data


def _collect_config(run_dir: Path, record: dict[str, Any], members: dict[str, bytes],
                    warnings: list[str]) -> dict[str, Any]:
    runbook_path = _first_file(_candidates(str(record.get("runbook_file") or ""), run_dir, runbooks_dir(),
                                           str(record.get("runbook") or "")))
    config: dict[str, Any] = {"runbook": None, "regions": []}
    recorded = str(record.get("runbook_sha256") or "")
    if runbook_path is None:
        warnings.append(f"runbook file {record.get('runbook_file')!r} not found: not packed")
    else:
        data = runbook_path.read_bytes()
        packed = members[f"config/runbook/{runbook_path.name}"] = _packable(data)
        matches = _sha(data) == recorded if recorded else None
        config["runbook"] = {"path": f"config/runbook/{runbook_path.name}", "source": str(runbook_path),
                             "recorded_sha256": recorded, "packed_sha256": _sha(packed), "matches_run": matches,
                             "source_sha256": _sha(data), "redacted": packed != data}
        if matches is False:
            warnings.append(f"runbook {runbook_path} changed since the run: SHA-256 {_sha(data)[:16]}... "
                            f"differs from the {recorded[:16]}... recorded at run time (packed as it is now)")
    regions_dir = Path(str(record["regions_dir"])) if record.get("regions_dir") else (
        runbook_path.parent.parent / "regions" if runbook_path else None)
    raw_regions = record.get("region_sha256")
    recorded_regions: dict[str, Any] = raw_regions if isinstance(raw_regions, dict) else {}
    for name in dict.fromkeys([str(record.get("source") or ""), str(record.get("target") or "")]):
        path = _region_file(regions_dir, name)
        if path is None:
            warnings.append(f"region file of {name!r} not found: not packed")
            continue
        data = path.read_bytes()
        packed = members[f"config/regions/{path.name}"] = _packable(data)
        known = recorded_regions.get(name)
        matches = None if not known else known == _sha(data)
        config["regions"].append({"region": name, "path": f"config/regions/{path.name}", "source": str(path),
                                  "recorded_sha256": known, "packed_sha256": _sha(packed), "matches_run": matches,
                                  "source_sha256": _sha(data), "redacted": packed != data})
        if matches is False:
            warnings.append(f"region file {path} changed since the run (packed as it is now)")
    return config


def build_evidence(run_dir: Path, out: Path, *, formats: tuple[str, ...] = ("html", "pdf", "md", "json"),
                   now: datetime | None = None, actor: str | None = None) -> EvidenceResult:
    """Write the evidence pack of the run in ``run_dir`` to ``out`` (a ``.zip``)."""
    run_dir = Path(run_dir)
    source = load_run(run_dir)
    record = load_record(run_dir).model_dump(mode="json")
    members: dict[str, bytes] = {RUN_FILE: (run_dir / RUN_FILE).read_bytes()}
    audit = run_dir / AUDIT_FILE
    if not audit.is_file():
        raise RunStateError(f"run {record['run_id']} has no audit log at {audit}",
                            hint="an evidence pack without its audit log proves nothing")
    members[AUDIT_FILE] = audit.read_bytes()
    if notes_path(run_dir).is_file():
        members[f"{NOTES_DIR}/{NOTES_FILE}"] = notes_path(run_dir).read_bytes()
    warnings: list[str] = []
    if not source.verified:
        warnings.append(f"the run does not verify: {source.verification} (packed as found; its reports read "
                        "UNVERIFIED)")
    # One time for the report and the manifest, so that verification can rebuild the same report.
    created = now or datetime.now(UTC)
    report = build_run_report(source, now=created)
    for name, content in render_run_files(report, formats).items():
        members[f"report/{name}"] = content
    config = _collect_config(run_dir, record, members, warnings)
    for name in (RUN_FILE, AUDIT_FILE, *[n for n in members if n.startswith("config/")]):
        if looks_secret(members[name].decode("utf-8", "replace")):
            warnings.append(f"{name} contains what looks like a credential; it is packed unchanged because its "
                            "digest is evidence (reports are redacted)")
    manifest: dict[str, Any] = {
        "format": EVIDENCE_FORMAT,
        "run_id": record["run_id"],
        "runbook": record.get("runbook"),
        "created_at": utc_iso(created),
        "created_by": actor or default_actor(),
        "audit_chain": {"ok": source.chain.ok, "events": source.chain.count, "head": source.chain.head,
                        "sealed": source.chain.sealed, "reason": source.chain.reason},
        "verified": source.verified,
        "verification": source.verification,
        "report_content_sha256": report.integrity.content_sha256,
        "report_generated_at": report.generated_at,
        "report_retained_at": report.integrity.retained_at,
        "renderer": renderer_versions(),
        "config": config,
        "warnings": warnings,
        "files": [{"path": name, "sha256": _sha(data), "bytes": len(data)} for name, data in sorted(members.items())],
    }
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp = created.astimezone(UTC).timetuple()[:6]
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in [(MANIFEST, manifest_bytes), *sorted(members.items())]:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
        archive.comment = b"dr-engine evidence pack; manifest-sha256=" + _sha(manifest_bytes).encode("ascii")
    tmp.replace(out)
    return EvidenceResult(path=out, manifest=manifest, warnings=warnings)


def verify_evidence(path: Path) -> VerifyOutcome:
    """Check an evidence pack (see the module docstring); never raises for a bad pack."""
    outcome = VerifyOutcome(path=Path(path))
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        outcome.problems.append(f"not a readable zip file: {exc}")
        return outcome
    with archive:
        names = archive.namelist()
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            outcome.problems.append(f"duplicate members (a second copy hides the first): {', '.join(duplicates)}")
        try:
            contents = {name: archive.read(name) for name in dict.fromkeys(names)}
        except (zipfile.BadZipFile, OSError, ValueError) as exc:  # CRC errors surface here
            outcome.problems.append(f"a member cannot be read (corrupted archive): {exc}")
            return outcome
        comment = archive.comment
    manifest_bytes = contents.pop(MANIFEST, None)
    if manifest_bytes is None:
        outcome.problems.append("manifest.json is missing")
        return outcome
    found = _COMMENT.search(comment)
    if found is None:
        outcome.problems.append("the zip comment with the manifest's SHA-256 is missing")
    elif found.group(1).decode() != _sha(manifest_bytes):
        outcome.problems.append("manifest.json was modified (its SHA-256 does not match the one in the zip comment)")
    try:
        manifest = json.loads(manifest_bytes)
        files = {str(f["path"]): f for f in manifest["files"]}
    except (ValueError, KeyError, TypeError) as exc:
        outcome.problems.append(f"manifest.json is not a valid manifest: {exc}")
        return outcome
    outcome.run_id = str(manifest.get("run_id", ""))
    if manifest.get("format") != EVIDENCE_FORMAT:
        outcome.problems.append(f"unknown pack format {manifest.get('format')!r} (expected {EVIDENCE_FORMAT})")
    for name, entry in sorted(files.items()):
        data = contents.get(name)
        if data is None:
            outcome.problems.append(f"{name}: listed in the manifest but missing from the pack")
            continue
        outcome.checked += 1
        if _sha(data) != entry.get("sha256"):
            outcome.problems.append(f"{name}: SHA-256 mismatch (the file was modified)")
        elif len(data) != entry.get("bytes"):
            outcome.problems.append(f"{name}: size differs from the manifest")
    for name in sorted(set(contents) - set(files)):
        outcome.problems.append(f"{name}: not listed in the manifest (added after packing)")
    source = _verify_logs(contents, outcome)
    _cross_check(contents, outcome)
    if source is not None:
        _check_reports(contents, manifest, source, outcome)
    outcome.warnings += [str(w) for w in manifest.get("warnings") or []]
    return outcome


def _verify_logs(contents: dict[str, bytes], outcome: VerifyOutcome) -> RunSource | None:
    """Check the packed logs; return them read as a run source (None when they cannot be read)."""
    if AUDIT_FILE not in contents or RUN_FILE not in contents:
        outcome.problems.append("the pack lacks run.json or audit.jsonl: the audit chain cannot be verified")
        return None
    with tempfile.TemporaryDirectory(prefix="dr-evidence-") as tmp:
        root = Path(tmp)
        # Fixed names under a private directory: member names are never used as paths.
        (root / RUN_FILE).write_bytes(contents[RUN_FILE])
        (root / AUDIT_FILE).write_bytes(contents[AUDIT_FILE])
        notes = contents.get(f"{NOTES_DIR}/{NOTES_FILE}")
        if notes is not None:
            (root / NOTES_DIR).mkdir()
            (root / NOTES_DIR / NOTES_FILE).write_bytes(notes)
        try:
            source = load_run(root)  # verifies the chains and run.json against the log (record_check)
        except RunStateError as exc:
            outcome.problems.append(f"run.json: cannot be read, so nothing in the pack can be checked against it: "
                                    f"{exc}")
            return None
    check = source.check
    if not source.chain.ok:
        reason = chain_reason(check.chain) if check is not None else source.chain.reason
        outcome.problems.append(f"audit.jsonl: chain verification failed at {reason}")
    elif check is not None and not check.verified:
        outcome.problems.append(f"run.json: {check.verification}")
    if source.notes_chain is not None and not source.notes_chain.ok:
        outcome.problems.append(f"notes/audit.jsonl: chain verification failed: {source.notes_chain.reason}")
    return source


def _cross_check(contents: dict[str, bytes], outcome: VerifyOutcome) -> None:
    raw = contents.get("report/report.json")
    if raw is None:
        return
    try:
        integrity = json.loads(raw)["integrity"]
    except (ValueError, KeyError, TypeError):
        outcome.problems.append("report/report.json is not a dr-engine report")
        return
    if AUDIT_FILE in contents and integrity.get("audit_sha256") != _sha(contents[AUDIT_FILE]):
        outcome.problems.append("audit.jsonl differs from the audit log the report was built from")
    if RUN_FILE in contents and integrity.get("run_json_sha256") != _sha(contents[RUN_FILE]):
        outcome.problems.append("run.json differs from the run record the report was built from")


def renderer_versions() -> dict[str, str]:
    """Versions of what renders the reports (a re-render matches byte for byte only with the same ones)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"dr-engine": __version__}
    for package in ("weasyprint", "matplotlib", "jinja2"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _first_difference(packed: str, rebuilt: str) -> str:
    """Where two renderings part: the first differing line of each (shortened)."""
    ours, theirs = packed.splitlines(), rebuilt.splitlines()
    for number, (mine, truth) in enumerate(zip(ours, theirs, strict=False), start=1):
        if mine != truth:
            return f"line {number} reads {mine.strip()[:120]!r} where the logs give {truth.strip()[:120]!r}"
    return f"{len(ours)} lines where the logs give {len(theirs)}"


def _json_difference(packed: bytes, rebuilt: RunReport) -> str:
    try:
        data = json.loads(packed)
    except ValueError:
        return "it is not valid JSON"
    if not isinstance(data, dict):
        return "it is not a report"
    truth = rebuilt.to_dict()
    for key in ("verdict", "verified", "verification"):
        if data.get(key) != truth.get(key):
            return f"{key} is {data.get(key)!r} where the logs give {truth.get(key)!r}"
    keys = sorted(k for k in set(data) | set(truth) if data.get(k) != truth.get(k))
    return f"it differs in {', '.join(keys)}" if keys else "it differs in layout"


def _rebuilt_report(manifest: dict[str, Any], contents: dict[str, bytes], source: RunSource,
                    outcome: VerifyOutcome) -> RunReport | None:
    # The report time and retention path are not in the logs: take them from the manifest (older
    # packs: from report.json). Neither changes what the report says about the run.
    packed: dict[str, Any] = {}
    try:
        loaded = json.loads(contents.get("report/report.json", b"{}"))
        packed = loaded if isinstance(loaded, dict) else {}
    except ValueError:
        pass
    integrity = packed.get("integrity") if isinstance(packed.get("integrity"), dict) else {}
    generated = manifest.get("report_generated_at") or packed.get("generated_at")
    retained = manifest.get("report_retained_at") or (integrity or {}).get("retained_at")
    moment = parse_ts(str(generated)) if generated else None
    if moment is None or not isinstance(retained, str):
        outcome.problems.append("the reports cannot be rebuilt from the logs: the manifest records no report time "
                                "or retention path; rebuild the pack with `dr evidence RUN_ID -o FILE.zip`")
        return None
    report = build_run_report(source, now=moment)
    report.integrity.retained_at = retained
    report.integrity.content_sha256 = content_digest(report)
    return report


def _check_reports(contents: dict[str, bytes], manifest: dict[str, Any], source: RunSource,
                   outcome: VerifyOutcome) -> None:
    """Refuse a pack whose reports do not say what its logs say (see the module docstring)."""
    if not any(name.startswith("report/report.") for name in contents):
        return
    report = _rebuilt_report(manifest, contents, source, outcome)
    if report is None:
        return
    mismatch = "disagrees with the report rebuilt from the packed run.json and audit.jsonl"
    before = len(outcome.problems)
    recorded = manifest.get("report_content_sha256")
    if recorded is not None and recorded != report.integrity.content_sha256:
        outcome.problems.append(f"manifest.json: report_content_sha256 {mismatch}")
    raw_json = contents.get("report/report.json")
    if raw_json is not None and raw_json != render_json(report).encode("utf-8"):
        outcome.problems.append(f"report/report.json {mismatch}: {_json_difference(raw_json, report)}")
    raw_md = contents.get("report/report.md")
    if raw_md is not None:
        expected = run_markdown(report)
        text = raw_md.decode("utf-8", "replace")
        if text != expected:
            outcome.problems.append(f"report/report.md {mismatch}: {_first_difference(text, expected)}")
    raw_html = contents.get("report/report.html")
    if raw_html is not None:
        html = _SVG_URI.sub("data:chart", raw_html.decode("utf-8", "replace"))
        expected = _SVG_URI.sub("data:chart", run_html(report, b""))
        if html != expected:
            outcome.problems.append(f"report/report.html {mismatch}: {_first_difference(html, expected)}")
    raw_pdf = contents.get("report/report.pdf")
    # Laid out from our own rendering of the rebuilt report, never from packed HTML: a forged
    # pack's HTML (or an SVG inside it) could make the layout engine fetch files or URLs.
    if raw_pdf is not None and render_pdf(run_html(report, timeline_chart(report, "svg"))) != raw_pdf:
        made_with = manifest.get("renderer")
        here = renderer_versions()
        hint = ("" if not isinstance(made_with, dict) or made_with == here else
                f" (the pack was rendered with {made_with}, this machine has {here}: verify where the versions "
                "match)")
        outcome.problems.append(f"report/report.pdf {mismatch}: it is not the layout of the rebuilt report{hint}")
    if len(outcome.problems) > before and "renderer" not in manifest:
        # Packs made before reports were checked against the logs hold an older report layout.
        outcome.problems.append("the pack was made by an earlier dr-engine whose reports cannot be rebuilt the same "
                                "way: make a new pack from the run directory (`dr evidence RUN_ID -o FILE.zip`)")


__all__ = ["EVIDENCE_FORMAT", "EvidenceResult", "VerifyOutcome", "build_evidence", "renderer_versions",
           "verify_evidence"]
