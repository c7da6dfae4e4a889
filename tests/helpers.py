"""Shared test helpers: tiny nnU-Net raw datasets and nnU-Net's own commands in subprocesses.

The datasets are random 3D blobs (an ellipsoid "core" inside a "shell", plus a second small ellipsoid), on
noise, written in nnU-Net's raw layout (imagesTr/labelsTr/dataset.json). ``regions=True`` writes a BraTS-like
dataset (several channels, nnU-Net region labels with ``regions_class_order``).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's console scripts (nnUNetv2_*, lightmedseg)


def write_blob_dataset(raw_root: Path, dataset_id: int, name: str = "LMSBlobs", n_cases: int = 4,
                       shape: Tuple[int, int, int] = (32, 40, 36), n_channels: int = 1, regions: bool = False,
                       seed: int = 0, blob_label: bool = False) -> Path:
    """Write ``Dataset{id:03d}_{name}`` under ``raw_root`` and return its folder.

    Labels: 0 background, 1 core, 2 shell around the core, 3 a separate small blob (label mode: 0..2 only
    unless ``blob_label``, then four labels 0..3). Region mode: labels 1..3 as above, regions
    ``whole = (1, 2, 3)``, ``inner = (1, 3)``, ``core = (1,)`` (nested like BraTS' whole tumour / tumour core /
    enhancing).
    """
    import SimpleITK as sitk
    from batchgenerators.utilities.file_and_folder_operations import save_json

    rng = np.random.default_rng(seed)
    root = Path(raw_root) / f"Dataset{dataset_id:03d}_{name}"
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), 0).astype(np.float32)
    for i in range(n_cases):
        centre = np.array(shape) / 2 + rng.uniform(-3, 3, 3)
        radii = rng.uniform(5, 8, 3)
        r = np.sqrt((((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0))
        seg = np.zeros(shape, np.uint8)
        seg[r < 1.4] = 2
        seg[r < 1.0] = 1
        if regions or blob_label:
            c2 = centre + np.array([0, radii[1] * 0.6, 0])
            seg[np.sqrt(((grid - c2[:, None, None, None]) ** 2).sum(0)) < 2.5] = 3
        for ch in range(n_channels):
            contrast = {1: 60 + 10 * ch, 2: 30 - 5 * ch, 3: 90}
            img = 100 + rng.normal(0, 10, shape)
            for lab, val in contrast.items():
                img[seg == lab] += val
            im = sitk.GetImageFromArray(img.astype(np.float32))
            im.SetSpacing((1.0, 1.0, 1.5))
            sitk.WriteImage(im, str(root / "imagesTr" / f"case{i:03d}_{ch:04d}.nii.gz"))
        im = sitk.GetImageFromArray(seg)
        im.SetSpacing((1.0, 1.0, 1.5))
        sitk.WriteImage(im, str(root / "labelsTr" / f"case{i:03d}.nii.gz"))
    channel_names = {str(c): f"MRI{c}" for c in range(n_channels)}
    if regions:
        labels = {"background": 0, "whole": [1, 2, 3], "inner": [1, 3], "core": 1}
        extra = {"regions_class_order": [2, 3, 1]}
    else:
        labels = {"background": 0, "core": 1, "shell": 2, **({"blob": 3} if blob_label else {})}
        extra = {}
    save_json({"channel_names": channel_names, "labels": labels, "numTraining": n_cases, "file_ending": ".nii.gz",
               **extra}, str(root / "dataset.json"))
    return root


def nnunet_env(base: Path, **extra: str) -> Dict[str, str]:
    """Environment for nnU-Net subprocesses with raw/preprocessed/results under ``base`` and our trainers
    folder in ``nnUNet_extTrainer`` (the package's :func:`~nnunetv2_lightmedseg.utils.nnunet_env.nnunet_env`
    with shorter folder names); no torch.compile, 2 OpenMP threads (a 2-core machine)."""
    from nnunetv2_lightmedseg.utils.nnunet_env import SHORT_FOLDER_NAMES
    from nnunetv2_lightmedseg.utils.nnunet_env import nnunet_env as package_env

    env = package_env(base, folder_names=SHORT_FOLDER_NAMES)
    env.update(nnUNet_compile="f", OMP_NUM_THREADS="2", PYTHONWARNINGS="ignore")
    env.update(extra)
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        Path(env[k]).mkdir(parents=True, exist_ok=True)
    return env


def run_cmd(args: Sequence[str], env: Dict[str, str], timeout: float = 1800, check: bool = True):
    """Run a console command of the venv (``nnUNetv2_*``, ``lightmedseg``) with the package's runner
    (:func:`~nnunetv2_lightmedseg.utils.process.run_command`) in its own process group: on a timeout or Ctrl-C
    the whole group is killed (``lightmedseg demo`` and ``nnUNetv2_*`` start worker processes that would
    otherwise outlive the test and keep loading the CPU). On failure or timeout, AssertionError with the output;
    returns the result (``returncode``, ``stdout``, ``stderr``)."""
    from nnunetv2_lightmedseg.utils.process import run_command

    exe = BIN / args[0]
    cmd = [str(exe) if exe.exists() else args[0], *map(str, args[1:])]
    p = run_command(cmd, env, merge_stderr=False, timeout=timeout, own_group=True)
    if p.timed_out:
        raise AssertionError(f"{' '.join(cmd)} timed out after {timeout} s:\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


#: the same runner; the end-to-end tests call it by this name
run_console = run_cmd


def plan_and_preprocess(env: Dict[str, str], dataset_id: int, configurations: Sequence[str] = ("3d_fullres",),
                        extra: Optional[Sequence[str]] = None) -> None:
    """``nnUNetv2_plan_and_preprocess -d ID -c ... -np 1 --verify_dataset_integrity`` in a subprocess."""
    run_cmd(["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-c", *configurations, "-np", "1",
             "--verify_dataset_integrity", *(extra or [])], env)


_TINY: Dict[str, Path] = {}
TINY_ID = 990
TINY_NAME = f"Dataset{TINY_ID}_LMSBlobs"


def tiny_preprocessed_dataset() -> Path:
    """A 5-case blob dataset planned and preprocessed (3d_fullres) once per test process by the functions that
    ``nnUNetv2_plan_and_preprocess`` runs (nnU-Net's ``plan_and_preprocess_api``: fingerprint, ExperimentPlanner,
    DefaultPreprocessor), called in this process: no nnU-Net command is started, which keeps the fast test tier
    fast (the command itself runs in the end-to-end tests). Returns the base folder holding raw/, preprocessed/,
    results/."""
    if "base" not in _TINY:
        import atexit
        import shutil
        import tempfile
        from unittest import mock

        from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                           preprocess)

        base = Path(tempfile.mkdtemp(prefix="lms_tiny_pp_"))
        atexit.register(shutil.rmtree, base, True)
        write_blob_dataset(base / "raw", TINY_ID, "LMSBlobs", n_cases=5)  # 5: nnU-Net's 5-fold split
        paths = {k: v for k, v in nnunet_env(base).items() if k.startswith("nnUNet_")}
        with mock.patch.dict(os.environ, paths):  # nnU-Net reads its folders from the environment when needed
            extract_fingerprints([TINY_ID], num_processes=1, check_dataset_integrity=False, verbose=False)
            plan_experiments([TINY_ID])
            preprocess([TINY_ID], configurations=("3d_fullres",), num_processes=(1,), verbose=False)
        _TINY["base"] = base
    return _TINY["base"]


# ------------------------------------------------------------------------------ real data (end-to-end tests)
HIPPOCAMPUS = REPO.parent / "shared" / "data" / "Dataset004_Hippocampus"
HIPPOCAMPUS_MISSING = (f"real data absent: {HIPPOCAMPUS} (Dataset004_Hippocampus in nnU-Net raw layout, expected "
                       f"at ../shared/data relative to the repository)")


def hippocampus_subset(dest_root: Path, n_train: int = 12, n_test: int = 3,
                       name: str = "Dataset004_Hippocampus") -> Path:
    """A small raw dataset ``dest_root/name`` of symlinks to the first ``n_train`` hippocampus training cases
    (imagesTr/labelsTr) and the next ``n_test`` as held-out imagesTs/labelsTs; dataset.json copied with
    numTraining set to ``n_train``. Nothing is copied (the images stay in ../shared)."""
    import json

    cases = sorted(p.name[: -len(".nii.gz")] for p in (HIPPOCAMPUS / "labelsTr").glob("*.nii.gz"))
    if len(cases) < n_train + n_test:
        raise ValueError(f"{HIPPOCAMPUS} has {len(cases)} cases, fewer than {n_train + n_test}")
    root = Path(dest_root) / name
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(cases[: n_train + n_test]):
        suffix = "Tr" if i < n_train else "Ts"
        (root / f"images{suffix}" / f"{case}_0000.nii.gz").symlink_to(HIPPOCAMPUS / "imagesTr" / f"{case}_0000.nii.gz")
        (root / f"labels{suffix}" / f"{case}.nii.gz").symlink_to(HIPPOCAMPUS / "labelsTr" / f"{case}.nii.gz")
    dataset_json = json.loads((HIPPOCAMPUS / "dataset.json").read_text())
    dataset_json["numTraining"] = n_train
    (root / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return root


def preprocessed_json_copy(dest_root: Path) -> Path:
    """A copy of the tiny preprocessed dataset's JSON files under ``dest_root/preprocessed`` (its 3d_fullres data
    folder only created, empty: the plans commands only check that it exists); returns the dataset folder."""
    import json
    import shutil

    src = tiny_preprocessed_dataset() / "preprocessed" / TINY_NAME
    dst = Path(dest_root) / "preprocessed" / TINY_NAME
    dst.mkdir(parents=True)
    for f in src.glob("*.json"):
        shutil.copy(f, dst / f.name)
    plans = json.loads((dst / "nnUNetPlans.json").read_text())
    (dst / plans["configurations"]["3d_fullres"]["data_identifier"]).mkdir()
    return dst
