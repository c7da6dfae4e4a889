"""Trainer variants: small subclasses named after what they change (ablations, training lengths, CPU benchmarks).

Use any of them with ``nnUNetv2_train ... -tr <name>`` (after ``eval "$(lightmedseg env)"``) and
``nnUNetv2_predict ... -tr <name>``.

===============================================  ===========  =========  =====  ===================================
Trainer                                          network      epochs     iters  notes
===============================================  ===========  =========  =====  ===================================
``nnUNetTrainer_LightMedSeg``                    paper        300        250    the paper's recipe (§3, §4)
``nnUNetTrainer_LightMedSeg_StandardConv``       standard     300        250    every GhostConv3D -> Conv3D (0.69M)
``nnUNetTrainer_LightMedSeg_NoLSPM``             w/o LSPM     300        250    ablation (Table: w/o LSPM)
``nnUNetTrainer_LightMedSeg_NoAnchors``          w/o anchors  300        250    no anchor detector / FiLM / bias
``nnUNetTrainer_LightMedSeg_NoSkipRouter``       plain skips  300        250    ablation (w/o skip router)
``nnUNetTrainer_LightMedSeg_16anchors``          N = 16       300        250    anchor-count ablation
``nnUNetTrainer_LightMedSeg_32anchors``          N = 32       300        250    anchor-count ablation
``nnUNetTrainer_LightMedSeg_FullResDecoder``     reading B    300        250    last decoder stage at full res
``nnUNetTrainer_LightMedSeg_BlockHead``          block head   300        250    head kernel = stride (old default)
``nnUNetTrainer_LightMedSeg_DeepSupervision``    + aux heads  300        250    deep supervision (not in paper)
``nnUNetTrainer_LightMedSeg_Isotropic``          isotropic    300        250    paper's schedule on any plans
``nnUNetTrainer_LightMedSeg_PlannedKernels``     plans' kern. 300        250    nnU-Net's 1x3x3 kernels too
``nnUNetTrainer_LightMedSeg_1epoch``             paper        1          250    mirrors ``nnUNetTrainer_1epoch``
``nnUNetTrainer_LightMedSeg_5epochs``            paper        5          250    mirrors ``nnUNetTrainer_5epochs``
``nnUNetTrainer_LightMedSeg_10epochs``           paper        10         250    mirrors ``nnUNetTrainer_10epochs``
``nnUNetTrainer_LightMedSeg_20epochs``           paper        20         250    mirrors ``nnUNetTrainer_20epochs``
``nnUNetTrainer_LightMedSeg_50epochs``           paper        50         250    mirrors ``nnUNetTrainer_50epochs``
``nnUNetTrainer_LightMedSeg_100epochs``          paper        100        250    mirrors ``nnUNetTrainer_100epochs``
``nnUNetTrainer_CPUBench_4x50``                  stock U-Net  4          50     stock nnUNetTrainer, 10 val iters
``nnUNetTrainer_LightMedSeg_CPUBench_4x50``      paper        4          50     equal-iteration pair of the above
``nnUNetTrainer_LightMedSeg_CPUBench_16x50``     paper        16         50     equal wall clock (LightMedSeg is
``nnUNetTrainer_LightMedSeg_CPUBench_32x50``     paper        32         50     cheaper per iteration on CPU)
``nnUNetTrainer_LightMedSeg_IsoBench_4x50``      isotropic    4          50     thick-slice comparison baseline
``nnUNetTrainer_LightMedSeg_Demo``               paper        8          20     demo, peak LR 1e-2, 5 val its
``nnUNetTrainer_LightMedSeg_Smoke``              paper        2          10     tests, 2 val iters
===============================================  ===========  =========  =====  ===================================

The network variants' options come from the registry :mod:`nnunetv2_lightmedseg.network.variants` (name ->
``LightMedSeg`` keyword arguments and the trainer that trains it).

All LightMedSeg trainers use AdamW with a per-iteration warm-up (3%) and cosine schedule sized to their own
length, so a short run still warms up and anneals fully. The CPU-benchmark pair differs only in
network/loss/optimiser: same plans, patch, batch size, augmentation, iterations and validation iterations.
"""
from __future__ import annotations

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_lightmedseg.network.variants import (ANCHORS16, ANCHORS32, BLOCK_HEAD, DEEP_SUPERVISION,
                                                   FULL_RESOLUTION_DECODER, ISOTROPIC, NO_ANCHORS, NO_LSPM, NO_SKIP_ROUTER, STANDARD_CONV)
from nnunetv2_lightmedseg.training.trainer import nnUNetTrainer_LightMedSeg

def _variant(name: str, doc: str, **class_attributes) -> type:
    """A trainer variant: ``nnUNetTrainer_LightMedSeg`` with class attributes (``network_options``,
    ``training_options``) replaced. It is an ordinary module-level class (``__module__``/``__qualname__`` set), so
    nnU-Net's class finder, pickling and spawned DDP workers find it by ``name`` like a ``class`` statement's."""
    return type(name, (nnUNetTrainer_LightMedSeg,),
                {"__doc__": doc, "__module__": __name__, "__qualname__": name, **class_attributes})


# ------------------------------------------------------------------------- ablations (the paper's Table 4)
# nnUNetTrainer_LightMedSeg_StandardConv, _NoLSPM, _NoAnchors, _NoSkipRouter, _16anchors, _32anchors
for _v, _doc in ((STANDARD_CONV, "GhostConv3D removed: every GhostConv3D is a dense Conv3D (0.69M parameters)"),
                 (NO_LSPM, "w/o LSPM: no texture map; the stem output feeds encoder stage 1"),
                 (NO_ANCHORS, "w/o Global Anchor Detector: no anchors, so no FiLM and no position bias"),
                 (NO_SKIP_ROUTER, "w/o skip router: plain same-resolution U-Net skips"),
                 (ANCHORS16, "anchor count N = 16 instead of the default 8"),
                 (ANCHORS32, "anchor count N = 32 instead of the default 8")):
    globals()[_v.trainer] = _variant(_v.trainer, f"Table 4 ablation, {_doc}.", network_options=dict(_v.options))


# --------------------------------------------------------------------- options outside the paper's default
class nnUNetTrainer_LightMedSeg_FullResDecoder(nnUNetTrainer_LightMedSeg):
    """Reading B of the paper's resolution schedule: the last decoder stage works at the input grid
    (20.75 instead of 15.55 GFLOPs at 1x4x128^3); see :class:`~nnunetv2_lightmedseg.network.LightMedSeg`.
    Measured (Dataset004 fold 0, 1,250 iterations, peak LR 3e-3; docs/benchmarks.md section 3b): +0.030 mean
    Dice over the block head (paired 95% CI [+0.025, +0.036]), but level with today's default, the overlapping
    head (0.848 vs 0.851 and 0.852: -0.003 [-0.007, +0.001]) at 1.33x its FLOPs. Not the default because it
    leaves the paper's 14.64 GFLOPs budget."""
    network_options = dict(FULL_RESOLUTION_DECODER.options)


class nnUNetTrainer_LightMedSeg_BlockHead(nnUNetTrainer_LightMedSeg):
    """The head's stride-2 transposed convolution with kernel = stride (every half-resolution voxel writes its
    own 2x2x2 block of logits): the default until the overlapping, trilinear-initialised kernel 4 replaced it,
    which gained +0.021 and +0.038 mean Dice over two runs of this one (two runs each, Dataset004 fold 0, 1,250
    iterations; docs/benchmarks.md section 3b). Kept to reproduce the figures measured with it. Its checkpoints
    also load into the default network (the kernel is embedded, same outputs)."""
    network_options = dict(BLOCK_HEAD.options)


class nnUNetTrainer_LightMedSeg_DeepSupervision(nnUNetTrainer_LightMedSeg):
    """Auxiliary 1x1x1 heads on decoder stages 2 and 3, trained with nnU-Net's DeepSupervisionWrapper
    (weights 4/7, 2/7, 1/7 for the outputs at 1, 1/2, 1/4 of the patch); validation and prediction use the
    full-resolution output only. The paper has no deep supervision."""
    network_options = dict(DEEP_SUPERVISION.options)


class nnUNetTrainer_LightMedSeg_Isotropic(nnUNetTrainer_LightMedSeg):
    """The paper's isotropic ``[2, 2, 2]`` x 4 schedule and 3x3x3 kernels on any plans (needs a patch of at least
    16 voxels per axis): the baseline of the thick-slice comparison (``scripts/thick_slice_benchmark.sh``), and
    the network this package built for every plans before the schedule followed them (issue 9)."""
    network_options = dict(ISOTROPIC.options)


class nnUNetTrainer_LightMedSeg_PlannedKernels(nnUNetTrainer_LightMedSeg):
    """nnU-Net's per-stage kernels as well as its strides: the depthwise/ghost/LSPM/anchor convolutions of a level
    are ``1x3x3`` where nnU-Net plans ``[1, 3, 3]`` (thick-slice data), instead of the paper's 3x3x3. Isotropic
    plans give the default network. Not the default: it learned less reliably on the generated thick-slice data
    (see ``nnUNetTrainer_LightMedSeg.build_network_architecture`` and docs/benchmarks.md section 6)."""
    kernels_from_plans = True


# ---------------------------------------------------------------- training lengths (mirror stock nnU-Net's)
# nnUNetTrainer_LightMedSeg_1epoch, _5epochs, _10epochs, _20epochs, _50epochs, _100epochs
for _n in (1, 5, 10, 20, 50, 100):
    _stock = f"nnUNetTrainer_{_n}epoch" + ("s" if _n > 1 else "")
    globals()[_stock.replace("nnUNetTrainer_", "nnUNetTrainer_LightMedSeg_")] = _variant(
        _stock.replace("nnUNetTrainer_", "nnUNetTrainer_LightMedSeg_"),
        f"{_n} x 250 iterations, as stock nnU-Net's ``{_stock}``.", training_options={"num_epochs": _n})
del _v, _doc, _n, _stock


# ------------------------------------------------------------------------- CPU benchmarks (2-core budget)
CPU_BENCH_4x50 = {"num_epochs": 4, "num_iterations_per_epoch": 50, "num_val_iterations_per_epoch": 10}


class nnUNetTrainer_CPUBench_4x50(nnUNetTrainer):
    """Stock nnU-Net (plain U-Net, DC+CE, SGD/poly) for 4 epochs x 50 iterations, 10 validation iterations."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        super().__init__(plans, configuration, fold, dataset_json, device)
        for name, value in CPU_BENCH_4x50.items():
            setattr(self, name, value)


class nnUNetTrainer_LightMedSeg_CPUBench_4x50(nnUNetTrainer_LightMedSeg):
    training_options = dict(CPU_BENCH_4x50)


class nnUNetTrainer_LightMedSeg_CPUBench_16x50(nnUNetTrainer_LightMedSeg):
    training_options = dict(CPU_BENCH_4x50, num_epochs=16)


class nnUNetTrainer_LightMedSeg_CPUBench_32x50(nnUNetTrainer_LightMedSeg):
    training_options = dict(CPU_BENCH_4x50, num_epochs=32)


class nnUNetTrainer_LightMedSeg_IsoBench_4x50(nnUNetTrainer_LightMedSeg_Isotropic):
    training_options = dict(CPU_BENCH_4x50)


# ------------------------------------------------------------------------------------ demo and tests
class nnUNetTrainer_LightMedSeg_Demo(nnUNetTrainer_LightMedSeg):
    """``lightmedseg demo``: a few minutes on a 2-core CPU (8 x 20 iterations).

    Peak LR 1e-2 instead of the default 3e-3: a 160-iteration run at 1e-3 barely leaves the initialisation on the
    generated phantoms (measured: 20 iterations at 1e-3 left the validation Dice at the untrained level, 1e-2
    reached a pseudo Dice of 0.53 for 'outer'), so the demo would show the pipeline but not learning. Runs of
    1,250 iterations and more use the default (3e-3 beat 1e-2 there, see the trainer's docstring).
    A checkpoint every epoch (``save_every=1``, nnU-Net's default is 50): an interrupted demo resumes with ``--c``
    from the last epoch, not from the start."""
    training_options = {"num_epochs": 8, "num_iterations_per_epoch": 20, "num_val_iterations_per_epoch": 5,
                        "initial_lr": 1e-2, "save_every": 1}


class nnUNetTrainer_LightMedSeg_Smoke(nnUNetTrainer_LightMedSeg):
    """Tests: the shortest run that exercises every hook (2 epochs so resuming with --c can be tested)."""
    training_options = {"num_epochs": 2, "num_iterations_per_epoch": 10, "num_val_iterations_per_epoch": 2}


ALL_TRAINERS = {name: obj for name, obj in dict(globals()).items()
                if isinstance(obj, type) and issubclass(obj, nnUNetTrainer) and name.startswith("nnUNetTrainer_")}
