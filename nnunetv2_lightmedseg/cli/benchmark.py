"""``lightmedseg benchmark``: LightMedSeg against stock nnU-Net.

``benchmark network``: both networks built from the same nnU-Net plans (stock exactly as ``nnUNetTrainer`` builds
it, LightMedSeg as ``nnUNetTrainer_LightMedSeg`` does, plus variants), measured in one run, interleaved: params,
MACs/FLOPs, forward latency, nnU-Net train-step time at the planned batch and patch, peak memory.

``benchmark predict``: two trained models (``-tr`` twice) timed with nnU-Net's own predictor on the same cases
(preprocessing, sliding window with and without test-time mirroring, export), interleaved case by case: seconds
per case, cases per minute and the speed-up, the figure a CPU user of ``nnUNetv2_predict`` feels.

``benchmark results``: two trained result folders (``TRAINER__PLANS__CONFIG``) compared on nnU-Net's own
validation (``fold_X/validation/summary.json``): Dice per label, per fold and overall, paired per-case differences
(bootstrap CI, Wilcoxon, sign test), wall time per epoch from the training logs; optionally both predicted on a
labelled test folder with nnU-Net's predictor and evaluated with nnU-Net's metrics.

``benchmark curves``: learning curves from nnU-Net's own artifacts of any number of fold folders (``debug.json``,
``training_log_*.txt``, ``validation/summary.json``): final validation Dice and per-epoch pseudo Dice against
training iterations and training hours, LightMedSeg and stock nnU-Net side by side (table, ``--json``, ``--plot``);
``--archive DIR`` copies just those small files in nnU-Net's layout so the figure can be regenerated anywhere.

Examples::

    lightmedseg benchmark network --in-channels 4 --shape 128 128 128 --json bench.json --plot bench.png
    lightmedseg benchmark network -d 4 -c 3d_fullres --variants standard,no_lspm
    lightmedseg benchmark predict -d 4 -c 3d_fullres -tr nnUNetTrainer -tr nnUNetTrainer_LightMedSeg --val-fold 0
    lightmedseg benchmark results -d 4 -c 3d_fullres -tr nnUNetTrainer_CPUBench_4x50 \\
        -tr nnUNetTrainer_LightMedSeg_CPUBench_4x50 --folds 0 --json cmp.json --plot cmp.png
    lightmedseg benchmark curves $nnUNet_results/Dataset004_Hippocampus --plot curves.png --json curves.json \
        --archive docs/runs
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from ..benchmark.entries import MEASURABLE_VARIANTS
from ..network.variants import ANCHORS_PREFIX, DEFAULT
from .options import DEFAULT_CHECKPOINT, add_checkpoint, add_device, add_disable_tta, add_shape, plain

NETWORK_DESCRIPTION = """\
Both networks built from the same nnU-Net plans (a preprocessed dataset's with -d, or nnU-Net's default plans for
--shape), measured in one run, interleaved.
"""
PREDICT_DESCRIPTION = """\
Times nnU-Net's own predictor (preprocessing, sliding window with and without test-time mirroring, export) for
trained models on the same cases, interleaved case by case (ABBA), and reports seconds per case, cases per minute
and the speed-up over the first -tr. Typical use: lightmedseg benchmark predict -d 4 -c 3d_fullres -tr nnUNetTrainer
-tr nnUNetTrainer_LightMedSeg --val-fold 0
"""
RESULTS_DESCRIPTION = """\
Compares two trained models on nnU-Net's own validation (fold_X/validation/summary.json): Dice per label, per fold
and overall, paired per-case differences B - A with a paired-bootstrap 95%% CI, Wilcoxon and sign tests, and the
wall time per epoch from the training logs. Typical use: lightmedseg benchmark results -d ID -c 3d_fullres -tr
nnUNetTrainer -tr nnUNetTrainer_LightMedSeg
"""
CURVES_DESCRIPTION = """\
Learning curves of LightMedSeg and stock nnU-Net runs from nnU-Net's own artifacts (debug.json, training_log_*.txt,
validation/summary.json): one table row per run, --json, --plot (Dice vs iterations and vs hours), --archive.
"""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("benchmark",
                              help="benchmark LightMedSeg against stock nnU-Net (network, predict, results, curves)",
                              description=plain(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="benchmark_command", metavar="{network,predict,results,curves}")
    sub.required = True

    n = sub.add_parser("network", help="params, MACs, latency, train-step time, peak memory vs stock nnU-Net",
                       description=NETWORK_DESCRIPTION)
    src = n.add_mutually_exclusive_group(required=True)
    src.add_argument("-d", dest="dataset", help="dataset name or ID (preprocessed plans in nnUNet_preprocessed)")
    add_shape(src, None, "explicit spatial input size instead of -d (nnU-Net's default plans for that patch; "
                         "channels: --in-channels)")
    n.add_argument("--in-channels", type=int, default=4, help="with --shape: input channels (default %(default)s)")
    n.add_argument("-c", dest="configuration", default="3d_fullres", help="configuration (default %(default)s)")
    n.add_argument("-p", dest="plans", default="nnUNetPlans", help="plans identifier (default %(default)s)")
    n.add_argument("--num-classes", type=int, default=4,
                   help="with --shape: classes incl. background (default %(default)s)")
    n.add_argument("--batch", type=int, default=2, help="with --shape: training batch size (default %(default)s); "
                                                        "with -d the planned batch size is used")
    others = [v for v in MEASURABLE_VARIANTS if v != DEFAULT.name and not v.startswith(ANCHORS_PREFIX)]
    n.add_argument("--variants", default="", help="comma-separated LightMedSeg variants besides the default: "
                                                  + ",".join(others + [f"{ANCHORS_PREFIX}N"]))
    n.add_argument("--runs", type=int, default=5, help="timed forwards per model (default %(default)s)")
    n.add_argument("--train-runs", type=int, default=3, help="timed training steps per model (default %(default)s)")
    n.add_argument("--warmup", type=int, default=1, help="untimed warm-up forwards per model (default %(default)s)")
    n.add_argument("--threads", type=int, default=2, help="CPU threads (default %(default)s)")
    n.add_argument("--load", type=int, default=0, metavar="N",
                   help="synthetic CPU load: N busy processes run beside the measurement (default %(default)s; "
                        "2 on a 2-core machine is one other training's worth)")
    n.add_argument("--tune-threads", action="store_true",
                   help="time every network's forwards and training steps at the thread count each is fastest "
                        "with (up to --threads), chosen from timed calls as LightMedSeg's trainer and predictor "
                        "do on a CPU")
    n.add_argument("--no-train", action="store_true", help="skip the training-step measurements")
    n.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    n.add_argument("--stock-channels-last", action="store_true",
                   help="also measure stock in channels_last_3d (labelled; nnU-Net itself does not convert)")
    n.add_argument("--json", metavar="FILE", help="write the rows as a JSON list")
    n.add_argument("--plot", metavar="FILE.png", help="write a bar chart (PNG)")
    n.add_argument("--overwrite", action="store_true", help="replace existing --json/--plot files")
    n.set_defaults(func=run_network)

    pr = sub.add_parser("predict", help="cases per minute of nnU-Net's predictor for two trained models",
                        description=PREDICT_DESCRIPTION)
    pr.add_argument("-d", dest="dataset", required=True, help="dataset name or ID")
    pr.add_argument("-c", dest="configuration", default="3d_fullres", help="configuration (default %(default)s)")
    pr.add_argument("-tr", dest="trainers", action="append", default=[],
                    help="trainer, at least twice (the first is the reference of the speed-up)")
    pr.add_argument("-p", dest="plans", default="nnUNetPlans", help="plans identifier (default %(default)s)")
    pr.add_argument("-f", dest="fold", default="0", help="fold of the trained models: 0-4 or 'all' (default %(default)s)")
    add_checkpoint(pr)
    cases = pr.add_mutually_exclusive_group(required=True)
    cases.add_argument("-i", dest="input", help="folder of images to predict (nnU-Net naming CASE_XXXX.ending)")
    cases.add_argument("--val-fold", type=int, help="predict the raw images of this fold's validation cases "
                                                    "(splits_final.json)")
    pr.add_argument("--num-cases", type=int, help="only the first N cases (default: all)")
    pr.add_argument("--mirroring", default="on,off", choices=("on,off", "on", "off"),
                    help="test-time mirroring settings to time (default %(default)s)")
    pr.add_argument("--threads", type=int, default=2, help="CPU threads (default %(default)s)")
    pr.add_argument("--load", type=int, default=0, metavar="N",
                    help="synthetic CPU load: N busy processes run beside the measurement (default %(default)s)")
    pr.add_argument("--warmup", type=int, default=1, help="untimed warm-up cases per model (default %(default)s)")
    pr.add_argument("--json", metavar="FILE", help="write the rows and the run's settings as JSON")
    pr.add_argument("--overwrite", action="store_true", help="replace existing --json/--plot files")
    pr.set_defaults(func=run_predict)

    r = sub.add_parser("results", help="compare two trained nnU-Net result folders (Dice, epoch time)",
                       description=RESULTS_DESCRIPTION)
    r.add_argument("--a", help="results folder A (TRAINER__PLANS__CONFIG), e.g. stock")
    r.add_argument("--b", help="results folder B, e.g. LightMedSeg; differences are B - A")
    r.add_argument("-d", dest="dataset", help="dataset name or ID (with -c and two -tr instead of --a/--b)")
    r.add_argument("-c", dest="configuration", default="3d_fullres",
                   help="with -d: configuration of both models (default %(default)s)")
    r.add_argument("-p", dest="plans", default="nnUNetPlans",
                   help="with -d: plans identifier of both models (default %(default)s)")
    r.add_argument("-tr", dest="trainers", action="append", default=[], help="with -d: trainer, twice (A then B)")
    r.add_argument("--folds", nargs="+", help="folds to compare (default: all with a validation summary)")
    r.add_argument("--test-images", help="also predict this folder of images (nnU-Net naming) with both")
    r.add_argument("--test-labels", help="reference labels for --test-images")
    r.add_argument("--test-output", default="lightmedseg_benchmark_test",
                   help="where test predictions go, one subfolder per trainer (default ./%(default)s)")
    add_device(r, what="test prediction")
    add_disable_tta(r, what="test prediction")
    r.add_argument("-chk", "--checkpoint", dest="checkpoint", default=DEFAULT_CHECKPOINT,
                   help="checkpoint used for test prediction, as nnUNetv2_predict -chk (default %(default)s)")
    r.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples (default %(default)s)")
    r.add_argument("--seed", type=int, default=0, help="bootstrap seed (default %(default)s)")
    r.add_argument("--json", metavar="FILE", help="write the comparison as JSON")
    r.add_argument("--plot", metavar="FILE.png",
                   help="write a figure: Dice per label with B - A and its 95%% CI, and per-case Dice B against A")
    r.add_argument("--overwrite", action="store_true", help="replace existing --json/--plot files")
    r.set_defaults(func=run_results)

    from ..benchmark.curves import DEFAULT_REFERENCE, DEFAULT_REFERENCE_LABEL, DEFAULT_TITLE
    c = sub.add_parser("curves", help="learning curves: Dice vs iterations and vs hours from nnU-Net's logs",
                       description=CURVES_DESCRIPTION)
    c.add_argument("folders", nargs="+", metavar="FOLDER",
                   help="nnU-Net fold folder (.../TRAINER__PLANS__CONFIG/fold_X) or a folder containing such "
                        "folders (searched recursively for fold_* with a debug.json)")
    c.add_argument("--json", metavar="FILE", help="write every run (settings, per-epoch curve, final Dice) as JSON")
    c.add_argument("--plot", metavar="FILE.png", help="write the two-panel figure (PNG)")
    c.add_argument("--title", default=DEFAULT_TITLE, help="figure title (default %(default)r)")
    c.add_argument("--reference", type=float, action="append", default=None,
                   help=f"Dice of a reference line; repeat for several, each with its --reference-label (default "
                        f"{DEFAULT_REFERENCE})")
    c.add_argument("--reference-label", action="append", default=None,
                   help=f"its legend text (default {DEFAULT_REFERENCE_LABEL!r})")
    c.add_argument("--no-reference", action="store_true", help="no reference line")
    c.add_argument("--archive", metavar="DIR",
                   help="copy each run's debug.json, training_log_*.txt and validation/summary.json (nothing else) "
                        "to DIR/TRAINER__PLANS__CONFIG/fold_X/ (nnU-Net's layout)")
    c.add_argument("--overwrite", action="store_true",
                   help="replace existing --json/--plot files and, with --archive, existing different files")
    c.set_defaults(func=run_curves)


@contextlib.contextmanager
def _json_output(path: str):
    """An open text file whose content replaces ``path`` atomically when the block ends without error."""
    from ..utils.files import atomic_path
    with atomic_path(path, suffix=".json") as tmp, open(tmp, "w") as f:
        yield f


def _refuse_existing_outputs(args: argparse.Namespace) -> None:
    """Refuse (exit 2, one line) to replace an existing --json/--plot file without --overwrite, before any work."""
    from ..utils.files import refuse_existing
    refuse_existing([p for p in (getattr(args, "json", None), getattr(args, "plot", None)) if p],
                    getattr(args, "overwrite", False))


def _fail(msg: str) -> int:
    print(f"lightmedseg benchmark: {msg}", file=sys.stderr)
    return 2


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, float) and o != o:  # NaN -> null (strict JSON)
        return None
    return o


def run_network(args: argparse.Namespace) -> int:
    _refuse_existing_outputs(args)
    from ..benchmark.default_plans import plans_for_shape
    from ..benchmark.entries import default_entries, parse_variants
    from ..benchmark.load import background_load, load_average
    from ..benchmark.plans_setup import setup_from_dataset
    from ..benchmark.network import format_table, machine_info, plot_network_rows, run_network_benchmark

    try:
        variants = parse_variants(args.variants)
        for name in ("runs", "train_runs", "threads", "batch"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if args.load < 0:
            raise ValueError(f"--load must be >= 0 (number of busy processes), got {args.load}")
        if args.shape:
            setup = plans_for_shape(args.in_channels, args.num_classes, args.shape, batch_size=args.batch,
                                    configuration=args.configuration)
        else:
            setup = setup_from_dataset(args.dataset, args.configuration, args.plans)
        entries = default_entries(variants, args.stock_channels_last)
    except ValueError as e:
        return _fail(str(e))
    for path in (args.json, args.plot):
        if path and os.path.dirname(os.path.abspath(path)) and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            return _fail(f"output folder of {path} does not exist")

    info = machine_info(args.threads)
    print(f"set-up: {setup.source}; patch {setup.patch_size}, batch {setup.batch_size}, "
          f"{setup.num_input_channels} input channel(s), {setup.num_outputs} outputs"
          + (f"; synthetic load: {args.load} busy process(es)" if args.load else ""), flush=True)
    info["loadavg_before"] = load_average()
    with background_load(args.load):
        rows = run_network_benchmark(setup, entries, runs=args.runs, threads=args.threads, warmup=args.warmup,
                                     forward_batch=1, train_batch=setup.batch_size, train_runs=args.train_runs,
                                     measure_train=not args.no_train, measure_memory=not args.no_memory,
                                     tune_threads=args.tune_threads, progress=lambda s: print("  " + s, flush=True))
    info["loadavg_after"] = load_average()
    info["load_processes"] = args.load
    for r in rows:
        r["load_processes"], r["loadavg_before"], r["loadavg_after"] = (args.load, info["loadavg_before"],
                                                                        info["loadavg_after"])
    print()
    print(format_table(rows, setup.source, info))
    if info["loadavg_before"]:
        print(f"synthetic load: {args.load} busy process(es); load average (1 min) "
              f"{info['loadavg_before'][0]:.1f} before, {info['loadavg_after'][0]:.1f} after")
    if args.json:
        with _json_output(args.json) as f:
            json.dump(_jsonable(rows), f, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        plot_network_rows(rows, args.plot, f"{setup.source}\n{info['threads']} CPU thread(s), torch {info['torch']}")
        print(f"wrote {args.plot}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    _refuse_existing_outputs(args)
    from ..benchmark import predict as P
    from ..deploy.loading import ModelLoadError, model_folder

    try:
        if len(args.trainers) < 2:
            raise ValueError("give at least two -tr (the first is the reference), e.g. -tr nnUNetTrainer "
                             "-tr nnUNetTrainer_LightMedSeg")
        if len(set(args.trainers)) != len(args.trainers):
            raise ValueError(f"each -tr once, got {args.trainers}")
        for name in ("threads", "num_cases"):
            if getattr(args, name) is not None and getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
        if args.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {args.warmup}")
        if args.load < 0:
            raise ValueError(f"--load must be >= 0 (number of busy processes), got {args.load}")
        if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
            raise ValueError(f"output folder of {args.json} does not exist")
        from batchgenerators.utilities.file_and_folder_operations import load_json
        dataset_json = model_folder(args.dataset, args.configuration, args.trainers[0], args.plans) / "dataset.json"
        if not dataset_json.is_file():
            raise ValueError(f"no trained model at {dataset_json.parent}: train it first (nnUNetv2_train "
                             f"{args.dataset} {args.configuration} {args.fold} -tr {args.trainers[0]})")
        ending = load_json(str(dataset_json))["file_ending"]
        cases = (P.cases_from_folder(args.input, ending) if args.input
                 else P.validation_cases(args.dataset, args.val_fold, ending))
        cases = cases[:args.num_cases] if args.num_cases else cases
        mirroring = [m == "on" for m in args.mirroring.split(",")]
        print(f"{len(cases)} case(s); models: {', '.join(args.trainers)}; mirroring {args.mirroring}; "
              f"{args.threads} CPU thread(s)", flush=True)
        from ..benchmark.load import background_load
        with background_load(args.load):
            rows, info = P.run_prediction_benchmark(args.dataset, args.configuration, args.trainers, args.fold,
                                                    args.plans, args.checkpoint, cases, ending, mirroring,
                                                    args.threads, args.warmup,
                                                    progress=lambda s: print("  " + s, flush=True))
        info["load_processes"] = args.load
    except (ValueError, ModelLoadError) as e:  # anything else (a crash inside nnU-Net) keeps its traceback
        return _fail(str(e))
    source = args.input if args.input else f"fold-{args.val_fold} validation cases"
    header = (f"nnU-Net prediction, {args.dataset} {args.configuration} fold {args.fold}, {len(cases)} case(s) "
              f"({source}); CPU, {info['threads']} thread(s), torch {info['torch']}, CPU allocator tuning "
              f"{info['cpu_allocator']} (both models, one process); "
              + (f"synthetic load {args.load} busy process(es); " if args.load else "")
              + f"load average {info['loadavg_before'][0]:.1f} before, {info['loadavg_after'][0]:.1f} after\n"
              + "threads of the network's forwards: " + "; ".join(f"{t}: {how}" for t, how in
                                                                   info["inference_threads"].items()))
    print()
    print(P.format_prediction_table(rows, header))
    if args.json:
        with _json_output(args.json) as f:
            json.dump(_jsonable({"rows": rows, "info": info, "cases": [c[0] for c in cases]}), f, indent=2)
        print(f"wrote {args.json}")
    return 0


def run_results(args: argparse.Namespace) -> int:
    _refuse_existing_outputs(args)
    from ..benchmark import results as R
    from ..utils.summary import load_summary

    try:
        if args.a or args.b:
            if not (args.a and args.b) or args.trainers:
                raise ValueError("give both --a and --b (result folders), or -d/-c with two -tr, not a mix")
            fa, fb = args.a, args.b
            name_a, name_b = os.path.basename(os.path.normpath(fa)), os.path.basename(os.path.normpath(fb))
        else:
            if not args.dataset or len(args.trainers) != 2:
                raise ValueError("give --a FOLDER --b FOLDER, or -d DATASET -c CONFIG -tr TRAINER_A -tr TRAINER_B")
            fa, fb = (R.resolve_trainer_folder(args.dataset, args.configuration, t, args.plans)
                      for t in args.trainers)
            name_a, name_b = args.trainers
        if bool(args.test_images) != bool(args.test_labels):
            raise ValueError("--test-images and --test-labels go together")
        folds_a = R.fold_names(fa, args.folds)
        folds_b = R.fold_names(fb, args.folds)
        common = [f for f in folds_a if f in folds_b]
        if not common:
            raise ValueError(f"no common fold with a validation summary: A {folds_a}, B {folds_b}")
        sa, ta = R.load_trainer_folder(fa, common)
        sb, tb = R.load_trainer_folder(fb, common)
    except (ValueError, FileNotFoundError) as e:
        return _fail(str(e))

    cmp = R.compare_summaries(sa, sb, args.bootstrap, args.seed)
    times_a, times_b = R.epoch_time_stats(ta), R.epoch_time_stats(tb)
    print(R.format_results(cmp, f"{name_a} ({fa})", f"{name_b} ({fb})", times_a, times_b))
    out = {"a": {"name": name_a, "folder": os.path.abspath(fa), "epoch_time": times_a},
           "b": {"name": name_b, "folder": os.path.abspath(fb), "epoch_time": times_b},
           "folds": common, "validation": cmp,
           "method": {"difference": "B - A", "ci": f"paired percentile bootstrap, {args.bootstrap} resamples, "
                                                   f"seed {args.seed}", "tests": "Wilcoxon signed-rank, exact sign test",
                      "fg_mean": "per case: mean Dice over foreground labels present (nnU-Net NaN = absent)",
                      "scope": R.CI_SCOPE}}

    if args.test_images:
        folds_int = [int(f.replace("fold_", "")) if f.replace("fold_", "").isdigit() else f for f in common]
        test = {}
        for key, folder, name in (("a", fa, name_a), ("b", fb, name_b)):
            dst = os.path.join(args.test_output, name)
            print(f"\npredicting {args.test_images} with {name} (folds {folds_int}) -> {dst}", flush=True)
            try:
                test[key] = load_summary(R.predict_and_evaluate(folder, folds_int, args.test_images,
                                                                  args.test_labels, dst, args.device,
                                                                  checkpoint=args.checkpoint,
                                                                  use_mirroring=not args.disable_tta))
            except (ValueError, FileNotFoundError) as e:
                return _fail(str(e))
        tcmp = R.compare_summaries({"test": test["a"]}, {"test": test["b"]}, args.bootstrap, args.seed)
        print("\nTest folder " + args.test_images)
        print(R.format_results(tcmp, name_a, name_b))
        out["test"] = tcmp
    if args.json:
        with _json_output(args.json) as f:
            json.dump(_jsonable(out), f, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        R.plot_results(cmp, name_a, name_b, args.plot)
        print(f"wrote {args.plot}")
    return 0


def run_curves(args: argparse.Namespace) -> int:
    _refuse_existing_outputs(args)
    from ..benchmark import curves as C
    from ..benchmark.curves import DEFAULT_REFERENCE, DEFAULT_REFERENCE_LABEL

    try:
        values = args.reference or [DEFAULT_REFERENCE]
        labels = args.reference_label or ([DEFAULT_REFERENCE_LABEL] if not args.reference else [])
        if len(labels) != len(values):
            raise ValueError(f"give one --reference-label per --reference ({len(values)} reference(s), "
                             f"{len(labels)} label(s))")
        for value in values:
            if not args.no_reference and not 0.0 <= value <= 1.0:
                raise ValueError(f"--reference is a Dice between 0 and 1, got {value}")
        references = [] if args.no_reference else list(zip(values, labels))
        for path in (args.json, args.plot):
            if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
                raise ValueError(f"output folder of {path} does not exist")
        runs = C.load_runs(args.folders)
        copied = C.archive_runs(runs, args.archive, args.overwrite) if args.archive else []
    except (ValueError, FileNotFoundError) as e:
        return _fail(str(e))

    print(C.format_curves_table(runs))
    if args.json:
        refs = [{"dice": v, "label": lab} for v, lab in references]
        out = {"runs": runs, "reference": refs[0] if refs else None, "references": refs, "method": C.METHOD}
        with _json_output(args.json) as f:
            json.dump(_jsonable(out), f, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        C.plot_curves(runs, args.plot, args.title, references=references)
        print(f"wrote {args.plot}")
    if args.archive:
        print(f"archive {args.archive} (debug.json, training_log_*.txt, validation/summary.json of each run):")
        for _, dst, status in copied:
            print(f"  {status:<11} {os.path.relpath(dst, args.archive)}")
    return 0
