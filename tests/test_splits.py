"""Grouped k-fold splits (``lightmedseg splits``): grouping, determinism, nnU-Net's format, refusal to overwrite."""
import json
import os
from pathlib import Path

import pytest

from nnunetv2_lightmedseg.cli.main import main
from nnunetv2_lightmedseg.data.splits import (ACDC_PATTERN, SplitError, check_grouping, group_of, grouped_splits,
                                              write_grouped_splits)

ACDC_LIKE = [f"patient{p:03d}_frame{f:02d}" for p in range(1, 24) for f in (1, 12)]
ACDC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "Dataset027_ACDC"


def test_every_group_in_one_fold_and_every_case_validated_once():
    splits = grouped_splits(ACDC_LIKE, ACDC_PATTERN)
    assert len(splits) == 5
    val = [c for fold in splits for c in fold["val"]]
    assert sorted(val) == sorted(ACDC_LIKE)  # each case validated exactly once
    for fold in splits:
        assert set(fold["train"]).isdisjoint(fold["val"])
        assert sorted(fold["train"] + fold["val"]) == sorted(ACDC_LIKE)
        assert fold["train"] == sorted(fold["train"]) and fold["val"] == sorted(fold["val"])
    assert check_grouping(splits, ACDC_PATTERN) == []


def test_nnunet_default_split_leaks_patients_and_ours_does_not():
    from nnunetv2.utilities.crossval_split import generate_crossval_split
    default = generate_crossval_split(sorted(ACDC_LIKE), seed=12345, n_splits=5)
    assert check_grouping(default, ACDC_PATTERN)  # the reason the command exists
    assert not check_grouping(grouped_splits(ACDC_LIKE, ACDC_PATTERN), ACDC_PATTERN)


def test_deterministic_and_independent_of_input_order():
    a = grouped_splits(ACDC_LIKE, ACDC_PATTERN)
    b = grouped_splits(list(reversed(ACDC_LIKE)), ACDC_PATTERN)
    assert a == b
    assert grouped_splits(ACDC_LIKE, ACDC_PATTERN, seed=1) != a  # the seed matters


def test_whole_match_when_the_pattern_has_no_group():
    assert group_of(["s01_visit1", "s01_visit2", "s02_visit1"], r"s\d+") == {
        "s01_visit1": "s01", "s01_visit2": "s01", "s02_visit1": "s02"}


@pytest.mark.parametrize("pattern, folds, message", [
    ("xyz", 5, "does not match 46 of 46 cases"),
    ("frame", 5, "1 group(s), fewer than the 5 folds"),
    ("(", 5, "not a valid regular expression"),
    (ACDC_PATTERN, 1, "at least 2"),
])
def test_clear_errors(pattern, folds, message):
    with pytest.raises(SplitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        grouped_splits(ACDC_LIKE, pattern, folds)


def test_partial_match_names_the_unmatched_cases():
    with pytest.raises(SplitError, match=r"does not match 1 of 47 cases \(odd_case\)"):
        grouped_splits(ACDC_LIKE + ["odd_case"], ACDC_PATTERN)


def _dataset(tmp_path: Path, monkeypatch) -> Path:
    raw = tmp_path / "raw" / "Dataset991_Frames"
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    for case in ACDC_LIKE:
        (raw / "imagesTr" / f"{case}_0000.nii.gz").write_bytes(b"")
        (raw / "labelsTr" / f"{case}.nii.gz").write_bytes(b"")
    (raw / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MR"}, "labels": {"background": 0, "a": 1},
                                                  "numTraining": len(ACDC_LIKE), "file_ending": ".nii.gz"}))
    for name in ("raw", "preprocessed", "results"):
        (tmp_path / name).mkdir(exist_ok=True)
        monkeypatch.setenv(f"nnUNet_{name}", str(tmp_path / name))
    return tmp_path / "preprocessed" / "Dataset991_Frames" / "splits_final.json"


def test_command_writes_nnunet_split_and_refuses_to_replace_another(tmp_path, monkeypatch, capsys):
    target = _dataset(tmp_path, monkeypatch)
    assert main(["splits", "-d", "991", "--group-by", ACDC_PATTERN]) == 0
    written = json.loads(target.read_text())
    assert written == grouped_splits(ACDC_LIKE, ACDC_PATTERN)
    mtime = target.stat().st_mtime_ns
    assert main(["splits", "-d", "991", "--group-by", ACDC_PATTERN]) == 0  # same split: untouched
    assert "unchanged" in capsys.readouterr().out and target.stat().st_mtime_ns == mtime
    capsys.readouterr()
    assert main(["splits", "-d", "991", "--group-by", ACDC_PATTERN, "--seed", "3"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert json.loads(target.read_text()) == written  # nothing changed
    assert main(["splits", "-d", "991", "--group-by", ACDC_PATTERN, "--seed", "3", "--overwrite"]) == 0
    assert json.loads(target.read_text()) == grouped_splits(ACDC_LIKE, ACDC_PATTERN, seed=3)
    assert not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(not ACDC.is_dir(), reason=f"real ACDC data not found at {ACDC}")
def test_real_acdc_patients_stay_together(monkeypatch):
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets
    cases = sorted(get_filenames_of_train_images_and_targets(str(ACDC), json.loads((ACDC / "dataset.json").read_text())))
    splits = grouped_splits(cases, ACDC_PATTERN)
    assert [len(f["val"]) for f in splits] == [28] * 5 and check_grouping(splits, ACDC_PATTERN) == []
