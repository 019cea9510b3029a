"""Drill mode: run a runbook against drill copies of the target, never production; always clean up.

A drill is the runbook run end to end with ``mode: drill``. Each step behaves in one of three
ways, resolved by :func:`drill_behaviour`:

1. the step's own ``drill: run|skip`` when the runbook says so;
2. otherwise, when a *drill variant* is registered for the step's action (:func:`drill_variant`),
   the step runs through that variant, which provisions a drill copy (a Postgres clone, a
   drill DNS record, a drill-suffixed stack) and returns the parameters that point at it;
3. otherwise the action's ``drill_default`` (``run`` for read-only actions, ``skip`` for
   actions that would touch production, e.g. a fence).

Drill copies live at the *drill address* of the target region (region param ``drill_addr``;
for loopback worlds ``127.x.y.z`` maps to ``127.x.y.(200+z)``): an isolated test network, as in
test failovers of site-recovery products. Every copy is announced in the audit log *before* it
is created (``drill.resource``) and the production endpoint it stands for is recorded as a
*rewrite* (``drill.rewrite``, e.g. ``127.0.2.1:15432 -> 127.0.2.201:15432``); later steps'
string parameters are rewritten through them, so ``verify-db`` checks the promoted clone and
``http.verify`` probes the drill copy of the app, while read-only steps that ran before the
copy existed (the lag gate) looked at the real standby.

Cleanup (:meth:`DrillSession.cleanup`) is called by the engine when the drill stops, whatever
the outcome (success, halt, failure, Ctrl-C/SIGTERM), before the run is sealed: it waits for
running steps to finish, then removes every copy in reverse order and records each result
(``drill.cleaned``). Copies are recorded before they exist, so a drill killed with SIGKILL is
cleaned by ``dr resume`` or ``dr drill-cleanup``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from dr_engine.actions.base import Action, ActionParams, StepContext
from dr_engine.evidence.audit import read_events
from dr_engine.evidence.record import AUDIT_FILE, RunRecord, StepStatus
from dr_engine.evidence.statedir import StateDir
from dr_engine.model import DrillBehaviour, Region
from dr_engine.planning.plan import ExecutionPlan, PlannedStep

log = logging.getLogger("dr_engine.drill.session")

# Audit event types written by drills (applied to the run record by dr_engine.evidence.operations_record).
DRILL_RESOURCE = "drill.resource"
DRILL_REWRITE = "drill.rewrite"
DRILL_CLEANED = "drill.cleaned"
DRILL_CLEANUP = "drill.cleanup"

#: How long cleanup waits for steps still running (e.g. after Ctrl-C) before removing copies.
RUNNING_STEPS_WAIT = 120.0
#: Budget of removing one drill copy.
CLEANUP_TIMEOUT = 60.0


@dataclass(frozen=True)
class DrillResource:
    """A drill copy: ``kind`` selects its cleaner, ``spec`` is what the cleaner needs (JSON)."""

    kind: str
    id: str
    spec: dict[str, Any] = field(default_factory=dict)
    description: str = ""


class DrillVariant(Protocol):
    """Turns a step's production parameters into drill parameters (provisioning copies)."""

    def __call__(self, params: Any, ctx: StepContext, session: DrillSession) -> Any:
        """Return the parameters to run the action with in this drill."""
        ...


#: Removes one drill copy (its ``spec``) within ``timeout`` seconds; returns what was done (raises on failure).
Cleaner = Callable[[dict[str, Any], "DrillSession", float], str]
#: Called when a copy of a production endpoint exists (e.g. to start a drill app on a DB clone).
CopyHook = Callable[["DrillSession", str, dict[str, Any], StepContext], None]

#: The built-in drill variants, cleaners and copy hooks: every module in it is loaded.
VARIANT_PACKAGE = "dr_engine.drill.variants"
#: Packages walked for ``*_drill`` modules (a user's variant may live beside their action; the
#: embedded world's copy hook lives in the world). Found by discovery on first use, like actions.
DRILL_PACKAGES: tuple[str, ...] = ("dr_engine.actions", "dr_engine.world")

_VARIANTS: dict[str, DrillVariant] = {}
_CLEANERS: dict[str, Cleaner] = {}
COPY_HOOKS: list[CopyHook] = []
_drill_modules: tuple[str, ...] | None = None
# Re-entrant for the same reason as the action registry's lock (a variant module may look up).
_DRILL_LOAD_LOCK = threading.RLock()


def drill_variant(action_name: str) -> Callable[[DrillVariant], DrillVariant]:
    """Decorator: register the drill variant of ``action_name``."""

    def register(fn: DrillVariant) -> DrillVariant:
        _VARIANTS[action_name] = fn
        return fn

    return register


def drill_cleaner(kind: str) -> Callable[[Cleaner], Cleaner]:
    """Decorator: register how drill copies of ``kind`` are removed."""

    def register(fn: Cleaner) -> Cleaner:
        _CLEANERS[kind] = fn
        return fn

    return register


def variant_for(action_name: str) -> DrillVariant | None:
    """The drill variant registered for ``action_name`` (built-in modules loaded first)."""
    load_drill_modules()
    return _VARIANTS.get(action_name)


def load_drill_modules() -> tuple[str, ...]:
    """Import every drill-variant module of :data:`DRILL_PACKAGES` once; returns their names."""
    global _drill_modules
    if _drill_modules is None:
        from dr_engine.actions.registry import DRILL_SUFFIX, load_builtin, walk_modules

        load_builtin()
        with _DRILL_LOAD_LOCK:
            if _drill_modules is None:
                _drill_modules = (walk_modules((VARIANT_PACKAGE,), lambda leaf: True)
                                  + walk_modules(DRILL_PACKAGES, lambda leaf: leaf.endswith(DRILL_SUFFIX)))
    return _drill_modules


def drill_behaviour(planned: PlannedStep, action_cls: type[Action[Any]]) -> DrillBehaviour:
    """RUN or SKIP: the step's ``drill:``, else RUN when a variant exists, else the action's default."""
    wanted = planned.step.drill
    if wanted is not DrillBehaviour.DEFAULT:
        return wanted
    if variant_for(action_cls.name) is not None:
        return DrillBehaviour.RUN
    return DrillBehaviour.SKIP if action_cls.drill_default is DrillBehaviour.SKIP else DrillBehaviour.RUN


def skips_in_drill(planned: PlannedStep, action_cls: type[Action[Any]]) -> bool:
    """True when the step does not run in a drill."""
    return drill_behaviour(planned, action_cls) is DrillBehaviour.SKIP


def drill_address(region: Region) -> str | None:
    """Where drill copies of ``region`` listen: ``drill_addr`` param, or derived for loopback."""
    explicit = region.params.get("drill_addr")
    if explicit:
        return str(explicit)
    addr = region.params.get("addr")
    try:
        ip = ipaddress.ip_address(str(addr))
    except ValueError:
        return None
    if ip.version != 4 or not ip.is_loopback:
        return None
    octets = str(ip).split(".")
    last = int(octets[3])
    if last >= 50:
        return None
    return ".".join([*octets[:3], str(200 + last)])


def _boundary(text: str) -> re.Pattern[str]:
    # "127.0.2.1" must not match inside "127.0.2.10" or "x127.0.2.1"; names likewise.
    return re.compile(r"(?<![\w.-])" + re.escape(text) + r"(?![\w-]|\.\d)")


class DrillSession:
    """The drill copies of one run, their rewrites, and their cleanup.

    Rebuilt from the audit log on resume (:meth:`for_run`), so a resumed drill knows what the
    first session created.
    """

    def __init__(self, plan: ExecutionPlan, run_id: str, run_dir: Path,
                 emit: Callable[..., dict[str, Any]], *, record: Callable[[], RunRecord | None] | None = None,
                 work_root: Path | None = None) -> None:
        self.plan = plan
        self.run_id = run_id
        self.run_dir = run_dir
        self._emit = emit
        self._record = record or (lambda: None)
        self._lock = threading.RLock()
        self.resources: dict[str, DrillResource] = {}
        self.cleaned: set[str] = set()
        self.rewrites: dict[str, str] = {}
        self.work_root = work_root or Path(tempfile.gettempdir()) / "dr-drill"

    # ------------------------------------------------------------------ rebuild
    @classmethod
    def for_run(cls, plan: ExecutionPlan, run_id: str, run_dir: Path,
                emit: Callable[..., dict[str, Any]], record: Callable[[], RunRecord | None] | None = None
                ) -> DrillSession:
        """A session that knows every copy and rewrite already recorded in ``run_dir``'s audit log."""
        session = cls(plan, run_id, run_dir, emit, record=record)
        path = run_dir / AUDIT_FILE
        if path.is_file():
            for event in read_events(path):
                session._replay(str(event.get("type")), dict(event.get("data") or {}))
        return session

    def _replay(self, kind: str, data: dict[str, Any]) -> None:
        if kind == DRILL_RESOURCE:
            res = DrillResource(kind=str(data["kind"]), id=str(data["id"]), spec=dict(data.get("spec") or {}),
                                description=str(data.get("description", "")))
            self.resources[res.id] = res
            self.cleaned.discard(res.id)
        elif kind == DRILL_REWRITE:
            self.rewrites[str(data["from"])] = str(data["to"])
        elif kind == DRILL_CLEANED and data.get("ok"):
            self.cleaned.add(str(data["id"]))
            for old, new in list(self.rewrites.items()):
                if new in (data.get("rewrites") or []):
                    del self.rewrites[old]

    # ------------------------------------------------------------------ copies
    @property
    def target(self) -> Region:
        """The region the drill fails over to (whose copies are made)."""
        return self.plan.loaded.target

    def drill_addr(self) -> str:
        """The target's drill address; PreconditionFailed when there is none."""
        from dr_engine.errors import PreconditionFailed

        addr = drill_address(self.target)
        if addr is None:
            raise PreconditionFailed(
                f"region {self.target.name} has no drill address for drill copies",
                hint="add `drill_addr:` (an address of the isolated drill network) to the region's params, "
                     "or set `drill: skip` on this step")
        return addr

    def work_dir(self, name: str) -> Path:
        """A directory for a drill copy's files, traversable by service users (0755 parents)."""
        base = self.work_root / self.run_id
        for part in (self.work_root, base):
            part.mkdir(exist_ok=True)
            part.chmod(0o755)
        return base / name

    def cleanup_context(self, step_id: str, timeout: float) -> StepContext:
        """A drill step context for a cleaner that needs an action's own provider code.

        It has the run's regions, id and state directory, a fresh deadline of ``timeout``
        seconds, and resolves region secrets at cleanup time (they are never recorded).
        """
        from dr_engine.clock import Deadline, SystemClock
        from dr_engine.config.bindings import read_secret
        from dr_engine.config.loader import runbook_location
        from dr_engine.model import RunMode

        clock = SystemClock()
        loaded = self.plan.loaded
        return StepContext(
            run_id=self.run_id, step_id=step_id, mode=RunMode.DRILL, source=loaded.source, target=loaded.target,
            objectives=loaded.runbook.objectives, deadline=Deadline(clock, timeout), clock=clock,
            log=logging.getLogger(f"dr_engine.drill.cleanup.{step_id}"),
            state_dir=StateDir(self.run_dir.parent.parent),
            secret_resolver=read_secret, runbook_location=runbook_location(loaded.path), run_dir=self.run_dir)

    def active(self, resource_id: str) -> DrillResource | None:
        """The resource ``resource_id`` when it was created and not cleaned yet."""
        with self._lock:
            if resource_id in self.cleaned:
                return None
            return self.resources.get(resource_id)

    def add_resource(self, resource: DrillResource) -> DrillResource:
        """Record a copy in the audit log (call *before* creating it, so cleanup can never miss it)."""
        with self._lock:
            self._emit(DRILL_RESOURCE, kind=resource.kind, id=resource.id, spec=resource.spec,
                       description=resource.description)
            self.resources[resource.id] = resource
            self.cleaned.discard(resource.id)
        return resource

    def add_rewrite(self, production: str, drill: str) -> None:
        """From now on, parameters mentioning ``production`` mean ``drill`` in this run."""
        with self._lock:
            if self.rewrites.get(production) == drill:
                return
            self._emit(DRILL_REWRITE, **{"from": production, "to": drill})
            self.rewrites[production] = drill

    def copied(self, kind: str, info: dict[str, Any], ctx: StepContext) -> None:
        """Tell copy hooks that a copy of ``kind`` exists (they may add copies of what uses it)."""
        for hook in list(COPY_HOOKS):
            hook(self, kind, info, ctx)

    def rewrite_text(self, text: str) -> str:
        """``text`` with every production endpoint replaced by its drill copy (longest first)."""
        with self._lock:
            pairs = sorted(self.rewrites.items(), key=lambda kv: len(kv[0]), reverse=True)
        for old, new in pairs:
            text = _boundary(old).sub(new, text)
        return text

    def _rewrite_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.rewrite_text(value)
        if isinstance(value, list):
            return [self._rewrite_value(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._rewrite_value(v) for v in value)
        if isinstance(value, dict):
            return {k: self._rewrite_value(v) for k, v in value.items()}
        return value  # SecretStr, numbers, durations: never rewritten

    def rewrite_params(self, params: ActionParams) -> ActionParams:
        """A copy of ``params`` with string fields rewritten through the recorded rewrites."""
        changed: dict[str, Any] = {}
        for name in type(params).model_fields:
            value = getattr(params, name)
            if isinstance(value, BaseModel):
                continue
            new = self._rewrite_value(value)
            if new != value:
                changed[name] = new
        return params.model_copy(update=changed) if changed else params

    def adapt(self, planned: PlannedStep, action_cls: type[Action[Any]], params: ActionParams,
              ctx: StepContext) -> ActionParams:
        """The parameters step ``planned`` runs with in this drill."""
        variant = variant_for(action_cls.name)
        if variant is not None:
            params = variant(params, ctx, self)
        adapted = self.rewrite_params(params)
        if adapted is not params:
            ctx.log.info("drill: step %s runs against drill copies", planned.id)
        return adapted

    # ------------------------------------------------------------------ cleanup
    def _wait_for_running_steps(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            record = self._record()
            if record is None or not any(s.status is StepStatus.RUNNING for s in record.steps):
                return
            time.sleep(0.05)
        log.warning("drill cleanup: steps still running after %.0fs; cleaning up anyway", timeout)

    def pending_cleanup(self) -> list[DrillResource]:
        """Copies created and not yet removed, newest first."""
        with self._lock:
            return [r for r in reversed(list(self.resources.values())) if r.id not in self.cleaned]

    def cleanup(self, *, wait_for_steps: float = RUNNING_STEPS_WAIT) -> list[dict[str, Any]]:
        """Remove every copy (newest first), recording each result; never raises for one failure."""
        with _signals_deferred():
            self._wait_for_running_steps(wait_for_steps)
            results: list[dict[str, Any]] = []
            for res in self.pending_cleanup():
                results.append(self._clean_one(res))
            failed = [r["id"] for r in results if not r["ok"]]
            tidy = self._tidy_work_dir() if not failed and not self.pending_cleanup() else {}
            self._emit(DRILL_CLEANUP, cleaned=[r["id"] for r in results if r["ok"]], failed=failed, **tidy)
            return results

    def _tidy_work_dir(self) -> dict[str, Any]:
        """Once every copy is gone: keep the copies' logs with the run, remove the work folder.

        Only after a complete cleanup: a copy that could not be removed keeps its files where
        they are, for whoever cleans it up by hand.
        """
        base = self.work_root / self.run_id
        if not base.is_dir():
            return {}
        kept: list[str] = []
        logs = self.run_dir / "drill-logs"
        for path in sorted(base.rglob("*.log")):
            if path.is_file() and path.stat().st_size > 0:
                logs.mkdir(exist_ok=True)
                target = logs / "-".join(path.relative_to(base).parts)
                shutil.copyfile(path, target)
                kept.append(str(target.relative_to(self.run_dir)))
        shutil.rmtree(base, ignore_errors=True)
        return {"work_dir": str(base), "work_dir_removed": not base.exists(), "logs_kept": kept}

    def _clean_one(self, res: DrillResource) -> dict[str, Any]:
        load_drill_modules()
        cleaner = _CLEANERS.get(res.kind)
        gone_rewrites = [new for new in self.rewrites.values() if res.spec.get("endpoint") and
                         str(res.spec.get("endpoint")) in new]
        if cleaner is None:
            ok, detail = False, f"no cleaner registered for drill copies of kind {res.kind!r}"
        else:
            try:
                ok, detail = True, cleaner(res.spec, self, CLEANUP_TIMEOUT)
            except Exception as exc:  # one failed removal must not stop the others
                ok, detail = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            log.error("drill cleanup of %s (%s) failed: %s", res.id, res.kind, detail)
        self._emit(DRILL_CLEANED, id=res.id, kind=res.kind, ok=ok, detail=detail,
                   description=res.description, rewrites=gone_rewrites)
        with self._lock:
            if ok:
                self.cleaned.add(res.id)
                for old, new in list(self.rewrites.items()):
                    if new in gone_rewrites:
                        del self.rewrites[old]
        return {"id": res.id, "kind": res.kind, "ok": ok, "detail": detail}


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while cleaning up (a second Ctrl-C must not leave copies behind).

    The run is already stopping when cleanup starts, so a signal received meanwhile is only logged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def remember(signum: int, frame: object) -> None:
        del frame
        received.append(signum)
        log.warning("signal %d received during drill cleanup: finishing the cleanup first", signum)

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in saved:
        signal.signal(sig, remember)
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


__all__ = [
    "COPY_HOOKS",
    "DRILL_CLEANED",
    "DRILL_CLEANUP",
    "DRILL_PACKAGES",
    "DRILL_RESOURCE",
    "DRILL_REWRITE",
    "Cleaner",
    "CopyHook",
    "DrillResource",
    "DrillSession",
    "DrillVariant",
    "drill_address",
    "drill_behaviour",
    "drill_cleaner",
    "drill_variant",
    "load_drill_modules",
    "skips_in_drill",
    "variant_for",
]
