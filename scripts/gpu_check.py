#!/usr/bin/env python
"""GPU check for the day a GPU is lent (issue 10, item 5): one command, every figure in one JSON file.

    python scripts/gpu_check.py --out gpu_check.json [--workdir DIR] [--shape 128 128 128] [--iterations 20]

Parts; each is recorded in the JSON with its figures, or with ``"skipped": "<reason>"``:

1. ``network``: ``lightmedseg benchmark network --shape X Y Z`` (stock nnU-Net and LightMedSeg built from the same
   nnU-Net plans, interleaved). On CUDA the benchmark adds AMP forward latency and peak GPU memory per network.
   Runs on the CPU too (at ``--cpu-shape``, small, so that the script is exercised without a GPU).
2. ``compile``: LightMedSeg's forward on CUDA under AMP, eager against ``torch.compile`` (what nnU-Net does on CUDA
   by default, ``nnUNet_compile``); the compile time (first call) is reported apart from the steady latency.
3. ``train``: real nnU-Net training of stock ``nnUNetTrainer`` and ``nnUNetTrainer_LightMedSeg`` (``nnUNetv2_train
   -device cuda``, nnU-Net's defaults including its compile) on the generated demo dataset, two epochs of
   ``--iterations`` iterations each; seconds per iteration from the second epoch's time in nnU-Net's log (the first
   includes compilation and cuDNN autotuning).
4. ``ddp``: ``nnUNetv2_train -num_gpus 2`` with LightMedSeg for the same short run (needs two GPUs).

Without CUDA, parts 2-4 are skipped with the reason and part 1 runs on the CPU; the script exits 0. A part that
fails records its error and the tail of its log, and the script goes on with the next part (exit code 1 at the
end), so one broken part does not cost the GPU time of the others.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from nnunetv2_lightmedseg.utils.nnunet_env import ENV_VAR, SHORT_FOLDER_NAMES, ext_trainer_value
from nnunetv2_lightmedseg.utils.nnunet_env import nnunet_env as package_env
from nnunetv2_lightmedseg.utils.process import console_script, run_command

DATASET_ID = 990
TRAINERS_SOURCE = '''from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2_lightmedseg.training import nnUNetTrainer_LightMedSeg

RUN = {{"num_epochs": 2, "num_iterations_per_epoch": {iterations}, "num_val_iterations_per_epoch": 2}}


class nnUNetTrainer_GPUCheck(nnUNetTrainer):
    """Stock nnU-Net, two short epochs (gpu_check.py)."""
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_epochs = RUN["num_epochs"]
        self.num_iterations_per_epoch = RUN["num_iterations_per_epoch"]
        self.num_val_iterations_per_epoch = RUN["num_val_iterations_per_epoch"]


class nnUNetTrainer_LightMedSeg_GPUCheck(nnUNetTrainer_LightMedSeg):
    """LightMedSeg, the same two short epochs (gpu_check.py)."""
    training_options = dict(RUN)
'''
STOCK, LMS = "nnUNetTrainer_GPUCheck", "nnUNetTrainer_LightMedSeg_GPUCheck"


def run_logged(cmd, env, log: Path, timeout: int):
    """The package's runner: output into ``log``, the command's process group killed after ``timeout`` s."""
    p = run_command(cmd, env, log_file=log, timeout=timeout, own_group=True)
    if p.timed_out:
        raise RuntimeError(f"{Path(str(cmd[0])).name} timed out after {timeout} s:\n{tail(log)}")
    return p


def tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:] if log.is_file() else ""


def nnunet_env(work: Path) -> dict:
    """nnU-Net's folders under ``work`` (raw/, preprocessed/, results/); the check's trainers, then ours."""
    env = package_env(work, folder_names=SHORT_FOLDER_NAMES)
    env[ENV_VAR] = os.pathsep.join([str(work / "trainers"), ext_trainer_value(None)])
    return env


# ------------------------------------------------------------------------------------------------- parts
def part_network(work: Path, shape, threads: int, timeout: int) -> dict:
    out, log = work / "network.json", work / "network.log"
    cmd = [console_script("lightmedseg"), "benchmark", "network", "--shape", *shape, "--in-channels", 4, "--json", out,
           "--threads", threads, "--runs", 5, "--train-runs", 2, "--no-memory"]
    p = run_logged(cmd, os.environ.copy(), log, timeout)
    if p.returncode != 0:
        raise RuntimeError(f"benchmark network exited {p.returncode}:\n{tail(log)}")
    return {"command": " ".join(map(str, cmd)), "device": "cuda" if torch.cuda.is_available() else "cpu",
            "rows": json.loads(out.read_text())}


def part_compile(shape, runs: int = 10) -> dict:
    from nnunetv2_lightmedseg.network import LightMedSeg

    dev = torch.device("cuda")
    x = torch.randn(1, 4, *shape, device=dev)
    out = {}
    for mode in ("eager", "compiled"):
        torch.manual_seed(0)
        net = LightMedSeg(4, 4).to(dev).eval()
        fn = torch.compile(net) if mode == "compiled" else net
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn(x)
            torch.cuda.synchronize()
            first = time.perf_counter() - t0
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                fn(x)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
        times.sort()
        out[mode] = {"first_call_s": first, "median_s": times[len(times) // 2], "runs": runs}
    out["speedup_compiled"] = out["eager"]["median_s"] / out["compiled"]["median_s"]
    out["input_shape"] = list(x.shape)
    return out


def prepare_dataset(work: Path, iterations: int, timeout: int) -> dict:
    from nnunetv2_lightmedseg.data import write_label_dataset

    (work / "trainers").mkdir(parents=True, exist_ok=True)
    (work / "trainers" / "gpu_check_trainers.py").write_text(TRAINERS_SOURCE.format(iterations=iterations))
    write_label_dataset(work / "raw", DATASET_ID, num_train=16, num_test=2)
    env = nnunet_env(work)
    log = work / "plan.log"
    p = run_logged([console_script("nnUNetv2_plan_and_preprocess"), "-d", DATASET_ID, "-c", "3d_fullres", "-np", 4], env,
                   log, timeout)
    if p.returncode != 0:
        raise RuntimeError(f"nnUNetv2_plan_and_preprocess exited {p.returncode}:\n{tail(log)}")
    return env


def epoch_times(log_folder: Path):
    logs = sorted(log_folder.glob("training_log_*.txt"))
    return [float(t) for t in re.findall(r"Epoch time: ([0-9.]+) s", logs[-1].read_text())] if logs else []


def part_train(work: Path, env: dict, iterations: int, timeout: int) -> dict:
    out = {}
    for trainer in (STOCK, LMS):
        log = work / f"train_{trainer}.log"
        p = run_logged([console_script("nnUNetv2_train"), DATASET_ID, "3d_fullres", 0, "-tr", trainer, "-device", "cuda"],
                       env, log, timeout)
        if p.returncode != 0:
            raise RuntimeError(f"nnUNetv2_train -tr {trainer} exited {p.returncode}:\n{tail(log)}")
        folds = list((work / "results").glob(f"*/{trainer}__nnUNetPlans__3d_fullres/fold_0"))
        times = epoch_times(folds[0])
        out[trainer] = {"epoch_times_s": times, "iterations_per_epoch": iterations,
                        "s_per_iteration_epoch2": times[-1] / iterations if len(times) >= 2 else None,
                        "nnUNet_compile": env.get("nnUNet_compile", "default (true on CUDA)")}
    a, b = out[STOCK]["s_per_iteration_epoch2"], out[LMS]["s_per_iteration_epoch2"]
    out["speedup_lightmedseg"] = a / b if a and b else None
    out["note"] = "epoch time includes 2 validation iterations per epoch; epoch 1 includes compile/autotuning"
    return out


def part_ddp(work: Path, env: dict, timeout: int) -> dict:
    log = work / "ddp.log"
    env = dict(env, nnUNet_results=str(work / "results_ddp"))
    p = run_logged([console_script("nnUNetv2_train"), DATASET_ID, "3d_fullres", 0, "-tr", LMS, "-num_gpus", 2], env, log,
                   timeout)
    if p.returncode != 0:
        raise RuntimeError(f"nnUNetv2_train -num_gpus 2 exited {p.returncode}:\n{tail(log)}")
    folds = list((work / "results_ddp").glob(f"*/{LMS}__nnUNetPlans__3d_fullres/fold_0"))
    final = folds[0] / "checkpoint_final.pth" if folds else None
    return {"trained": bool(final and final.is_file()), "epoch_times_s": epoch_times(folds[0]) if folds else []}


# --------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file with every figure")
    ap.add_argument("--workdir", help="work folder (default: a temporary folder, removed at the end)")
    ap.add_argument("--shape", type=int, nargs=3, default=[128, 128, 128], help="spatial size on CUDA")
    ap.add_argument("--cpu-shape", type=int, nargs=3, default=[32, 32, 32], help="spatial size without CUDA")
    ap.add_argument("--iterations", type=int, default=20, help="training iterations per epoch (2 epochs)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of the network benchmark")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per command")
    args = ap.parse_args(argv)
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        ap.error(f"the folder of --out {args.out} does not exist")

    cuda = torch.cuda.is_available()
    n_gpus = torch.cuda.device_count() if cuda else 0
    result = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "cuda": cuda,
                          "gpus": [torch.cuda.get_device_name(i) for i in range(n_gpus)],
                          "cpu_count": os.cpu_count()}, "parts": {}}
    failed = False
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="lightmedseg_gpu_check_")
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)

    def attempt(name, fn, skip_reason=None):
        nonlocal failed
        if skip_reason:
            result["parts"][name] = {"skipped": skip_reason}
        else:
            t0 = time.perf_counter()
            try:
                result["parts"][name] = fn()
            except Exception as e:  # record and go on: the other parts still run
                failed = True
                result["parts"][name] = {"error": f"{type(e).__name__}: {e}"}
            result["parts"][name]["wall_s"] = time.perf_counter() - t0
        print(f"{name}: {json.dumps(result['parts'][name])[:300]}", flush=True)
        Path(args.out).write_text(json.dumps(result, indent=2))  # written after each part

    no_cuda = None if cuda else "no CUDA device"
    attempt("network", lambda: part_network(work, args.shape if cuda else args.cpu_shape, args.threads,
                                            args.timeout))
    attempt("compile", lambda: part_compile(args.shape), no_cuda)
    env = {}
    if cuda:
        try:
            env = prepare_dataset(work, args.iterations, args.timeout)
        except Exception as e:
            failed = True
            result["parts"]["dataset"] = {"error": f"{type(e).__name__}: {e}"}
    train_skip = no_cuda or (None if env else "the demo dataset could not be prepared")
    attempt("train", lambda: part_train(work, env, args.iterations, args.timeout), train_skip)
    attempt("ddp", lambda: part_ddp(work, env, args.timeout),
            train_skip or (None if n_gpus >= 2 else f"needs 2 GPUs, found {n_gpus}"))
    if tmp is not None:
        tmp.cleanup()
    print(f"wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
