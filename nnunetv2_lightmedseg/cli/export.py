"""``lightmedseg export``: a trained nnU-Net LightMedSeg checkpoint -> ONNX / TorchScript + inference JSON.

See :mod:`nnunetv2_lightmedseg.deploy.export` for how dynamic sizes are kept and why the legacy ONNX exporter
is used.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a trained model to ONNX/TorchScript (dynamic batch and spatial sizes) + metadata JSON",
        description="Load a trained model as nnUNetv2_predict does (nnUNetPredictor), export its network with "
                    "dynamic batch and spatial sizes, write <output>.json with what inference needs (patch size, "
                    "spacing, normalisation, labels/regions, sigmoid/softmax, ...) and check parity: the exported "
                    "model and PyTorch are run on the same random input at the export size and at another size; "
                    "the command fails if the max abs difference exceeds --tolerance.")
    p.add_argument("-d", dest="dataset", required=True, help="dataset name or ID")
    p.add_argument("-c", dest="configuration", required=True, help="configuration, e.g. 3d_fullres")
    p.add_argument("-f", dest="fold", required=True, help="fold (0-4 or 'all')")
    p.add_argument("-tr", dest="trainer", default="nnUNetTrainer_LightMedSeg", help="trainer class name")
    p.add_argument("-p", dest="plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    p.add_argument("--checkpoint", default="checkpoint_final.pth", help="checkpoint file in the fold folder")
    p.add_argument("-o", dest="output", required=True, type=Path, help="output model file (model.onnx / model.pt)")
    p.add_argument("--format", choices=("onnx", "torchscript"), default=None,
                   help="default: from the output suffix (.onnx -> onnx, else torchscript)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--tolerance", type=float, default=1e-3, help="max abs logit difference allowed (default 1e-3)")
    p.add_argument("--benchmark", action="store_true",
                   help="also time the exported model vs PyTorch (CPU, --threads threads) on --benchmark-size^3")
    p.add_argument("--benchmark-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..deploy.export import (DEFAULT_OPSET, ExportError, ExportedRunner, benchmark_latency, export_trained_model,
                                 metadata_path)
    from ..deploy.loading import ModelLoadError, load_predictor

    fmt = args.format or ("onnx" if args.output.suffix.lower() == ".onnx" else "torchscript")
    if args.output.suffix.lower() == ".json":
        print("lightmedseg export: -o must be the model file (e.g. model.onnx); the JSON is written next to it",
              file=sys.stderr)
        return 2
    if args.opset is not None and fmt != "onnx":
        print("lightmedseg export: --opset applies to ONNX only", file=sys.stderr)
        return 2
    opset = args.opset or DEFAULT_OPSET
    try:
        predictor = load_predictor(args.dataset, args.configuration, args.fold, args.trainer, args.plans,
                                   args.checkpoint)
        meta = export_trained_model(predictor, args.output, fmt=fmt, opset=opset,
                                    tolerance=args.tolerance, fold=args.fold, checkpoint=args.checkpoint,
                                    plans_name=args.plans, configuration=args.configuration)
    except (ModelLoadError, ExportError) as e:
        print(f"lightmedseg export: {e}", file=sys.stderr)
        return 1
    print(f"exported {fmt} model: {args.output}")
    print(f"inference metadata:   {metadata_path(args.output)}")
    for c in meta["parity"]["checks"]:
        print(f"parity {tuple(c['input_shape'])}: max |exported - PyTorch| = {c['max_abs_diff']:.3g} "
              f"(logits up to {c['max_abs_logit']:.3g}; tolerance {meta['parity']['tolerance']:g})")
    if args.benchmark:
        n = args.benchmark_size
        shape = (1, meta["num_input_channels"], n, n, n)
        res = benchmark_latency(predictor.network, ExportedRunner(args.output, fmt, threads=args.threads), shape,
                                threads=args.threads)
        print(f"CPU latency {shape}, {args.threads} threads (median of 3): PyTorch {res['pytorch_s'] * 1000:.0f} ms, "
              f"{'onnxruntime' if fmt == 'onnx' else 'TorchScript'} {res['exported_s'] * 1000:.0f} ms")
        meta["benchmark"] = {"shape": list(shape), "threads": args.threads, **res}
        metadata_path(args.output).write_text(json.dumps(meta, indent=2))
    return 0
