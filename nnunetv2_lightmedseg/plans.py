"""Plans override: LightMedSeg configurations for an already preprocessed nnU-Net dataset (paper §4).

The paper trains on 128^3 crops with batch size 8. nnU-Net plans its own patch and batch size per dataset
(for a GPU memory budget and a plain U-Net). Rather than re-planning, we add configurations to the dataset's
existing plans file with nnU-Net's own ``inherits_from`` convention (the same mechanism nnU-Net uses for
``3d_cascade_fullres``): every entry not given is inherited from ``3d_fullres``, including its
``data_identifier``, so the preprocessed data is reused as is (no re-preprocessing).

=================================  ======================================  =====================================
configuration                      patch / batch                            use when
=================================  ======================================  =====================================
``3d_fullres_lightmedseg``         128^3, batch 8 (the paper)               images at least ~128 voxels per axis
                                                                            (BraTS, ACDC after resampling): the
                                                                            paper's training setting
``3d_fullres_lightmedseg_planned`` nnU-Net's planned 3d_fullres patch,      images smaller than 128^3 (e.g.
                                   each axis rounded UP to a multiple of     hippocampus, ~35x50x35): a 128^3
                                   the network's divisor on that axis (16    crop would be mostly padding
                                   for isotropic plans), nnU-Net's planned
                                   batch size
=================================  ======================================  =====================================

Why the existing plans file (``-p nnUNetPlans``, the default) and not a new plans identifier: users then only add
``-c 3d_fullres_lightmedseg`` to the stock commands; a new identifier would also need ``-p`` on every train and
predict call. The stock configurations are left untouched; running ``lightmedseg plans`` again replaces only
its own two entries. (``nnUNetv2_plan_and_preprocess`` rewrites the plans file: run ``lightmedseg plans``
again afterwards.)

Writing the plans file: before the first change, the file is copied to ``nnUNetPlans.json.before_lightmedseg``
(one backup, of the plans as nnU-Net wrote them; refreshed only after nnU-Net re-planned the dataset). A symlinked
plans file stays a symlink: the file it points to is updated. A run that changes nothing does not write. A corrupt
plans file is reported with its name and how to restore it; nothing is written then.

Rounding the planned patch up (rather than leaving it): LightMedSeg pads every input to a multiple of its
divisor internally, so a planned 40x56x40 patch would be computed as 48x64x48 anyway, with zeros where real
context could be; rounding the crop up gives the network that context at no extra cost. The divisor is per
axis, from the resolution schedule the trainer derives from ``3d_fullres``'s strides
(:mod:`nnunetv2_lightmedseg.network.schedule`): thick-slice plans (e.g. ACDC, patch 10x256x224, z pooled once)
need no rounding at all and train with ``-c 3d_fullres`` as planned; the planned variant matters when nnU-Net
planned fewer than four poolings (small images such as hippocampus), where the schedule adds a step.

Thick-slice data and the 128^3 configuration: it inherits ``3d_fullres``'s (anisotropic) strides and kernels,
so the network stays plans-aware, but 128 slices of 5-10 mm are far more than such images have; use
``3d_fullres`` there.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

from .errors import LightMedSegError


BASE_CONFIGURATION = "3d_fullres"
PAPER_CONFIGURATION = "3d_fullres_lightmedseg"
PLANNED_CONFIGURATION = "3d_fullres_lightmedseg_planned"
PAPER_PATCH_SIZE = (128, 128, 128)
PAPER_BATCH_SIZE = 8
PLANS_VARIANTS = ("paper", "planned")
BACKUP_SUFFIX = ".before_lightmedseg"


class PlansOverrideError(LightMedSegError):
    """A problem with the dataset/plans that the user must fix (the message says how)."""


def round_up(patch_size: Sequence[int], divisor: Union[int, Sequence[int]]) -> List[int]:
    """Each axis rounded up to a multiple of ``divisor`` (an int, or one per axis)."""
    divisors = [int(divisor)] * len(patch_size) if isinstance(divisor, int) else [int(d) for d in divisor]
    return [int(math.ceil(int(p) / d) * d) for p, d in zip(patch_size, divisors)]


def schedule_divisor(configuration: Dict) -> List[int]:
    """Per-axis divisor of the LightMedSeg that ``nnUNetTrainer_LightMedSeg`` builds for a (resolved)
    configuration: the product of the strides the schedule takes from its architecture's strides."""
    from nnunetv2_lightmedseg.network.schedule import divisor, schedule_from_plans

    arch = configuration.get("architecture", {}).get("arch_kwargs", {})
    strides, _ = schedule_from_plans(arch.get("strides"), arch.get("kernel_sizes"))
    return list(divisor(strides))


def paper_configuration(base: str = BASE_CONFIGURATION) -> Dict:
    """The paper's setting (§4): 128^3 crops, batch size 8, everything else inherited from ``base``."""
    return {"inherits_from": base, "patch_size": list(PAPER_PATCH_SIZE), "batch_size": PAPER_BATCH_SIZE}


def planned_configuration(planned_patch_size: Sequence[int], planned_batch_size: int,
                          base: str = BASE_CONFIGURATION, divisor: Union[int, Sequence[int], None] = None) -> Dict:
    """nnU-Net's planned patch rounded up to a multiple of the network's divisor per axis (default: the paper's
    isotropic schedule's, from :mod:`~nnunetv2_lightmedseg.network.schedule`), nnU-Net's planned batch size."""
    if divisor is None:
        from nnunetv2_lightmedseg.network.schedule import divisor as schedule_divisor_of, schedule_from_plans
        divisor = list(schedule_divisor_of(schedule_from_plans(None, None)[0]))
    return {"inherits_from": base, "patch_size": round_up(planned_patch_size, divisor),
            "batch_size": int(planned_batch_size)}


def resolved_configuration(plans: Dict, name: str = BASE_CONFIGURATION) -> Dict:
    """Configuration ``name`` of ``plans`` with every entry it inherits (``inherits_from``, unusual for
    3d_fullres) resolved by nnU-Net's PlansManager, as nnU-Net reads it."""
    configuration = plans["configurations"][name]
    if "inherits_from" not in configuration:
        return dict(configuration)
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    return PlansManager(plans).get_configuration(name).configuration


def lightmedseg_configurations(plans: Dict, variants: Sequence[str] = PLANS_VARIANTS,
                               base: str = BASE_CONFIGURATION) -> Dict[str, Dict]:
    """The configurations to add to ``plans`` (a loaded nnU-Net plans dict), by name."""
    configs = plans.get("configurations", {})
    if base not in configs:
        raise PlansOverrideError(
            f"The plans have no '{base}' configuration (found: {sorted(configs)}). LightMedSeg is a 3D network: "
            f"plan the dataset with `nnUNetv2_plan_and_preprocess -d ID -c {base}`.")
    resolved = resolved_configuration(plans, base)
    if len(resolved.get("patch_size", [])) != 3:
        raise PlansOverrideError(f"'{base}' has patch size {resolved.get('patch_size')}; expected a 3D patch.")
    out = {}
    for v in variants:
        if v == "paper":
            out[PAPER_CONFIGURATION] = paper_configuration(base)
        elif v == "planned":
            out[PLANNED_CONFIGURATION] = planned_configuration(resolved["patch_size"], resolved["batch_size"], base,
                                                               schedule_divisor(resolved))
        else:
            raise ValueError(f"unknown variant {v!r}; choose from {PLANS_VARIANTS}")
    return out


def find_preprocessed_dataset(dataset: str, preprocessed_root: Optional[str] = None) -> Path:
    """Folder of ``dataset`` (an ID like ``4`` or a name like ``Dataset004_Hippocampus``) in nnUNet_preprocessed."""
    root = preprocessed_root or os.environ.get("nnUNet_preprocessed")
    if not root:
        raise PlansOverrideError("nnUNet_preprocessed is not set. Export it (the folder nnU-Net preprocessed the "
                                 "dataset into) and run `nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres` first.")
    root_p = Path(root)
    if not root_p.is_dir():
        raise PlansOverrideError(f"nnUNet_preprocessed={root} does not exist. Run "
                                 f"`nnUNetv2_plan_and_preprocess -d ID -c 3d_fullres` first.")
    name = dataset_name(dataset, root)
    if name is None or not (root_p / name).is_dir():
        raise PlansOverrideError(f"Dataset {dataset} is not preprocessed: nothing matching it in "
                                 f"nnUNet_preprocessed={root}. Run `nnUNetv2_plan_and_preprocess -d {dataset} -c "
                                 f"3d_fullres` first.")
    return root_p / name


def dataset_name(dataset: str, preprocessed_root: str) -> Optional[str]:
    """``DatasetXXX_Name`` of ``dataset`` (an ID or a name) by nnU-Net's own lookup (``maybe_convert_to_dataset_name``:
    the folders of that ID in nnUNet_preprocessed, nnUNet_raw and nnUNet_results), with nnUNet_preprocessed =
    ``preprocessed_root``; None when nnU-Net finds none."""
    from nnunetv2.utilities.dataset_name_id_conversion import find_candidate_datasets, maybe_convert_to_dataset_name

    # nnunetv2.paths reads the variable at each use; set for this lookup only, restored after it
    with _environment("nnUNet_preprocessed", str(preprocessed_root)):
        try:
            return maybe_convert_to_dataset_name(str(dataset))
        except ValueError:
            raise PlansOverrideError(f"-d {dataset!r}: give a dataset ID (e.g. 4) or a name (e.g. "
                                     f"Dataset004_Hippocampus).") from None
        except RuntimeError:  # none, or several names for this ID
            candidates = [str(c) for c in find_candidate_datasets(int(dataset))]
    if len(candidates) > 1:
        raise PlansOverrideError(f"Several datasets match ID {dataset} (nnUNet_preprocessed={preprocessed_root}, "
                                 f"nnUNet_raw, nnUNet_results): {candidates}. Pass the full name with -d.")
    return None


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` inside the block, the previous value (or its absence) restored after it."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@contextlib.contextmanager
def plans_lock(plans_file: Path) -> Iterator[None]:
    """An exclusive lock (``fcntl.flock``) on a lock file beside ``plans_file`` for one read-modify-write: two
    ``lightmedseg plans`` at once then run one after the other, so the second sees the first's plans and the
    backup keeps the plans as nnU-Net wrote them."""
    lock = Path(os.path.realpath(plans_file)).with_name(f".{Path(plans_file).name}.lightmedseg.lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise PlansOverrideError(f"cannot write next to {plans_file} ({e.strerror}): run the command as the user "
                                 f"who owns nnUNet_preprocessed") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_plans_override(dataset: str, plans_identifier: str = "nnUNetPlans", variants: Sequence[str] = PLANS_VARIANTS,
                         preprocessed_root: Optional[str] = None) -> Dict:
    """Add the LightMedSeg configurations to ``<nnUNet_preprocessed>/<dataset>/<plans_identifier>.json``.

    Returns ``{"plans_file", "configurations" (the entries written), "median_shape", "recommended"}``.
    """
    folder = find_preprocessed_dataset(dataset, preprocessed_root)
    plans_file = folder / f"{plans_identifier}.json"
    if not plans_file.is_file():
        found = sorted(p.stem for p in folder.glob("*.json") if p.stem not in ("dataset", "dataset_fingerprint",
                                                                                "splits_final"))
        raise PlansOverrideError(f"Plans file {plans_file} does not exist (plans found: {found or 'none'}). Run "
                                 f"`nnUNetv2_plan_and_preprocess -d {dataset} -c 3d_fullres` first, or pass the "
                                 f"plans identifier you planned with via -p.")
    with plans_lock(plans_file):
        return _write_plans_override(folder, plans_file, dataset, plans_identifier, variants)


def _write_plans_override(folder: Path, plans_file: Path, dataset: str, plans_identifier: str,
                          variants: Sequence[str]) -> Dict:
    plans = read_plans(plans_file, dataset)
    new = lightmedseg_configurations(plans, variants)
    data_identifier = resolved_configuration(plans).get("data_identifier")
    if data_identifier and not (folder / data_identifier).is_dir():
        raise PlansOverrideError(f"The '{BASE_CONFIGURATION}' data ({folder / data_identifier}) is not preprocessed; the "
                                 f"LightMedSeg configurations reuse it. Run `nnUNetv2_preprocess -d {dataset} -plans_name "
                                 f"{plans_identifier} -c {BASE_CONFIGURATION}` first.")
    changed = any(plans["configurations"].get(name) != cfg for name, cfg in new.items())
    backup = None
    if changed:
        backup = backup_plans(plans_file, plans)
        plans["configurations"].update(new)
        write_through(plans_file, json.dumps(plans, indent=4, sort_keys=False))
    median = plans.get("original_median_shape_after_transp")
    small = median is not None and any(int(m) < p for m, p in zip(median, PAPER_PATCH_SIZE))
    return {"plans_file": str(plans_file), "configurations": new, "median_shape": median,
            "recommended": PLANNED_CONFIGURATION if small else PAPER_CONFIGURATION, "changed": changed,
            "backup": str(backup) if backup else None}


def backup_path(plans_file: Path) -> Path:
    """``nnUNetPlans.json`` -> ``nnUNetPlans.json.before_lightmedseg`` (not ``*.json``: nnU-Net and ``-p`` would take
    a ``*.json`` file in the dataset folder for another plans identifier)."""
    return Path(plans_file).with_name(Path(plans_file).name + BACKUP_SUFFIX)


def read_plans(plans_file: Path, dataset: str) -> Dict:
    """The plans dict; a corrupt file is a PlansOverrideError that names the file and how to get it back."""
    try:
        plans = json.loads(Path(plans_file).read_text())
    except json.JSONDecodeError as e:
        backup = backup_path(plans_file)
        fix = (f"restore it from the backup written before LightMedSeg first changed it (cp {backup} {plans_file}) "
               f"or " if backup.is_file() else "")
        raise PlansOverrideError(f"{plans_file} is not valid JSON ({e.msg}, line {e.lineno} column {e.colno}); "
                                 f"nothing was changed. Fix the file by hand, {fix}re-create it with "
                                 f"`nnUNetv2_plan_experiment -d {dataset}` (the preprocessed data stays valid when "
                                 f"the plans do not change).") from None
    if not isinstance(plans, dict) or not isinstance(plans.get("configurations"), dict):
        raise PlansOverrideError(f"{plans_file} is not an nnU-Net plans file (no 'configurations' entry). "
                                 f"Re-create it with `nnUNetv2_plan_experiment -d {dataset}`.")
    return plans


def backup_plans(plans_file: Path, plans: Dict) -> Optional[Path]:
    """Copy the plans file before LightMedSeg changes it; returns the backup written (None: kept the existing one).

    One backup holds the plans as nnU-Net wrote them: it is written when there is none, and replaced only when the
    plans file holds no LightMedSeg configuration any more (nnU-Net re-planned the dataset since)."""
    backup = backup_path(plans_file)
    ours = any(name in plans["configurations"] for name in (PAPER_CONFIGURATION, PLANNED_CONFIGURATION))
    if backup.exists() and ours:
        return None
    write_through(backup, Path(plans_file).read_text())  # under plans_lock: the file read_plans just read
    return backup


def write_through(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically; a symlinked file is written through (the link stays a link and the
    file it points to gets the content), with the link target's permissions."""
    target = Path(os.path.realpath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".lightmedseg.tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if target.exists():
            shutil.copymode(target, tmp)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)  # atomic: a crash never leaves a half-written file
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def snippet_json(obj: Dict) -> str:
    """How the shipped snippets are serialised (so a test can compare the files byte for byte)."""
    return json.dumps(obj, indent=4) + "\n"


def write_shipped_snippets(folder: str) -> List[Path]:
    """Regenerate the JSON files of ``plans_overrides/`` (``python -m nnunetv2_lightmedseg.plans plans_overrides``)."""
    paths = []
    for name, obj in shipped_snippets().items():
        path = Path(folder) / name
        path.write_text(snippet_json(obj))
        paths.append(path)
    return paths


def shipped_snippets() -> Dict[str, Dict]:
    """The JSON files of the top-level ``plans_overrides/`` folder, by file name, as this code produces them.

    ``3d_fullres_lightmedseg.json`` is dataset-independent. The planned variant depends on the dataset's plans;
    the example is nnU-Net's 3d_fullres plan for Dataset004_Hippocampus (patch 40x56x40, batch 7, as planned on a machine of this project).
    """
    return {
        f"{PAPER_CONFIGURATION}.json": {PAPER_CONFIGURATION: paper_configuration()},
        f"Dataset004_Hippocampus_{PLANNED_CONFIGURATION}.json":
            {PLANNED_CONFIGURATION: planned_configuration((40, 56, 40), 7)},
    }


if __name__ == "__main__":
    import sys

    for written in write_shipped_snippets(sys.argv[1] if len(sys.argv) > 1 else "plans_overrides"):
        print(written)
