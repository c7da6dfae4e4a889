"""``lightmedseg plans -d ID``: add the LightMedSeg configurations to a preprocessed dataset's plans.

See :mod:`nnunetv2_lightmedseg.plans` and ``plans_overrides/README.md``. Then train with
``nnUNetv2_train ID 3d_fullres_lightmedseg 0 -tr nnUNetTrainer_LightMedSeg`` (or ``3d_fullres_lightmedseg_planned``).
"""
from __future__ import annotations

import argparse
import json


def run(args: argparse.Namespace) -> int:
    from nnunetv2_lightmedseg.plans import PLANS_VARIANTS, write_plans_override

    variants = PLANS_VARIANTS if args.variant == "both" else (args.variant,)
    res = write_plans_override(args.d, args.p, variants)  # PlansOverrideError: one line, exit 2 (cli/main)
    if res["changed"]:
        print(f"Updated {res['plans_file']}" + (f" (the plans as they were before: {res['backup']})"
                                                 if res["backup"] else "") + ":")
    else:
        print(f"{res['plans_file']} already has these configurations (unchanged):")
    for name, cfg in res["configurations"].items():
        print(f"  {name}: {json.dumps(cfg)}")
    p_opt = "" if args.p == "nnUNetPlans" else f" -p {args.p}"
    print(f"Median image shape {res['median_shape']}: recommended configuration {res['recommended']}"
          + ("" if res["recommended"] in res["configurations"] else " (not written: add --variant "
             + ("planned" if res["recommended"].endswith("planned") else "paper") + ")"))
    print(f"Train with: nnUNetv2_train {args.d} {res['recommended']} 0 -tr nnUNetTrainer_LightMedSeg{p_opt}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "plans", help="add LightMedSeg configurations (paper 128^3/batch 8, or the planned patch rounded up to the "
                      "network's per-axis divisor) "
                      "to a preprocessed dataset's plans",
        description="Adds 3d_fullres_lightmedseg (128^3 patch, batch 8: the paper) and/or "
                    "3d_fullres_lightmedseg_planned (nnU-Net's planned patch rounded up, per axis, to a multiple of the "
                    "network's divisor for these plans (16 on isotropic plans), planned batch size) to the plans file of an already preprocessed dataset, inheriting from 3d_fullres "
                    "(same preprocessed data: nothing is re-preprocessed). Use with nnUNetv2_train -c <name>.")
    p.add_argument("-d", required=True, help="dataset ID or name (e.g. 4 or Dataset004_Hippocampus)")
    p.add_argument("-p", default="nnUNetPlans", help="plans identifier to extend (default %(default)s)")
    p.add_argument("--variant", choices=("paper", "planned", "both"), default="both",
                   help="which configuration(s) to write (default %(default)s)")
    p.set_defaults(func=run)
