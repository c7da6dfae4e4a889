"""The ``nnUNet_*`` environment that nnU-Net's commands read.

* ``nnUNet_extTrainer``: nnunetv2 >= 2.8 searches the folders it lists (separated by ``os.pathsep``) for trainer
  classes it does not ship; :func:`ext_trainer_value` appends this package's trainers folder (``lightmedseg
  env`` prints it, the demo and the tests set it).
* :func:`nnunet_env`: raw/preprocessed/results folders inside one work folder (the demo's, a test's).
* :func:`planning_env`, :func:`training_env`: what ``nnUNetv2_plan_and_preprocess`` and ``nnUNetv2_train`` need
  on a small CPU machine.

Imports neither torch nor nnU-Net (``lightmedseg env`` runs in milliseconds).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping, Optional

ENV_VAR = "nnUNet_extTrainer"
#: nnU-Net's three data folders, named as the variables (the demo's work-folder layout)
FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
#: the shorter layout of the tests and scripts/gpu_check.py: raw/, preprocessed/, results/
SHORT_FOLDER_NAMES = {"nnUNet_raw": "raw", "nnUNet_preprocessed": "preprocessed", "nnUNet_results": "results"}


def trainers_folder() -> str:
    """Absolute path of the folder that holds only the trainer modules."""
    return str((Path(__file__).resolve().parents[1] / "trainers"))


def ext_trainer_value(current: Optional[str] = None) -> str:
    """The value ``nnUNet_extTrainer`` should have: ``current`` with our folder appended if missing."""
    folder = trainers_folder()
    if not current:
        return folder
    parts = [p for p in current.split(os.pathsep) if p]
    if any(os.path.abspath(p) == folder for p in parts):
        return current
    return current + os.pathsep + folder


def nnunet_env(workdir: Path, base: Optional[Mapping[str, str]] = None,
               folder_names: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment for nnU-Net commands whose raw/preprocessed/results folders live in ``workdir``.

    ``base`` (default ``os.environ``) is copied; the folders are ``workdir/<name>`` with the names of
    ``folder_names`` (variable -> sub-folder; default: the variable's name). ``nnUNet_extTrainer`` gets the
    trainers folder appended (as ``lightmedseg env`` prints it); output is unbuffered so that a log shows
    nnU-Net's prints line by line.
    """
    env = dict(os.environ if base is None else base)
    workdir = Path(workdir).resolve()
    for var in FOLDERS:
        env[var] = str(workdir / (folder_names or {}).get(var, var))
    env[ENV_VAR] = ext_trainer_value(env.get(ENV_VAR))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def planning_env(env: Mapping[str, str]) -> Dict[str, str]:
    """``env`` for ``nnUNetv2_plan_and_preprocess``: without ``nnUNet_n_proc_DA`` < 1.

    nnU-Net's planner calls ``torch.set_num_threads(get_allowed_n_proc_DA())`` (nnunetv2 2.8,
    default_experiment_planner.py) and crashes with "set_num_threads expects a positive integer" when the
    variable is 0, although 0 is valid for training (augmentation in the training process).
    """
    env = dict(env)
    if env.get("nnUNet_n_proc_DA", "").strip() and int(env["nnUNet_n_proc_DA"]) < 1:
        del env["nnUNet_n_proc_DA"]
    return env


def training_env(env: Mapping[str, str], n_proc_da: int) -> Dict[str, str]:
    """``env`` for ``nnUNetv2_train``: ``nnUNet_n_proc_DA`` = ``n_proc_da`` unless the user set it already.

    nnU-Net's default is 12 augmentation worker processes (capped at the CPU count). On a 2-core CPU torch's
    two threads already use both cores; augmenting in the training process (0) avoids the workers' start-up
    and competition for the cores.
    """
    env = dict(env)
    env.setdefault("nnUNet_n_proc_DA", str(n_proc_da))
    # the final validation exports its segmentations through a spawn pool of nnUNet_def_n_proc (default 8)
    # processes, each importing torch and nnU-Net: minutes of start-up on 2 cores for a few tiny volumes
    env.setdefault("nnUNet_def_n_proc", "1")
    return env
