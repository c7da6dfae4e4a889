"""``lightmedseg env``: print the shell line that lets nnU-Net find the LightMedSeg trainers.

nnunetv2 >= 2.8 searches the folders listed in ``nnUNet_extTrainer`` (separated by ``os.pathsep``) for trainer
classes it does not ship. Usage::

    eval "$(lightmedseg env)"
    nnUNetv2_train 4 3d_fullres 0 -tr nnUNetTrainer_LightMedSeg

Without it nnU-Net stops with ``RuntimeError: Could not find requested nnunet trainer
nnUNetTrainer_LightMedSeg ...``; the fix is the line above, or, once for the whole environment (every shell,
job and container, robust to moving this package), ``lightmedseg install-trainers``.
Deliberately imports neither torch nor nnU-Net (runs in milliseconds) and never sets variables itself.
"""
from __future__ import annotations

import argparse
import os
import shlex

from ..utils.nnunet_env import ENV_VAR, ext_trainer_value, trainers_folder


HELP = "print `export nnUNet_extTrainer=...` so nnU-Net finds the LightMedSeg trainers"
DESCRIPTION = """\
Print the shell line that makes nnU-Net (nnUNetv2_train/_predict) find the LightMedSeg trainers in this shell. Use:
eval "$(lightmedseg env)". An existing nnUNet_extTrainer value is kept and the trainers folder appended. For every
shell, job and container of this Python environment at once: lightmedseg install-trainers.
"""


def export_line(current: str | None = None) -> str:
    return f"export {ENV_VAR}={shlex.quote(ext_trainer_value(current))}"


def run(args: argparse.Namespace) -> int:
    if args.folder:
        print(trainers_folder())
    else:
        print(export_line(os.environ.get(ENV_VAR)))
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("env", help=HELP, description=DESCRIPTION)
    p.add_argument("--folder", action="store_true", help="print only the trainers folder")
    p.set_defaults(func=run)
