"""``lightmedseg`` console entry point.

Each subcommand lives in its own module under :mod:`nnunetv2_lightmedseg.cli` and exposes
``add_parser(subparsers)``, which registers the subcommand and sets ``func`` on its parser.
Modules are imported lazily so that ``lightmedseg env`` does not pay for importing nnU-Net.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# subcommand name -> module (in nnunetv2_lightmedseg.cli) that registers it
SUBCOMMANDS = {
    "profile": "profile",
    "env": "env",
    "install-trainers": "install_trainers",
    "plans": "plans",
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
            p.set_defaults(func=lambda args, _e=e: sys.exit(f"lightmedseg {name}: unavailable: {_e}"))
            continue
        mod.add_parser(sub)
    return parser


#: what a command interrupted with Ctrl-C leaves behind, unless it says more itself (the demo does)
INTERRUPTED = ("interrupted (Ctrl-C); files it had finished writing are kept, nothing else was changed; run the "
               "same command again to redo it")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        ret = args.func(args)
    except KeyboardInterrupt:
        print(f"\nlightmedseg {args.command}: {INTERRUPTED}", file=sys.stderr)
        return 130
    return int(ret or 0)


if __name__ == "__main__":
    sys.exit(main())
