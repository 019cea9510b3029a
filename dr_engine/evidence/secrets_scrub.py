"""Masking of resolved secret values wherever text leaves the process: records, logs, consoles.

The engine keeps secrets in :class:`~pydantic.SecretStr` and writes references, not values,
but a dependency may still quote a value back in an error message (``FATAL: password
S3CRET is expired``) with no ``password=`` around it for a pattern to recognise. So every
secret a run resolves is registered here *by value* (:func:`register`, called by
``dr_engine.config.bindings.read_secret``) and replaced by :data:`MASK` in:

- every audit event (``dr_engine.evidence.audit``): the event data is scrubbed before it is hashed, so
  what is hashed is what is written; ``run.json``, reports, the evidence pack and Prefect
  artifacts are built from those events;
- every log record of the process (a log-record factory, installed on the first
  registration, so handlers added later, Prefect's API log handler included, see only
  scrubbed messages, arguments and tracebacks);
- the ``dr`` command's console output (``dr_engine.cli.common``).

Forms masked for each value: the value itself, URL-encoded (``quote`` with and without ``/``
kept, ``quote_plus``), base64 (standard and URL-safe, with and without padding) and the JSON
string escape, longest first.

Rule for short values: a value shorter than :data:`MIN_LENGTH` characters is not masked (it
would match inside ordinary words, numbers and timestamps and blank out the record); such a
secret is too weak to protect anyway, and :func:`register` returns False so the caller can
warn, naming the secret, never its value. Any form longer than that is masked wherever it
appears, inside words too.

Values stay registered for the life of the process: a long-lived worker masks the secrets of
every run it served.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import quote, quote_plus

#: What a secret value is replaced with (the same mask the report redactor uses).
MASK = "***"
#: Values shorter than this are not masked (see the module docstring).
MIN_LENGTH = 4

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None
_factory_installed = False


def _forms(value: str) -> set[str]:
    """The value and the encodings in which a dependency may quote it."""
    raw = value.encode("utf-8")
    forms = {value, quote(value), quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        forms.update({text, text.rstrip("=")})
    return {form for form in forms if len(form) >= MIN_LENGTH}


def register(value: str) -> bool:
    """Mask ``value`` (and its encoded forms) from now on; False when it is too short to mask."""
    global _pattern
    if len(value) < MIN_LENGTH:
        return False
    with _lock:
        new = _forms(value) - _values
        if new:
            _values.update(new)
            # Longest first: a value that contains another one is masked whole.
            ordered = sorted(_values, key=lambda form: (-len(form), form))
            _pattern = re.compile("|".join(re.escape(form) for form in ordered))
    _install_log_record_factory()
    return True


def scrub_text(text: str) -> str:
    """``text`` with every registered secret form replaced by :data:`MASK`."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(MASK, text)


def scrub_value(value: Any) -> Any:
    """A JSON-like value with every string (mapping keys included) scrubbed; other leaves unchanged."""
    if _pattern is None:
        return value
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub_value(k): scrub_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    return value


def active() -> bool:
    """True once any secret value is registered in this process."""
    return _pattern is not None


# --------------------------------------------------------------------------- logging


def _scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    if _pattern is None:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a broken format: logging would print the raw arguments, so drop them
        record.msg, record.args = scrub_text(str(record.msg)) + " (log arguments could not be formatted)", None
    else:
        scrubbed = scrub_text(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        # Formatters reuse exc_text: format the traceback once here, scrubbed.
        record.exc_text = scrub_text(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = scrub_text(record.stack_info)
    return record


def _install_log_record_factory() -> None:
    """Scrub every log record when it is made: covers every logger and every handler, present or future."""
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return _scrub_record(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        _factory_installed = True


# --------------------------------------------------------------------------- streams


class ScrubbingStream:
    """A text stream that scrubs what is written to it; everything else is the wrapped stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write ``text`` scrubbed; returns the length of ``text`` (as callers expect)."""
        self._stream.write(scrub_text(text))
        return len(text)

    def writelines(self, lines: list[str]) -> None:
        """Write each line scrubbed."""
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        # isatty, fileno, flush, encoding...: the console asks the real stream.
        return getattr(self._stream, name)


__all__ = ["MASK", "MIN_LENGTH", "ScrubbingStream", "active", "register", "scrub_text", "scrub_value"]
