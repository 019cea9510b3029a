"""What the embedded world needs installed (the ``world`` extra), and the world's errors."""

from __future__ import annotations

import importlib.util

from dr_engine.errors import DrError


class WorldError(DrError):
    """The world could not be started, found, or driven."""


class WorldExtraMissing(WorldError):
    """A part of the world needs a package of the ``world`` extra, and it is not installed.

    A usage error (exit 2), not a failure: nothing was started, and installing the extra fixes it.
    """

    exit_code = 2


#: What the local AWS endpoint imports in its child process: moto and, for its server mode, Flask.
MOTO_MODULES = ("moto", "flask")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a meta-path finder that refuses the name counts as "not installed"
        return False


def require_moto(*, offer_no_moto: bool = True) -> None:
    """Raise :class:`WorldExtraMissing` unless the local AWS endpoint (moto's server) can run.

    ``offer_no_moto`` adds ``--no-moto`` to the hint (not for the demo: its runbook needs AWS).

    Checked before anything starts: without it the moto child dies on import only after
    PostgreSQL, BIND and the apps have started, and its error asks whether the port is in use.
    """
    missing = [name for name in MOTO_MODULES if not _installed(name)]
    if missing:
        hint = "install dr-engine[world] (pip install 'dr-engine[world]')"
        if offer_no_moto:
            hint += ", or start without the AWS part: --no-moto"
        raise WorldExtraMissing(f"the local AWS endpoint of the embedded world needs {' and '.join(missing)}, "
                                "which is not installed", hint=hint)


__all__ = ["MOTO_MODULES", "WorldError", "WorldExtraMissing", "require_moto"]
