"""``lightmedseg install-trainers``: register the LightMedSeg trainers with this environment's nnU-Net, permanently.

See :mod:`nnunetv2_lightmedseg.registration` for what is written where and why.
"""
from __future__ import annotations

import argparse
import sys


HELP = ("register the LightMedSeg trainers with this environment's nnU-Net (permanent; "
        "--uninstall undoes it)")
DESCRIPTION = """\
Writes one small module into nnU-Net's trainer folder of the active Python environment
(nnunetv2/training/nnUNetTrainer/variants/nnunetv2_lightmedseg_trainers.py) so that nnUNetv2_train, nnUNetv2_predict
and every other nnU-Net command find the LightMedSeg trainers by name in any shell, job or container of that
environment, without nnUNet_extTrainer. The module imports the trainers by package name, so moving or reinstalling
nnunetv2-lightmedseg needs nothing; after reinstalling nnunetv2, run it again. The per-shell alternative is eval
"$(lightmedseg env)".
"""


def run(args: argparse.Namespace) -> int:
    from ..registration import install, installed, uninstall

    # RegistrationError: one line, exit 2 (cli/main)
    if args.check:
        path = installed()
        print(f"registered: {path}" if path else "not registered in this environment "
                                                 "(run: lightmedseg install-trainers)")
        return 0 if path else 1
    if args.uninstall:
        path = uninstall()
        print(f"removed {path}: nnU-Net no longer finds the LightMedSeg trainers without nnUNet_extTrainer"
              if path else "nothing to remove: the trainers were not registered in this environment")
        return 0
    path = install()
    print(f"wrote {path}\nnnU-Net (nnUNetv2_train, nnUNetv2_predict, ...) now finds nnUNetTrainer_LightMedSeg and its "
          f"variants in this Python environment ({sys.prefix}) in every shell, without nnUNet_extTrainer.\n"
          f"Undo with: lightmedseg install-trainers --uninstall (run it again after reinstalling nnunetv2).")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("install-trainers", help=HELP, description=DESCRIPTION)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--uninstall", action="store_true",
                      help="remove the module (only a file this command wrote; run it before pip uninstall)")
    mode.add_argument("--check", action="store_true",
                      help="say whether the trainers are registered (exit status 0 if so, 1 if not)")
    p.set_defaults(func=run)
