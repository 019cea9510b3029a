"""``${...}`` references in step parameters.

Syntax (documented in docs/concepts/runbooks-and-regions.md):

- ``${source.KEY}`` / ``${target.KEY}``: a value from the region's ``params``;
- ``${source.secrets.NAME}`` / ``${target.secrets.NAME}``: a region secret, resolved only at
  run time (plans, records and reports show the reference, never the value);
- ``${steps.STEP_ID.OUTPUT}``: an output of an earlier step (the step must be an ancestor);
- ``${runbook.name}``, ``${run.id}``, ``${run.mode}``;
- ``$${`` writes a literal ``${``.

A value that is exactly one reference keeps the referenced value's type (e.g. an int port);
otherwise references are interpolated as text. A resolver gives secrets as ``SecretStr``; a
value holding any secret becomes a :class:`SecretText` as a whole (so only fields that accept a
secret accept it), which remembers where each secret sits. Load-time validation and run-time
binding both substitute through :func:`substitute`, so they accept and refuse the same values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

REFERENCE = re.compile(r"(?<!\$)\$\{([^}]*)\}")
_VALID = re.compile(
    r"^(?:(source|target)\.([a-z_][a-z0-9_]*)"
    r"|(source|target)\.secrets\.([a-z_][a-z0-9_]*)"
    r"|steps\.([a-z][a-z0-9-]*)\.([A-Za-z_][A-Za-z0-9_-]*)"
    r"|runbook\.name|run\.id|run\.mode)$"
)


@dataclass(frozen=True)
class Reference:
    """A parsed ``${...}`` reference."""

    text: str
    scope: str  # source | target | secret | step | run
    region: str | None = None
    key: str | None = None
    step: str | None = None


def parse_reference(text: str) -> Reference | None:
    """Parse the inside of ``${...}``; None when it is not a valid reference."""
    match = _VALID.match(text.strip())
    if match is None:
        return None
    region, key, sregion, skey, step, output = match.groups()
    if region:
        return Reference(text, "region", region=region, key=key)
    if sregion:
        return Reference(text, "secret", region=sregion, key=skey)
    if step:
        return Reference(text, "step", step=step, key=output)
    return Reference(text, "run", key=text.strip())


def _find(pattern: re.Pattern[str], group: int, value: Any, path: str) -> list[tuple[str, str]]:
    """Every ``(field_path, match group)`` of ``pattern`` in the strings of a nested params value."""
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        found.extend((path, m.group(group)) for m in pattern.finditer(value))
    elif isinstance(value, dict):
        for key, item in value.items():
            found.extend(_find(pattern, group, item, f"{path}.{key}" if path else str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_find(pattern, group, item, f"{path}[{index}]"))
    return found


def find_references(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every ``(field_path, reference_text)`` in a nested params value."""
    return _find(REFERENCE, 1, value, path)


Resolver = Callable[[Reference], Any]
"""Returns the value of a reference, or raises KeyError when it cannot be resolved (yet)."""


#: A ``${`` (not the ``$${`` escape) with no ``}`` anywhere after it: a reference never closed.
UNCLOSED = re.compile(r"(?<!\$)\$\{(?![^}]*\})[^}]*$")


def find_unclosed(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every ``(field_path, text from the unclosed ${ to the end)`` in a nested params value.

    ``"${target.addr"`` would otherwise be passed on as literal text: a typo nobody sees until
    a command receives it at failover time.
    """
    return _find(UNCLOSED, 0, value, path)


def secret_env_name(ref: Reference) -> str:
    """The environment variable a command receives secret ``ref`` in (``DR_SECRET_TARGET_PG_PASSWORD``)."""
    return f"DR_SECRET_{(ref.region or '').upper()}_{(ref.key or '').upper()}"


@dataclass(frozen=True)
class SecretPart:
    """One secret inside a :class:`SecretText`: the reference as written and its value."""

    reference: Reference
    value: SecretStr


class SecretText(SecretStr):
    """A parameter value that holds one or more secrets, possibly inside other text.

    It is a ``SecretStr`` (``get_secret_value()`` is the whole text with the secrets in it), so
    only fields that accept a secret accept it, and it keeps its parts, so that a command can
    receive the secrets through its environment instead of its arguments (see :meth:`template`).
    """

    def __init__(self, parts: Sequence[str | SecretPart]) -> None:
        self.parts: tuple[str | SecretPart, ...] = tuple(parts)
        super().__init__("".join(p if isinstance(p, str) else p.value.get_secret_value() for p in self.parts))

    def shown(self) -> str:
        """The text with each secret written as its reference (``user:${target.secrets.pw}``): safe to show."""
        return "".join(p if isinstance(p, str) else "${" + p.reference.text + "}" for p in self.parts)

    def template(self) -> tuple[str, dict[str, str]]:
        """The text with each secret written as ``$DR_SECRET_<REGION>_<NAME>``, and those variables' values.

        For a command: a shell (``sh -c``) expands the variables, and the values never appear
        in the process's arguments (which every local user can read in ``/proc``).
        """
        env: dict[str, str] = {}
        text: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                text.append(part)
            else:
                name = secret_env_name(part.reference)
                env[name] = part.value.get_secret_value()
                text.append("$" + name)
        return "".join(text), env


def shown(value: Any) -> str:
    """A parameter value as it may be shown: secrets as their references (or masked), never revealed."""
    if isinstance(value, SecretText):
        return value.shown()
    if isinstance(value, SecretStr):
        return "**********"
    return str(value)


def substitute(value: Any, resolve: Resolver, *, keep_unresolved: bool = False) -> Any:
    """Replace references in ``value`` using ``resolve``.

    With ``keep_unresolved``, references whose resolver raises KeyError stay as written (used at
    load time, when step outputs are not known yet). A string holding a reference that resolves
    to a ``SecretStr`` becomes a :class:`SecretText` as a whole.
    """
    if isinstance(value, dict):
        return {k: substitute(v, resolve, keep_unresolved=keep_unresolved) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, resolve, keep_unresolved=keep_unresolved) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def one(match: re.Match[str]) -> Any:
        ref = parse_reference(match.group(1))
        if ref is None:
            raise KeyError(match.group(1))
        try:
            resolved = resolve(ref)
        except KeyError:
            if keep_unresolved:
                return match.group(0)
            raise
        return SecretPart(ref, resolved) if isinstance(resolved, SecretStr) else resolved

    whole = REFERENCE.fullmatch(value)
    if whole is not None:
        resolved = one(whole)
        return SecretText([resolved]) if isinstance(resolved, SecretPart) else resolved
    # Literal text, values and secrets in order; `$${` unescapes in the runbook's own text only.
    parts: list[str | SecretPart] = []
    position = 0
    for match in REFERENCE.finditer(value):
        parts.append(value[position:match.start()].replace("$${", "${"))
        resolved = one(match)
        parts.append(resolved if isinstance(resolved, SecretPart) else str(resolved))
        position = match.end()
    parts.append(value[position:].replace("$${", "${"))
    if any(isinstance(p, SecretPart) for p in parts):
        return SecretText([p for p in parts if p != ""])
    return "".join(p for p in parts if isinstance(p, str))
