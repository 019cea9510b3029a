"""How operations events (drills, operator controls) show in the run record.

:func:`dr_engine.evidence.journal.apply_event` hands every ``drill.*`` and ``operator.*`` event here, so
``run.json`` and a record rebuilt from the audit log agree. Fields added to the record:

- ``drill``: ``resources`` (every drill copy: id, kind, description, created_at),
  ``cleaned`` (one entry per removal: id, kind, ok, detail, at) and ``cleanup``
  (``cleaned``/``failed`` ids and when it ran);
- ``operator_actions``: cancel requests and skips made with ``dr cancel`` / ``dr skip``
  (who, when, what, why).
"""

from __future__ import annotations

from typing import Any

from dr_engine.evidence.record import RunRecord

#: Event type prefixes applied by :func:`apply_operations_event`.
PREFIXES = ("drill.", "operator.")


def _extra(record: RunRecord, name: str, default: Any) -> Any:
    extra = record.__pydantic_extra__
    if extra is None:  # never the case for the record's extra="allow" config
        raise TypeError("the run record does not accept extra fields")
    if name not in extra:
        extra[name] = default
    return extra[name]


def apply_operations_event(record: RunRecord, event: dict[str, Any], at: str) -> None:
    """Apply one ``drill.*`` / ``operator.*`` event to ``record`` (in place)."""
    kind = str(event["type"])
    data: dict[str, Any] = dict(event.get("data") or {})
    if kind.startswith("drill."):
        drill = _extra(record, "drill", {"resources": [], "cleaned": [], "cleanup": None})
        if kind == "drill.resource":
            entry = {"id": data.get("id"), "kind": data.get("kind"), "description": data.get("description", ""),
                     "created_at": at}
            drill["resources"] = [r for r in drill["resources"] if r.get("id") != entry["id"]] + [entry]
        elif kind == "drill.cleaned":
            drill["cleaned"].append({"id": data.get("id"), "kind": data.get("kind"), "ok": bool(data.get("ok")),
                                     "detail": data.get("detail", ""), "at": at})
        elif kind == "drill.cleanup":
            cleanup: dict[str, Any] = {"cleaned": list(data.get("cleaned") or []),
                                       "failed": list(data.get("failed") or []), "at": at}
            cleanup.update({k: data[k] for k in ("work_dir", "work_dir_removed", "logs_kept") if k in data})
            drill["cleanup"] = cleanup
    elif kind.startswith("operator."):
        actions = _extra(record, "operator_actions", [])
        actions.append({"action": kind.split(".", 1)[1], "by": event.get("actor"), "at": at,
                        **{k: v for k, v in data.items() if k in ("step", "reason", "forced", "detail")}})


__all__ = ["PREFIXES", "apply_operations_event"]
