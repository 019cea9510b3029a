"""The ``dr`` command (typer + rich). An adapter: no failover logic lives here."""

from __future__ import annotations

import importlib
import sys
import traceback

import typer

from dr_engine.cli.common import EXIT_FAILED, STATE
from dr_engine.evidence.secrets_scrub import scrub_text

#: Command modules; each defines ``register(app)``. Imported lazily by :func:`build_app`.
COMMAND_MODULES: tuple[str, ...] = (
    "dr_engine.cli.config_cmds",
    "dr_engine.cli.aws_cmds",
    "dr_engine.cli.run_cmds",
    "dr_engine.cli.evacuate_cmds",
    "dr_engine.cli.report_cmds",
    "dr_engine.cli.world_cmds",
    "dr_engine.cli.ops_cmds",
    "dr_engine.cli.schedule_cmds",
)


def build_app() -> typer.Typer:
    """Create the typer application with every command module registered."""
    app = typer.Typer(
        name="dr",
        help="dr-engine: disaster-recovery failover runbooks as code.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
    )

    @app.callback()
    def main_options(
        debug: bool = typer.Option(False, "--debug", help="Show tracebacks and cause chains on errors."),
    ) -> None:
        """dr-engine: disaster-recovery failover runbooks as code."""
        STATE.debug = debug

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(app)
    return app


def main() -> None:
    """Console-script entry point."""
    app = build_app()
    try:
        app()
    except Exception:
        if STATE.debug or "--debug" in sys.argv:
            sys.stderr.write(scrub_text(traceback.format_exc()))
        else:
            exc = sys.exc_info()[1]
            sys.stderr.write(scrub_text(f"internal error: {type(exc).__name__}: {exc}\n"
                                        "  hint: re-run with --debug for details and report it\n"))
        sys.exit(EXIT_FAILED)
