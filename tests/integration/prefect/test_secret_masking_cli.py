"""Secrets are masked by value in every record and output, and shell steps take them safely.

`dr failover` runs as a real process with the embedded Prefect. In the first test a real
dependency (a PostgreSQL-protocol server that asks for the password in clear, as a pooler or
proxy may, and quotes it back in its FATAL error, bare, URL-encoded and base64) fails the
step; in the second a `shell.run` step uses the secret in its command and environment.
Afterwards no file under the state dir (run.json, audit.jsonl, reports in every format, the
evidence pack), no CLI output and nothing in Prefect's database holds the value.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from prefect_kit import DR, quiet_env

pytestmark = pytest.mark.integration

CANARY = "Pg/Canary+Quote?4b7e9"

REGION = """name: {name}
params: {{addr: 127.0.0.1}}
secrets: {{db_password: {{file: {secret_file}}}}}
"""


def forms(value: str) -> dict[str, str]:
    """The value and the encodings a dependency may quote it in."""
    raw = value.encode()
    return {"bare": value, "url": quote(value, safe=""), "url-plus": quote_plus(value),
            "base64": base64.b64encode(raw).decode(), "base64-url": base64.urlsafe_b64encode(raw).decode()}


class QuotingPostgres:
    """Speaks enough of the PostgreSQL protocol to ask for a cleartext password and refuse it, quoting it."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.passwords: list[str] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn, contextlib.suppress(OSError):  # a client that went away (ConnectionError is one)
                self._session(conn)

    @staticmethod
    def _read(conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError("client went away")
            data += chunk
        return data

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        while True:
            length = int.from_bytes(self._read(conn, 4), "big")
            code = int.from_bytes(self._read(conn, length - 4)[:4], "big")
            if code not in (80877103, 80877104):  # SSLRequest / GSSENCRequest: say no, then the startup comes
                break
            conn.sendall(b"N")
        conn.sendall(b"R" + (8).to_bytes(4, "big") + (3).to_bytes(4, "big"))  # AuthenticationCleartextPassword
        if self._read(conn, 1) != b"p":
            return
        length = int.from_bytes(self._read(conn, 4), "big")
        password = self._read(conn, length - 4).rstrip(b"\0").decode()
        self.passwords.append(password)
        quoted = forms(password)
        message = (f"password {password} is expired (as url {quoted['url']}, as base64 {quoted['base64']})"
                   .encode())
        fields = b"SFATAL\0VFATAL\0C28P01\0M" + message + b"\0\0"
        conn.sendall(b"E" + (len(fields) + 4).to_bytes(4, "big") + fields)

    def close(self) -> None:
        self.sock.close()
        self._thread.join(timeout=5)


@pytest.fixture
def quoting_postgres() -> Iterator[QuotingPostgres]:
    server = QuotingPostgres()
    try:
        yield server
    finally:
        server.close()


def workdir(tmp_path: Path, steps: str) -> Path:
    """A folder with regions east/west (the secret in a file) and runbooks/masking.yaml."""
    work = tmp_path / "work"
    (work / "regions").mkdir(parents=True)
    (work / "runbooks").mkdir()
    secret_file = tmp_path / "db-password"
    secret_file.write_text(CANARY + "\n")
    secret_file.chmod(0o600)
    for name in ("east", "west"):
        (work / "regions" / f"{name}.yaml").write_text(REGION.format(name=name, secret_file=secret_file))
    (work / "runbooks" / "masking.yaml").write_text(
        "runbook: masking\nsource: east\ntarget: west\nobjectives: {rto: 5m, rpo: 0s}\nsteps:\n" + steps)
    return work


def run_dr(work: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**quiet_env(home), "DR_STATE_DIR": str(work / "state"), "PREFECT_LOGGING_LEVEL": "DEBUG"}
    return subprocess.run([DR, *args], cwd=work, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)


def leaks(root: Path) -> list[str]:
    """Files under ``root`` (zip members and PDF text included) holding any form of the canary."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        blobs = [(str(path), path.read_bytes())]
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as pack:
                blobs += [(f"{path}!{name}", pack.read(name)) for name in pack.namelist()]
        if path.suffix == ".pdf":
            text = subprocess.run(["pdftotext", "-raw", str(path), "-"], capture_output=True, timeout=120,
                                  check=True).stdout
            blobs.append((f"{path} (text)", text))
        found += [f"{where}: {kind}" for where, blob in blobs for kind, form in forms(CANARY).items()
                  if form.encode() in blob]
    return found


def output_leaks(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [f"{done.args[1:3]} {stream}: {kind}" for stream, text in (("stdout", done.stdout), ("stderr", done.stderr))
            for kind, form in forms(CANARY).items() if form in text]


def everything_after(work: Path, home: Path, failover: subprocess.CompletedProcess[str]) -> list[str]:
    """Read the run back every way a user can; every place the canary shows up."""
    state = work / "state"
    (run_dir,) = list((state / "runs").iterdir())
    outputs = [failover]
    for args in (["show", run_dir.name], ["show", run_dir.name, "--output", "json"], ["runs", "--output", "json"],
                 ["report", run_dir.name, "-f", "md", "-f", "json", "-f", "html", "-f", "pdf"],
                 ["evidence", run_dir.name, "-o", str(state / "evidence.zip")], ["audit", "verify", run_dir.name]):
        done = run_dr(work, home, *args)
        assert done.returncode == 0, [*done.args, done.stdout, done.stderr]
        outputs.append(done)
    assert (state / "evidence.zip").is_file() and list((run_dir / "report").glob("*.pdf"))
    assert list(home.rglob("prefect.db")), "the run used the Prefect database under PREFECT_HOME"
    return leaks(state) + leaks(home) + [leak for done in outputs for leak in output_leaks(done)]


def test_a_dependency_quoting_the_secret_is_masked_everywhere(
        tmp_path: Path, prefect_home_copy: Path, quoting_postgres: QuotingPostgres) -> None:
    work = workdir(tmp_path, f"""  - id: check-db
    action: postgres.verify_writable
    with:
      dsn: "host=127.0.0.1 port={quoting_postgres.port} user=app dbname=ledger sslmode=disable"
      password: "${{target.secrets.db_password}}"
      cluster: ledger
      interval: 200ms
    timeout: 2s
  - id: healthy
    action: shell.verify
    with: {{command: ["true"]}}
    after: [check-db]
""")
    failover = run_dr(work, prefect_home_copy, "failover", "masking", "--yes", "--reason", "masking test")
    assert failover.returncode == 1, failover.stdout + failover.stderr
    assert quoting_postgres.passwords and set(quoting_postgres.passwords) == {CANARY}, "the server got the secret"
    record = json.loads(next((work / "state" / "runs").glob("*/run.json")).read_text())
    error = record["steps"][0]["error"]["message"]
    # The dependency's words are kept; only the value is masked, in each form it was quoted in.
    assert "password *** is expired (as url ***, as base64 ***)" in error, error
    assert everything_after(work, prefect_home_copy, failover) == []


def test_a_shell_step_takes_secrets_in_command_and_env_without_argv(tmp_path: Path, prefect_home_copy: Path) -> None:
    # The reference in the command and the variable from `env` hold the secret; the file it was
    # read from agrees; the shell's own argv (readable by every local user) does not hold it.
    script = ('test "${target.secrets.db_password}" = "$PW" && test "$PW" = "$(cat ' + str(tmp_path / "db-password")
              + ')" && ! grep -qF -- "$PW" /proc/$$/cmdline && echo "using password $PW"')
    work = workdir(tmp_path, f"""  - id: use-secret
    action: shell.run
    with:
      command: [sh, -c, '{script}']
      env: {{PW: "${{target.secrets.db_password}}"}}
  - id: healthy
    action: shell.verify
    with: {{command: [sh, -c, 'test -n "${{source.secrets.db_password}}"']}}
    after: [use-secret]
""")
    validated = run_dr(work, prefect_home_copy, "validate", "runbooks/masking.yaml")
    assert validated.returncode == 0, validated.stdout + validated.stderr
    failover = run_dr(work, prefect_home_copy, "failover", "masking", "--yes", "--reason", "masking test")
    assert failover.returncode == 0, failover.stdout + failover.stderr
    record = json.loads(next((work / "state" / "runs").glob("*/run.json")).read_text())
    assert record["status"] == "succeeded"
    assert [s["status"] for s in record["steps"]] == ["succeeded", "succeeded"]
    assert everything_after(work, prefect_home_copy, failover) == []


def test_the_fixture_server_really_quotes_what_it_is_sent(quoting_postgres: QuotingPostgres) -> None:
    """Without masking, psycopg surfaces the quoted password: the first test's dependency is real."""
    import psycopg

    with pytest.raises(psycopg.OperationalError) as exc:
        psycopg.connect(host="127.0.0.1", port=quoting_postgres.port, user="app", dbname="ledger",
                        password=CANARY + "-direct", sslmode="disable", connect_timeout=5)
    assert f"password {CANARY}-direct is expired" in str(exc.value)
