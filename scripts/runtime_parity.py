#!/usr/bin/env python
"""Parity, speed and memory of a LightMedSeg bundle (``lightmedseg-run``) against ``nnUNetv2_predict``.

On the same cases and model (same folds, same mirroring) it runs, interleaved, ``lightmedseg-run`` and
``nnUNetv2_predict`` with and without test-time mirroring, and reports per case the voxel agreement of the two label
maps, the Dice of each against the reference labels and their difference, seconds per case and the peak resident
memory of each command's process tree (RSS and PSS sums, sampled every 50 ms), with the load average beside each run.

Example (Dataset004 fold-0 validation cases)::

    python scripts/runtime_parity.py --results /work/nnunet/results -d 4 -c 3d_fullres \
        -tr nnUNetTrainer_LightMedSeg -f 0 --val-fold 0 --cases 20 --work /tmp/parity_hippo \
        --json docs/runs/runtime/hippocampus.json

Cases: ``--val-fold F`` takes fold F's validation cases from ``$nnUNet_preprocessed/DATASET/splits_final.json``;
``--case-list FILE`` takes case ids from a file; images come from ``$nnUNet_raw/DATASET/imagesTr`` and labels from
``labelsTr`` (or ``--images`` / ``--labels``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

BIN = Path(sys.executable).parent


# -------------------------------------------------------------------------------------------------- measurement
def _children() -> Dict[int, List[int]]:
    kids: Dict[int, List[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(d))
    return kids


def tree_memory_bytes(pid: int):
    """(sum of RSS, sum of PSS) over ``pid`` and its descendants. RSS counts pages shared between the processes
    (torch's libraries in each of nnU-Net's worker processes) once per process; PSS splits them, so its sum is
    what the tree really occupies."""
    kids, todo, rss, pss = _children(), [pid], 0, 0
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            pass
        todo.extend(kids.get(p, []))
    return rss, pss


def timed(cmd: List[str], env: Dict[str, str]) -> Dict:
    """Run ``cmd``; wall seconds, peak RSS of its process tree, load average before/after, return code."""
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    peak = [0, 0]

    def sample():
        while proc.poll() is None:
            rss, pss = tree_memory_bytes(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(0.05)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        out, _ = proc.communicate()
    except BaseException:  # Ctrl-C / SIGTERM: nnU-Net's worker processes must not outlive the script
        os.killpg(proc.pid, 9)
        raise
    wall = time.perf_counter() - t0
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-3000:]}")
    return {"seconds": wall, "peak_rss_mb": peak[0] / 2 ** 20, "peak_pss_mb": peak[1] / 2 ** 20,
            "load_before": list(load_before),
            "load_after": list(os.getloadavg())}


# ----------------------------------------------------------------------------------------------------- metrics
def read_labels(path: Path) -> np.ndarray:
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    x, y = a == label, b == label
    s = x.sum() + y.sum()
    return float(2 * (x & y).sum() / s) if s else float("nan")


# -------------------------------------------------------------------------------------------------------- main
def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--results", type=Path, required=True, help="nnUNet_results folder holding the model")
    p.add_argument("-d", dest="dataset", required=True)
    p.add_argument("-c", dest="configuration", default="3d_fullres")
    p.add_argument("-tr", dest="trainer", default="nnUNetTrainer_LightMedSeg")
    p.add_argument("-p", dest="plans", default="nnUNetPlans")
    p.add_argument("-f", dest="folds", nargs="+", default=["0"])
    p.add_argument("-chk", dest="checkpoint", default="checkpoint_final.pth")
    p.add_argument("--val-fold", type=int, default=None, help="take this fold's validation cases")
    p.add_argument("--case-list", type=Path, default=None, help="file with one case id per line")
    p.add_argument("--cases", type=int, default=20, help="at most this many cases (default %(default)s)")
    p.add_argument("--images", type=Path, default=None)
    p.add_argument("--labels", type=Path, default=None)
    p.add_argument("--work", type=Path, required=True, help="scratch folder (inputs, bundle, predictions)")
    p.add_argument("--bundle", type=Path, default=None, help="an exported bundle (default: export into --work)")
    p.add_argument("--modes", nargs="+", default=["tta", "notta"], choices=("tta", "notta"))
    p.add_argument("--runtime-threads", nargs="+", type=int, default=[0],
                   help="onnxruntime thread counts to time (0: the runtime's default; default %(default)s)")
    p.add_argument("--repeats", type=int, default=1, help="timed rounds (default %(default)s)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    import signal
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))

    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    env = {**os.environ, "nnUNet_results": str(args.results)}
    os.environ["nnUNet_results"] = str(args.results)
    name = maybe_convert_to_dataset_name(args.dataset)
    raw = Path(os.environ["nnUNet_raw"]) / name
    images = args.images or raw / "imagesTr"
    labels = args.labels or raw / "labelsTr"
    ending = json.loads((raw / "dataset.json").read_text())["file_ending"]
    if args.val_fold is not None:
        splits = json.loads((Path(os.environ["nnUNet_preprocessed"]) / name / "splits_final.json").read_text())
        cases = list(splits[args.val_fold]["val"])
    elif args.case_list is not None:
        cases = [c.strip() for c in args.case_list.read_text().splitlines() if c.strip()]
    else:
        cases = sorted(f.name[: -len("_0000" + ending)] for f in images.glob(f"*_0000{ending}"))
    cases = sorted(cases)[: args.cases]

    work = args.work
    inp = work / "input"
    if inp.exists():
        shutil.rmtree(inp)
    inp.mkdir(parents=True)
    for c in cases:
        for f in sorted(images.glob(f"{c}_[0-9][0-9][0-9][0-9]{ending}")):
            (inp / f.name).symlink_to(f.resolve())
    bundle = args.bundle
    if bundle is None:
        bundle = work / "bundle"
        from nnunetv2_lightmedseg.deploy.bundle import export_bundle
        export_bundle(args.dataset, args.configuration, args.trainer, args.folds, bundle, plans=args.plans,
                      checkpoint=args.checkpoint, overwrite=True)

    def runtime_cmd(mode, threads, out):
        return [str(BIN / "lightmedseg-run"), "-i", str(inp), "-o", str(out), "--bundle", str(bundle), "--overwrite",
                "--quiet", *(["--disable_tta"] if mode == "notta" else []),
                *(["--threads", str(threads)] if threads else [])]

    def nnunet_cmd(mode, out):
        return [str(BIN / "nnUNetv2_predict"), "-i", str(inp), "-o", str(out), "-d", str(args.dataset), "-c",
                args.configuration, "-tr", args.trainer, "-p", args.plans, "-f", *args.folds, "-chk", args.checkpoint,
                "-device", "cpu", *(["--disable_tta"] if mode == "notta" else [])]

    runs: List[Dict] = []
    for r in range(args.repeats):
        for mode in args.modes:
            order = ["runtime", "nnunet"] if (r % 2 == 0) else ["nnunet", "runtime"]
            for tool in order:
                variants = [(t, f"runtime_t{t}" if t else "runtime") for t in args.runtime_threads] \
                    if tool == "runtime" else [(None, "nnunet")]
                for threads, label in variants:
                    out = work / f"pred_{label}_{mode}"
                    if out.exists():
                        shutil.rmtree(out)
                    cmd = runtime_cmd(mode, threads, out) if tool == "runtime" else nnunet_cmd(mode, out)
                    res = timed(cmd, env)
                    res.update(tool=label, mode=mode, round=r, seconds_per_case=res["seconds"] / len(cases),
                               command=" ".join(cmd))
                    runs.append(res)
                    print(f"round {r} {mode:5s} {label:12s} {res['seconds']:7.1f} s ({res['seconds_per_case']:.2f} "
                          f"s/case) peak RSS {res['peak_rss_mb']:6.0f} MB PSS {res['peak_pss_mb']:6.0f} MB  load {res['load_before'][0]:.2f}->"
                          f"{res['load_after'][0]:.2f}", flush=True)

    per_mode = {}
    label_values = None
    rt_label = f"runtime_t{args.runtime_threads[0]}" if args.runtime_threads[0] else "runtime"
    for mode in args.modes:
        rows = []
        for c in cases:
            a = read_labels(work / f"pred_{rt_label}_{mode}" / f"{c}{ending}")
            b = read_labels(work / f"pred_nnunet_{mode}" / f"{c}{ending}")
            gt_file = labels / f"{c}{ending}"
            gt = read_labels(gt_file) if gt_file.is_file() else None
            if label_values is None:
                label_values = sorted(int(v) for v in json.loads((bundle / "bundle.json").read_text())
                                      ["labels"]["labels"].values() if isinstance(v, int) and v > 0)
            row = {"case": c, "voxels": int(a.size), "differing_voxels": int((a != b).sum()),
                   "agreement": float((a == b).mean())}
            if gt is not None:
                row["dice_runtime"] = {l: dice(a, gt, l) for l in label_values}
                row["dice_nnunet"] = {l: dice(b, gt, l) for l in label_values}
                row["mean_dice_runtime"] = float(np.nanmean(list(row["dice_runtime"].values())))
                row["mean_dice_nnunet"] = float(np.nanmean(list(row["dice_nnunet"].values())))
                row["dice_difference"] = row["mean_dice_runtime"] - row["mean_dice_nnunet"]
            rows.append(row)
        agg = {"cases": len(rows), "min_agreement": min(r["agreement"] for r in rows),
               "mean_agreement": float(np.mean([r["agreement"] for r in rows])),
               "cases_below_99.99%": sum(r["agreement"] < 0.9999 for r in rows),
               "differing_voxels_total": sum(r["differing_voxels"] for r in rows)}
        if "mean_dice_runtime" in rows[0]:
            agg.update(mean_dice_runtime=float(np.mean([r["mean_dice_runtime"] for r in rows])),
                       mean_dice_nnunet=float(np.mean([r["mean_dice_nnunet"] for r in rows])),
                       max_abs_case_dice_difference=float(max(abs(r["dice_difference"]) for r in rows)))
            agg["mean_dice_difference"] = agg["mean_dice_runtime"] - agg["mean_dice_nnunet"]
        per_mode[mode] = {"summary": agg, "cases": rows}
        print(f"{mode}: agreement min {agg['min_agreement'] * 100:.4f} % mean {agg['mean_agreement'] * 100:.4f} % "
              f"({agg['differing_voxels_total']} voxels differ in {len(rows)} cases)"
              + (f"; mean Dice runtime {agg['mean_dice_runtime']:.4f} nnU-Net {agg['mean_dice_nnunet']:.4f} "
                 f"(diff {agg['mean_dice_difference']:+.5f})" if "mean_dice_runtime" in agg else ""))

    speed = {}
    for mode in args.modes:
        for tool in sorted({r["tool"] for r in runs}):
            sel = [r for r in runs if r["mode"] == mode and r["tool"] == tool]
            if sel:
                speed[f"{tool}_{mode}"] = {"seconds_per_case_median": float(np.median([r["seconds_per_case"] for r in sel])),
                                           "peak_rss_mb_max": float(max(r["peak_rss_mb"] for r in sel)),
                                           "peak_pss_mb_max": float(max(r["peak_pss_mb"] for r in sel)),
                                           "runs": len(sel)}
        nn = speed.get(f"nnunet_{mode}")
        rt = speed.get(f"{rt_label}_{mode}")
        if nn and rt:
            speed[f"ratio_nnunet_over_runtime_{mode}"] = nn["seconds_per_case_median"] / rt["seconds_per_case_median"]
            print(f"{mode}: nnUNetv2_predict {nn['seconds_per_case_median']:.2f} s/case, runtime "
                  f"{rt['seconds_per_case_median']:.2f} s/case ({speed[f'ratio_nnunet_over_runtime_{mode}']:.2f}x); "
                  f"peak RSS {nn['peak_rss_mb_max']:.0f} vs {rt['peak_rss_mb_max']:.0f} MB, PSS "
                  f"{nn['peak_pss_mb_max']:.0f} vs {rt['peak_pss_mb_max']:.0f} MB")

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "nnunetv2_lightmedseg/runtime",
                                 "nnunetv2_lightmedseg/deploy/bundle.py"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parents[1]).stdout.strip())
    result = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]), "commit": commit,
              "runtime_files_modified_since_commit": dirty, "dataset": name, "trainer": args.trainer,
              "configuration": args.configuration, "folds": args.folds, "cases": cases,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor()},
              "parity": per_mode, "speed": speed, "runs": runs,
              "note": "the machine was shared with background trainings: see each run's load average"}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
