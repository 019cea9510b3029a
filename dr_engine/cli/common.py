"""Shared CLI plumbing: consoles, output format, error reporting and exit codes.

Exit codes: 0 success, 1 the operation failed, 2 usage or validation error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from dr_engine.engine.interrupts import Interrupts
from dr_engine.errors import DrError
from dr_engine.evidence.secrets_scrub import ScrubbingStream, scrub_text

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Output(StrEnum):
    """Output format for commands whose output is data."""

    TEXT = "text"
    JSON = "json"


class _State:
    debug: bool = False


STATE = _State()


#: Width used when output is not a terminal (pipes, CI logs): wide enough for a plan table.
PIPE_WIDTH = 140


def make_console(stderr: bool = False) -> Console:
    """A rich console that drops colour when not a TTY or when NO_COLOR is set.

    When not writing to a terminal rich would assume 80 columns and truncate tables; use
    ``$COLUMNS`` if set, else :data:`PIPE_WIDTH`. Every secret value the process resolved is
    masked (:mod:`dr_engine.evidence.secrets_scrub`): in each string before rich renders (and wraps) it,
    and again in what reaches the stream.
    """
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    no_color = ("NO_COLOR" in os.environ and os.environ["NO_COLOR"] != "") or not tty
    width = None
    if not tty:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPE_WIDTH
    return _ScrubbingConsole(file=ScrubbingStream(stream), no_color=no_color, highlight=False,  # type: ignore[arg-type]
                             soft_wrap=True, width=width, force_terminal=None if not no_color else False)


class _ScrubbingConsole(Console):
    """A console that masks secret values in every string it renders (table cells included)."""

    def render_str(self, text: str, **kwargs: Any) -> Text:
        """Mask secrets before markup is parsed and the text is wrapped (a wrapped value would not match)."""
        return super().render_str(scrub_text(text), **kwargs)


def out() -> Console:
    """Console for results (stdout)."""
    return make_console()


def err() -> Console:
    """Console for errors and progress (stderr)."""
    return make_console(stderr=True)


def print_json(data: Any) -> None:
    """Write JSON to stdout (no colour, stable key order)."""
    # Scrubbed as text: values that json turns into strings through ``default=str`` are covered too.
    sys.stdout.write(scrub_text(json.dumps(data, indent=2, default=str)) + "\n")


def state_dir_option() -> Any:
    """The shared ``--state-dir`` option (env ``DR_STATE_DIR``, default ``.dr``), checked before the command runs.

    The command receives a :class:`~dr_engine.evidence.statedir.StateDir` and passes it down.
    """
    return typer.Option(".dr", "--state-dir", envvar="DR_STATE_DIR", parser=_state_dir, metavar="PATH",
                        help="Where run records and audit logs live.")


def _state_dir(value: str) -> Any:
    # Every command takes its state dir through this option: a path that cannot be one (a file,
    # or a folder under a file) is a usage error here, before anything starts (exit 2).
    from dr_engine.evidence.statedir import StateDir

    if isinstance(value, StateDir):
        return value
    try:
        return StateDir(value)
    except DrError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--state-dir'") from None


P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Print DrErrors without a traceback (unless --debug) and exit with their code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except DrError as exc:
            if STATE.debug:
                raise
            console = err()
            console.print(f"[bold red]error:[/] {exc}", markup=True) if not console.no_color else \
                console.print(f"error: {exc}", markup=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err().print("interrupted", markup=False)
            raise typer.Exit(130) from None

    return wrapper


def exit_run(code: int) -> NoReturn:
    """End a run command with ``code``; after a stop signal (128+N), at once.

    An interrupted run is sealed and its summary printed: nothing may hold the exit after that
    (Prefect's exit handlers, threads of abandoned steps still blocked in I/O). Output is flushed
    and the embedded Prefect server asked to stop before ``os._exit``.
    """
    if code < 128:
        raise typer.Exit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if "dr_engine.flows.embedded_server" in sys.modules:
        with contextlib.suppress(Exception):
            sys.modules["dr_engine.flows.embedded_server"].stop_now()
    os._exit(code)


def grace_option() -> Any:
    """``--grace SECONDS``: after a stop signal, the longest wait for running steps (dr_engine.engine.interrupts)."""
    return typer.Option(None, "--grace", min=0,
                        help="After Ctrl-C/SIGTERM/SIGHUP, the longest wait in seconds for running steps to "
                             "finish before they are abandoned (default: the rest of their timeout, at most "
                             "120 s, or DR_INTERRUPT_GRACE).")


def handle_stop_signals(grace_cap: float | None) -> Interrupts:
    """Handle SIGINT/SIGTERM/SIGHUP for the whole command (see :mod:`dr_engine.engine.interrupts`).

    Installed before Prefect starts: a signal before the run exists stops the command (nothing
    was started); once the engine runs, the first signal stops new steps and gives running ones a
    grace, a second abandons them; after the seal a signal exits at once.
    """
    interrupts = Interrupts(grace_cap=grace_cap, exit_after_seal=True)
    interrupts.install()
    return interrupts


def confirm_by_name(name: str, kind: str, yes: bool, *, refusing: str = "refusing without confirmation") -> None:
    """Ask for ``name`` to be typed (``kind``: "runbook", "plan"); exit 2 when it is not, or no terminal.

    ``--yes`` skips the question; without a terminal the command refuses rather than guess.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        err().print(f"error: {refusing}: no terminal to ask on\n  hint: pass --yes to confirm non-interactively",
                    markup=False)
        raise typer.Exit(EXIT_USAGE)
    answer = typer.prompt(f"Type the {kind} name ({name}) to confirm", default="", show_default=False)
    if answer.strip() != name:
        err().print("aborted: the name did not match; nothing was changed", markup=False)
        raise typer.Exit(EXIT_USAGE)
