"""The documentation stays true: its console examples still print what they show, its links
resolve, and the site builds strictly (every nav entry, link and anchor resolves).

A fenced ``console`` block is checked when every command in it (a line starting with ``$ ``)
needs no world: see :data:`CHECKED_COMMANDS`. Its output must match what the command prints
today, after :func:`normalise` (run ids, timestamps and elapsed times vary between runs). A
line ``...`` in the expected output stands for any number of lines.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
DR = Path(sys.executable).parent / "dr"

#: Commands that need no world, no network and change nothing: their examples are run.
CHECKED_COMMANDS = ("dr validate", "dr plan sample-noop", "dr actions", "dr --help", "dr iam-policy",
                    "echo $?")

#: Documents whose console examples are checked.
DOCUMENTS = sorted([REPO / "README.md", *DOCS.rglob("*.md")])

_FENCE = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Example:
    """One console block: where it is and its (command, expected output) pairs."""

    file: Path
    line: int
    steps: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        """``docs/page.md:LINE`` for test ids."""
        return f"{self.file.relative_to(REPO)}:{self.line}"


def _parse(file: Path) -> list[Example]:
    text = file.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        steps: list[tuple[str, list[str]]] = []
        for line in match.group(1).splitlines():
            if line.startswith("$ "):
                steps.append((line[2:].strip(), []))
            elif steps:
                steps[-1][1].append(line)
        if steps and all(cmd.startswith(CHECKED_COMMANDS) for cmd, _ in steps):
            line_no = text.count("\n", 0, match.start()) + 1
            found.append(Example(file, line_no, tuple((cmd, "\n".join(out)) for cmd, out in steps)))
    return found


EXAMPLES = [example for doc in DOCUMENTS for example in _parse(doc)]

_RUN_ID = re.compile(r"\b\d{8}T\d{6}Z-[0-9a-f]{6}\b")
_TIMESTAMP = re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")
_ELAPSED = re.compile(r"\[\s*\d+(?:\.\d+)?s\]|\bin \d+(?:\.\d+)?s\b")


def normalise(text: str) -> str:
    """Output with what varies from run to run replaced, trailing spaces and blank lines dropped."""
    text = _RUN_ID.sub("<run-id>", text)
    text = _TIMESTAMP.sub("<time>", text)
    text = _ELAPSED.sub("<elapsed>", text)
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n")


def matches(expected: str, actual: str) -> bool:
    """Whether ``actual`` is ``expected``, a line ``...`` standing for any number of lines."""
    parts = [re.escape(line) if line.strip() != "..." else "(?:[^\n]*\n)*?" for line in expected.splitlines()]
    pattern = "".join(p if p.startswith("(?:") else p + "\n" for p in parts)
    return re.fullmatch(pattern, actual + "\n") is not None


#: An empty state dir for the examples (removed when the test process ends).
_FRESH_STATE = tempfile.TemporaryDirectory(prefix="dr-docs-state-")


def _run(command: str) -> tuple[str, int]:
    """Run one documented ``dr`` command from the repository root, as a user would."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "DR_REGIONS_DIR", "DR_RUNBOOKS_DIR")}
    env["NO_COLOR"] = "1"
    # The docs show a fresh checkout: no history in the state dir (`dr plan` predicts from it).
    env["DR_STATE_DIR"] = _FRESH_STATE.name
    args = command.split()
    proc = subprocess.run([str(DR), *args[1:]], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    return proc.stdout + proc.stderr, proc.returncode


def _check(example: Example) -> list[str]:
    """Problems with one example (empty when it still holds)."""
    problems = []
    last_code = 0
    for command, expected in example.steps:
        if command == "echo $?":
            actual = str(last_code)
        else:
            actual, last_code = _run(command)
        want, got = normalise(expected), normalise(actual)
        if not matches(want, got):
            problems.append(f"{example.name}: `{command}` no longer prints what the docs show.\n"
                            f"--- documented\n{want}\n--- printed today\n{got}")
    return problems


def test_world_free_examples_are_found() -> None:
    # Guards the parser: if the fence or prompt convention changed, nothing would be checked.
    commands = {cmd for example in EXAMPLES for cmd, _ in example.steps}
    assert {"dr validate", "dr plan sample-noop", "dr --help"} <= commands, commands
    assert len(EXAMPLES) >= 6


def test_console_examples_print_what_the_docs_show() -> None:
    # One test for all examples, run a few at a time: each is a cold `dr` process (~1 s).
    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for found in pool.map(_check, EXAMPLES) for p in found]
    assert not problems, "\n\n".join(problems)


def test_normalise_and_match() -> None:
    assert normalise("Run 20260131T021915Z-3fa9c2 at 2026-01-31T02:19:15.123Z   \n\n") == "Run <run-id> at <time>"
    assert normalise("[    0.6s] succeeded check-lag in 0.5s") == "<elapsed> succeeded check-lag <elapsed>"
    assert matches("a\n...\nd", "a\nb\nc\nd")
    assert matches("a\n...\nd", "a\nd")
    assert not matches("a\nd", "a\nb\nd")


_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", [REPO / "README.md", REPO / "CHANGELOG.md"], ids=lambda p: p.name)
def test_repository_documents_link_to_files_that_exist(doc: Path) -> None:
    # mkdocs checks the site's links; the README (shown on the package index and the forge) is
    # outside the site, so its relative links are checked here.
    missing = []
    for target in _LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not (doc.parent / path).exists():
            missing.append(target)
    assert not missing, f"{doc.name} links to files that do not exist: {missing}"


def test_site_builds_strictly(tmp_path: Path) -> None:
    # --strict turns every broken link, anchor, nav entry and page left out of the nav into an
    # error (not with --quiet: warnings would then not be counted); the reference pages are
    # generated from the code during the build.
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in ("reference/actions/index.html", "reference/cli/index.html", "reference/errors/index.html",
                 "reference/runbook-schema/index.html", "reference/python-api/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
