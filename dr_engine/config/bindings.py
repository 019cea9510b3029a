"""Run-time binding of a step's ``with:`` block: references -> values, then params validation.

At load time only region references can be checked; here every ``${...}`` is resolved:
region params, secrets (as :class:`~pydantic.SecretStr`, read from the environment or a
file at the moment they are needed), outputs of earlier steps, and run facts. A value that
holds a secret becomes a :class:`~dr_engine.model.substitution.SecretText` as a whole (the same
:func:`~dr_engine.model.substitution.substitute` the loader validates with), so the secret cannot
leak through ``str()`` of a params model, and every value read is registered with
:mod:`dr_engine.evidence.secrets_scrub` so that no record, log or console output shows it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from dr_engine.actions.base import ActionParams
from dr_engine.errors import ConfigError, PreconditionFailed
from dr_engine.evidence.secrets_scrub import MIN_LENGTH, register
from dr_engine.model import Region, RunMode
from dr_engine.model.substitution import Reference, substitute

log = logging.getLogger(__name__)


def read_secret(region: Region, name: str) -> SecretStr:
    """Resolve secret ``name`` of ``region`` from its env var or file (never logged).

    The value is registered for masking (:mod:`dr_engine.evidence.secrets_scrub`) before it is
    returned: every secret the process ever resolves comes through here.
    """
    ref = region.secrets.get(name)
    if ref is None:
        raise KeyError(f"region {region.name!r} declares no secret {name!r}")
    if ref.env is not None:
        value = os.environ.get(ref.env)
        if value is None:
            raise PreconditionFailed(f"secret {name!r} of region {region.name}: environment variable "
                                     f"{ref.env} is not set", hint=f"export {ref.env} before running")
        return _registered(region, name, value)
    path = Path(ref.file or "").expanduser()
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise PreconditionFailed(f"secret {name!r} of region {region.name}: cannot read {path}: "
                                 f"{exc.strerror}", hint="check the file exists and is readable") from exc
    return _registered(region, name, value)


#: Secrets already warned about as too short to mask (one warning per process each).
_WARNED_SHORT: set[tuple[str, str]] = set()


def _registered(region: Region, name: str, value: str) -> SecretStr:
    if value and not register(value) and (region.name, name) not in _WARNED_SHORT:
        _WARNED_SHORT.add((region.name, name))
        log.warning("secret %r of region %s is shorter than %d characters: it cannot be masked by value in "
                    "records, logs and output; use a longer secret", name, region.name, MIN_LENGTH)
    return SecretStr(value)


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

    def resolve(self, ref: Reference) -> Any:
        """The value of ``ref``; secrets are SecretStr."""
        if ref.scope == "region":
            return self._region(ref).params[ref.key or ""]
        if ref.scope == "secret":
            return read_secret(self._region(ref), ref.key or "")
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
        """Substitute every reference in a nested ``with:`` value (values holding secrets become SecretText)."""
        return substitute(value, self.resolve)


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
