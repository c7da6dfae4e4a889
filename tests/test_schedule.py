"""Per-axis resolution schedule (issue 9): the rule mapping nnU-Net's plans onto LightMedSeg's four steps,
anisotropic networks (shapes, gradients, resampling, export), and isotropic plans giving exactly the network
that existed before the schedule (parameters, FLOPs, state-dict shapes, bit-identical outputs)."""
from pathlib import Path

import pytest
import torch

from nnunetv2_lightmedseg import LightMedSeg
from nnunetv2_lightmedseg.network.blocks import MultiScaleSkipRouter
from nnunetv2_lightmedseg.network.schedule import (DEFAULT_KERNEL_SIZES, DEFAULT_STRIDES, cumulative_factors, divisor,
                                                   resample_between, schedule_from_plans)
from nnunetv2_lightmedseg.network.variants import DEFAULT, NO_LSPM, STANDARD_CONV

REFERENCE = Path(__file__).parent / "data" / "isotropic_reference.pt"

# nnU-Net 2.8 plans (arch_kwargs strides / kernel_sizes) of typical datasets
ACDC_STRIDES = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]]
ACDC_KERNELS = [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
HIPPOCAMPUS_STRIDES = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]  # only three poolings planned
BRATS_STRIDES = [[1, 1, 1]] + [[2, 2, 2]] * 5
ISO_KERNELS = [[3, 3, 3]] * 6

# the schedules the network tests run: isotropic, z pooled late, z never pooled (kernels in-plane throughout)
SCHEDULES = {
    "isotropic": (DEFAULT_STRIDES, DEFAULT_KERNEL_SIZES),
    "z_late": (((1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)),
               ((1, 3, 3), (1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3))),
    "z_never": (((1, 2, 2),) * 4, ((1, 3, 3),) * 5),
}
SMALL = dict(encoder_widths=(8, 8, 16, 16), stem_channels=8, router_channels=8, num_anchors=4)


def nparams(m):
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------------------------- the rule
def test_rule_acdc_like_plans_take_the_first_four_steps_and_the_kernels_per_level():
    strides, kernels = schedule_from_plans(ACDC_STRIDES, ACDC_KERNELS)
    assert strides == ((1, 2, 2), (1, 2, 2), (2, 2, 2), (1, 2, 2))
    # level 0 = stage 0, level L = the stage of the L-th non-trivial stride
    assert kernels == ((1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    assert divisor(strides) == (2, 16, 16)


@pytest.mark.parametrize("plans_strides", [HIPPOCAMPUS_STRIDES, BRATS_STRIDES, [[2, 2, 2]] * 4, [[1, 1, 1]]],
                         ids=["hippocampus_3_pools", "brats_5_pools", "no_trivial_stage0", "no_pooling"])
def test_rule_isotropic_plans_give_the_papers_schedule(plans_strides):
    strides, kernels = schedule_from_plans(plans_strides, [[3, 3, 3]] * len(plans_strides))
    assert strides == DEFAULT_STRIDES and kernels == DEFAULT_KERNEL_SIZES
    assert schedule_from_plans(None, None) == (DEFAULT_STRIDES, DEFAULT_KERNEL_SIZES)
    assert schedule_from_plans(plans_strides, None) == (DEFAULT_STRIDES, DEFAULT_KERNEL_SIZES)


def test_rule_missing_steps_repeat_the_last_planned_step_and_kernel():
    # z never pooled, two poolings planned: the extra steps keep z at stride 1
    strides, kernels = schedule_from_plans([[1, 1, 1], [1, 2, 2], [1, 2, 2]], [[1, 3, 3], [1, 3, 3], [1, 3, 3]])
    assert strides == ((1, 2, 2),) * 4 and kernels == ((1, 3, 3),) * 5
    assert divisor(strides) == (1, 16, 16)
    # anisotropic then isotropic, three poolings: the 4th step repeats [2, 2, 2], its kernel the last one
    strides, kernels = schedule_from_plans([[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
                                           [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 5, 5]])
    assert strides == ((1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    assert kernels == ((1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 5, 5), (3, 5, 5))


def test_rule_ignores_trivial_stages_anywhere_and_stops_after_four_steps():
    strides, _ = schedule_from_plans([[1, 1, 1], [2, 1, 2], [1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
                                     [[3, 3, 3]] * 7)
    assert strides == ((2, 1, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2))


@pytest.mark.parametrize("strides,kernels,match", [
    ([[1, 1], [2, 2]], None, "3D plans"),
    ([[1, 1, 1], [0, 2, 2]], None, "positive"),
    ([[1, 1, 1], [2, 2, 2]], [[3, 3, 3]], "do not match"),
])
def test_rule_rejects_plans_it_cannot_map(strides, kernels, match):
    with pytest.raises(ValueError, match=match):
        schedule_from_plans(strides, kernels)


def test_cumulative_factors_and_resampling_between_levels():
    strides = SCHEDULES["z_late"][0]
    assert cumulative_factors(strides) == [(1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16)]
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).view(1, 1, 2, 8, 8)
    down = resample_between(x, (1, 2, 2), (2, 8, 8))  # factor (2, 4, 4)
    assert down.shape[2:] == (1, 2, 2)
    torch.testing.assert_close(down[0, 0, 0, 0, 0], x[0, 0, :, :4, :4].mean())
    up = resample_between(down, (2, 8, 8), (1, 2, 2))
    assert up.shape == x.shape
    same = resample_between(x, (1, 2, 2), (1, 2, 2))
    assert same is x
    # an axis with factor 1 is left exactly as it is by upsampling the others
    z_profile = torch.randn(1, 2, 3, 1, 1)
    up = resample_between(z_profile.expand(1, 2, 3, 4, 4).contiguous(), (1, 4, 4), (1, 2, 2))
    assert up.shape[2:] == (3, 8, 8)
    assert torch.equal(up, z_profile.expand(1, 2, 3, 8, 8))
    y = torch.randn(1, 2, 3, 4, 4)
    with pytest.raises(ValueError, match="cannot resample"):
        resample_between(y, (1, 4, 1), (2, 2, 2))


# ----------------------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("kwargs,match", [
    (dict(strides=[[2, 2, 2]] * 3), "strides"),
    (dict(strides=[[2, 2]] * 4), "strides"),
    (dict(strides=[[2, 2, 0]] * 4), "positive"),
    (dict(strides=[[2.0, 2, 2]] * 4), "integers"),
    (dict(strides=[[True, 2, 2]] * 4), "integers"),
    (dict(strides=2), "strides"),
    (dict(kernel_sizes=[[3, 3, 3]] * 4), "kernel_sizes"),
    (dict(kernel_sizes=[[3, 3, 2]] * 5), "odd"),
])
def test_bad_schedule_arguments_raise_a_clear_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LightMedSeg(1, 2, **kwargs)


# ------------------------------------------------------------------------ isotropic = the previous network
def test_isotropic_plans_give_the_papers_budget_and_flops():
    from torch.utils.flop_counter import FlopCounterMode

    strides, kernels = schedule_from_plans(HIPPOCAMPUS_STRIDES, ISO_KERNELS[:4])
    for v in (DEFAULT, STANDARD_CONV):  # the networks of the pinned parameter counts (tests/test_network.py)
        net = LightMedSeg(4, 4, strides=strides, kernel_sizes=kernels, **v.options)
        assert nparams(net) == nparams(LightMedSeg(4, 4, **v.options))
    net = LightMedSeg(4, 4, strides=strides, kernel_sizes=kernels).to("meta").eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(torch.zeros(1, 4, 128, 128, 128, device="meta"))
    # 15.55 GFLOPs (2 x MACs), as the default network's. 1,048,576 below the 15,548,072,128 of commit f86aebd: LSPM's
    # 1 -> 2 expert-weight conv at 64^3 (2 x 524,288 FLOPs) runs as one elementwise sigmoid since ceee965 (same
    # arithmetic, lspm.py), which torch.utils.flop_counter does not count (it counts convolutions and matmuls)
    assert fc.get_total_flops() == 15_547_023_552


def test_isotropic_plans_are_bit_identical_to_the_default_network_with_the_same_seed():
    strides, kernels = schedule_from_plans(BRATS_STRIDES, ISO_KERNELS)
    nets, outs, grads = [], [], []
    for kw in ({}, dict(strides=strides, kernel_sizes=kernels)):
        torch.manual_seed(0)
        net = LightMedSeg(1, 3, **SMALL, **kw)
        torch.manual_seed(1)
        x = torch.randn(1, 1, 17, 20, 18)
        y = net(x)
        (y.square().mean() + y[:, 1].mean()).backward()
        nets.append(net)
        outs.append(y.detach())
        grads.append([p.grad for p in net.parameters()])
    a, b = (n.state_dict() for n in nets)
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(outs[0], outs[1])
    assert all(torch.equal(g, h) for g, h in zip(*grads))
    assert nets[0].config == nets[1].config and nets[1].divisor == (16, 16, 16)


def test_isotropic_network_reproduces_the_network_from_before_the_schedule():
    """``tests/data/isotropic_reference.pt`` was computed by the package before the per-axis schedule existed
    (see tests/data/make_isotropic_reference.py): same seed -> same output and gradients; old LightMedSeg(4, 4)
    checkpoints (their key/shape table) load strictly."""
    ref = torch.load(REFERENCE, map_location="cpu", weights_only=True)
    small = ref["small"]
    strides, kernels = schedule_from_plans(HIPPOCAMPUS_STRIDES, ISO_KERNELS[:4])
    torch.manual_seed(0)  # the reference predates the overlapping head: the kernel = stride head it had
    net = LightMedSeg(2, 3, strides=strides, kernel_sizes=kernels, head_upsampling="blocks", **small["options"])
    torch.manual_seed(1)
    x = torch.randn(small["input_shape"])
    y = net(x)
    (y.square().mean() + y[:, 1].mean()).backward()
    grads = torch.cat([p.grad.flatten() for p in net.parameters()])
    with torch.no_grad():
        y_eval = net.eval()(x)
    # same mathematics, not the same rounding: a different CPU, or a convolution that now runs in channels-last
    # memory (issue 10: oneDNN picks another algorithm; 6e-6 at most on outputs up to 0.39), sums in another order
    torch.testing.assert_close(y_eval, small["eval_output"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads, small["grads"], rtol=1e-4, atol=1e-5)  # largest gradient: 1.0
    # (into today's default too: its overlapping head takes the old kernel = stride weights, embedded)
    for name, v in (("default", DEFAULT), ("standard_conv", STANDARD_CONV)):  # the reference file's keys
        old = {k: torch.zeros(s) for k, s in ref["shapes"][name].items()}
        LightMedSeg(4, 4, strides=strides, kernel_sizes=kernels, **v.options).load_state_dict(old, strict=True)


# ---------------------------------------------------------------------------------- anisotropic networks
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_output_shape_for_odd_sizes_and_gradients_to_every_parameter(name):
    strides, kernels = SCHEDULES[name]
    torch.manual_seed(0)
    net = LightMedSeg(1, 3, strides=strides, kernel_sizes=kernels, **SMALL)
    d = net.divisor
    # odd sizes, one just above each axis's minimum
    shape = (2, 1, d[0] + 1, d[1] + 3, d[2] + 1)
    y = net(torch.randn(shape))
    assert y.shape == (2, 3) + shape[2:]
    (y.square().mean() + y[:, 1].mean()).backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
            or p.grad.abs().sum() == 0]
    assert not dead, f"parameters without gradient ({name}): {dead}"
    # the network rebuilds from its config (checkpoints carry it) and loads its own state dict strictly
    again = LightMedSeg(1, 3, **net.config)
    again.load_state_dict(net.state_dict(), strict=True)
    assert net.config["strides"] == strides and net.config["kernel_sizes"] == kernels


def test_anisotropic_network_follows_the_schedule_in_every_module():
    strides, kernels = SCHEDULES["z_late"]
    net = LightMedSeg(1, 3, strides=strides, kernel_sizes=kernels, **SMALL)
    assert net.divisor == (4, 16, 16) and net.minimum_input_size() == (4, 16, 16)
    assert net.stem.primary.stride == (1, 2, 2) and net.stem.primary.kernel_size == (1, 3, 3)
    assert net.stem.cheap.kernel_size == (1, 3, 3) and net.stem.cheap.padding == (0, 1, 1)
    convs = [m for m in net.anchor_detector.features if isinstance(m, torch.nn.Conv3d)]
    assert [c.stride for c in convs] == [(1, 2, 2), (1, 2, 2), (2, 2, 2)]
    assert [c.kernel_size for c in convs] == [(1, 3, 3), (1, 3, 3), (3, 3, 3)]
    assert net.lspm.smooth.kernel_size == (1, 3, 3)
    torch.testing.assert_close(net.lspm.smooth.weight, torch.full_like(net.lspm.smooth.weight, 1 / 9))
    assert [s.route.detail.kernel_size for s in net.encoder] == [(1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3)]
    # decoder stage k undoes step 3 - k; the last stage does not upsample; the head undoes the stem
    assert [s.up.stride for s in net.decoder[:3]] == [(2, 2, 2), (2, 2, 2), (1, 2, 2)]
    assert [s.up.kernel_size for s in net.decoder] == [(2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 1, 1)]
    assert [s.paths.depthwise.kernel_size for s in net.decoder] == [(3, 3, 3), (1, 3, 3), (1, 3, 3), (1, 3, 3)]
    head_up = net.head.seg_layers[1]
    # the overlapping head: kernel 2 x stride where the stem halves the axis, 1 where it does not
    assert head_up.stride == (1, 2, 2) and head_up.kernel_size == (1, 4, 4) and head_up.padding == (0, 1, 1)


@pytest.mark.parametrize("options", [dict(full_resolution_decoder=True), dict(deep_supervision=True),
                                     dict(full_resolution_decoder=True, deep_supervision=True)],
                         ids=["full_res", "deep_sup", "both"])
def test_output_options_follow_the_anisotropic_schedule(options):
    """Reading B's full-resolution last stage undoes the stem's per-axis step (its kernel is level 0's), and the
    deep-supervision outputs have per-axis scales (the trainer hands them to nnU-Net's target downsampling)."""
    strides, kernels = SCHEDULES["z_late"]
    kernels = ((1, 3, 3),) + kernels[1:]
    torch.manual_seed(0)
    net = LightMedSeg(1, 3, strides=strides, kernel_sizes=kernels, **SMALL, **options)
    if net.config["full_resolution_decoder"]:
        last = net.decoder[3]
        assert last.up.stride == (1, 2, 2) and last.paths.depthwise.kernel_size == (1, 3, 3)
        assert len(net.head.seg_layers) == 1
    shape = (2, 1, 5, 19, 33)
    ys = net(torch.randn(shape))
    ys = ys if isinstance(ys, list) else [ys]
    scales = net.deep_supervision_scales()
    if net.config["deep_supervision"]:
        # decoder stages 3 and 2 sit at levels 1 and 2: (1, 2, 2) and (1, 4, 4) below the input
        assert scales == [[1.0, 1.0, 1.0], [1.0, 0.5, 0.5], [1.0, 0.25, 0.25]]
    assert len(ys) == len(scales)
    for y, scale in zip(ys, scales):
        assert y.shape == (2, 3) + tuple(int(round(s * f)) for s, f in zip(shape[2:], scale))
    sum(y.square().mean() + y[:, 1].mean() for y in ys).backward()
    dead = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, dead
    LightMedSeg(1, 3, **net.config).load_state_dict(net.state_dict(), strict=True)


def test_anisotropic_intermediates_live_on_the_per_axis_grids():
    strides, kernels = SCHEDULES["z_late"]
    net = LightMedSeg(1, 3, strides=strides, kernel_sizes=kernels, **SMALL).eval()
    with torch.no_grad():
        info = net.forward_with_intermediates(torch.randn(1, 1, 6, 20, 33))
    # padded to (8, 32, 48): stem grid (8, 16, 24); decoder stages 1, 2 at the grids of encoder stages 3, 2
    assert info["texture"].shape == (1, 1, 8, 16, 24) and info["gate"].shape == (1, 1, 8, 16, 24)
    assert info["router_weights_stage1"].shape == (1, 4, 4, 4, 6)
    assert info["router_weights_stage2"].shape == (1, 4, 8, 8, 12)
    assert info["blend_weights_stage4"].shape == (1, 3, 8, 16, 24)
    assert info["logits"].shape == (1, 3, 6, 20, 33)


def test_anisotropic_skip_router_projects_on_the_coarser_grid_exactly():
    """Projecting before upsampling (or after downsampling) must equal the paper's order per axis too."""
    strides = SCHEDULES["z_late"][0]
    r = MultiScaleSkipRouter(strides=strides)
    fac = cumulative_factors(strides[1:])  # encoder grids relative to stage 1: (1,1,1), (1,2,2), (2,4,4), (4,8,8)
    base = (8, 16, 16)
    feats = [torch.randn(1, c, *(b // f for b, f in zip(base, fs))) for c, fs in zip((16, 32, 64, 128), fac)]
    stem = torch.randn(1, 8, *base)
    for k, level in ((0, 2), (1, 1)):
        aligned = [r.proj[s](resample_between(f, fac[s], fac[level])) for s, f in enumerate(feats)]
        w = torch.softmax(r.controller(torch.cat(aligned, 1)), 1)
        ref = r.out[k](sum(w[:, s:s + 1] * aligned[s] for s in range(4)))
        torch.testing.assert_close(r.skip(k, feats, stem), ref, rtol=1e-4, atol=1e-5)
        assert ref.shape[2:] == feats[level].shape[2:]


@pytest.mark.parametrize("shape,axis,minimum", [((1, 1, 3, 32, 32), "0 (D)", 4), ((1, 1, 8, 15, 32), "1 (H)", 16)])
def test_too_small_input_names_the_axis_and_its_minimum(shape, axis, minimum):
    strides, kernels = SCHEDULES["z_late"]
    net = LightMedSeg(1, 2, strides=strides, kernel_sizes=kernels, **SMALL)
    with pytest.raises(ValueError, match=rf"axis {axis[0]} \({axis[3]}\) is {shape[2 + int(axis[0])]} voxels but "
                                         rf"must be at least {minimum}"):
        net(torch.randn(shape))


def _anisotropic_net_and_input():
    strides, kernels = SCHEDULES["z_late"]
    torch.manual_seed(0)
    return LightMedSeg(1, 2, strides=strides, kernel_sizes=kernels, **SMALL).eval(), torch.randn(2, 1, 8, 32, 32)


def test_anisotropic_torch_jit_trace():
    net, x = _anisotropic_net_and_input()
    with torch.no_grad():
        traced = torch.jit.trace(net, x)
        torch.testing.assert_close(traced(x), net(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_anisotropic_torch_export():
    net, x = _anisotropic_net_and_input()
    dims = {2: torch.export.Dim("d", min=1, max=32) * 4, 3: torch.export.Dim("h", min=1, max=16) * 16,
            4: torch.export.Dim("w", min=1, max=16) * 16}
    ep = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("b", min=1, max=8), **dims},))
    x2 = torch.randn(3, 1, 12, 48, 32)  # every axis >= 2 voxels at the bottleneck (export specialises 1)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(x2), net(x2), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------- the trainer
def _configuration(strides, kernels, patch):
    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    return ConfigurationManager({"patch_size": patch, "architecture": {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {"n_stages": len(strides), "strides": strides, "kernel_sizes": kernels},
        "_kw_requires_import": []}})


def test_trainer_builds_the_schedule_from_the_plans():
    from nnunetv2_lightmedseg.training import ALL_TRAINERS, nnUNetTrainer_LightMedSeg

    net = nnUNetTrainer_LightMedSeg.build_network_architecture(
        None, _configuration(ACDC_STRIDES, ACDC_KERNELS, [10, 256, 224]), 1, 4, False)
    assert net.strides == ((1, 2, 2), (1, 2, 2), (2, 2, 2), (1, 2, 2)) and net.divisor == (2, 16, 16)
    assert net.kernel_sizes == DEFAULT_KERNEL_SIZES  # the paper's kernels by default
    planned = ALL_TRAINERS["nnUNetTrainer_LightMedSeg_PlannedKernels"].build_network_architecture(
        None, _configuration(ACDC_STRIDES, ACDC_KERNELS, [10, 256, 224]), 1, 4, False)
    assert planned.strides == net.strides
    assert planned.kernel_sizes == ((1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
    assert tuple(planned.stem.primary.weight.shape[2:]) == (1, 3, 3)
    # variants keep their own options on top of the plans' schedule
    ablated = ALL_TRAINERS[NO_LSPM.trainer].build_network_architecture(
        None, _configuration(ACDC_STRIDES, ACDC_KERNELS, [10, 256, 224]), 1, 4, False)
    assert ablated.lspm is None and ablated.strides == net.strides
    iso = nnUNetTrainer_LightMedSeg.build_network_architecture(
        None, _configuration(HIPPOCAMPUS_STRIDES, ISO_KERNELS[:4], [40, 56, 40]), 1, 3, False)
    assert iso.config == LightMedSeg(1, 3).config


def test_trainer_too_small_patch_names_the_axis_minimum_and_the_fix():
    from nnunetv2_lightmedseg.training import nnUNetTrainer_LightMedSeg

    # z pooled once within the first four steps (minimum 2), y/x four times (minimum 16)
    cm = _configuration(ACDC_STRIDES, ACDC_KERNELS, [10, 12, 224])
    with pytest.raises(ValueError, match=r"patch axis 1 \(H\) is 12 voxels but must be at least 16") as e:
        nnUNetTrainer_LightMedSeg.build_network_architecture(None, cm, 1, 4, False)
    assert "[2, 16, 16]" in str(e.value) and "lightmedseg plans" in str(e.value)
