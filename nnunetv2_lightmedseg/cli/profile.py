"""``lightmedseg profile``: the model card of a LightMedSeg configuration.

Parameters per paper component (``LightMedSeg.parameter_breakdown()``) with the MACs each component executes,
total MACs/FLOPs, CPU forward latency and peak memory at an input shape (default 1x4x128^3), CUDA latency when a
GPU exists. ``--vs-nnunet`` measures stock nnU-Net's network for the same input in the same run, interleaved, and
prints the speed ratio. All measurement code lives in :mod:`nnunetv2_lightmedseg.benchmark` (shared with
``lightmedseg benchmark``).

Example::

    lightmedseg profile --vs-nnunet --threads 2            # 1x4x128^3, 4 classes
    lightmedseg profile --in-channels 1 --num-classes 3 --shape 40 56 40 --variant standard --json card.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

from ..benchmark.entries import MEASURABLE_VARIANTS, parse_variants
from ..benchmark.load import load_average
from ..network.variants import ANCHORS_PREFIX, DEFAULT
from ..utils.tables import table_lines
from .options import add_shape, plain


def busy_note(load: Sequence[float], cores: int) -> Optional[str]:
    """What to say when the machine is busy (1-minute load average of at least half the cores): the latency
    figures are slowed by the other work, and how to measure or run at a better thread count."""
    if not load or load[0] < cores / 2:
        return None
    return (f"the machine is busy (load average {load[0]:.1f} on {cores} cores): the latencies above are slowed by "
            f"the other work, most at a fixed thread count. `lightmedseg benchmark network --tune-threads` measures "
            f"each network at the thread count it is fastest with; training and prediction choose theirs the same "
            f"way (LIGHTMEDSEG_CPU_THREADS=N fixes it).")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "profile", help="model card: params per module, MACs/FLOPs, CPU latency, peak memory (vs stock nnU-Net)",
        description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--in-channels", type=int, default=4, help="input modalities (default %(default)s)")
    p.add_argument("--num-classes", type=int, default=4,
                   help="output classes incl. background (default %(default)s)")
    add_shape(p, (128, 128, 128), "spatial input size")
    p.add_argument("--batch", type=int, default=1, help="batch size of the measured forward (default %(default)s)")
    p.add_argument("--variant", default=DEFAULT.name,
                   help=f"LightMedSeg configuration: {', '.join(MEASURABLE_VARIANTS)}, {ANCHORS_PREFIX}N; 'ghost' = the default "
                        f"(default %(default)s)")
    p.add_argument("--threads", type=int, default=2,
                   help="CPU threads (torch.set_num_threads; default %(default)s)")
    p.add_argument("--runs", type=int, default=5, help="timed forwards per model after warm-up (default %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up forwards per model (default %(default)s)")
    p.add_argument("--vs-nnunet", action="store_true",
                   help="also measure stock nnU-Net's PlainConvUNet for the same input (interleaved) and print "
                        "the speed ratio")
    p.add_argument("--stock-channels-last", action="store_true",
                   help="with --vs-nnunet: also time the stock network in channels_last_3d (nnU-Net itself does "
                        "not convert; labelled separately)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--json", metavar="FILE", help="write the model card and the measured rows as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..benchmark.measure import FLOP_CONVENTION, component_flops, count_flops, lightmedseg_components
    from ..benchmark.default_plans import plans_for_shape
    from ..benchmark.entries import default_entries, lightmedseg_entry
    from ..benchmark.network import format_table, machine_info, run_network_benchmark

    from ..utils.files import atomic_write_text, refuse_existing

    if args.json:
        refuse_existing([args.json], args.overwrite)  # before the measurement, not after it
    variant = DEFAULT.name if args.variant in ("ghost", "default") else args.variant
    try:
        parse_variants(variant)
        for name, v in (("--in-channels", args.in_channels), ("--batch", args.batch), ("--threads", args.threads),
                        ("--runs", args.runs)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if args.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
        if min(args.shape) < 16:
            raise ValueError(f"LightMedSeg needs every spatial axis >= 16 voxels, got --shape {args.shape}")
        setup = plans_for_shape(args.in_channels, args.num_classes, args.shape, batch_size=args.batch,
                                strict=args.vs_nnunet)
    except ValueError as e:
        print(f"lightmedseg profile: {e}", file=sys.stderr)
        return 2

    entries = [e for e in default_entries([], args.stock_channels_last, include_stock=args.vs_nnunet)
               if e.kind == "stock"]
    lms = lightmedseg_entry(variant)
    entries.append(lms)

    # model card: per-module parameters and MACs of the LightMedSeg configuration
    model = lms.build(setup, train=False)
    shape = (args.batch, args.in_channels, *args.shape)
    total_flops, per_module = count_flops(model, shape)
    breakdown = model.parameter_breakdown()
    comp = component_flops(per_module, type(model).__name__, lightmedseg_components(model))
    n_params = sum(breakdown.values())
    print(f"LightMedSeg model card: {lms.name} ({lms.built_by}), config {model.config}")
    print(f"input {shape}\n")
    rows = [[k, f"{v:,}", f"{100 * v / n_params:.1f}%", f"{comp.get(k, 0) / 2e9:.3f}"] for k, v in breakdown.items()]
    rows.append(["(functional ops in forward)", "0", "0.0%", f"{comp['(other)'] / 2e9:.3f}"])
    rows.append(["total", f"{n_params:,}", "100.0%", f"{total_flops / 2e9:.3f}"])
    head = ["module", "params", "share", "GMACs"]
    print("\n".join(table_lines(head, rows, align="<>")))
    print(f"\nparameters: {n_params:,} ({n_params / 1e6:.3f}M)")
    print(f"MACs: {total_flops / 2e9:.3f} G    FLOPs: {total_flops / 1e9:.3f} G  (FLOPs = 2 x MACs)")
    print(f"  {FLOP_CONVENTION}\n")
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in getattr(model, "config", {}).items()}
    del model

    info = machine_info(args.threads)
    info["loadavg_before"] = load_average()
    load_text = " / ".join(f"{v:.2f}" for v in info["loadavg_before"]) or "n/a"
    print(f"measuring: {args.runs} interleaved run(s) after {args.warmup} warm-up, {args.threads} thread(s); "
          f"load average (1/5/15 min) {load_text} on {os.cpu_count()} cores ...", flush=True)
    measured = run_network_benchmark(setup, entries, runs=args.runs, threads=args.threads, warmup=args.warmup,
                                     forward_batch=args.batch, measure_train=False,
                                     measure_memory=not args.no_memory)
    print(format_table(measured, setup.source if args.vs_nnunet else f"input {shape}", info))
    me = next(r for r in measured if r["name"] == lms.name)
    sp = me["latency_spread"]
    print(f"\n{lms.name}: CPU forward {me['latency_s']:.3f} s median (IQR {sp['q25']:.3f}-{sp['q75']:.3f}, "
          f"min {sp['min']:.3f}, max {sp['max']:.3f}, n={sp['n']}), {args.threads} thread(s), fp32")
    if me.get("peak_mem_mb") is not None:
        print(f"{lms.name}: peak memory of the forward {me['peak_mem_mb']:.0f} MiB above the RSS before it "
              f"({me['peak_mem_method']})")
    if me.get("cuda_latency_s"):
        print(f"{lms.name}: CUDA forward {me['cuda_latency_s'] * 1e3:.2f} ms (fp16 autocast, "
              f"{me['cuda_device']}), max allocated {me['cuda_peak_mem_mb']:.0f} MiB")
    for r in measured:
        if r["kind"] == "stock" and r.get("latency_s"):
            print(f"speed ratio {r['name']} / {lms.name}: {r['latency_s'] / me['latency_s']:.1f}x "
                  f"({r['latency_s']:.3f} s vs {me['latency_s']:.3f} s, medians of interleaved runs)")
    info["loadavg_after"] = load_average()
    note = busy_note(info["loadavg_after"] or info["loadavg_before"], os.cpu_count() or 1)
    if note:
        print(f"\nnote: {note}")
    if args.json:
        card = {"name": lms.name, "built_by": lms.built_by, "config": config,
                "input_shape": list(shape), "params": n_params, "params_per_module": breakdown,
                "macs_per_module": {k: v // 2 for k, v in comp.items()}, "macs": total_flops // 2,
                "flops": total_flops, "flop_convention": FLOP_CONVENTION}
        atomic_write_text(args.json, json.dumps({"model_card": card, "rows": measured, "machine": info}, indent=2))
        print(f"wrote {args.json}")
    return 0
