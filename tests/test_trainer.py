"""nnUNetTrainer_LightMedSeg: network from real plans, no deep supervision, schedule, variants, discovery, env."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import BIN, REPO, TINY_NAME, nnunet_env, tiny_preprocessed_dataset
from nnunetv2_lightmedseg import LightMedSeg
from nnunetv2_lightmedseg.network.variants import DEEP_SUPERVISION, NO_ANCHORS, NETWORK_VARIANTS
from nnunetv2_lightmedseg.training import ALL_TRAINERS, nnUNetTrainer_LightMedSeg
from nnunetv2_lightmedseg.training.variants import TRAINER_TABLE
from nnunetv2_lightmedseg.training.lookup import trainer_class
from nnunetv2_lightmedseg.training.lr_schedule import WarmupCosineLRScheduler, warmup_cosine_lr
from nnunetv2_lightmedseg.utils.nnunet_env import trainers_folder


# -------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(base folder, plans dict, dataset.json) of a tiny dataset preprocessed by nnU-Net's own command."""
    from batchgenerators.utilities.file_and_folder_operations import load_json

    base = tiny_preprocessed_dataset()
    pre = base / "preprocessed" / TINY_NAME
    return base, load_json(str(pre / "nnUNetPlans.json")), load_json(str(pre / "dataset.json"))


@pytest.fixture
def nnunet_paths(tiny, monkeypatch, tmp_path):
    base = tiny[0]
    monkeypatch.setenv("nnUNet_raw", str(base / "raw"))
    monkeypatch.setenv("nnUNet_preprocessed", str(base / "preprocessed"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_extTrainer", trainers_folder())
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")  # single-threaded augmenter, no worker processes
    return tmp_path / "results"


def make_trainer(tiny, cls=nnUNetTrainer_LightMedSeg, configuration="3d_fullres"):
    _, plans, dataset_json = tiny
    plans = dict(plans, continue_training=False)  # what nnUNetv2_train's run_training adds
    return cls(plans, configuration, 0, dataset_json, device=torch.device("cpu"))


def saved_and_loaded_by_predictor(trainer):
    """Initialise ``trainer``, write its results folder (plans, dataset.json, checkpoint_final.pth) with its own
    save_checkpoint, and return nnUNetPredictor initialised from that folder (as nnUNetv2_predict does)."""
    from batchgenerators.utilities.file_and_folder_operations import save_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    trainer.initialize()
    Path(trainer.output_folder).mkdir(parents=True, exist_ok=True)
    save_json(trainer.plans_manager.plans, os.path.join(trainer.output_folder_base, "plans.json"), sort_keys=False)
    save_json(trainer.dataset_json, os.path.join(trainer.output_folder_base, "dataset.json"), sort_keys=False)
    trainer.save_checkpoint(os.path.join(trainer.output_folder, "checkpoint_final.pth"))
    p = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False)
    p.initialize_from_trained_model_folder(trainer.output_folder_base, use_folds=(0,))
    return p


# ------------------------------------------------------------------------------------------- network
def test_build_network_from_real_plans_single_output(tiny):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    _, plans, dataset_json = tiny
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    heads = pm.get_label_manager(dataset_json).num_segmentation_heads
    torch.manual_seed(0)
    net_ds = nnUNetTrainer_LightMedSeg.build_network_architecture(pm, cm, 1, heads, True)
    net = nnUNetTrainer_LightMedSeg.build_network_architecture(pm, cm, 1, heads, enable_deep_supervision=False)
    assert isinstance(net, LightMedSeg) and net.input_channels == 1 and net.num_classes == heads == 3
    assert {k: v.shape for k, v in net.state_dict().items()} == {k: v.shape for k, v in net_ds.state_dict().items()}
    net.load_state_dict(net_ds.state_dict(), strict=True)
    x = torch.randn(1, 1, *cm.patch_size)
    with torch.no_grad():
        a, b = net_ds.eval()(x), net.eval()(x)
    assert isinstance(a, torch.Tensor) and a.shape == (1, 3, *cm.patch_size) and torch.allclose(a, b)


def test_patch_smaller_than_divisor_is_a_clear_error(tiny):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = dict(tiny[1])
    plans["configurations"] = dict(plans["configurations"], tinypatch={"inherits_from": "3d_fullres",
                                                                      "patch_size": [8, 32, 32]})
    pm = PlansManager(plans)
    with pytest.raises(ValueError, match="at least 16|>= 16"):
        nnUNetTrainer_LightMedSeg.build_network_architecture(pm, pm.get_configuration("tinypatch"), 1, 3, False)


def test_variants_table_and_options(tiny):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    assert list(ALL_TRAINERS) == list(TRAINER_TABLE)  # every class has its row, in the table's order
    assert {v.trainer for v in NETWORK_VARIANTS.values()} <= set(TRAINER_TABLE)  # every network variant a trainer
    pm = PlansManager(tiny[1])
    cm = pm.get_configuration("3d_fullres")
    assert nnUNetTrainer_LightMedSeg.build_network_architecture(pm, cm, 1, 3, False).config == LightMedSeg(1, 3).config
    for v in NETWORK_VARIANTS.values():  # the tiny plans' schedule is the paper's: each trainer builds its variant
        cls = trainer_class(v.trainer)  # found by name, as nnUNetv2_train -tr finds it
        assert cls is ALL_TRAINERS[v.trainer] and cls.network_options == v.options and not cls.training_options
        net = cls.build_network_architecture(pm, cm, 1, 3, False)
        assert net.config == LightMedSeg(1, 3, **v.options).config, v.name
    for n, epochs in ((1, 1), (5, 5), (10, 10), (20, 20), (50, 50), (100, 100)):
        name = f"nnUNetTrainer_LightMedSeg_{n}epoch{'s' if n > 1 else ''}"
        assert ALL_TRAINERS[name].training_options == {"num_epochs": epochs}


def test_readme_trainer_table_is_the_code_s():
    """README's trainer table lists exactly TRAINER_TABLE, with the same descriptions, in the same order."""
    rows = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("| `nnUNetTrainer")]
    readme = [tuple(cell.strip() for cell in row.strip("|").split("|", 1)) for row in rows]
    assert readme == [(f"`{name}`", text) for name, text in TRAINER_TABLE.items()]


def test_every_trainer_is_a_plain_class_statement():
    """grep finds every shipped trainer: each is written as a `class` statement (no generated classes)."""
    import inspect

    for name, cls in ALL_TRAINERS.items():
        assert f"class {name}(" in inspect.getsource(inspect.getmodule(cls)), name


def test_trainer_lookup_by_name_fails_clearly_for_an_unknown_name():
    with pytest.raises(LookupError, match="no nnU-Net trainer class 'nnUNetTrainer_LightMedSeg_Nope'"):
        trainer_class("nnUNetTrainer_LightMedSeg_Nope")


def test_trainer_hyperparameters_and_cpubench_pair(tiny, nnunet_paths):
    t = make_trainer(tiny)
    assert (t.num_epochs, t.num_iterations_per_epoch, t.enable_deep_supervision) == (300, 250, False)
    assert (t.initial_lr, t.weight_decay, t.min_lr) == (3e-3, 1e-2, 1e-6)
    stock = make_trainer(tiny, ALL_TRAINERS["nnUNetTrainer_CPUBench_4x50"])
    ours = make_trainer(tiny, ALL_TRAINERS["nnUNetTrainer_LightMedSeg_CPUBench_4x50"])
    for attr in ("num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch",
                 "oversample_foreground_percent"):
        assert getattr(stock, attr) == getattr(ours, attr), attr
    assert (stock.num_epochs, stock.num_iterations_per_epoch, stock.num_val_iterations_per_epoch) == (4, 50, 10)
    smoke = make_trainer(tiny, ALL_TRAINERS["nnUNetTrainer_LightMedSeg_Smoke"])
    assert (smoke.num_epochs, smoke.num_iterations_per_epoch, smoke.num_val_iterations_per_epoch) == (2, 10, 2)


def test_mirroring_default_first_axis_all_and_none_in_training_and_at_test_time(tiny, nnunet_paths):
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform

    def mirror_transforms(trainer):
        rotation, dummy_2d, _, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        composed = trainer.get_training_transforms(trainer.configuration_manager.patch_size, rotation, None,
                                                   mirror_axes, dummy_2d)
        return mirror_axes, [t for t in composed.transforms if isinstance(t, MirrorTransform)]

    default = make_trainer(tiny)
    axes, flips = mirror_transforms(default)
    assert axes == (0,) and len(flips) == 1 and flips[0].allowed_axes == (0,)
    assert default.inference_allowed_mirroring_axes == (0,)
    default.mirroring = "all"  # nnU-Net's own
    assert mirror_transforms(default)[0] == (0, 1, 2) and default.inference_allowed_mirroring_axes == (0, 1, 2)
    default.mirroring = "sideways"
    with pytest.raises(ValueError, match="mirroring is 'sideways'; use one of 'all', 'first_axis', 'none'"):
        mirror_transforms(default)
    plain = make_trainer(tiny, ALL_TRAINERS["nnUNetTrainer_LightMedSeg_NoMirroring"])
    assert plain.mirroring == "none" and plain.num_epochs == default.num_epochs
    axes, flips = mirror_transforms(plain)
    assert axes is None and flips == [] and plain.inference_allowed_mirroring_axes is None
    # the checkpoint carries it: nnUNetv2_predict then does no test-time mirroring for this model
    assert saved_and_loaded_by_predictor(plain).allowed_mirroring_axes is None


def test_augmentation_paper_keeps_spatial_noise_and_flips_only(tiny, nnunet_paths):
    from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    def kinds(trainer):
        rotation, dummy_2d, _, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        composed = trainer.get_training_transforms(trainer.configuration_manager.patch_size, rotation, None,
                                                   mirror_axes, dummy_2d)
        return [type(getattr(t, "transform", t)).__name__ for t in composed.transforms]

    stock = kinds(make_trainer(tiny, nnUNetTrainer))
    ours = make_trainer(tiny)
    assert ours.augmentation == "paper"  # the default
    paper = kinds(ours)
    dropped = {"GaussianBlurTransform", "MultiplicativeBrightnessTransform", "ContrastTransform",
               "SimulateLowResolutionTransform", "GammaTransform"}
    assert dropped <= set(stock) and not dropped & set(paper)
    assert paper == [k for k in stock if k not in dropped]  # everything else kept, in order
    for kept in (SpatialTransform, GaussianNoiseTransform, MirrorTransform):
        assert kept.__name__ in paper
    full = make_trainer(tiny, ALL_TRAINERS["nnUNetTrainer_LightMedSeg_nnUNetAugmentation"])
    assert full.augmentation == "nnunet" and kinds(full) == stock  # nnU-Net's set, in nnU-Net's order
    ours.augmentation = "none"
    with pytest.raises(ValueError, match="augmentation is 'none'; use one of 'nnunet', 'paper'"):
        kinds(ours)


def _with_patch(tiny, patch):
    """``tiny`` with its 3d_fullres patch size replaced (augmentation set-up reads nothing else of it)."""
    base, plans, dataset_json = tiny
    configurations = dict(plans["configurations"])
    configurations["3d_fullres"] = dict(configurations["3d_fullres"], patch_size=list(patch))
    return base, dict(plans, configurations=configurations), dataset_json


def test_rotation_cap_on_thick_slice_patches_and_unchanged_isotropic(tiny, nnunet_paths):
    import numpy as np
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    thick = _with_patch(tiny, (8, 64, 56))  # pseudo-2D augmentation: nnU-Net rotates in-plane by up to +-180
    stock = make_trainer(thick, nnUNetTrainer)
    rotation, dummy_2d, stock_initial, _ = stock.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert dummy_2d and rotation == pytest.approx((-np.pi, np.pi))
    ours = make_trainer(thick)
    assert ours.max_rotation_degrees == 30  # the default
    rotation, dummy_2d, initial, _ = ours.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert dummy_2d and rotation == pytest.approx((-np.pi / 6, np.pi / 6))
    # the crop grows in-plane only (the slice axis keeps the patch's 8), by the rotated box of 64 x 56 at 30 degrees
    # (64 cos 30 + 56 sin 30 = 83.4, over nnU-Net's 0.85 scale margin = 98)
    assert initial[0] == 8 and initial[1] == 98 and initial[2] >= 56
    # the augmentation nnU-Net builds from it rotates within the cap
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    composed = ours.get_training_transforms([8, 64, 56], rotation, None, (0,), dummy_2d)
    spatial = [t for t in composed.transforms if isinstance(t, SpatialTransform)]
    assert spatial and all(abs(float(a)) <= np.pi / 6 + 1e-6 for a in spatial[0].rotation)
    ours.max_rotation_degrees = None  # nnU-Net's range and crop
    rotation, _, initial, _ = ours.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert rotation == pytest.approx((-np.pi, np.pi)) and list(initial) == list(stock_initial)
    ours.max_rotation_degrees = 200
    with pytest.raises(ValueError, match="max_rotation_degrees is 200; use a number of degrees from 0 to 180"):
        ours.configure_rotation_dummyDA_mirroring_and_inital_patch_size()

    iso = _with_patch(tiny, (32, 32, 32))  # nnU-Net's 3D range is +-30 already: a cap of 30 changes nothing
    stock_iso = make_trainer(iso, nnUNetTrainer).configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    capped = make_trainer(iso)
    rotation, dummy_2d, initial, _ = capped.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert not dummy_2d and rotation == pytest.approx(stock_iso[0]) and list(initial) == list(stock_iso[2])


def test_quarter_turns_rotate_thick_slice_patches_in_plane_and_are_refused_for_3d_rotation(tiny, nnunet_paths):
    import numpy as np
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from nnunetv2_lightmedseg.training.rotation import QuarterTurnRotation

    trainer = make_trainer(_with_patch(tiny, (8, 64, 56)))
    assert trainer.quarter_turn_probability == 0  # off by default: the capped range is a plain tuple
    rotation, *_ = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert isinstance(rotation, tuple)
    trainer.quarter_turn_probability = 0.5
    rotation, dummy_2d, initial, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert isinstance(rotation, QuarterTurnRotation) and rotation.small == pytest.approx((-np.pi / 6, np.pi / 6))
    # a turned patch needs the capped crop of both in-plane axes (98, see the rotation-cap test) on each
    assert list(initial) == [8, 98, 98]
    composed = trainer.get_training_transforms([8, 64, 56], rotation, None, mirror_axes, dummy_2d)
    spatial = [t for t in composed.transforms if isinstance(t, SpatialTransform)]
    # every sample goes through the sampler, which applies nnU-Net's own probability to the small rotation
    assert spatial[0].p_rotation == 1.0 and spatial[0].rotation.p_small == pytest.approx(0.2)
    np.random.seed(0)
    angles = np.array([spatial[0].rotation() for _ in range(4000)])
    turned = np.abs(np.abs(angles) - np.pi / 2) <= np.pi / 6 + 1e-9
    assert abs(turned.mean() - 0.5) < 0.03 and abs((angles[turned] > 0).mean() - 0.5) < 0.05
    small = ~turned & (angles != 0)
    assert abs(small.mean() - 0.5 * 0.2) < 0.03 and np.abs(angles[~turned]).max() <= np.pi / 6 + 1e-9
    # through nnU-Net's transform (no scaling): a bar 30 voxels tall and 6 wide stands upright when not turned and
    # lies across the patch when turned
    bar = torch.zeros(1, 8, 98, 98)
    bar[:, :, 34:64, 46:52] = 1
    spatial[0].p_scaling = 0
    for p_quarter, tall in ((0.0, True), (1.0, False)):
        spatial[0].rotation = QuarterTurnRotation((0.0, 0.0), p_small=0.0, p_quarter=p_quarter)
        out = composed(image=bar.clone(), segmentation=bar.clone())["segmentation"][0, 4]
        assert tuple(out.shape) == (64, 56)
        rows, cols = int((out.sum(1) > 0).sum()), int((out.sum(0) > 0).sum())
        assert (rows >= 28 and cols <= 8) if tall else (rows <= 8 and cols >= 28), (p_quarter, rows, cols)
    trainer.quarter_turn_probability = 1.5
    with pytest.raises(ValueError, match="quarter_turn_probability is 1.5; use a probability from 0 to 1"):
        trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    iso = make_trainer(_with_patch(tiny, (32, 32, 32)))  # 3D rotation: no single plane to turn in
    iso.quarter_turn_probability = 0.5
    with pytest.raises(ValueError, match="quarter turns are in-plane"):
        iso.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    with pytest.raises(ValueError, match="must contain 0"):
        QuarterTurnRotation((0.1, 0.2), 0.2, 0.5)


# ------------------------------------------------------------------------------------------- schedule
def test_warmup_cosine_values():
    lr, lo, total, warm = 1e-3, 1e-6, 1000, 30
    assert warmup_cosine_lr(0, lr, lo, total, warm) == pytest.approx(lr / warm)
    assert warmup_cosine_lr(warm - 1, lr, lo, total, warm) == pytest.approx(lr)
    assert warmup_cosine_lr(warm, lr, lo, total, warm) == pytest.approx(lr)
    mid = warm + (total - warm) // 2
    assert warmup_cosine_lr(mid, lr, lo, total, warm) == pytest.approx((lr + lo) / 2, rel=1e-2)
    assert warmup_cosine_lr(total, lr, lo, total, warm) == pytest.approx(lo)
    assert warmup_cosine_lr(total + 50, lr, lo, total, warm) == pytest.approx(lo)
    values = [warmup_cosine_lr(i, lr, lo, total, warm) for i in range(total + 1)]
    assert all(a <= b for a, b in zip(values[:warm], values[1:warm]))
    assert all(a >= b for a, b in zip(values[warm:], values[warm + 1:]))


def test_scheduler_iteration_and_epoch_steps():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    s = WarmupCosineLRScheduler(opt, 1e-3, 1e-6, total_iterations=40, warmup_iterations=4, iterations_per_epoch=10)
    assert s.iteration == 0 and opt.param_groups[0]["lr"] == pytest.approx(1e-3 / 4)
    for _ in range(3):
        s.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)  # last warm-up iteration
    s.step(2)  # nnU-Net's per-epoch call (also what happens after resuming at epoch 2)
    assert s.iteration == 20 and opt.param_groups[0]["lr"] == pytest.approx(s.lr_at(20))
    s.step(4)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-6)


def test_initialized_trainer_optimizer_loss_memory_format_and_one_step(tiny, nnunet_paths):
    from nnunetv2_lightmedseg.loss import BoundaryCompoundLoss

    t = make_trainer(tiny, ALL_TRAINERS["nnUNetTrainer_LightMedSeg_Smoke"])
    t.initialize()
    assert isinstance(t.loss, BoundaryCompoundLoss) and not t.loss.has_regions  # not DeepSupervisionWrapper
    assert isinstance(t.optimizer, torch.optim.AdamW)
    assert t.optimizer.param_groups[0]["weight_decay"] == 1e-2
    total = 2 * 10
    warm = max(1, round(0.03 * total))
    assert (t.lr_scheduler.total_iterations, t.lr_scheduler.warmup_iterations) == (total, warm)
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(3e-3 / warm)  # iteration 0
    # channels_last_3d on CPU, and the optimiser still holds the network's Parameter objects
    conv_w = [p for p in t.network.parameters() if p.ndim == 5]
    assert conv_w and all(p.is_contiguous(memory_format=torch.channels_last_3d) for p in conv_w)
    assert {id(p) for g in t.optimizer.param_groups for p in g["params"]} == {id(p) for p in t.network.parameters()}
    # glibc's allocator tuned for the CPU training, and the log says how (cpu/allocator.py)
    from nnunetv2_lightmedseg.cpu.allocator import cpu_allocator_state
    assert cpu_allocator_state() != "not configured"
    with open(t.log_file) as f:
        assert f"CPU allocator tuning {cpu_allocator_state()}" in f.read()
    # the data loader gives plain (non-list) targets without deep supervision
    assert t._get_deep_supervision_scales() is None
    dl_tr, _ = t.get_dataloaders()
    batch = next(dl_tr)
    assert isinstance(batch["target"], torch.Tensor) and batch["target"].shape[1] == 1
    t.on_train_epoch_start()
    out = t.train_step(batch)
    assert math.isfinite(float(out["loss"]))
    assert t.lr_scheduler.iteration == 1
    t.set_deep_supervision_enabled(True)  # as nnU-Net calls it after validation: no auxiliary heads, one output
    assert t.network.deep_supervision is False


def test_deep_supervision_variant_trains_on_nnunet_targets_and_predicts_one_output(tiny, nnunet_paths):
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    class DSSmoke(ALL_TRAINERS[DEEP_SUPERVISION.trainer]):
        training_options = ALL_TRAINERS["nnUNetTrainer_LightMedSeg_Smoke"].training_options

    t = make_trainer(tiny, DSSmoke)
    assert t.enable_deep_supervision
    t.initialize()
    assert isinstance(t.loss, DeepSupervisionWrapper)
    assert t.loss.weight_factors == pytest.approx((4 / 7, 2 / 7, 1 / 7))
    assert t._get_deep_supervision_scales() == [[1.0] * 3, [0.5] * 3, [0.25] * 3]
    dl_tr, _ = t.get_dataloaders()
    batch = next(dl_tr)
    assert isinstance(batch["target"], list) and len(batch["target"]) == 3
    with torch.no_grad():
        outs = t.network(batch["data"])
    assert [o.shape[2:] for o in outs] == [y.shape[2:] for y in batch["target"]]
    t.on_train_epoch_start()
    assert math.isfinite(float(t.train_step(batch)["loss"]))
    t.set_deep_supervision_enabled(False)  # what nnU-Net does before validation / prediction
    with torch.no_grad():
        assert isinstance(t.network(batch["data"]), torch.Tensor)
    net = DSSmoke.build_network_architecture(t.plans_manager, t.configuration_manager, 1, 3, False)
    net.load_state_dict(t.network.state_dict(), strict=True)  # the predictor's build loads strictly
    assert net.deep_supervision is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only predictor's thread tuning too")
def test_checkpoint_loads_strictly_through_nnunet_predictor(tiny, nnunet_paths):
    """Save with the trainer's own save_checkpoint, load with nnUNetPredictor (which calls
    build_network_architecture(enable_deep_supervision=False) and load_state_dict strictly)."""
    t = make_trainer(tiny, ALL_TRAINERS[NO_ANCHORS.trainer])
    p = saved_and_loaded_by_predictor(t)
    assert type(p.network) is LightMedSeg and p.network.config["use_anchors"] is False
    x = torch.randn(1, 1, 32, 40, 40)
    t.network.eval()
    p.network.eval()  # as nnU-Net's predict_sliding_window_return_logits does
    with torch.no_grad():
        assert torch.allclose(p.network(x), t.network(x), atol=1e-5)
    # a CPU-only process: the predictor's network times its forwards for the thread count (cpu/threads.py);
    # the trainer's own network does not (it times whole training steps)
    assert p.network._lightmedseg_inference_threads.tuner._steps == 1
    assert not hasattr(t.network, "_lightmedseg_inference_threads")


# ------------------------------------------------------------------------------------------- discovery
DISCOVERY = r"""
import multiprocessing as mp, sys
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

def worker(name):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    c = recursive_find_trainer_class_by_name(name)
    import nnunetv2_lightmedseg.training as tr
    return c.__module__, c.__name__, c is getattr(tr, name)

if __name__ == "__main__":
    import nnunetv2_lightmedseg.training as tr
    with mp.get_context("spawn").Pool(1) as pool:  # like -num_gpus workers: a fresh interpreter finds it by name
        for name in sys.argv[1:]:
            c = recursive_find_trainer_class_by_name(name)
            print("SAME", name, c is getattr(tr, name))
            print("SPAWN", pool.apply(worker, (name,)))
"""


@pytest.mark.slow
def test_nnunet_finds_trainer_via_ext_trainer_in_subprocess_and_spawned_worker(tmp_path):
    """The class nnU-Net finds by name is the package's own class, in a fresh process and in a spawned worker."""
    script = tmp_path / "discover.py"
    script.write_text(DISCOVERY)
    env = dict(os.environ, nnUNet_extTrainer=trainers_folder())
    names = {"nnUNetTrainer_LightMedSeg": "trainer", "nnUNetTrainer_LightMedSeg_10epochs": "variants"}
    p = subprocess.run([sys.executable, str(script), *names], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    for name, module in names.items():
        assert f"SAME {name} True" in p.stdout
        assert f"SPAWN ('nnunetv2_lightmedseg.training.{module}', '{name}', True)" in p.stdout


@pytest.mark.slow
def test_missing_ext_trainer_error_names_the_variable():
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
            "f('nnUNetTrainer_LightMedSeg')")
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode != 0
    assert "Could not find requested nnunet trainer nnUNetTrainer_LightMedSeg" in p.stderr
    assert "nnUNet_extTrainer" in p.stderr


def test_trainers_folder_holds_only_trainer_modules():
    import pkgutil

    mods = [m.name for m in pkgutil.iter_modules([trainers_folder()])]
    assert mods == ["nnUNetTrainer_LightMedSeg"]


# ------------------------------------------------------------------------------------------ lightmedseg env
def _env_cmd(env):
    return subprocess.run([str(BIN / "lightmedseg"), "env"], env=env, capture_output=True, text=True, timeout=120)


def test_lightmedseg_env_prints_export_line_and_appends():
    folder = trainers_folder()
    clean = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    p = _env_cmd(clean)
    assert p.returncode == 0 and p.stdout.strip() == f"export nnUNet_extTrainer={folder}"
    p = _env_cmd(dict(clean, nnUNet_extTrainer="/some/other"))
    assert p.stdout.strip() == f"export nnUNet_extTrainer=/some/other{os.pathsep}{folder}"
    p = _env_cmd(dict(clean, nnUNet_extTrainer=f"/x{os.pathsep}{folder}"))  # already there: unchanged
    assert p.stdout.strip() == f"export nnUNet_extTrainer=/x{os.pathsep}{folder}"
    # eval "$(lightmedseg env)" works in a shell
    sh = subprocess.run(["bash", "-c", f'eval "$({BIN / "lightmedseg"} env)"; echo "$nnUNet_extTrainer"'],
                        env=clean, capture_output=True, text=True, timeout=120)
    assert sh.stdout.strip() == folder


def test_lightmedseg_env_does_not_import_nnunet():
    code = ("import sys\nfrom nnunetv2_lightmedseg.cli.main import main\nmain(['env'])\n"
            "print('NNUNET', 'nnunetv2' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "NNUNET False" in p.stdout, p.stdout + p.stderr


def test_resume_from_checkpoint_resyncs_the_per_iteration_schedule(tiny, nnunet_paths):
    """nnU-Net checkpoints store the epoch, not the scheduler: after load_checkpoint, nnU-Net's
    on_train_epoch_start must put the schedule at epoch * iterations_per_epoch (what --c relies on)."""
    cls = ALL_TRAINERS["nnUNetTrainer_LightMedSeg_Smoke"]
    t = make_trainer(tiny, cls)
    t.initialize()
    Path(t.output_folder).mkdir(parents=True, exist_ok=True)
    dl_tr, _ = t.get_dataloaders()
    t.on_train_epoch_start()
    t.train_step(next(dl_tr))
    t.current_epoch = 1  # as after on_epoch_end of epoch 0
    ckpt = os.path.join(t.output_folder, "checkpoint_latest.pth")
    t.current_epoch -= 1  # save_checkpoint stores current_epoch + 1
    t.save_checkpoint(ckpt)
    r = make_trainer(tiny, cls)
    r.load_checkpoint(ckpt)
    assert r.current_epoch == 1
    r.on_train_epoch_start()
    assert r.lr_scheduler.iteration == 10
    assert r.optimizer.param_groups[0]["lr"] == pytest.approx(r.lr_scheduler.lr_at(10))
    assert math.isfinite(float(r.train_step(next(dl_tr))["loss"]))


# ------------------------------------------------------------------------------------- CPU thread count
def test_cpu_thread_count_from_timed_steps_fixed_or_rejected(tiny, nnunet_paths, monkeypatch):
    """On a CPU the trainer times its steps for the thread tuner (cpu/threads.py) and logs the choice;
    LIGHTMEDSEG_CPU_THREADS=N fixes the count; a bad value fails at construction, before any work."""
    from nnunetv2_lightmedseg.cpu.threads import ENV_SWITCH
    cls = ALL_TRAINERS["nnUNetTrainer_LightMedSeg_Smoke"]
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv(ENV_SWITCH, "many")
        with pytest.raises(ValueError, match=f"{ENV_SWITCH} must be 'auto'"):
            make_trainer(tiny, cls)

        monkeypatch.setenv(ENV_SWITCH, "auto")
        torch.set_num_threads(2)  # what nnUNetv2_train -device cpu sets on a 2-core machine
        t = make_trainer(tiny, cls)
        t.on_train_start()
        tuner = t._thread_tuner
        assert tuner is not None and tuner.candidates == [2, 1]
        t.on_train_epoch_start()
        for _ in range(tuner.rounds * 2 + 2):  # a first step at each count, then the rounds
            assert math.isfinite(float(t.train_step(next(t.dataloader_train))["loss"]))
        assert not tuner.probing and len(tuner.history) == 1 and tuner.threads in (1, 2)
        assert t.lr_scheduler.iteration == tuner.rounds * 2 + 2
        with open(t.log_file) as f:
            assert f"training on {tuner.threads} CPU thread" in f.read()
        t.on_train_end()

        monkeypatch.setenv(ENV_SWITCH, "1")
        torch.set_num_threads(2)
        t = make_trainer(tiny, cls)
        t.on_train_start()
        assert t._thread_tuner is None and torch.get_num_threads() == 1
        with open(t.log_file) as f:
            assert f"training on 1 CPU thread(s) ({ENV_SWITCH}=1)" in f.read()
        t.on_train_end()
    finally:
        torch.set_num_threads(before)
