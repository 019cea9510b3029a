"""Defence-in-depth redaction for everything a report shows.

The engine never records secret values (they are ``SecretStr`` and resolved only at run
time), but a careless action may still put a DSN with a password or a token into a fact, an
output or an error message. Reports are handed to people outside the team, so every string
that goes into one passes through :func:`redact_value` first:

- ``scheme://user:PASSWORD@host`` -> ``scheme://user:***@host``
- ``password=...``, ``token: ...``, ``secret=...``, ``api_key=...`` (and quoted forms) -> ``***``
  (not ``${target.secrets.NAME}`` references or ``{env: VAR}`` lookups: those are not values)
- ``Authorization: Bearer ...`` -> ``Bearer ***``
- AWS secret access keys after ``aws_secret_access_key`` and long private-key blocks
- any mapping value whose *key* names a secret (``password``, ``dsn_password``, ``token`` ...)

Limit: a bare random string with no telling key or syntax around it cannot be recognised.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

#: Tokens of a mapping key (split on ``_ - .`` and spaces) that mark its value as a secret.
_SECRET_TOKENS = frozenset({
    "password", "passwd", "passphrase", "pass", "pwd", "secret", "secrets", "token", "apikey",
    "credential", "credentials", "cookie", "authorization", "signature",
})
#: Substrings of a key with separators removed (``api_key`` -> ``apikey``).
_SECRET_JOINED = ("password", "passwd", "apikey", "accesskey", "privatekey", "secretkey", "clientsecret",
                  "sessionkey", "authtoken")
#: ``scheme://user:password@`` in URLs and DSNs.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@<>]*:)(?P<pw>[^\s@/<>]+)(?P<tail>@)")
#: ``key=value`` / ``key: value`` / ``"key": "value"`` where key names a secret.
_KV_SECRET = re.compile(
    r"(?<![A-Za-z0-9_\-])(?P<key>[\"']?[A-Za-z0-9_\-]*"
    r"(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credential)"
    r"[A-Za-z0-9_\-]*[\"']?[ \t]*[=:][ \t]*)(?P<q>[\"']?)(?!\$\{|\{|\*\*\*|\d+(?:[,}\s]|$))(?P<val>[^\s\"',;&}<>]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}")
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL)
#: AWS access key ids are not secret on their own, but secret keys are 40 chars of base64.
_AWS_SECRET = re.compile(r"(?i)(aws_secret_access_key[ \t]*[=:][ \t]*)[A-Za-z0-9/+=]{40}")


def redact_text(text: str) -> str:
    """Return ``text`` with anything that looks like a credential replaced by ``***``."""
    if not text:
        return text
    text = _PEM.sub("-----PRIVATE KEY " + MASK + "-----", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{MASK}{m.group('tail')}", text)
    text = _AWS_SECRET.sub(lambda m: m.group(1) + MASK, text)
    text = _KV_SECRET.sub(lambda m: f"{m.group('key')}{m.group('q')}{MASK}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)


def is_secret_key(key: str) -> bool:
    """True when a mapping key names a secret (its value is never shown)."""
    lowered = key.lower()
    tokens = set(re.split(r"[_\-. ]+", lowered))
    joined = re.sub(r"[_\-. ]+", "", lowered)
    return bool(tokens & _SECRET_TOKENS) or any(part in joined for part in _SECRET_JOINED)


def redact_value(value: Any, key: str | None = None) -> Any:
    """Redact a JSON-like value recursively (mapping keys that name secrets mask their value)."""
    if key is not None and is_secret_key(key) and value not in (None, "", [], {}):
        if isinstance(value, bool | int | float):
            return value
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {str(k): redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def looks_secret(text: str) -> bool:
    """True when ``text`` contains something :func:`redact_text` would mask."""
    return redact_text(text) != text


__all__ = ["MASK", "is_secret_key", "looks_secret", "redact_text", "redact_value"]
