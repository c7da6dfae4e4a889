"""``lightmedseg demo``: plan/preprocess -> train -> predict -> evaluate with nnU-Net's own commands, on CPU.

Without ``--dataset`` it writes a small synthetic label-based dataset (:mod:`nnunetv2_lightmedseg.data.synthetic`:
textured nested ellipsoids, labels background/outer/inner, 20 training + 4 held-out cases). With
``--dataset PATH`` it runs the same steps on a user's nnU-Net raw dataset folder ``DatasetXXX_Name``.

Every step is the real nnU-Net console command in a subprocess, exactly what a user would type (the demo prints
each command line), with ``nnUNet_raw``/``nnUNet_preprocessed``/``nnUNet_results`` pointing into the work
directory and ``nnUNet_extTrainer`` set as ``lightmedseg env`` prints it::

    nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres -np 2 -npfp 2
    nnUNetv2_train ID 3d_fullres 0 -tr nnUNetTrainer_LightMedSeg_Demo -device cpu
    nnUNetv2_predict -i imagesTs -o predictions -d ID -c 3d_fullres -f 0 -tr ... -device cpu -npp 1 -nps 1
    nnUNetv2_evaluate_folder labelsTs predictions -djfile dataset.json -pfile plans.json -o summary.json -np 1

Evaluation needs held-out labels: ``imagesTs`` + ``labelsTs`` when the dataset has them (the synthetic one
does); otherwise the demo reports the Dice of the fold-0 validation cases, which ``nnUNetv2_train`` itself
predicts and evaluates after training (``fold_0/validation/summary.json``): also cases the network never saw.

What it trains is kept: the work folder (default ``./lightmedseg_demo``) holds the model, predictions, logs and
``demo_summary.json`` when the demo ends, and the demo prints where it is and an ``nnUNetv2_predict`` line that
uses it in a new shell: with the ``nnUNet_*`` variables it needs (``nnUNet_extTrainer`` too unless ``lightmedseg
install-trainers`` registered the trainers) after the ``source .../bin/activate`` that puts the commands on PATH.
The demo never deletes what it did not create: it writes only into a new or empty folder, or into one a previous
demo run created (marked by a ``.lightmedseg_demo`` file), and replaces a previous run's contents only with ``--overwrite``. ``--clean``
removes, after a successful run, what this run created (the folder itself if the demo created it, else its
contents); a user's ``--dataset`` is only linked into the work folder, never copied, changed or deleted.

This module holds the command line and the order of the steps; the dataset check, the work folder and the report
are :mod:`nnunetv2_lightmedseg.demo`, running nnU-Net's commands and reading their output
:mod:`nnunetv2_lightmedseg.utils`.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..demo import DemoError
from ..demo.dataset import check_raw_dataset
from ..demo.report import print_kept, print_report
from ..demo.workdir import clean_workdir, prepare_workdir
from ..utils.nnunet_env import ENV_VAR, FOLDERS, nnunet_env, planning_env, training_env
from ..utils.process import console_script, run_step
from ..utils.summary import named_dice
from .options import add_device, add_disable_tta

DEFAULT_TRAINER = "nnUNetTrainer_LightMedSeg_Demo"
DEFAULT_DATASET_ID = 990
CONFIGURATION = "3d_fullres"
PLANS = "nnUNetPlans"
FOLD = 0
#: `lightmedseg demo` with its defaults, end to end (generate, plan+preprocess, train, predict, evaluate), on 2 idle
#: CPU cores of this project's machine (docs/results.md, "The demo and the tests": 61.8 s); the help and the README
#: quote this figure
MEASURED_DEMO_SECONDS = 62


# ------------------------------------------------------------------------------------------------- main
def run_demo(dataset: Optional[Path], workdir: Path, trainer: str, dataset_id: Optional[int], clean: bool = False,
             device: str = "cpu", num_processes: int = 2, n_proc_da: int = 0, disable_tta: bool = False,
             num_train: int = 20, num_test: int = 4, verbose: bool = False, overwrite: bool = False) -> dict:
    """Run the demo; returns the result dict (also written to ``workdir/demo_summary.json``)."""
    if dataset is not None:
        ds = check_raw_dataset(dataset)  # check before touching the work folder
        if dataset_id is not None and dataset_id != ds.dataset_id:
            raise DemoError(f"--dataset-id {dataset_id} differs from the id in the folder name {ds.name}; nnU-Net "
                            f"takes the id from the folder name. Drop --dataset-id or rename the folder.")
    workdir, created = prepare_workdir(workdir, overwrite)
    env = nnunet_env(workdir)
    raw = Path(env["nnUNet_raw"])
    raw.mkdir(parents=True)
    logs = workdir / "logs"
    seconds: Dict[str, float] = {}
    cpu: Dict[str, float] = {}
    succeeded = False

    current = {"step": "setup"}
    uses = shell_env_prefix(env)

    def step(name: str, cmd: List[str], step_env: Dict[str, str], log: str) -> None:
        current["step"], current["cmd"] = name, cmd
        seconds[name] = run_step(cmd, step_env, logs / log, verbose, cpu_seconds=cpu, name=name)

    try:
        t = time.perf_counter()
        if dataset is None:
            from nnunetv2_lightmedseg.data.synthetic import write_label_dataset
            did = DEFAULT_DATASET_ID if dataset_id is None else dataset_id
            print(f"Writing the synthetic dataset ({num_train} training + {num_test} test cases) to {raw}",
                  flush=True)
            ds = check_raw_dataset(write_label_dataset(raw, dataset_id=did, num_train=num_train,
                                                       num_test=num_test))
            seconds["generate data"] = time.perf_counter() - t
        else:
            (raw / ds.name).symlink_to(ds.path, target_is_directory=True)
        for note in ds.notes:
            print("Note: " + note)

        did = str(ds.dataset_id)
        plan = [console_script("nnUNetv2_plan_and_preprocess"), "-d", did, "-c", CONFIGURATION,
                "-np", str(num_processes), "-npfp", str(num_processes), "--no_pbar"]
        if dataset is not None:
            plan.append("--verify_dataset_integrity")  # nnU-Net's own geometry/label checks on user data
        step("plan+preprocess", plan, planning_env(env), "plan_and_preprocess.log")

        train = [console_script("nnUNetv2_train"), did, CONFIGURATION, str(FOLD), "-tr", trainer,
                 "-device", device]
        step("train", train, training_env(env, n_proc_da), "train.log")

        model_dir = Path(env["nnUNet_results"]) / ds.name / f"{trainer}__{PLANS}__{CONFIGURATION}"
        if ds.test_images is not None:
            predictions = workdir / "predictions"
            predict = [console_script("nnUNetv2_predict"), "-i", str(ds.test_images), "-o", str(predictions),
                       "-d", did, "-c", CONFIGURATION, "-f", str(FOLD), "-tr", trainer, "-device", device,
                       "-npp", "1", "-nps", "1", "--disable_progress_bar"]
            if disable_tta:
                predict.append("--disable_tta")
            step("predict", predict, env, "predict.log")
            summary = predictions / "summary.json"
            evaluate = [console_script("nnUNetv2_evaluate_folder"), str(ds.test_labels), str(predictions),
                        "-djfile", str(model_dir / "dataset.json"), "-pfile", str(model_dir / "plans.json"),
                        "-o", str(summary), "-np", "1"]
            step("evaluate", evaluate, env, "evaluate.log")
            evaluated_on = "held-out test cases (imagesTs vs labelsTs)"
        else:
            summary = model_dir / f"fold_{FOLD}" / "validation" / "summary.json"
            evaluated_on = "fold-0 validation cases (predicted and evaluated by nnUNetv2_train)"
        if not summary.is_file():
            raise DemoError(f"nnU-Net finished but wrote no {summary}; see the logs in {logs}.")
        dice, mean, n = named_dice(summary, ds.dataset_json)
        result = {"dataset": ds.name, "trainer": trainer, "device": device, "dice": dice, "mean_dice": mean,
                  "num_eval_cases": n, "evaluated_on": evaluated_on, "seconds": seconds, "cpu_seconds": cpu,
                  "summary_json": str(summary), "model_folder": str(model_dir), "workdir": str(workdir)}
        (workdir / "demo_summary.json").write_text(json.dumps(result, indent=2))
        print_report(result)
        succeeded = True
        return result
    except KeyboardInterrupt:
        current["interrupted"] = True
        resume = ""
        if current["step"] == "train":
            resume = f" Resume the training from its last checkpoint: {uses} {shell_line(current['cmd'])} --c"
        raise DemoInterrupted(f"interrupted during '{current['step']}'; kept {workdir} (what was done so far, "
                              f"logs in {logs}).{resume} Or run the demo again with --overwrite.") from None
    finally:
        if succeeded and clean:
            clean_workdir(workdir)
            if created:
                workdir.rmdir()
            print(f"--clean: removed what this run created in {workdir}.")
        elif succeeded:
            images = ds.test_images if ds.test_images is not None else raw / ds.name / "imagesTr"
            predict_again = [console_script("nnUNetv2_predict"), "-i", str(images), "-o",
                             str(workdir / "predictions_again"), "-d", str(ds.dataset_id), "-c", CONFIGURATION,
                             "-f", str(FOLD), "-tr", trainer, "-device", device]
            print_kept(workdir, model_dir, workdir / "predictions" if ds.test_images is not None else summary.parent,
                       logs, f"{uses} {shell_line(predict_again)}", activate_hint(), registered())
        elif not current.get("interrupted"):
            print(f"Logs kept in {logs}", file=sys.stderr)


def registered() -> bool:
    """Whether ``lightmedseg install-trainers`` registered the trainers with this environment's nnU-Net."""
    from ..registration import RegistrationError, installed

    try:
        return installed() is not None
    except RegistrationError:
        return False


def shell_env_prefix(env: Dict[str, str]) -> str:
    """``nnUNet_raw=... nnUNet_preprocessed=... nnUNet_results=...`` of the demo's folders for a command pasted
    into a new shell, plus ``nnUNet_extTrainer`` unless nnU-Net finds the trainers without it (the trainers are
    registered and the user set no trainer folder of their own)."""
    names = list(FOLDERS)
    if not registered() or os.environ.get(ENV_VAR):
        names.append(ENV_VAR)
    return " ".join(f"{name}={shlex.quote(env[name])}" for name in names)


def shell_line(cmd: List[str]) -> str:
    """A command as a user pastes it: nnU-Net's console scripts by name, arguments quoted for the shell."""
    return " ".join(shlex.quote(a) for a in [Path(cmd[0]).name, *cmd[1:]])


def activate_hint() -> Optional[str]:
    """``source <venv>/bin/activate`` when this Python runs in a virtual environment (nnU-Net's commands are
    on PATH only after it), else None."""
    if sys.prefix == sys.base_prefix:
        return None
    return f"source {shlex.quote(str(Path(sys.prefix) / 'bin' / 'activate'))}"


class DemoInterrupted(DemoError):
    """Ctrl-C during the demo; the message says what was kept and how to resume."""


def main(args: argparse.Namespace) -> int:
    try:
        run_demo(args.dataset, args.workdir, args.trainer, args.dataset_id, clean=args.clean, device=args.device,
                 num_processes=args.num_processes, n_proc_da=args.n_proc_da, disable_tta=args.disable_tta,
                 num_train=args.num_train, num_test=args.num_test, verbose=args.verbose, overwrite=args.overwrite)
    except DemoInterrupted as e:
        print(f"\nlightmedseg demo: {e}", file=sys.stderr)
        return 130
    # DemoError / CommandError (a failed step): one line, exit 2, from cli/main's one error path
    return 0


def demo_trainer_length(trainer: str = DEFAULT_TRAINER) -> Tuple[int, int]:
    """(epochs, iterations per epoch) of a package trainer, read from the class (for the help text)."""
    from nnunetv2_lightmedseg.training import ALL_TRAINERS

    cls = ALL_TRAINERS[trainer]
    return (int(cls.training_options.get("num_epochs", 300)),
            int(cls.training_options.get("num_iterations_per_epoch", 250)))


def _at_least(minimum: int, flag: str, why: str):
    """An argparse type: an integer >= ``minimum``; otherwise argparse's one-line usage error saying why (checked
    before anything is written, so a bad count never leaves a half-made work folder)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} takes a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{flag} must be at least {minimum} ({why}), got {value}")
        return value
    return parse


def add_parser(subparsers) -> None:
    epochs, iters = demo_trainer_length()
    p = subparsers.add_parser(
        "demo", help=f"plan -> train -> predict -> evaluate LightMedSeg with nnU-Net's commands (CPU; about "
                     f"{MEASURED_DEMO_SECONDS} s on 2 idle cores)",
        description="Runs nnU-Net's real commands (nnUNetv2_plan_and_preprocess, nnUNetv2_train, nnUNetv2_predict, "
                    "nnUNetv2_evaluate_folder) with a short LightMedSeg trainer on a generated synthetic dataset "
                    "(default) or on your raw dataset (--dataset), and prints the Dice reached and the time of "
                    f"each step. Expected duration with the defaults: {MEASURED_DEMO_SECONDS} s end to end, measured "
                    "on 2 idle CPU cores; several times that on a busy machine. Everything it creates is kept in "
                    "--workdir and its location printed at the end.")
    p.add_argument("--dataset", type=Path, default=None, metavar="RAW_DATASET_DIR",
                   help="an nnU-Net raw dataset folder DatasetXXX_Name (imagesTr, labelsTr, dataset.json; with "
                        "imagesTs+labelsTs the Dice is measured on those, else on the fold-0 validation cases). "
                        "Default: generate a synthetic dataset.")
    p.add_argument("--workdir", type=Path, default=Path("lightmedseg_demo"),
                   help="work folder for nnUNet_raw/_preprocessed/_results, predictions and logs: a new or empty "
                        "folder, or a previous demo run's with --overwrite (default ./%(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the contents of a previous demo run in --workdir (never a folder the demo did not "
                        "create)")
    p.add_argument("--clean", action="store_true",
                   help="after a successful run, remove what this run created (by default everything is kept)")
    p.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)  # the default now; accepted for old scripts
    p.add_argument("--trainer", default=DEFAULT_TRAINER,
                   help=f"nnU-Net trainer class (default {DEFAULT_TRAINER}: {epochs} epochs x {iters} iterations)")
    p.add_argument("--dataset-id", type=int, default=None,
                   help=f"id of the generated dataset (default {DEFAULT_DATASET_ID}); with --dataset the id comes "
                        f"from the folder name")
    p.add_argument("--num-train", type=_at_least(5, "--num-train", "nnU-Net's 5-fold split needs 5 training cases"),
                   default=20, help="training cases of the generated dataset, at least 5 (default %(default)s)")
    p.add_argument("--num-test", type=_at_least(1, "--num-test", "the demo predicts and scores the test cases"),
                   default=4, help="held-out test cases of the generated dataset, at least 1 (default %(default)s)")
    add_device(p, what="nnU-Net's commands")
    p.add_argument("--num-processes", type=int, default=2,
                   help="processes for fingerprinting/preprocessing (nnU-Net's -np/-npfp; default %(default)s)")
    p.add_argument("--n-proc-da", type=int, default=0,
                   help="data-augmentation worker processes (nnUNet_n_proc_DA, unless already set in the "
                        "environment); default %(default)s = augment in the training process, best on 2 CPU cores")
    add_disable_tta(p)
    p.add_argument("--verbose", action="store_true", help="echo all of nnU-Net's output, not only the key lines")
    p.set_defaults(func=main)
