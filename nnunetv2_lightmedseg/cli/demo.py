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
``demo_summary.json`` when the demo ends, and the demo prints where and how to use it. The demo never deletes what
it did not create: it writes only into a new or empty folder, or into one a previous demo run created (marked by
a ``.lightmedseg_demo`` file), and replaces a previous run's contents only with ``--overwrite``. ``--clean``
removes, after a successful run, what this run created (the folder itself if the demo created it, else its
contents); a user's ``--dataset`` is only linked into the work folder, never copied, changed or deleted.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from nnunetv2_lightmedseg.cli.options import add_device, add_disable_tta
from nnunetv2_lightmedseg.utils.names import parse_dataset_name
from nnunetv2_lightmedseg.utils.nnunet_env import nnunet_env, planning_env, training_env
from nnunetv2_lightmedseg.utils.process import CommandError, console_script, display, run_step
from nnunetv2_lightmedseg.utils.summary import named_dice

DEFAULT_TRAINER = "nnUNetTrainer_LightMedSeg_Demo"
DEFAULT_DATASET_ID = 990
CONFIGURATION = "3d_fullres"
PLANS = "nnUNetPlans"
FOLD = 0
MARKER = ".lightmedseg_demo"
#: `lightmedseg demo` with its defaults, end to end (generate, plan+preprocess, train, predict, evaluate), on 2 idle
#: CPU cores of this project's machine (README, "Quick start"); the help and the README quote this figure
MEASURED_DEMO_SECONDS = 107

class DemoError(RuntimeError):
    """A problem the user can fix (bad path, malformed dataset, failed step); printed without a traceback."""


# ----------------------------------------------------------------------------------------- the dataset
@dataclass
class RawDataset:
    """A checked nnU-Net raw dataset folder."""
    path: Path
    dataset_id: int
    name: str  # DatasetXXX_Name
    dataset_json: dict
    test_images: Optional[Path] = None  # imagesTs, when labelsTs has a label for every test case
    test_labels: Optional[Path] = None
    num_test: int = 0
    notes: List[str] = field(default_factory=list)


def _case_ids(folder: Path, file_ending: str) -> List[str]:
    return sorted(p.name[: -len(file_ending)] for p in folder.iterdir()
                  if p.name.endswith(file_ending) and not p.name.startswith("."))


def check_raw_dataset(path: Path) -> RawDataset:
    """Check a user's raw dataset folder against nnU-Net's layout; DemoError says what is wrong and what to do.

    Only the structure is checked here (names, dataset.json, one image per channel for every label); nnU-Net's
    ``--verify_dataset_integrity`` (run during planning) then checks geometry and label values.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DemoError(f"--dataset {path}: no such folder. Pass an nnU-Net raw dataset folder "
                        f"(e.g. .../nnUNet_raw/Dataset004_Hippocampus).")
    if not path.is_dir():
        raise DemoError(f"--dataset {path}: not a folder. Pass an nnU-Net raw dataset folder DatasetXXX_Name.")
    path = path.resolve()
    parsed = parse_dataset_name(path.name)
    if parsed is None:
        raise DemoError(f"--dataset {path}: the folder name must be DatasetXXX_Name with a 3-digit id, as nnU-Net "
                        f"requires (e.g. Dataset004_Hippocampus); got {path.name!r}. Rename the folder.")
    dj_file = path / "dataset.json"
    if not dj_file.is_file():
        raise DemoError(f"--dataset {path}: no dataset.json. nnU-Net needs one (channel_names, labels, numTraining, "
                        f"file_ending); see nnunetv2.dataset_conversion.generate_dataset_json.")
    try:
        dj = json.loads(dj_file.read_text())
    except json.JSONDecodeError as e:
        raise DemoError(f"{dj_file}: not valid JSON ({e}).") from None
    missing = [k for k in ("channel_names", "labels", "numTraining", "file_ending") if k not in dj]
    if "channel_names" not in dj and "modality" in dj:
        raise DemoError(f"{dj_file}: this is an nnU-Net v1 / MSD dataset.json ('modality'). Convert the dataset "
                        f"with nnUNetv2_convert_MSD_dataset or nnUNetv2_convert_old_nnUNet_dataset first.")
    if missing:
        raise DemoError(f"{dj_file}: missing key(s) {missing}; nnU-Net v2 needs channel_names, labels, "
                        f"numTraining and file_ending.")
    if "background" not in dj["labels"] or dj["labels"]["background"] != 0:
        raise DemoError(f"{dj_file}: labels must contain 'background': 0 (nnU-Net's convention).")
    ending = dj["file_ending"]
    channels = len(dj["channel_names"])
    for sub in ("imagesTr", "labelsTr"):
        if not (path / sub).is_dir():
            raise DemoError(f"--dataset {path}: no {sub} folder (nnU-Net raw layout: imagesTr/, labelsTr/, "
                            f"dataset.json, optionally imagesTs/).")
    cases = _case_ids(path / "labelsTr", ending)
    if not cases:
        raise DemoError(f"{path / 'labelsTr'}: no label files ending in {ending!r} (dataset.json file_ending).")
    if len(cases) != int(dj["numTraining"]):
        raise DemoError(f"{dj_file}: numTraining is {dj['numTraining']} but labelsTr holds {len(cases)} "
                        f"label files; set numTraining to {len(cases)}.")
    if len(cases) < 5:
        raise DemoError(f"--dataset {path}: {len(cases)} training cases; nnU-Net's 5-fold split needs at least 5.")
    images = set(p.name for p in (path / "imagesTr").iterdir())
    for case in cases:
        absent = [f"{case}_{c:04d}{ending}" for c in range(channels) if f"{case}_{c:04d}{ending}" not in images]
        if absent:
            raise DemoError(f"{path / 'imagesTr'}: missing {absent[0]} (dataset.json lists {channels} channel(s); "
                            f"every case needs CASE_0000{ending} .. CASE_{channels - 1:04d}{ending}).")
    ds = RawDataset(path, parsed[0], path.name, dj)
    ts_images, ts_labels = path / "imagesTs", path / "labelsTs"
    if ts_images.is_dir() and ts_labels.is_dir():
        test_cases = _case_ids(ts_labels, ending)
        ts_files = set(p.name for p in ts_images.iterdir())
        usable = test_cases and all(f"{c}_{k:04d}{ending}" in ts_files for c in test_cases for k in range(channels))
        if usable:
            ds.test_images, ds.test_labels, ds.num_test = ts_images, ts_labels, len(test_cases)
        else:
            ds.notes.append("imagesTs/labelsTs do not match (every labelsTs case needs all its channels in "
                            "imagesTs): evaluating the fold-0 validation cases instead.")
    else:
        ds.notes.append("no imagesTs + labelsTs: the Dice reported is that of the fold-0 validation cases, which "
                        "nnUNetv2_train predicts and evaluates after training (cases it did not train on).")
    return ds


# ------------------------------------------------------------------------------------------ work folder
def prepare_workdir(workdir: Path, overwrite: bool = False) -> Tuple[Path, bool]:
    """Create the demo's work folder, or reuse an empty one; returns (folder, created by this call).

    A folder a previous demo run created (marker file) is emptied only with ``overwrite``; any other non-empty
    folder is refused, so nothing the demo did not create is ever deleted."""
    workdir = Path(workdir).expanduser().resolve()
    created = not workdir.exists()
    if not created:
        if not workdir.is_dir():
            raise DemoError(f"--workdir {workdir} exists and is not a folder.")
        if any(workdir.iterdir()):
            if not (workdir / MARKER).exists():
                raise DemoError(f"--workdir {workdir} is not empty and was not created by `lightmedseg demo`; "
                                f"refusing to write there. Pass a new or empty folder.")
            if not overwrite:
                raise DemoError(f"--workdir {workdir} holds a previous `lightmedseg demo` run (its model, "
                                f"predictions and logs; see {workdir / 'demo_summary.json'}). Pass --overwrite to "
                                f"replace it, or another --workdir to keep it.")
            _clean(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("work folder of `lightmedseg demo` (`lightmedseg demo --overwrite` may replace "
                                  "its contents)\n")
    return workdir, created


def _clean(workdir: Path) -> None:
    """Delete the contents of a demo work folder (symlinked user datasets are unlinked, never followed)."""
    if not (workdir / MARKER).exists():
        return
    for child in workdir.iterdir():
        if child.is_symlink() or child.is_file():
            child.unlink()
        else:
            shutil.rmtree(child)


# ------------------------------------------------------------------------------------------------ results
def print_report(result: dict) -> None:
    print("\n" + "=" * 72)
    print(f"LightMedSeg demo: {result['dataset']}  trainer {result['trainer']}  ({result['device']})")
    print(f"Dice on {result['num_eval_cases']} {result['evaluated_on']}:")
    width = max(len(k) for k in result["dice"]) if result["dice"] else 4
    for name, dice in result["dice"].items():
        print(f"  {name:<{width}}  {dice:.4f}")
    print(f"  {'mean':<{width}}  {result['mean_dice']:.4f}  (foreground classes/regions)")
    cpu = result.get("cpu_seconds", {})
    times = ", ".join(f"{k} {v:.1f} s" + (f" (CPU {cpu[k]:.0f} s)" if k in cpu else "")
                      for k, v in result["seconds"].items())
    print(f"Time (wall): {times}; total {sum(result['seconds'].values()):.1f} s")
    print("=" * 72)


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
    uses = (f"nnUNet_raw={env['nnUNet_raw']} nnUNet_preprocessed={env['nnUNet_preprocessed']} "
            f"nnUNet_results={env['nnUNet_results']}")

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
            resume = (f" Resume the training from its last checkpoint: {uses} "
                      + display(current["cmd"]) + " --c")
        raise DemoInterrupted(f"interrupted during '{current['step']}'; kept {workdir} (what was done so far, "
                              f"logs in {logs}).{resume} Or run the demo again with --overwrite.") from None
    finally:
        if succeeded and clean:
            _clean(workdir)
            if created:
                workdir.rmdir()
            print(f"--clean: removed what this run created in {workdir}.")
        elif succeeded:
            print(f"Kept everything in {workdir}:\n  model          {model_dir}\n  predictions    "
                  f"{workdir / 'predictions' if ds.test_images is not None else summary.parent}\n  logs           "
                  f"{logs}\n  summary        {workdir / 'demo_summary.json'}\nUse it with nnU-Net: export {uses}; "
                  f"then e.g. nnUNetv2_predict -i IMAGES -o OUT -d {ds.dataset_id} -c {CONFIGURATION} -f {FOLD} "
                  f"-tr {trainer} -device {device}. Remove it with `rm -r {workdir}` (or run the demo with --clean).")
        elif not current.get("interrupted"):
            print(f"Logs kept in {logs}", file=sys.stderr)


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
    except (DemoError, CommandError) as e:
        print(f"lightmedseg demo: error: {e}", file=sys.stderr)
        return 1
    return 0


def demo_trainer_length(trainer: str = DEFAULT_TRAINER) -> Tuple[int, int]:
    """(epochs, iterations per epoch) of a package trainer, read from the class (for the help text)."""
    from nnunetv2_lightmedseg.training import ALL_TRAINERS

    cls = ALL_TRAINERS[trainer]
    return (int(cls.training_options.get("num_epochs", 300)),
            int(cls.training_options.get("num_iterations_per_epoch", 250)))


def add_parser(subparsers) -> None:
    epochs, iters = demo_trainer_length()
    p = subparsers.add_parser(
        "demo", help=f"plan -> train -> predict -> evaluate LightMedSeg with nnU-Net's commands (CPU; about "
                     f"{round(MEASURED_DEMO_SECONDS / 60)} minutes on 2 idle cores)",
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
    p.add_argument("--num-train", type=int, default=20, help="training cases of the generated dataset (default %(default)s)")
    p.add_argument("--num-test", type=int, default=4, help="held-out test cases of the generated dataset (default %(default)s)")
    add_device(p, what="nnU-Net's commands")
    p.add_argument("--num-processes", type=int, default=2,
                   help="processes for fingerprinting/preprocessing (nnU-Net's -np/-npfp; default %(default)s)")
    p.add_argument("--n-proc-da", type=int, default=0,
                   help="data-augmentation worker processes (nnUNet_n_proc_DA, unless already set in the "
                        "environment); default %(default)s = augment in the training process, best on 2 CPU cores")
    add_disable_tta(p)
    p.add_argument("--verbose", action="store_true", help="echo all of nnU-Net's output, not only the key lines")
    p.set_defaults(func=main)
