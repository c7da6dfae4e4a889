"""The demo's check of a user's nnU-Net raw dataset folder (``lightmedseg demo --dataset``), before anything is
written: names, dataset.json, one image per channel for every label, and whether held-out test labels exist."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from ..utils.names import case_name, parse_dataset_name
from . import DemoError


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
    return sorted(case_name(p.name, file_ending) for p in folder.iterdir()
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
