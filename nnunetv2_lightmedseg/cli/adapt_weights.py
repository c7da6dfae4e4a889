"""``lightmedseg adapt-weights CKPT -d TARGET -c CONFIG -o NEW.pth``: fine-tuning across resolution schedules
(see :mod:`nnunetv2_lightmedseg.deploy.adapt_weights`)."""
from __future__ import annotations

import argparse

HELP = "fit a LightMedSeg checkpoint to another dataset's resolution schedule for -pretrained_weights"


def run(args: argparse.Namespace) -> int:
    from ..deploy.adapt_weights import adapt_weights

    res = adapt_weights(args.checkpoint, args.d, args.c, args.output, args.p, args.tr, args.overwrite)
    print(f"wrote {res['output']}: {res['copied']} weights copied, {len(res['resampled'])} resampled for the "
          f"target's strides" + "".join(f"\n  {r}" for r in res["resampled"]))
    print(f"fine-tune with: nnUNetv2_train {args.d} {args.c} FOLD -tr {args.tr}"
          + ("" if args.p == "nnUNetPlans" else f" -p {args.p}") + f" -pretrained_weights {res['output']}")
    return 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "adapt-weights", help=HELP,
        description="Writes a checkpoint whose weights fit the LightMedSeg network that nnUNetv2_train builds for "
                    "-d/-c/-p (e.g. thick-slice ACDC plans), from a checkpoint trained on plans with another "
                    "resolution schedule (e.g. isotropic hippocampus): the decoder's transposed-convolution "
                    "kernels are resampled along the axes whose stride changed, every other weight is copied, the "
                    "output layers are left to nnU-Net's loader. Then: nnUNetv2_train ... -pretrained_weights NEW.")
    p.add_argument("checkpoint", help="the pretrained checkpoint (.pth), e.g. .../fold_0/checkpoint_final.pth")
    p.add_argument("-d", required=True, help="target dataset ID or name")
    p.add_argument("-c", required=True, help="target configuration, e.g. 3d_fullres")
    p.add_argument("-p", default="nnUNetPlans", help="target plans identifier (default %(default)s)")
    p.add_argument("-tr", default="nnUNetTrainer_LightMedSeg",
                   help="the trainer you will fine-tune with (same variant as for pretraining; default %(default)s)")
    p.add_argument("-o", dest="output", required=True, help="the checkpoint to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    p.set_defaults(func=run)
