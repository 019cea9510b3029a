"""How reports write times, durations and sizes: UTC with ``Z``, and always with a unit."""

from __future__ import annotations

from datetime import UTC, datetime

from dr_engine.clock import parse_utc


def parse_ts(text: str | None) -> datetime | None:
    """Parse an ISO 8601 UTC timestamp from a record (None stays None; junk becomes None)."""
    if not text:
        return None
    try:
        return parse_utc(text)
    except ValueError:
        return None


def fmt_ts(text: str | datetime | None, *, ms: bool = True) -> str:
    """``2026-11-28T23:15:00.123Z``: ISO 8601, UTC, never ambiguous ("-" when unknown)."""
    moment = text if isinstance(text, datetime) else parse_ts(text)
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if ms else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def fmt_date(text: str | datetime | None) -> str:
    """``2026-11-28`` (UTC calendar date)."""
    moment = text if isinstance(text, datetime) else parse_ts(text)
    return "-" if moment is None else moment.astimezone(UTC).date().isoformat()


def fmt_seconds(value: float | None) -> str:
    """A duration with its unit: ``250 ms``, ``4.20 s``, ``2 min 05 s``, ``1 h 02 min``."""
    if value is None:
        return "-"
    if value == 0:
        return "0 s"
    if value < 0:
        return "-" + fmt_seconds(-value)
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.2f} s"
    if value < 3600:
        minutes, seconds = divmod(round(value), 60)
        return f"{minutes} min {seconds:02d} s"
    hours, rest = divmod(round(value), 3600)
    return f"{hours} h {rest // 60:02d} min"


def fmt_bytes(value: int | None) -> str:
    """Bytes with a unit (``0 B``, ``16.0 KiB``)."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{value} B"  # pragma: no cover - loop always returns


def fmt_percent(value: float | None) -> str:
    """``87.5 %``."""
    return "-" if value is None else f"{value * 100:.1f} %"


__all__ = ["fmt_bytes", "fmt_date", "fmt_percent", "fmt_seconds", "fmt_ts", "parse_ts"]


#: Every format a report can be rendered to.
FORMATS = ("html", "pdf", "md", "json")
