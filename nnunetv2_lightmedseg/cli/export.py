"""``lightmedseg export``: a trained nnU-Net LightMedSeg checkpoint -> ONNX / TorchScript + inference JSON.

See :mod:`nnunetv2_lightmedseg.deploy.export` for how dynamic sizes are kept and why the legacy ONNX exporter
is used. ``--benchmark`` also times the exported model against PyTorch on the CPU; without ``-d`` it does so for
a freshly built (untrained) LightMedSeg, since latency does not depend on the weights.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

from .options import add_model, add_shape


HELP = ("export a trained model to ONNX/TorchScript (dynamic batch and spatial sizes) + metadata "
        "JSON; --benchmark times it against PyTorch")
DESCRIPTION = """\
Load a trained model as nnUNetv2_predict does (nnUNetPredictor), export its network with dynamic batch and spatial
sizes, write <output>.json with what inference needs (patch size, spacing, normalisation, labels/regions,
sigmoid/softmax, the network configuration, ...) and check parity: the exported model and PyTorch are run on the
same random input at the export size and at another size; the command fails if the max abs difference exceeds
--tolerance. With --benchmark the exported model and PyTorch are also timed on the CPU (interleaved, median of
--repeats runs after one warm-up); --benchmark without -d does this for an untrained LightMedSeg(--in-channels,
--num-classes) exported to a temporary ONNX file.
"""


def add_parser(subparsers) -> None:
    from ..deploy.export import DEFAULT_OPSET

    p = subparsers.add_parser("export", help=HELP, description=DESCRIPTION)
    add_model(p, dataset_required=False)
    p.add_argument("-o", dest="output", type=Path, default=None,
                   help="output model file (model.onnx / model.pt); required with -d")
    p.add_argument("--format", choices=("onnx", "torchscript"), default=None,
                   help="default: from the output suffix (.onnx -> onnx, else torchscript)")
    p.add_argument("--opset", type=int, default=None, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="max abs logit difference allowed (default %(default)g)")
    p.add_argument("--benchmark", action="store_true",
                   help="also time the exported model against PyTorch on the CPU at --shape (without -d: an "
                        "untrained network, no files written except --json)")
    add_shape(p, (128, 128, 128), "spatial size of the --benchmark input")
    p.add_argument("--benchmark-size", type=int, default=None, help=argparse.SUPPRESS)  # old spelling: N -> N N N
    p.add_argument("--threads", type=int, default=2, help="CPU threads of both runtimes (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per runtime (default %(default)s)")
    p.add_argument("--in-channels", type=int, default=4,
                   help="--benchmark without -d: input channels of the untrained network (default %(default)s)")
    p.add_argument("--num-classes", type=int, default=4,
                   help="--benchmark without -d: output classes of the untrained network (default %(default)s)")
    p.add_argument("--json", type=Path, default=None,
                   help="--benchmark without -d: write the figures as JSON (with -d they go into <output>.json)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (the model, its .json, --json); without it nothing that "
                        "exists is touched")
    p.add_argument("--bundle", action="store_true",
                   help="write a bundle folder -o DIR (ONNX network of each fold of -f, which takes several folds "
                        "here, and bundle.json) that lightmedseg-run segments images with, without PyTorch or "
                        "nnU-Net (docs/deployment.md)")
    p.add_argument("--no_postprocessing", action="store_true",
                   help="--bundle: leave out the model folder's postprocessing.pkl (used when present)")
    for action in p._actions:  # -f: several folds for --bundle (one without it, checked in run)
        if action.dest == "fold":
            action.nargs = "+"
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    print(f"lightmedseg export: {msg}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.bundle:
        from ..deploy.bundle import run_cli
        return run_cli(args)
    if isinstance(args.fold, list):
        if len(args.fold) > 1:
            return _fail("-f takes one fold without --bundle")
        args.fold = args.fold[0]
    if args.benchmark_size:
        args.shape = [args.benchmark_size] * 3
    if min(args.shape) < 16:
        return _fail(f"--shape must be at least 16 voxels per axis (LightMedSeg's divisor), got {args.shape}")
    if args.dataset is None:
        if not args.benchmark:
            return _fail("-d is required (the trained model to export); without -d only --benchmark runs, on an "
                         "untrained network")
        return benchmark_untrained(args)
    if args.output is None:
        return _fail("-o is required with -d (the model file to write, e.g. model.onnx)")
    return export(args)


def export(args: argparse.Namespace) -> int:
    from ..deploy.export import DEFAULT_OPSET, ExportedRunner, benchmark_latency, export_trained_model, metadata_path
    from ..deploy.loading import load_predictor
    from ..utils.files import atomic_write_text, refuse_existing

    fmt = args.format or ("onnx" if args.output.suffix.lower() == ".onnx" else "torchscript")
    if args.output.suffix.lower() == ".json":
        return _fail("-o must be the model file (e.g. model.onnx); the JSON is written next to it")
    if args.output.is_dir():
        return _fail(f"-o {args.output} is a folder: give the model file to write, e.g. {args.output / 'model.onnx'}")
    if not args.output.parent.resolve().is_dir():
        return _fail(f"-o {args.output}: the folder {args.output.parent} does not exist; create it first")
    if args.opset is not None and fmt != "onnx":
        return _fail("--opset applies to ONNX only")
    refuse_existing([args.output, metadata_path(args.output)], args.overwrite)
    opset = args.opset or DEFAULT_OPSET
    predictor = load_predictor(args.dataset, args.configuration, args.fold, args.trainer, args.plans,
                               args.checkpoint)
    meta = export_trained_model(predictor, args.output, fmt=fmt, opset=opset,
                                tolerance=args.tolerance, fold=args.fold, checkpoint=args.checkpoint,
                                plans_name=args.plans, configuration=args.configuration)
    print(f"exported {fmt} model: {args.output}")
    print(f"inference metadata:   {metadata_path(args.output)}")
    for c in meta["parity"]["checks"]:
        print(f"parity {tuple(c['input_shape'])}: max |exported - PyTorch| = {c['max_abs_diff']:.3g} "
              f"(logits up to {c['max_abs_logit']:.3g}; tolerance {meta['parity']['tolerance']:g})")
    if args.benchmark:
        shape = (1, meta["num_input_channels"], *args.shape)
        res = benchmark_latency(predictor.network, ExportedRunner(args.output, fmt, threads=args.threads), shape,
                                threads=args.threads, repeats=args.repeats)
        print(f"CPU latency {shape}, {args.threads} threads (median of {args.repeats}): PyTorch "
              f"{res['pytorch_s'] * 1000:.0f} ms, {'onnxruntime' if fmt == 'onnx' else 'TorchScript'} "
              f"{res['exported_s'] * 1000:.0f} ms")
        meta["benchmark"] = {"shape": list(shape), "threads": args.threads, "repeats": args.repeats, **res}
        atomic_write_text(str(metadata_path(args.output)), json.dumps(meta, indent=2))
    return 0


def benchmark_untrained(args: argparse.Namespace) -> int:
    """onnxruntime vs PyTorch CPU latency of a freshly built LightMedSeg (what deploy/bench_export.py did).

    The ONNX model is exported at 64^3 on purpose: it is size-agnostic (see deploy.export), and timing it at
    --shape shows that too; the parity at the timed size is reported."""
    import torch

    from ..deploy.export import ExportError, ExportedRunner, benchmark_latency, check_parity, export_onnx, \
        require_onnx
    from ..network import LightMedSeg
    from ..utils.files import atomic_write_text, refuse_existing

    if args.in_channels < 1 or args.num_classes < 1:
        return _fail("--in-channels and --num-classes must be >= 1")
    if args.json:
        refuse_existing([args.json], args.overwrite)
    try:
        onnxruntime = require_onnx()
    except ExportError as e:
        return _fail(str(e))
    torch.manual_seed(0)
    net = LightMedSeg(args.in_channels, args.num_classes).eval()
    shape = (1, args.in_channels, *args.shape)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "lightmedseg.onnx"
        export_onnx(net, torch.randn(1, args.in_channels, 64, 64, 64), path)
        runner = ExportedRunner(path, "onnx", threads=args.threads)
        parity = check_parity(net, runner, args.in_channels, [shape[2:]], batch_sizes=(1,))[0]
        res = benchmark_latency(net, runner, shape, threads=args.threads, repeats=args.repeats)
    out = {"shape": list(shape), "threads": args.threads, "repeats": args.repeats,
           "pytorch_ms": res["pytorch_s"] * 1e3, "onnxruntime_ms": res["exported_s"] * 1e3,
           "max_abs_diff": parity["max_abs_diff"], "torch": torch.__version__,
           "onnxruntime": onnxruntime.__version__, "cpu": platform.processor() or platform.machine()}
    print(f"LightMedSeg({args.in_channels}, {args.num_classes}) untrained, input {shape}, {args.threads} threads, "
          f"median of {args.repeats}: PyTorch {out['pytorch_ms']:.0f} ms | onnxruntime {out['onnxruntime_ms']:.0f} "
          f"ms | max |diff| {out['max_abs_diff']:.2g}")
    if args.json:
        atomic_write_text(str(args.json), json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0
