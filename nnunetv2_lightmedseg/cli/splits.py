"""``lightmedseg splits -d ID --group-by REGEX``: write nnU-Net's splits_final.json with grouped folds.

See :mod:`nnunetv2_lightmedseg.data.splits`. For ACDC: ``lightmedseg splits -d 27 --group-by '^(patient\\d+)_frame'``.
"""
from __future__ import annotations

import argparse

from ..data.splits import ACDC_PATTERN, NNUNET_FOLDS, NNUNET_SEED


def run(args: argparse.Namespace) -> int:
    from ..data.splits import write_grouped_splits

    res = write_grouped_splits(args.d, args.group_by, args.folds, args.seed, args.output, args.overwrite)
    state = "wrote" if res["changed"] else "unchanged (it already holds this split):"
    print(f"{state} {res['path']}: {len(res['splits'])} folds over {res['groups']} groups "
          f"(--group-by {args.group_by!r}, seed {args.seed})")
    for i, fold in enumerate(res["splits"]):
        print(f"  fold {i}: {len(fold['train'])} training / {len(fold['val'])} validation cases")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "splits", help="write nnU-Net's splits_final.json with cases grouped by a pattern (e.g. patients)",
        description="Writes nnU-Net's splits_final.json (in nnUNet_preprocessed/DatasetXXX, where nnUNetv2_train "
                    "reads it) with nnU-Net's seeded 5-fold KFold run over groups of cases instead of cases, so "
                    "that no group (a patient's frames or visits) spans training and validation. The group of a "
                    "case is the first capture group of --group-by (or its whole match). An existing different "
                    f"split is kept unless --overwrite. ACDC: --group-by '{ACDC_PATTERN}'.")
    p.add_argument("-d", required=True, help="dataset ID or name (e.g. 27 or Dataset027_ACDC)")
    p.add_argument("--group-by", required=True, metavar="REGEX",
                   help="regular expression on the case identifier whose first group (or match) names the group")
    p.add_argument("--folds", type=int, default=NNUNET_FOLDS, help="number of folds (default %(default)s)")
    p.add_argument("--seed", type=int, default=NNUNET_SEED, help="KFold seed (default nnU-Net's, %(default)s)")
    p.add_argument("-o", "--output", default=None, help="write here instead of nnU-Net's splits_final.json")
    p.add_argument("--overwrite", action="store_true", help="replace an existing, different split file")
    p.set_defaults(func=run)
