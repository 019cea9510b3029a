"""Run-time binding of a step's ``with:`` block: references -> values, then params validation.

At load time only region references can be checked; here every ``${...}`` is resolved:
region params, secrets (as :class:`~pydantic.SecretStr`, read from the environment or a
file at the moment they are needed), outputs of earlier steps, and run facts. A string that
embeds a secret inside other text becomes a ``SecretStr`` as a whole, so the secret cannot
leak through ``str()`` of a params model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from dr_engine.actions.base import ActionParams
from dr_engine.errors import ConfigError, PreconditionFailed
from dr_engine.model import Region, RunMode
from dr_engine.substitution import REFERENCE, Reference, parse_reference, substitute


def read_secret(region: Region, name: str) -> SecretStr:
    """Resolve secret ``name`` of ``region`` from its env var or file (never logged)."""
    ref = region.secrets.get(name)
    if ref is None:
        raise KeyError(f"region {region.name!r} declares no secret {name!r}")
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise PreconditionFailed(f"secret {name!r} of region {region.name}: environment variable "
                                     f"{ref.env} is not set", hint=f"export {ref.env} before running")
        return SecretStr(value)
    path = Path(ref.file or "").expanduser()
    try:
        return SecretStr(path.read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as exc:
        raise PreconditionFailed(f"secret {name!r} of region {region.name}: cannot read {path}: "
                                 f"{exc.strerror}", hint="check the file exists and is readable") from exc


@dataclass(frozen=True)
class Bindings:
    """What references can resolve to while a run executes."""

    source: Region
    target: Region
    runbook: str
    run_id: str
    mode: RunMode
    outputs: Mapping[str, Mapping[str, str]]

    def _region(self, ref: Reference) -> Region:
        return self.source if ref.region == "source" else self.target

    def resolve(self, ref: Reference, *, reveal: bool) -> Any:
        """The value of ``ref``; secrets are SecretStr unless ``reveal`` (for interpolation)."""
        if ref.scope == "region":
            return self._region(ref).params[ref.key or ""]
        if ref.scope == "secret":
            secret = read_secret(self._region(ref), ref.key or "")
            return secret.get_secret_value() if reveal else secret
        if ref.scope == "step":
            produced = self.outputs.get(ref.step or "")
            if produced is None or ref.key not in produced:
                have = ", ".join(sorted(produced)) if produced else "none"
                raise PreconditionFailed(
                    f"reference ${{{ref.text}}}: step {ref.step!r} produced no output {ref.key!r} "
                    f"(its outputs: {have})", hint="check the output name in `dr actions` for that action")
            return produced[ref.key or ""]
        key = ref.key or ""
        return {"runbook.name": self.runbook, "run.id": self.run_id, "run.mode": self.mode.value}[key]

    def bind(self, value: Any) -> Any:
        """Substitute every reference in a nested ``with:`` value."""
        if isinstance(value, dict):
            return {k: self.bind(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.bind(v) for v in value]
        if not isinstance(value, str) or "${" not in value:
            return value
        refs = [parse_reference(m.group(1)) for m in REFERENCE.finditer(value)]
        has_secret = any(r is not None and r.scope == "secret" for r in refs)
        whole = REFERENCE.fullmatch(value) is not None
        if has_secret and not whole:
            return SecretStr(substitute(value, lambda r: self.resolve(r, reveal=True)))
        return substitute(value, lambda r: self.resolve(r, reveal=False))


def bind_params(params_model: type[ActionParams], raw: dict[str, Any], bindings: Bindings,
                step_id: str) -> ActionParams:
    """Resolve references in ``raw`` and validate the result with the action's Params."""
    try:
        resolved = bindings.bind(raw)
    except KeyError as exc:
        raise ConfigError(f"step {step_id!r}: cannot resolve reference {exc}",
                          hint="check the reference against the regions and step outputs") from exc
    try:
        return params_model.model_validate(resolved)
    except ValidationError as exc:
        # Do not echo input values: they may hold resolved secrets.
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PreconditionFailed(f"step {step_id!r}: parameters invalid after substitution: {problems}",
                                 hint="a referenced value (often a step output) has the wrong type") from exc


__all__ = ["Bindings", "bind_params", "read_secret"]
