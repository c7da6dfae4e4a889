"""Grouped k-fold splits for nnU-Net: every case of one group (a patient's frames, a subject's visits) in one fold.

nnU-Net's default ``splits_final.json`` is a seeded ``KFold`` over the sorted case identifiers, which knows nothing
of patients: on ACDC (two frames per patient, ``patientNNN_frameMM``) it puts one frame of a patient in training
and the other in validation, and the validation Dice then measures memory of that patient's heart. This module
does nnU-Net's ``KFold`` (same seed, same shuffling) over the *groups* instead and writes the result where nnU-Net
reads it, in its own format (a list of ``{"train": [...], "val": [...]}``).
"""
from __future__ import annotations

import json
import os
import re
from typing import Dict, List, Optional, Sequence

from ..errors import LightMedSegError
from ..utils.files import atomic_write_text, refuse_existing

#: nnU-Net's seed and fold count for its default split (``nnUNetTrainer.do_split``)
NNUNET_SEED = 12345
NNUNET_FOLDS = 5
#: the group pattern for ACDC's ``patientNNN_frameMM`` case names (documented example)
ACDC_PATTERN = r"^(patient\d+)_frame\d+$"


class SplitError(LightMedSegError):
    """The cases cannot be split as asked (pattern, fold count, existing split)."""


def group_of(identifiers: Sequence[str], pattern: str) -> Dict[str, str]:
    """Case identifier -> group key: the first capture group of ``pattern`` (``re.search``), or the whole match
    when the pattern has no group. Raises :class:`SplitError` naming cases the pattern does not match."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise SplitError(f"--group-by {pattern!r} is not a valid regular expression ({e})") from None
    groups, unmatched = {}, []
    for case in identifiers:
        m = regex.search(case)
        if m is None or not (m.group(1) if regex.groups else m.group(0)):
            unmatched.append(case)
        else:
            groups[case] = m.group(1) if regex.groups else m.group(0)
    if unmatched:
        shown = ", ".join(unmatched[:3]) + (", ..." if len(unmatched) > 3 else "")
        raise SplitError(f"--group-by {pattern!r} does not match {len(unmatched)} of {len(identifiers)} cases "
                         f"({shown}): give a pattern that matches every case identifier, e.g. "
                         f"{ACDC_PATTERN!r} for names like patient001_frame01")
    return groups


def grouped_splits(identifiers: Sequence[str], pattern: str, n_splits: int = NNUNET_FOLDS,
                   seed: int = NNUNET_SEED) -> List[Dict[str, List[str]]]:
    """``n_splits`` folds in nnU-Net's ``splits_final.json`` format with no group in two folds' validation sets and
    no group in both training and validation of a fold. nnU-Net's ``KFold(shuffle=True, random_state=seed)`` runs
    over the sorted unique groups; each fold's lists are sorted. Deterministic for a given set of cases."""
    from sklearn.model_selection import KFold

    if n_splits < 2:
        raise SplitError(f"--folds must be at least 2, got {n_splits}")
    cases = sorted(set(identifiers))
    if not cases:
        raise SplitError("the dataset has no training cases to split")
    groups = group_of(cases, pattern)
    keys = sorted(set(groups.values()))
    if len(keys) < n_splits:
        raise SplitError(f"--group-by {pattern!r} gives {len(keys)} group(s), fewer than the {n_splits} folds "
                         f"asked for: use fewer folds (--folds) or a finer pattern")
    splits = []
    for _, val_idx in KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(keys):
        val_groups = {keys[i] for i in val_idx}
        splits.append({"train": [c for c in cases if groups[c] not in val_groups],
                       "val": [c for c in cases if groups[c] in val_groups]})
    return splits


def dataset_identifiers(dataset: str) -> List[str]:
    """The training case identifiers nnU-Net splits: those of the preprocessed 3d data if it exists (what
    ``do_split`` reads), else those of the raw dataset's ``imagesTr``/dataset.json."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    nnUNet_raw, nnUNet_preprocessed = os.environ.get("nnUNet_raw"), os.environ.get("nnUNet_preprocessed")

    raw = os.path.join(nnUNet_raw or "", dataset)
    if nnUNet_raw and os.path.isfile(os.path.join(raw, "dataset.json")):
        return sorted(get_filenames_of_train_images_and_targets(raw, load_json(os.path.join(raw, "dataset.json"))))
    pre = os.path.join(nnUNet_preprocessed or "", dataset)
    if nnUNet_preprocessed and os.path.isfile(os.path.join(pre, "dataset.json")):
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
        for sub in sorted(os.listdir(pre)):
            folder = os.path.join(pre, sub)
            if os.path.isdir(folder) and not sub.startswith("gt_segmentations"):
                try:
                    return sorted(infer_dataset_class(folder).get_identifiers(folder))
                except Exception:  # a folder that is not preprocessed data
                    continue
    raise SplitError(f"found {dataset} neither in nnUNet_raw ({nnUNet_raw}) nor in nnUNet_preprocessed "
                     f"({nnUNet_preprocessed}): set the nnU-Net environment variables")


def splits_file(dataset: str) -> str:
    """Where nnU-Net reads the split of ``dataset``: ``$nnUNet_preprocessed/<dataset>/splits_final.json``."""
    nnUNet_preprocessed = os.environ.get("nnUNet_preprocessed")
    if not nnUNet_preprocessed:
        raise SplitError("nnUNet_preprocessed is not set: set the nnU-Net environment variables first")
    return os.path.join(nnUNet_preprocessed, dataset, "splits_final.json")


def write_grouped_splits(dataset_name_or_id: str, pattern: str, n_splits: int = NNUNET_FOLDS,
                         seed: int = NNUNET_SEED, output: Optional[str] = None, overwrite: bool = False) -> dict:
    """Compute the grouped split of a dataset and write it (default: nnU-Net's ``splits_final.json``).

    An existing file with the same split is left untouched; one with another split is refused unless
    ``overwrite`` (the trainings of its folds would no longer match their split). Returns ``{"path", "splits",
    "groups", "changed"}``."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        dataset = maybe_convert_to_dataset_name(str(dataset_name_or_id))
    except RuntimeError as e:
        raise SplitError(f"-d {dataset_name_or_id}: {e}") from None
    identifiers = dataset_identifiers(dataset)
    splits = grouped_splits(identifiers, pattern, n_splits, seed)
    path = output or splits_file(dataset)
    groups = group_of(identifiers, pattern)
    result = {"path": path, "splits": splits, "groups": len(set(groups.values())), "changed": False}
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                if json.load(f) == splits:
                    return result
        except (OSError, ValueError):
            pass
    refuse_existing([path], overwrite)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps(splits, indent=4) + "\n")
    result["changed"] = True
    return result


def check_grouping(splits: Sequence[Dict[str, List[str]]], pattern: str) -> List[str]:
    """Problems of an existing split under ``pattern``: groups with cases on both sides of a fold. Empty when
    the split keeps every group together (used to check nnU-Net's default split, which does not)."""
    problems = []
    for i, fold in enumerate(splits):
        train = set(group_of(fold["train"], pattern).values())
        val = set(group_of(fold["val"], pattern).values())
        shared = sorted(train & val)
        if shared:
            problems.append(f"fold {i}: {len(shared)} group(s) in training and validation ({', '.join(shared[:3])}"
                            f"{', ...' if len(shared) > 3 else ''})")
    return problems
