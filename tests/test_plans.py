"""Plans override: shipped snippets, configurations via inherits_from, CLI, clear errors."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import preprocessed_json_copy, BIN, REPO, TINY_NAME, tiny_preprocessed_dataset
from nnunetv2_lightmedseg.plans import (PAPER_CONFIGURATION, PLANNED_CONFIGURATION, PlansOverrideError,
                                        lightmedseg_configurations, round_up, shipped_snippets, snippet_json,
                                        write_plans_override)


def test_shipped_snippets_equal_what_the_code_produces():
    folder = REPO / "plans_overrides"
    shipped = sorted(p.name for p in folder.glob("*.json"))
    assert shipped == sorted(shipped_snippets())
    for name, obj in shipped_snippets().items():
        assert (folder / name).read_text() == snippet_json(obj), name
    assert json.loads((folder / f"{PAPER_CONFIGURATION}.json").read_text()) == {
        PAPER_CONFIGURATION: {"inherits_from": "3d_fullres", "patch_size": [128, 128, 128], "batch_size": 8}}


def test_round_up_and_configurations():
    assert round_up([40, 56, 40], 16) == [48, 64, 48]
    assert round_up([16, 17, 32], 16) == [16, 32, 32]
    plans = {"configurations": {"3d_fullres": {"patch_size": [40, 56, 40], "batch_size": 9, "data_identifier": "x"},
                                "2d": {"patch_size": [56, 40], "batch_size": 366}}}
    cfg = lightmedseg_configurations(plans)
    assert cfg == {PAPER_CONFIGURATION: {"inherits_from": "3d_fullres", "patch_size": [128, 128, 128],
                                         "batch_size": 8},
                   PLANNED_CONFIGURATION: {"inherits_from": "3d_fullres", "patch_size": [48, 64, 48],
                                           "batch_size": 9}}
    assert list(lightmedseg_configurations(plans, ["planned"])) == [PLANNED_CONFIGURATION]
    with pytest.raises(PlansOverrideError, match="no '3d_fullres'"):
        lightmedseg_configurations({"configurations": {"2d": plans["configurations"]["2d"]}})


@pytest.fixture
def preprocessed_copy(tmp_path):
    """A copy of the tiny preprocessed dataset's JSON files (the data folder only needs to exist)."""
    return tmp_path / "preprocessed", preprocessed_json_copy(tmp_path)


def test_write_plans_override_resolves_like_nnunet(preprocessed_copy):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    root, ds = preprocessed_copy
    before = json.loads((ds / "nnUNetPlans.json").read_text())
    res = write_plans_override("990", preprocessed_root=str(root))
    after = json.loads((ds / "nnUNetPlans.json").read_text())
    for name, cfg in before["configurations"].items():  # stock configurations untouched
        assert after["configurations"][name] == cfg
    pm = PlansManager(after)
    base = pm.get_configuration("3d_fullres")
    paper = pm.get_configuration(PAPER_CONFIGURATION)
    planned = pm.get_configuration(PLANNED_CONFIGURATION)
    assert paper.patch_size == [128, 128, 128] and paper.batch_size == 8
    assert planned.patch_size == round_up(base.patch_size, 16) and planned.batch_size == base.batch_size
    assert all(p % 16 == 0 for p in planned.patch_size)
    assert paper.data_identifier == planned.data_identifier == base.data_identifier  # no re-preprocessing
    assert paper.spacing == base.spacing and paper.normalization_schemes == base.normalization_schemes
    assert res["recommended"] == PLANNED_CONFIGURATION  # the tiny images are far below 128^3
    # idempotent: running again gives the same file
    write_plans_override(TINY_NAME, preprocessed_root=str(root))
    assert json.loads((ds / "nnUNetPlans.json").read_text()) == after


def test_clear_errors(preprocessed_copy, tmp_path, monkeypatch):
    root, ds = preprocessed_copy
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    with pytest.raises(PlansOverrideError, match="nnUNet_preprocessed is not set"):
        write_plans_override("990")
    with pytest.raises(PlansOverrideError, match="not preprocessed.*nnUNetv2_plan_and_preprocess -d 991"):
        write_plans_override("991", preprocessed_root=str(root))
    with pytest.raises(PlansOverrideError, match="Plans file .*foo.json does not exist"):
        write_plans_override("990", plans_identifier="foo", preprocessed_root=str(root))
    plans = json.loads((ds / "nnUNetPlans.json").read_text())
    shutil.rmtree(ds / plans["configurations"]["3d_fullres"]["data_identifier"])
    with pytest.raises(PlansOverrideError, match="is not preprocessed.*nnUNetv2_preprocess"):
        write_plans_override("990", preprocessed_root=str(root))
    del plans["configurations"]["3d_fullres"]
    (ds / "nnUNetPlans.json").write_text(json.dumps(plans))
    with pytest.raises(PlansOverrideError, match="no '3d_fullres'"):
        write_plans_override("990", preprocessed_root=str(root))


def test_dataset_lookup_is_nnunets(tmp_path, monkeypatch):
    """-d ID goes through nnU-Net's maybe_convert_to_dataset_name (preprocessed, raw and results folders)."""
    from nnunetv2_lightmedseg.plans import find_preprocessed_dataset

    root, raw = tmp_path / "pp", tmp_path / "raw"
    (root / "Dataset990_A").mkdir(parents=True)
    (raw / "Dataset991_OnlyRaw").mkdir(parents=True)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.delenv("nnUNet_results", raising=False)
    assert find_preprocessed_dataset("990", str(root)) == root / "Dataset990_A"
    assert find_preprocessed_dataset("Dataset990_A", str(root)) == root / "Dataset990_A"
    assert os.environ["nnUNet_preprocessed"] == str(tmp_path / "elsewhere")  # the lookup left it as it was
    with pytest.raises(PlansOverrideError, match="991 is not preprocessed"):
        find_preprocessed_dataset("991", str(root))
    with pytest.raises(PlansOverrideError, match="give a dataset ID"):
        find_preprocessed_dataset("hippocampus", str(root))
    (raw / "Dataset990_B").mkdir()
    with pytest.raises(PlansOverrideError, match=r"Several datasets match ID 990 .*Dataset990_A.*Dataset990_B"):
        find_preprocessed_dataset("990", str(root))


def test_cli(preprocessed_copy):
    root, ds = preprocessed_copy
    env = dict(os.environ, nnUNet_preprocessed=str(root))
    p = subprocess.run([str(BIN / "lightmedseg"), "plans", "-d", "990", "--variant", "paper"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert PAPER_CONFIGURATION in p.stdout and "nnUNetv2_train 990" in p.stdout
    configs = json.loads((ds / "nnUNetPlans.json").read_text())["configurations"]
    assert PAPER_CONFIGURATION in configs and PLANNED_CONFIGURATION not in configs
    p = subprocess.run([str(BIN / "lightmedseg"), "plans", "-d", "123"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "not preprocessed" in p.stderr and "Traceback" not in p.stderr


# ------------------------------------------------------------------- backup, symlinks, corrupt file (issue 11)
def test_one_backup_before_the_first_change(preprocessed_copy):
    root, ds = preprocessed_copy
    plans_file = ds / "nnUNetPlans.json"
    original = plans_file.read_text()
    res = write_plans_override("990", variants=("paper",), preprocessed_root=str(root))
    backup = ds / "nnUNetPlans.json.before_lightmedseg"
    assert res["changed"] and res["backup"] == str(backup) and backup.read_text() == original
    # a second change (another variant) keeps the backup of nnU-Net's plans
    res = write_plans_override("990", variants=("planned",), preprocessed_root=str(root))
    assert res["changed"] and res["backup"] is None and backup.read_text() == original
    # nothing to change: nothing written
    mtime = plans_file.stat().st_mtime_ns
    assert not write_plans_override("990", variants=("planned",), preprocessed_root=str(root))["changed"]
    assert plans_file.stat().st_mtime_ns == mtime
    # the backup is not taken for a plans identifier (nnU-Net lists *.json files)
    assert not [p for p in ds.glob("*.json") if "lightmedseg" in p.name]


def test_symlinked_plans_file_is_written_through(preprocessed_copy, tmp_path):
    root, ds = preprocessed_copy
    real = tmp_path / "shared_plans" / "nnUNetPlans.json"
    real.parent.mkdir()
    shutil.move(ds / "nnUNetPlans.json", real)
    (ds / "nnUNetPlans.json").symlink_to(real)
    write_plans_override("990", variants=("paper",), preprocessed_root=str(root))
    assert (ds / "nnUNetPlans.json").is_symlink() and os.readlink(ds / "nnUNetPlans.json") == str(real)
    assert PAPER_CONFIGURATION in json.loads(real.read_text())["configurations"]
    assert not list(real.parent.glob(".*tmp"))


def test_corrupt_plans_file_names_the_file_and_the_fix(preprocessed_copy):
    root, ds = preprocessed_copy
    plans_file = ds / "nnUNetPlans.json"
    write_plans_override("990", variants=("paper",), preprocessed_root=str(root))
    plans_file.write_text(plans_file.read_text()[:-20])  # truncated, as after a full disk
    broken = plans_file.read_text()
    with pytest.raises(PlansOverrideError) as e:
        write_plans_override("990", preprocessed_root=str(root))
    msg = str(e.value)
    assert f"{plans_file} is not valid JSON" in msg and "line" in msg
    assert f"cp {plans_file}.before_lightmedseg {plans_file}" in msg and "nnUNetv2_plan_experiment -d 990" in msg
    assert plans_file.read_text() == broken  # untouched
    p = subprocess.run([str(BIN / "lightmedseg"), "plans", "-d", "990"], capture_output=True, text=True,
                       env=dict(os.environ, nnUNet_preprocessed=str(root)), timeout=120)
    assert p.returncode == 2 and "is not valid JSON" in p.stderr and "Traceback" not in p.stderr


def test_cli_when_3d_fullres_itself_inherits(preprocessed_copy, monkeypatch, capsys):
    """Plans whose 3d_fullres inherits from another configuration (as nnU-Net allows for any configuration):
    the LightMedSeg configurations are derived from 3d_fullres as nnU-Net resolves it."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_lightmedseg.cli.main import main

    root, ds = preprocessed_copy
    plans_file = ds / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    full = plans["configurations"]["3d_fullres"]
    # everything in a parent; 3d_fullres keeps only its own batch size and a patch that is no multiple of 16
    plans["configurations"] = {"3d_base": dict(full, batch_size=5),
                               "3d_fullres": {"inherits_from": "3d_base", "patch_size": [24, 40, 36], "batch_size": 3}}
    plans_file.write_text(json.dumps(plans))
    monkeypatch.setenv("nnUNet_preprocessed", str(root))
    assert main(["plans", "-d", "990"]) == 0, capsys.readouterr().err
    pm = PlansManager(json.loads(plans_file.read_text()))
    base = pm.get_configuration("3d_fullres")
    planned, paper = pm.get_configuration(PLANNED_CONFIGURATION), pm.get_configuration(PAPER_CONFIGURATION)
    assert base.patch_size == [24, 40, 36] and base.batch_size == 3
    assert planned.patch_size == [32, 48, 48] and planned.batch_size == 3
    assert paper.patch_size == [128, 128, 128] and paper.batch_size == 8
    for c in (planned, paper):
        assert c.data_identifier == full["data_identifier"] and c.spacing == full["spacing"]
    # the inherited data identifier is checked too: without its data the command says what to run
    shutil.rmtree(ds / full["data_identifier"])
    assert main(["plans", "-d", "990"]) == 2
    assert "is not preprocessed" in capsys.readouterr().err


def test_concurrent_runs_keep_the_backup_of_nnunets_plans(preprocessed_copy):
    """Two ``lightmedseg plans`` at once: without the lock the second could back up the first's changed plans."""
    import threading
    import time

    import nnunetv2_lightmedseg.plans as plans_module

    root, ds = preprocessed_copy
    original = (ds / "nnUNetPlans.json").read_text()
    real_read = plans_module.read_plans
    barrier_hits = []

    def slow_read(plans_file, dataset):  # widen the read-modify-write window so an unlocked race would happen
        plans = real_read(plans_file, dataset)
        barrier_hits.append(time.monotonic())
        time.sleep(0.3)
        return plans

    plans_module.read_plans = slow_read
    try:
        errors = []

        def run():
            try:
                plans_module.write_plans_override(TINY_NAME, preprocessed_root=str(root))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        plans_module.read_plans = real_read
    assert not errors
    assert len(barrier_hits) == 2 and abs(barrier_hits[1] - barrier_hits[0]) >= 0.29  # they ran one after the other
    assert (ds / "nnUNetPlans.json.before_lightmedseg").read_text() == original
    after = json.loads((ds / "nnUNetPlans.json").read_text())
    assert PAPER_CONFIGURATION in after["configurations"] and PLANNED_CONFIGURATION in after["configurations"]
    assert not [p for p in ds.iterdir() if p.name.endswith(".tmp")]
