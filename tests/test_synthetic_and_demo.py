"""Fast tests of the synthetic datasets and of ``lightmedseg demo``'s checks (no training; the demo's full run
is in test_end_to_end.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnunetv2_lightmedseg.data import (label_case, region_case, thick_slice_case, write_label_dataset,
                                      write_region_dataset, write_thick_slice_dataset)
from nnunetv2_lightmedseg.demo import DemoError
from nnunetv2_lightmedseg.demo.dataset import check_raw_dataset
from nnunetv2_lightmedseg.demo.workdir import prepare_workdir


def _read(path: Path) -> np.ndarray:
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


# --------------------------------------------------------------------------------------- synthetic data
def test_label_case_is_deterministic_and_has_textured_nested_structures():
    a_img, a_seg = label_case(np.random.default_rng([3, 1]))
    b_img, b_seg = label_case(np.random.default_rng([3, 1]))
    c_img, c_seg = label_case(np.random.default_rng([3, 2]))
    assert np.array_equal(a_img, b_img) and np.array_equal(a_seg, b_seg)
    assert not np.array_equal(a_seg, c_seg)
    assert a_img.shape == (1, 32, 48, 40) and a_img.dtype == np.float32 and a_seg.dtype == np.uint8
    counts = np.bincount(a_seg.ravel(), minlength=3)
    assert counts[1] > 500 and counts[2] > 50  # both structures big enough to learn
    # inner strictly inside outer: every inner voxel's neighbours are labelled (no inner touching background)
    from scipy.ndimage import binary_dilation
    assert not np.any(binary_dilation(a_seg == 2) & (a_seg == 0))
    # intensity separates the classes on average, but noise/texture make them overlap voxel-wise
    img = a_img[0]
    means = [img[a_seg == k].mean() for k in range(3)]
    assert means[0] < means[1] < means[2]
    assert img[a_seg == 1].max() > img[a_seg == 2].min()


def test_region_case_nesting_and_channels():
    for channels in (2, 3, 4):
        img, seg = region_case(np.random.default_rng([0, 5]), num_channels=channels)
        assert img.shape[0] == channels
    img, seg = region_case(np.random.default_rng([0, 5]), num_channels=4)
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    # T1ce (channel 1) is brightest on the enhancing ring (label 3), FLAIR (3) bright over the whole tumour
    assert img[1][seg == 3].mean() > max(img[1][seg == k].mean() for k in (0, 1, 2))
    assert img[3][seg > 0].mean() > img[3][seg == 0].mean() + 0.5
    with pytest.raises(ValueError, match="num_channels"):
        region_case(np.random.default_rng(0), num_channels=5)


def test_thick_slice_case_changes_from_slice_to_slice_like_a_short_axis_stack():
    img, seg = thick_slice_case(np.random.default_rng([0, 3]))
    assert img.shape == (1, 10, 64, 56) and seg.shape == (10, 64, 56) and img.dtype == np.float32
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    again, seg_again = thick_slice_case(np.random.default_rng([0, 3]))
    assert np.array_equal(img, again) and np.array_equal(seg, seg_again)
    lv = [(seg[z] == 3).sum() for z in range(10)]
    rv = [(seg[z] == 1).sum() for z in range(10)]
    # the LV cross-section grows and shrinks along the stack, and the RV is absent from some slices
    assert max(lv) > 2 * min(lv[i] for i in range(10) if lv[i] > 0) and min(rv) == 0 < max(rv)
    assert len({tuple(np.argwhere(seg[z] == 3).mean(0).round()) for z in range(10) if lv[z]}) > 1  # drifts
    # bright blood, dark myocardium, mid-grey background
    means = [img[0][seg == k].mean() for k in range(4)]
    assert means[3] > means[1] > means[2] > means[0]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A label, a 3-channel region and a thick-slice dataset written by the generators (raw layout)."""
    root = tmp_path_factory.mktemp("synthetic")
    return (write_label_dataset(root, dataset_id=990, num_train=5, num_test=2),
            write_region_dataset(root, dataset_id=991, num_channels=3, num_train=5, num_test=2),
            write_thick_slice_dataset(root, dataset_id=992, num_train=5, num_test=1))


def test_written_datasets_have_the_documented_layout(written, tmp_path):
    label, region, thick = written
    dj = json.loads((region / "dataset.json").read_text())
    assert dj["labels"] == {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                            "enhancing tumor": [3]}
    assert dj["regions_class_order"] == [1, 2, 3] and dj["numTraining"] == 5
    assert dj["channel_names"] == {"0": "T1", "1": "T1ce", "2": "FLAIR"} and dj["file_ending"] == ".nii.gz"
    assert len(list((region / "imagesTr").glob("*.nii.gz"))) == 15
    assert sorted(p.name for p in (label / "labelsTs").iterdir()) == ["synth_005.nii.gz", "synth_006.nii.gz"]
    assert json.loads((thick / "dataset.json").read_text())["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    import SimpleITK as sitk
    assert sitk.ReadImage(str(thick / "imagesTr" / "cine_000_0000.nii.gz")).GetSpacing() == (1.25, 1.25, 8.0)
    # deterministic: the same seed writes the same case
    again = write_label_dataset(tmp_path / "again", dataset_id=990, num_train=5, num_test=0)
    assert np.array_equal(_read(label / "imagesTr" / "synth_003_0000.nii.gz"),
                          _read(again / "imagesTr" / "synth_003_0000.nii.gz"))


@pytest.mark.slow
def test_written_datasets_pass_nnunet_integrity_check(written):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    for folder in written:
        verify_dataset_integrity(str(folder), num_processes=1)  # nnU-Net's own check (raises on problems)


def test_dataset_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="at least 5|>= 5"):
        write_label_dataset(tmp_path, num_train=3)
    with pytest.raises(ValueError, match="three digits"):
        write_label_dataset(tmp_path, dataset_id=1000)
    with pytest.raises(ValueError, match="letters"):
        write_label_dataset(tmp_path, name="with space")


# ------------------------------------------------------------------------------------ demo: input checks
@pytest.fixture(scope="module")
def good_dataset(tmp_path_factory) -> Path:
    return write_label_dataset(tmp_path_factory.mktemp("raw"), dataset_id=990, num_train=5, num_test=2)


def _copy(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


def test_check_raw_dataset_accepts_a_good_one(good_dataset):
    ds = check_raw_dataset(good_dataset)
    assert (ds.dataset_id, ds.name, ds.num_test) == (990, good_dataset.name, 2)
    assert ds.test_images == good_dataset / "imagesTs" and not ds.notes


@pytest.mark.parametrize("breakage, message", [
    ("missing", "no such folder"),
    ("file", "not a folder"),
    ("badname", "DatasetXXX_Name"),
    ("no_json", "no dataset.json"),
    ("bad_json", "not valid JSON"),
    ("v1_json", "nnU-Net v1"),
    ("missing_key", "missing key"),
    ("num_training", "numTraining is 9 but labelsTr holds 5"),
    ("missing_channel", "missing synth_002_0000.nii.gz"),
    ("no_labels", "no labelsTr folder"),
])
def test_check_raw_dataset_errors_say_what_is_wrong(good_dataset, tmp_path, breakage, message):
    path = tmp_path / good_dataset.name
    if breakage == "missing":
        path = tmp_path / "Dataset123_Nope"
    elif breakage == "file":
        path = tmp_path / "Dataset123_File"
        path.write_text("x")
    elif breakage == "badname":
        path = _copy(good_dataset, tmp_path / "MyData")
    else:
        _copy(good_dataset, path)
        dj_file = path / "dataset.json"
        dj = json.loads(dj_file.read_text())
        if breakage == "no_json":
            dj_file.unlink()
        elif breakage == "bad_json":
            dj_file.write_text("{")
        elif breakage == "v1_json":
            dj_file.write_text(json.dumps({"modality": {"0": "MRI"}, "labels": {"0": "background"}}))
        elif breakage == "missing_key":
            del dj["file_ending"]
            dj_file.write_text(json.dumps(dj))
        elif breakage == "num_training":
            dj["numTraining"] = 9
            dj_file.write_text(json.dumps(dj))
        elif breakage == "missing_channel":
            (path / "imagesTr" / "synth_002_0000.nii.gz").unlink()
        elif breakage == "no_labels":
            import shutil
            shutil.rmtree(path / "labelsTr")
    with pytest.raises(DemoError, match=message):
        check_raw_dataset(path)


def test_missing_test_labels_fall_back_to_validation(good_dataset, tmp_path):
    import shutil
    path = _copy(good_dataset, tmp_path / good_dataset.name)
    shutil.rmtree(path / "labelsTs")
    ds = check_raw_dataset(path)
    assert ds.test_images is None and "fold-0 validation" in ds.notes[0]


def test_demo_refuses_foreign_workdir_and_cli_reports_errors(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(DemoError, match="not created by `lightmedseg demo`"):
        prepare_workdir(foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"
    # a previous demo run is kept unless --overwrite; then symlinked datasets are unlinked, targets untouched
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    work, created = prepare_workdir(tmp_path / "work")
    assert created
    (work / "nnUNet_raw").mkdir()
    (work / "nnUNet_raw" / "Dataset001_X").symlink_to(target, target_is_directory=True)
    with pytest.raises(DemoError, match="holds a previous `lightmedseg demo` run.*--overwrite"):
        prepare_workdir(work)
    assert (work / "nnUNet_raw" / "Dataset001_X").is_symlink()
    assert prepare_workdir(work, overwrite=True) == (work, False)
    assert not (work / "nnUNet_raw").exists() and (target / "keep.txt").is_file()
    # the CLI prints the message (no traceback) and exits 1
    from nnunetv2_lightmedseg.cli.main import main
    assert main(["demo", "--dataset", str(tmp_path / "Dataset007_Absent"), "--workdir", str(tmp_path / "w")]) == 2
    assert "lightmedseg demo: --dataset" in capsys.readouterr().err


def test_env_for_nnunet_commands(tmp_path):
    from nnunetv2_lightmedseg.utils.nnunet_env import ext_trainer_value, nnunet_env, planning_env, training_env

    env = nnunet_env(tmp_path, base={"nnUNet_extTrainer": "/elsewhere", "nnUNet_n_proc_DA": "0"})
    assert env["nnUNet_raw"] == str(tmp_path.resolve() / "nnUNet_raw")
    assert env["nnUNet_extTrainer"].split(":") == ["/elsewhere", ext_trainer_value()]
    assert nnunet_env(tmp_path, folder_names={"nnUNet_results": "res"})["nnUNet_results"] == \
        str(tmp_path.resolve() / "res")
    # nnU-Net's planner crashes on nnUNet_n_proc_DA=0 (torch.set_num_threads(0)); training accepts it
    assert "nnUNet_n_proc_DA" not in planning_env(env)
    assert training_env(env, 2)["nnUNet_n_proc_DA"] == "0"  # the user's value wins
    assert training_env({}, 0)["nnUNet_n_proc_DA"] == "0"


def test_named_dice_names_labels_and_regions(tmp_path):
    from nnunetv2_lightmedseg.utils.summary import named_dice

    cases = [{"reference_file": f"/ref/c{i}.nii.gz", "prediction_file": f"/pred/c{i}.nii.gz", "metrics": {}}
             for i in range(2)]
    summary = {"mean": {"(1, 2, 3)": {"Dice": 0.9}, "(2, 3)": {"Dice": 0.8}, "(3,)": {"Dice": 0.7}},
               "foreground_mean": {"Dice": 0.8}, "metric_per_case": cases}
    (tmp_path / "s.json").write_text(json.dumps(summary))
    dj = {"labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": [3]}}
    assert named_dice(tmp_path / "s.json", dj) == (
        {"whole tumor": 0.9, "tumor core": 0.8, "enhancing tumor": 0.7}, 0.8, 2)
    summary["mean"] = {"1": {"Dice": 0.5}, "2": {"Dice": 0.25}}
    (tmp_path / "s.json").write_text(json.dumps(summary))
    per_class, mean, n = named_dice(tmp_path / "s.json", {"labels": {"background": 0, "a": 1, "b": 2}})
    assert per_class == {"a": 0.5, "b": 0.25}
