"""Command-line conventions shared by every ``lightmedseg`` subcommand (one place for each).

* nnU-Net's spellings first (what nnU-Net users type): ``-chk``, ``-device``, ``--disable_tta``; the long forms
  used before (``--checkpoint``, ``--device``, ``--disable-tta``) stay accepted as aliases.
* ``--shape X Y Z`` is always the spatial size; the channel count is ``--in-channels``.
* Help texts are plain text: :func:`plain` turns the reST of docstrings (double backticks, ``:mod:`` roles)
  into what a terminal should show.
"""
from __future__ import annotations

import argparse
import re
from typing import Sequence

DEFAULT_CHECKPOINT = "checkpoint_final.pth"


def plain(text: str) -> str:
    """reST -> plain text: ``:role:`x``` -> x, ````x```` -> x, a trailing ``::`` -> ``:``."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"::$", ":", text, flags=re.M)


def add_checkpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument("-chk", "--checkpoint", dest="checkpoint", default=DEFAULT_CHECKPOINT,
                   help="checkpoint file in the fold folder, as nnUNetv2_predict -chk (default %(default)s)")


def add_device(p: argparse.ArgumentParser, default: str = "cpu", what: str = "prediction") -> None:
    p.add_argument("-device", "--device", dest="device", default=default, choices=("cpu", "cuda", "mps"),
                   help=f"device for {what}, as nnU-Net's -device (default %(default)s)")


def add_disable_tta(p: argparse.ArgumentParser, what: str = "prediction") -> None:
    p.add_argument("--disable_tta", "--disable-tta", dest="disable_tta", action="store_true",
                   help=f"{what} without test-time mirroring, as nnUNetv2_predict --disable_tta (8x less work in 3D)")


def add_model(p: argparse.ArgumentParser, dataset_required: bool = True) -> None:
    """``-d -c -f -tr -p -chk``: a trained model folder, as nnUNetv2_predict names it."""
    p.add_argument("-d", dest="dataset", required=dataset_required, default=None, help="dataset name or ID")
    p.add_argument("-c", dest="configuration", default="3d_fullres", help="configuration (default %(default)s)")
    p.add_argument("-f", dest="fold", default="0", help="fold: 0-4 or 'all' (default %(default)s)")
    p.add_argument("-tr", dest="trainer", default="nnUNetTrainer_LightMedSeg",
                   help="trainer class name (default %(default)s)")
    p.add_argument("-p", dest="plans", default="nnUNetPlans", help="plans identifier (default %(default)s)")
    add_checkpoint(p)


def add_shape(p: argparse.ArgumentParser, default: Sequence[int] | None, help: str, dest: str = "shape") -> None:
    """``--shape X Y Z``: a spatial size (channels are ``--in-channels``)."""
    p.add_argument("--shape", dest=dest, type=int, nargs=3, metavar=("X", "Y", "Z"),
                   default=list(default) if default is not None else None,
                   help=help + (f" (default {' '.join(map(str, default))})" if default is not None else ""))
