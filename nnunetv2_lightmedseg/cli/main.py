"""``lightmedseg`` console entry point.

Each subcommand lives in its own module under :mod:`nnunetv2_lightmedseg.cli` and exposes
``add_parser(subparsers)``, which registers the subcommand and sets ``func`` on its parser.
Modules are imported lazily so that ``lightmedseg env`` does not pay for importing nnU-Net.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..errors import LightMedSegError

# subcommand name -> module (in nnunetv2_lightmedseg.cli) that registers it
SUBCOMMANDS = {
    "profile": "profile",
    "env": "env",
    "install-trainers": "install_trainers",
    "plans": "plans",
    "splits": "splits",
    "check-model": "check_model",
    "adapt-weights": "adapt_weights",
    "demo": "demo",
    "benchmark": "benchmark",
    "export": "export",
    "explain": "explain",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="lightmedseg",
        description="LightMedSeg for nnU-Net v2: profile, train helpers, benchmark, export, explain.",
    )
    parser.add_argument("--version", action="version", version=f"nnunetv2-lightmedseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of errors otherwise reported in "
                                                              f"one line (or set {DEBUG_SWITCH}=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = None
    if argv:
        wanted = next((a for a in argv if not a.startswith("-")), None)
        if wanted is None and "--version" in argv:
            wanted = ""  # nothing to import for the version
    for name, module in SUBCOMMANDS.items():
        # only import the module of the subcommand asked for (fast start); for --help import all
        if wanted is not None and (wanted in SUBCOMMANDS or wanted == "") and wanted != name:
            sub.add_parser(name, add_help=False)
            continue
        try:
            mod = importlib.import_module(f"nnunetv2_lightmedseg.cli.{module}")
        except ImportError as e:  # a subcommand whose optional dependency is missing
            p = sub.add_parser(name, help=f"(unavailable: {e})")
            p.set_defaults(func=_unavailable(name, e))
            continue
        mod.add_parser(sub)
    return parser


#: what a command interrupted with Ctrl-C leaves behind, unless it says more itself (the demo does)
INTERRUPTED = ("interrupted (Ctrl-C); files it had finished writing are kept, nothing else was changed; run the "
               "same command again to redo it")


def _unavailable(name: str, error: ImportError):
    """The ``func`` of a subcommand whose module failed to import (binds ``name`` now, not at call time)."""
    def run(args) -> int:
        raise LightMedSegError(f"unavailable: {error} (install the package's dependencies: pip install -e .)")
    run.__name__ = f"unavailable_{name}"
    return run


#: set (to anything but 0/empty) to see the traceback of an error the commands otherwise report in one line
DEBUG_SWITCH = "LIGHTMEDSEG_DEBUG"


def _debug(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_SWITCH, "") not in ("", "0")


def _command(argv: list[str]) -> str:
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand. Errors of the package (:class:`LightMedSegError`) and unwritable or missing files print
    one line, ``lightmedseg <command>: <message>``, and exit 2; Ctrl-C prints one line and exits 130; anything else
    is a bug and keeps its traceback. ``--debug`` (or LIGHTMEDSEG_DEBUG=1) shows the traceback of every error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug(argv)
    argv = [a for a in argv if a != "--debug"]
    command = _command(argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        command = getattr(args, "command", None) or command
        ret = args.func(args)
    except KeyboardInterrupt:
        print(f"\nlightmedseg {command or ''}: {INTERRUPTED}".replace(" :", ":"), file=sys.stderr)
        return 130
    except LightMedSegError as e:
        if debug:
            raise
        print(f"lightmedseg {command}: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except (PermissionError, IsADirectoryError, NotADirectoryError, FileNotFoundError) as e:
        if debug:
            raise
        what = {PermissionError: "permission denied", IsADirectoryError: "it is a folder",
                NotADirectoryError: "a part of the path is not a folder",
                FileNotFoundError: "no such file or folder"}[type(e)]
        where = e.filename or "a file"
        print(f"lightmedseg {command}: cannot use {where} ({what}): choose another path, or fix its permissions "
              f"(run with --debug for the traceback)", file=sys.stderr)
        return 2
    return int(ret or 0)


if __name__ == "__main__":
    sys.exit(main())
