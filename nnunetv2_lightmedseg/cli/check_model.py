"""``lightmedseg check-model PATH``: whether nnU-Net can load a model without running code from it
(see :mod:`nnunetv2_lightmedseg.deploy.check_model`)."""
from __future__ import annotations

import argparse

HELP = "check a model folder, checkpoint or nnU-Net model zip for code that loading it would run"


def run(args: argparse.Namespace) -> int:
    from ..deploy.check_model import UnsafeModelError, check_model

    report = check_model(args.path)
    for line in report["ok"]:
        print(f"ok      {line}")
    if report["unsafe"]:
        raise UnsafeModelError(f"{args.path} is NOT safe to load with nnU-Net (do not install or predict with it): "
                               + "; ".join(report["unsafe"]))
    print(f"safe: nnU-Net can load {args.path} without running code from it "
          f"({len(report['ok'])} file(s) checked)")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "check-model", help=HELP,
        description="Reads every checkpoint (.pth) and pickle (postprocessing.pkl) of a model folder, a checkpoint "
                    "or a zip from nnUNetv2_export_model_to_zip without executing them, and says whether nnU-Net "
                    "(which unpickles them without the weights-only restriction) can load them safely. Run it on a model from "
                    "someone else before nnUNetv2_install_pretrained_model_from_zip or nnUNetv2_predict. Exit 0: "
                    "safe; exit 2: not safe (the reason is printed).")
    p.add_argument("path", help="model folder (TRAINER__PLANS__CONFIG), checkpoint .pth, or nnU-Net model .zip")
    p.set_defaults(func=run)
