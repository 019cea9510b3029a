"""Background load for the embedded world: transfers written continuously to the active region.

:class:`LoadGenerator` POSTs ``/transfer`` to the ledger app in a loop on a daemon thread and
records every acknowledged write (its ``ack_seq``, row id, region and time) in memory and,
when given, in files flushed per line. Comparing the writes acknowledged before an outage
with the rows present on the new primary measures the data lost (RPO in rows).

It follows a failover by itself when it addresses the app by its public name and resolves
that name at the authoritative DNS server on every request (``resolve_via``); it can also be
told the new target with :meth:`LoadGenerator.retarget`. It is bounded: it stops by itself
after ``max_duration`` seconds, and :meth:`LoadGenerator.stop` ends it at once.

Files (both appended only after the app answered 201, i.e. after the commit):

- ``ack_file``: one ``ack_seq`` per line, the format ``postgres.reconcile`` reads
  (``table: transfers, key: ack_seq``). The key is the writer's sequence, not the row id: a
  promoted standby may hand out again the ids of rows it never received, which would hide
  their loss.
- ``ack_log`` (optional): one JSON object per line with the details::

    {"seq": 17, "id": 17, "region": "us-east-1", "at": "2026-01-31T02:15:00.123Z"}
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from dr_engine.clock import utc_iso
from dr_engine.providers.dns.client import DnsServer
from dr_engine.providers.http import request


@dataclass(frozen=True)
class Ack:
    """One write the app acknowledged (committed)."""

    seq: int
    id: int
    region: str
    at: str


@dataclass
class LoadStats:
    """Counters of a load run."""

    sent: int = 0
    acked: int = 0
    failed: int = 0
    last_error: str | None = None
    by_region: dict[str, int] = field(default_factory=dict)
    running: bool = False
    elapsed_seconds: float = 0.0


def read_ack_log(path: Path) -> list[Ack]:
    """Load the acks recorded in a JSON-lines ``ack_log`` (a torn last line is ignored)."""
    acks: list[Ack] = []
    for line in path.read_text().splitlines():
        try:
            acks.append(Ack(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return acks


class LoadGenerator:
    """Writes transfers continuously to the ledger app until stopped or ``max_duration`` passes.

    ``url`` is the app's transfer URL, e.g. ``http://ledger.bank.test:18080/transfer`` with
    ``resolve_via=DnsServer("127.0.0.1", 15353)`` to follow DNS, or a region's address.
    ``interval`` is the pause between writes; ``request_timeout`` bounds each request.
    """

    def __init__(
        self,
        url: str,
        *,
        resolve_via: DnsServer | None = None,
        ack_file: Path | None = None,
        ack_log: Path | None = None,
        interval: float = 0.02,
        request_timeout: float = 2.0,
        max_duration: float = 300.0,
        amount: str = "10.00",
    ) -> None:
        self._url = url
        self.resolve_via = resolve_via
        self.ack_file = ack_file
        self.ack_log = ack_log
        self.interval = interval
        self.request_timeout = request_timeout
        self.max_duration = max_duration
        self.amount = amount
        self._acks: list[Ack] = []
        self._stats = LoadStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._seq = 0

    @property
    def url(self) -> str:
        """The URL currently written to."""
        with self._lock:
            return self._url

    def retarget(self, url: str) -> None:
        """Write to ``url`` from the next request on (when not following DNS)."""
        with self._lock:
            self._url = url

    def start(self) -> None:
        """Start writing on a daemon thread (no-op when already running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._started = time.monotonic()
        with self._lock:
            self._stats.running = True
        self._thread = threading.Thread(target=self._run, name="ledger-load", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> LoadStats:
        """Stop writing; waits for the request in flight (at most ``request_timeout`` + 1 s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.request_timeout + 1.0)
        return self.stats()

    @property
    def running(self) -> bool:
        """True while the writer thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> LoadStats:
        """A snapshot of the counters."""
        with self._lock:
            snapshot = LoadStats(**{k: v for k, v in asdict(self._stats).items() if k != "by_region"})
            snapshot.by_region = dict(self._stats.by_region)
            snapshot.running = self.running
            snapshot.elapsed_seconds = round(time.monotonic() - self._started, 3) if self._started else 0.0
        return snapshot

    def acks(self) -> list[Ack]:
        """Every acknowledged write so far, in order."""
        with self._lock:
            return list(self._acks)

    def acked_seqs(self, region: str | None = None) -> list[int]:
        """``ack_seq`` of acknowledged writes (optionally only those a given region acknowledged)."""
        return [a.seq for a in self.acks() if region is None or a.region == region]

    def lost(self, present: set[int], region: str | None = None) -> list[Ack]:
        """Acknowledged writes whose ``ack_seq`` is not in ``present`` (rows on the new primary)."""
        return [a for a in self.acks() if (region is None or a.region == region) and a.seq not in present]

    def _run(self) -> None:
        deadline = self._started + self.max_duration
        handles = [path.open("a", encoding="utf-8") if path else None for path in (self.ack_file, self.ack_log)]
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                self._write_one(handles[0], handles[1])
                self._stop.wait(self.interval)
        finally:
            for handle in handles:
                if handle is not None:
                    handle.close()
            with self._lock:
                self._stats.running = False

    def _write_one(self, keys: IO[str] | None, log: IO[str] | None) -> None:
        self._seq += 1
        seq = self._seq
        body = json.dumps({"amount": self.amount, "ack_seq": seq}).encode()
        answer = request(self.url, timeout=self.request_timeout, method="POST", body=body,
                         headers={"Content-Type": "application/json"}, resolve_via=self.resolve_via)
        ack: Ack | None = None
        error: str | None = None
        if answer.status == 201:
            try:
                data = json.loads(answer.body)
                ack = Ack(seq=seq, id=int(data["id"]), region=str(data["region"]),
                          at=utc_iso(datetime.now(UTC)))
            except (ValueError, KeyError, TypeError) as exc:
                error = f"unreadable ack: {exc}"
        else:
            error = answer.error or f"status {answer.status}: {answer.body.strip()[:200]}"
        with self._lock:
            self._stats.sent += 1
            if ack is not None:
                self._acks.append(ack)
                self._stats.acked += 1
                self._stats.by_region = dict(Counter(self._stats.by_region) + Counter({ack.region: 1}))
            else:
                self._stats.failed += 1
                self._stats.last_error = error
        if ack is None:
            return
        if keys is not None:
            keys.write(f"{ack.seq}\n")
            keys.flush()
        if log is not None:
            log.write(json.dumps(asdict(ack)) + "\n")
            log.flush()
