"""``lightmedseg benchmark predict``: case listing, ABBA interleaving, rows (fast); the real run is in
test_workflows.py (slow: it needs trained models)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nnunetv2_lightmedseg.benchmark import predict as P
from nnunetv2_lightmedseg.utils.names import case_name


class FakePredictor:
    """Records the calls nnU-Net's predictor would get; writes the output file it is asked for."""

    def __init__(self, name, log):
        self.name, self.log, self.use_mirroring = name, log, None

    def predict_from_files_sequential(self, cases, outputs, save_probabilities, overwrite):
        assert len(cases) == len(outputs) == 1 and save_probabilities is False
        self.log.append((self.name, os.path.basename(cases[0][0]), self.use_mirroring))
        Path(outputs[0] + ".nii.gz").write_text("x")


def _touch(folder: Path, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_text("")


def test_time_predictions_interleaves_abba_sets_mirroring_and_writes_each_models_output(tmp_path):
    log = []
    preds = {"A": FakePredictor("A", log), "B": FakePredictor("B", log)}
    cases = [[f"/in/c{i}_0000.nii.gz"] for i in range(4)]
    times = P.time_predictions(preds, cases, ".nii.gz", mirroring=False, out_dir=str(tmp_path), warmup=1)
    assert [n for n, _, _ in log] == ["A", "B", "A", "B", "B", "A", "A", "B", "B", "A"]  # warm-up, then ABBA
    assert [c for _, c, _ in log[2:]] == ["c0_0000.nii.gz"] * 2 + ["c1_0000.nii.gz"] * 2 + \
        ["c2_0000.nii.gz"] * 2 + ["c3_0000.nii.gz"] * 2
    assert {m for _, _, m in log} == {False}
    assert {k: len(v) for k, v in times.items()} == {"A": 4, "B": 4} and min(min(v) for v in times.values()) > 0
    assert sorted(p.name for p in (tmp_path / "B").iterdir()) == [f"c{i}.nii.gz" for i in range(4)]
    P.time_predictions(preds, cases[:1], ".nii.gz", mirroring=True, out_dir=str(tmp_path), warmup=0)
    assert log[-1][2] is True and preds["A"].use_mirroring is True


def test_prediction_rows_speedup_over_the_first_model():
    rows = P.prediction_rows({"on": {"stock": [4.0, 6.0], "lms": [1.0, 1.0]}}, reference="stock")
    by = {r["model"]: r for r in rows}
    assert by["stock"]["speedup_vs_reference"] == 1.0
    assert by["lms"]["speedup_vs_reference"] == pytest.approx(5.0)  # 10 s / 2 s
    assert by["lms"]["median_case_speedup"] == pytest.approx(5.0)  # median of 4 and 6
    assert by["lms"]["cases_per_minute"] == pytest.approx(60.0)
    table = P.format_prediction_table(rows, "header")
    assert "5.00x" in table and table.splitlines()[0] == "header"


def test_cases_from_folder_groups_channels_and_names_what_is_missing(tmp_path):
    _touch(tmp_path / "img", "a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii.gz", "b_0001.nii.gz")
    cases = P.cases_from_folder(str(tmp_path / "img"), ".nii.gz")
    assert [[os.path.basename(f) for f in c] for c in cases] == [["a_0000.nii.gz", "a_0001.nii.gz"],
                                                                 ["b_0000.nii.gz", "b_0001.nii.gz"]]
    assert case_name(cases[1][0], ".nii.gz", channel_suffix=True) == "b"
    with pytest.raises(ValueError, match="does not exist"):
        P.cases_from_folder(str(tmp_path / "nope"), ".nii.gz")
    with pytest.raises(ValueError, match="no images ending in .mha"):
        P.cases_from_folder(str(tmp_path / "img"), ".mha")


def test_validation_cases_follow_splits_final(tmp_path, monkeypatch):
    name = "Dataset987_Fake"
    _touch(tmp_path / "raw" / name / "imagesTr", *[f"c{i}_0000.nii.gz" for i in range(5)])
    (tmp_path / "pre" / name).mkdir(parents=True)
    # nnU-Net reads its folders from the environment when it needs them; replacing nnunetv2.paths' objects with
    # strings would leak into every module that imports them while the patch is active
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    with pytest.raises(ValueError, match="splits_final.json not found"):
        P.validation_cases(name, 0, ".nii.gz")
    splits = [{"train": ["c0", "c1", "c2"], "val": ["c4", "c3"]}, {"train": ["c3", "c4"], "val": ["c9"]}]
    (tmp_path / "pre" / name / "splits_final.json").write_text(json.dumps(splits))
    assert [case_name(c[0], ".nii.gz", channel_suffix=True) for c in P.validation_cases(name, 0, ".nii.gz")] == \
        ["c3", "c4"]
    with pytest.raises(ValueError, match="no image in .*c9"):
        P.validation_cases(name, 1, ".nii.gz")
    with pytest.raises(ValueError, match="fold 2 not in"):
        P.validation_cases(name, 2, ".nii.gz")


def test_cli_refuses_fewer_than_two_trainers(capsys):
    from nnunetv2_lightmedseg.cli.main import main

    assert main(["benchmark", "predict", "-d", "4", "-tr", "nnUNetTrainer", "--val-fold", "0"]) == 2
    assert "at least two -tr" in capsys.readouterr().err
