"""A trained model carries its network configuration (checkpoint + the plans.json copy in the results folder).

Each test simulates "the installed plugin's defaults changed after training" by changing the trainer class's
``network_options`` after the model was saved: without the record the predictor, ``--c`` and a new fold would
build the changed network (strict load fails, or predictions silently change).
"""
import json
import os
from pathlib import Path

import pytest
import torch

from helpers import TINY_NAME, tiny_preprocessed_dataset
from nnunetv2_lightmedseg import LightMedSeg
from nnunetv2_lightmedseg.network.variants import ANCHORS16, NETWORK_VARIANTS
from nnunetv2_lightmedseg.training import nnUNetTrainer_LightMedSeg
from nnunetv2_lightmedseg.network.record import (KEY, NetworkConfigError, build_from_record,
                                                          constructor_options, differences, make_record)
from nnunetv2_lightmedseg.utils.nnunet_env import trainers_folder

# every registered variant, and widths no variant uses
VARIANT_OPTIONS = {**{v.name: v.options for v in NETWORK_VARIANTS.values()},
                   "narrow": {"encoder_widths": (8, 16, 24, 32), "stem_channels": 16}}


# ------------------------------------------------------------------------------------------ network level
def test_config_names_every_constructor_argument():
    assert set(LightMedSeg(1, 2).config) == set(constructor_options())


@pytest.mark.parametrize("name", list(VARIANT_OPTIONS))
def test_config_rebuilds_the_same_model(name):
    torch.manual_seed(0)
    net = LightMedSeg(2, 3, **VARIANT_OPTIONS[name]).eval()
    record = json.loads(json.dumps(make_record(net)))  # as stored in plans.json
    rebuilt = build_from_record(record, 2, 3, "test").eval()
    assert rebuilt.config == net.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(1, 2, 32, 32, 32)
    with torch.no_grad():  # exactly equal; a list of outputs for the deep-supervised variant
        torch.testing.assert_close(rebuilt(x), net(x), rtol=0, atol=0)


def test_unknown_option_and_malformed_record_are_clear_errors():
    record = make_record(LightMedSeg(1, 2))
    record["config"]["option_from_the_future"] = 1
    record["plugin_version"] = "9.9"
    with pytest.raises(NetworkConfigError, match=r"trained with nnunetv2-lightmedseg 9.9.*option_from_the_future"
                                                 r".*pip install"):
        build_from_record(record, 1, 2, "test")
    with pytest.raises(NetworkConfigError, match="not a network record"):
        build_from_record({"config": None}, 1, 2, "test")
    assert differences({"a": 1, "b": [1, 2]}, {"a": 1, "b": (1, 2), "c": 3}) == [
        "c: '(absent)' (stored) vs 3 (built)"]


# ------------------------------------------------------------------------------------------ trainer level
@pytest.fixture(scope="module")
def tiny():
    from batchgenerators.utilities.file_and_folder_operations import load_json

    pre = tiny_preprocessed_dataset() / "preprocessed" / TINY_NAME
    return load_json(str(pre / "nnUNetPlans.json")), load_json(str(pre / "dataset.json"))


@pytest.fixture
def env(tiny, monkeypatch, tmp_path):
    base = tiny_preprocessed_dataset()
    monkeypatch.setenv("nnUNet_raw", str(base / "raw"))
    monkeypatch.setenv("nnUNet_preprocessed", str(base / "preprocessed"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_extTrainer", trainers_folder())
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    return tmp_path / "results"


def make_trainer(tiny, fold=0, cls=nnUNetTrainer_LightMedSeg):
    plans, dataset_json = json.loads(json.dumps(tiny[0])), tiny[1]  # a fresh copy, as nnUNetv2_train loads it
    return cls(dict(plans, continue_training=False), "3d_fullres", fold, dataset_json, device=torch.device("cpu"))


def save_trained(t) -> Path:
    """What nnUNetv2_train leaves behind: plans.json/dataset.json copies (on_train_start) and a checkpoint."""
    from batchgenerators.utilities.file_and_folder_operations import save_json

    Path(t.output_folder).mkdir(parents=True, exist_ok=True)
    save_json(t.plans_manager.plans, os.path.join(t.output_folder_base, "plans.json"), sort_keys=False)
    save_json(t.dataset_json, os.path.join(t.output_folder_base, "dataset.json"), sort_keys=False)
    ckpt = os.path.join(t.output_folder, "checkpoint_final.pth")
    t.save_checkpoint(ckpt)
    return Path(ckpt)


def test_checkpoint_and_plans_copy_carry_the_record(tiny, env):
    t = make_trainer(tiny)
    t.initialize()
    ckpt = save_trained(t)
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    expected = json.loads(json.dumps(make_record(t.network)))
    assert saved[KEY] == make_record(t.network)
    assert all(isinstance(v, torch.Tensor) for v in saved["network_weights"].values())  # -pretrained_weights
    plans_copy = json.loads((Path(t.output_folder_base) / "plans.json").read_text())
    assert plans_copy["configurations"]["3d_fullres"][KEY] == expected
    assert set(expected["config"]) == set(constructor_options())


def test_predictor_builds_from_the_record_not_from_changed_defaults(tiny, env, monkeypatch):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    t = make_trainer(tiny)
    t.initialize()
    save_trained(t)
    monkeypatch.setattr(nnUNetTrainer_LightMedSeg, "network_options", dict(ANCHORS16.options))  # "a later version"
    p = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False)
    p.initialize_from_trained_model_folder(t.output_folder_base, use_folds=(0,))
    assert p.network.config == t.network.config and p.network.config["num_anchors"] == 8
    x = torch.randn(1, 1, 32, 40, 40)
    t.network.eval()
    with torch.no_grad():
        assert torch.allclose(p.network(x), t.network(x), atol=1e-5)


def test_resume_and_new_fold_use_the_stored_network(tiny, env, monkeypatch):
    t = make_trainer(tiny)
    t.initialize()
    ckpt = save_trained(t)
    monkeypatch.setattr(nnUNetTrainer_LightMedSeg, "network_options", dict(ANCHORS16.options))
    resumed = make_trainer(tiny)  # nnUNetv2_train ... --c: load_checkpoint before initialize
    resumed.load_checkpoint(str(ckpt))
    assert resumed.network.config["num_anchors"] == 8
    other_fold = make_trainer(tiny, fold=1)  # a new fold into the folder of the trained fold 0
    other_fold.initialize()
    assert other_fold.network.config["num_anchors"] == 8
    fresh = make_trainer(tiny)  # plain training elsewhere: the trainer's own (changed) options
    fresh.output_folder_base = str(env / "elsewhere")
    fresh.initialize()
    assert fresh.network.config["num_anchors"] == 16


def test_checkpoint_of_another_network_is_refused_with_the_differences(tiny, env):
    from nnunetv2_lightmedseg.deploy.loading import ModelLoadError, load_predictor
    from nnunetv2_lightmedseg.training import nnUNetTrainer_LightMedSeg_NoAnchors

    t = make_trainer(tiny)
    t.initialize()
    ckpt = save_trained(t)
    other = make_trainer(tiny, cls=nnUNetTrainer_LightMedSeg_NoAnchors)
    other.output_folder_base = str(env / "elsewhere")
    other.initialize()
    with pytest.raises(NetworkConfigError, match=r"use_anchors: True \(stored\) vs False \(built\)"):
        other.load_checkpoint(str(ckpt))
    # plans.json edited (or copied from another model): export/explain refuse before loading
    plans_file = Path(t.output_folder_base) / "plans.json"
    plans = json.loads(plans_file.read_text())
    plans["configurations"]["3d_fullres"][KEY]["config"]["num_anchors"] = 16
    plans_file.write_text(json.dumps(plans))
    with pytest.raises(ModelLoadError, match=r"num_anchors: 8 \(checkpoint\) vs 16 \(plans.json\)"):
        load_predictor(None, "3d_fullres", 0, "nnUNetTrainer_LightMedSeg", folder=t.output_folder_base)


def test_pretrained_weights_loader_accepts_the_checkpoint_across_label_sets(tiny, env):
    """nnU-Net's -pretrained_weights loader on a checkpoint written by the trainer (record included) into a network
    with 5 instead of 3 classes: everything but the output layers (.seg_layers.) is transferred."""
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    t = make_trainer(tiny)
    t.initialize()
    ckpt = save_trained(t)
    torch.manual_seed(1)
    target = LightMedSeg(1, 5)
    load_pretrained_weights(target, str(ckpt))
    mine, theirs = target.state_dict(), t.network.state_dict()
    skipped = [k for k in mine if ".seg_layers." in k]
    assert skipped and all(mine[k].shape[0] == 5 for k in skipped if k.endswith("weight"))
    assert all(torch.equal(mine[k].cpu(), theirs[k].cpu()) for k in mine if k not in skipped)


def test_recording_does_not_change_the_plans_the_trainer_was_given(tiny, env):
    plans = json.loads(json.dumps(tiny[0]))
    t = nnUNetTrainer_LightMedSeg(dict(plans, continue_training=False), "3d_fullres", 0, tiny[1],
                                  device=torch.device("cpu"))
    t.initialize()
    assert KEY not in plans["configurations"]["3d_fullres"]  # a shallow copy shares this dict with the caller
    assert KEY in t.plans_manager.plans["configurations"]["3d_fullres"]


def test_a_new_fold_on_thick_slice_plans_reports_no_spurious_strides_difference(tmp_path):
    """``_record_of_trained_folds`` compares the folder's record with the network this trainer would build for
    these plans (their strides), not the isotropic default, which reported 'strides' as changed on thick slices."""
    import json as _json

    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
    from nnunetv2_lightmedseg.network.record import make_record
    from nnunetv2_lightmedseg.training.trainer import nnUNetTrainer_LightMedSeg

    thick = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]]
    cm = ConfigurationManager({"patch_size": [10, 64, 64], "architecture": {
        "network_class_name": "x", "arch_kwargs": {"strides": thick, "kernel_sizes": [[1, 3, 3]] * 2 + [[3, 3, 3]] * 4},
        "_kw_requires_import": []}})
    built = LightMedSeg(1, 4, **nnUNetTrainer_LightMedSeg.options_for_configuration(cm))
    (tmp_path / "fold_0").mkdir()
    (tmp_path / "fold_0" / "checkpoint_final.pth").write_bytes(b"")
    (tmp_path / "plans.json").write_text(_json.dumps({"configurations": {"3d_fullres": {
        "lightmedseg_network": make_record(built)}}}))
    trainer = object.__new__(nnUNetTrainer_LightMedSeg)
    trainer.output_folder_base, trainer.configuration_name, trainer.configuration_manager = \
        str(tmp_path), "3d_fullres", cm
    logged = []
    trainer.print_to_log_file = lambda *a, **k: logged.append(" ".join(map(str, a)))
    record = trainer._record_of_trained_folds()
    assert record["config"]["strides"] == [[1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 2, 2]]
    assert logged == []  # same network: nothing to report
    # a folder trained with other options is still reported
    other = make_record(LightMedSeg(1, 4, **{**nnUNetTrainer_LightMedSeg.options_for_configuration(cm),
                                             "num_anchors": 16}))
    (tmp_path / "plans.json").write_text(_json.dumps({"configurations": {"3d_fullres": {"lightmedseg_network": other}}}))
    trainer._record_of_trained_folds()
    assert len(logged) == 1 and "num_anchors" in logged[0] and "strides" not in logged[0]
