"""pydantic ``ValidationError`` -> located :class:`~dr_engine.errors.Problem` objects a person can act on.

pydantic's raw messages ("Input should be a valid dictionary or instance of Step") and its
locations (which include union branch tags such as ``str``/``int``) are written for
programmers. Here every error is mapped to its YAML line, its field path as the user wrote
it, a plain message ("expected a list, got text 'x'") and, where we can, a hint.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ValidationError

from dr_engine.config.yamlsafe import LineMap, PathKey, format_path, line_for
from dr_engine.errors import Problem

#: pydantic error types that mean "wrong type", and how to name the expected type.
TYPE_WORDS: dict[str, str] = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "nothing (null)",
}

#: Location segments pydantic adds for union members; dropped when the user did not write them.
UNION_TAGS = frozenset({"str", "int", "float", "bool", "none", "list", "dict", "bytes"})

_NAME_HINT = "use lowercase letters, digits and dashes, starting with a letter"
_PATTERN_MESSAGES: dict[str, tuple[str, str]] = {
    # pattern fragment -> (what is invalid, hint)
    "[a-z][a-z0-9-]*": ("invalid name", _NAME_HINT),
    "[a-z_][a-z0-9_]*$": ("invalid key", "use lowercase letters, digits and underscores (e.g. health_url)"),
    "[a-z]{2}(-[a-z]+)+-\\d": ("invalid AWS region name", "write it like us-east-1 or eu-west-2"),
    "\\.[a-z][a-z0-9_]*$": ("invalid action name", "write it as <provider>.<verb>, e.g. postgres.promote"),
}


def describe_value(value: Any) -> str:
    """Name a YAML value the way the user wrote it: ``text 'x'``, ``the number 5``, ``a mapping``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"text {shown!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def friendly(err: dict[str, Any], model: type[BaseModel]) -> tuple[str, str | None]:
    """Turn one pydantic error (with a cleaned ``loc``) into (message, hint)."""
    kind = str(err.get("type", ""))
    loc = tuple(err.get("loc", ()))
    ctx = err.get("ctx") or {}
    value = err.get("input")
    name = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        known = known_fields(model, loc[:-1])
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else (f"allowed keys: {', '.join(known)}" if known else None)
        return f"unknown key '{name}'", hint
    if kind == "missing":
        return f"missing required key '{name}'", f"add `{name}:`; `dr schema` shows every key"
    if kind in TYPE_WORDS:
        hint = "quote it to make it text" if kind == "string_type" and not isinstance(value, dict | list) else None
        if kind == "list_type" and isinstance(value, str):
            hint = f"write a list: [{value}]"
        return f"expected {TYPE_WORDS[kind]}, got {describe_value(value)}", hint
    if kind in ("enum", "literal_error"):
        return f"expected {ctx.get('expected', 'one of the allowed values')}, got {describe_value(value)}", None
    if kind == "too_short":
        least = ctx.get("min_length")
        if loc == ("steps",):
            return "a runbook needs at least one step", "add steps; see runbooks/ for examples"
        return f"needs at least {least} item(s), got {ctx.get('actual_length')}", None
    if kind == "too_long":
        return f"has {ctx.get('actual_length')} items; the limit is {ctx.get('max_length')}", None
    if kind == "string_too_long":
        return f"is longer than {ctx.get('max_length')} characters", None
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()), "?")
        return f"must be {sign} {bound}, got {describe_value(value)}", None
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        for fragment, (what, hint) in _PATTERN_MESSAGES.items():
            if fragment in pattern:
                return f"{what} {value!r}", hint
        return f"{value!r} does not match the pattern {pattern}", None
    message = str(err.get("msg", "invalid value"))
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, "), None


def known_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names (aliases) of the sub-model at ``loc``, for 'did you mean' hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None:
            return []
        match = next((f for n, f in fields.items() if (f.alias or n) == part), None)
        current = model_of(match.annotation) if match is not None else None
    if current is None or not hasattr(current, "model_fields"):
        return []
    return [f.alias or n for n, f in current.model_fields.items()]


def model_of(annotation: Any) -> Any:
    """Find a BaseModel class inside an annotation like ``list[Step] | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = model_of(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    return model_of(origin) if origin is not None and origin is not annotation else None


def _clean_loc(loc: tuple[Any, ...], prefix: PathKey, lines: LineMap) -> PathKey:
    """Drop pydantic's internal segments: validator names and union member tags."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, int):
            out.append(part)
            continue
        text = str(part)
        if "[" in text:  # 'function-before[...]', '[key]'
            continue
        if text in UNION_TAGS and (*prefix, *out, text) not in lines:
            continue
        out.append(text)
    return tuple(out)


def default_hint(model: type[BaseModel]) -> str:
    """Where to read about a model's format, for problems without a specific hint."""
    kind = model.__name__.lower()
    if kind in ("runbook", "region", "evacuation"):
        option = "" if kind == "runbook" else f" --kind {kind}"
        return f"see `dr schema{option}` for the {'evacuation plan' if kind == 'evacuation' else kind} format"
    return "see `dr actions` for this action's parameters"


def validation_problems(
    exc: ValidationError, model: type[BaseModel], file: str, lines: LineMap, prefix: PathKey = ()
) -> list[Problem]:
    """Locate every pydantic error in the source file; union branches become one problem."""
    fallback = default_hint(model)
    grouped: dict[PathKey, list[dict[str, Any]]] = {}
    for raw in exc.errors():
        err: dict[str, Any] = dict(raw)
        loc = _clean_loc(tuple(err["loc"]), prefix, lines)
        grouped.setdefault(loc, []).append({**err, "loc": loc})
    problems: list[Problem] = []
    for loc, errs in grouped.items():
        path = (*prefix, *loc)
        where = line_for(lines, path)
        kinds = [str(e["type"]) for e in errs]
        if len(errs) > 1 and all(k in TYPE_WORDS for k in kinds):
            # A value that matched no member of a union (e.g. region params: text/number/bool).
            words = list(dict.fromkeys(TYPE_WORDS[k] for k in kinds))
            expected = ", ".join(words[:-1]) + " or " + words[-1]
            problems.append(Problem(file, where, format_path(path),
                                    f"expected {expected}, got {describe_value(errs[0].get('input'))}", fallback))
            continue
        for err in errs:
            message, hint = friendly(err, model)
            problems.append(Problem(file, where, format_path(path), message, hint or fallback))
    return dedupe(problems)


def dedupe(problems: list[Problem]) -> list[Problem]:
    """Drop repeated (path, message) pairs, keeping the first."""
    seen: set[tuple[str, str]] = set()
    out = []
    for p in problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            out.append(p)
    return out


__all__ = ["describe_value", "friendly", "known_fields", "validation_problems"]
