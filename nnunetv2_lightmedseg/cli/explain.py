"""``lightmedseg explain``: figures of LightMedSeg's internals for one case (see :mod:`nnunetv2_lightmedseg.deploy.explain`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_model


HELP = "PNGs of anchors, LSPM maps, skip-router and decoder-path weights, and the prediction"
DESCRIPTION = """\
Run LightMedSeg's forward_with_intermediates on one case and write PNGs: the learned anchors on three orthogonal
slices, the LSPM texture and gating maps, the per-voxel skip-router weights, the decoder's three-path blending
weights and the prediction. With -d/-c/-f/-tr the trained model is loaded as nnUNetv2_predict does and the case is
preprocessed like it; without -d an untrained LightMedSeg is used (demo of the figures), on -i or on a generated
phantom.
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("explain", help=HELP, description=DESCRIPTION)
    add_model(p, dataset_required=False)  # -d omitted: an untrained network (demo of the figures)
    p.add_argument("-i", dest="images", nargs="+", default=None,
                   help="the case's image file(s): CASE_0000.nii.gz (other channels CASE_0001... are found) or all "
                        "channel files; omit (demo only) for a generated phantom")
    p.add_argument("-o", dest="output", required=True, type=Path, help="output folder for the PNGs")
    p.add_argument("--num-classes", type=int, default=3,
                   help="without -d: output classes of the untrained network (default %(default)s)")
    p.add_argument("--seed", type=int, default=0,
                   help="without -d: initialisation and phantom seed (default %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the figures of an earlier run of the same case in -o (kept otherwise)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..deploy.loading import load_predictor
    from ..deploy.explain import ExplainError, explain_trained, explain_untrained

    if args.output.exists() and not args.output.is_dir():
        raise ExplainError(f"-o {args.output} is a file: give a folder for the PNGs (it is created if missing)")
    if args.dataset is not None:
        if not args.images:
            raise ExplainError("-i CASE_0000.nii.gz is required with a trained model (-d)")
        predictor = load_predictor(args.dataset, args.configuration, args.fold, args.trainer, args.plans,
                                   args.checkpoint)
        summary = explain_trained(predictor, args.images, args.output, overwrite=args.overwrite)
    else:
        summary = explain_untrained(args.images, args.output, num_classes=args.num_classes, seed=args.seed,
                                    overwrite=args.overwrite)
    print(f"explained {summary['case']} (network input {tuple(summary['input_shape'])}, slices d/h/w = "
          f"{summary['slices']}):")
    for name, path in summary["files"].items():
        print(f"  {name:14s} {path}")
    return 0
