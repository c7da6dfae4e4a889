"""Multi-GPU readiness without a GPU: LightMedSeg + BoundaryCompoundLoss under DistributedDataParallel.

nnU-Net's ``-num_gpus N`` wraps the network in ``DistributedDataParallel`` and spawns one worker per GPU, each
re-finding the trainer class by name. Two things break that path in practice and are checked here on CPU
(gloo backend, two spawned processes):

* a parameter that does not get a gradient in some configuration: with ``find_unused_parameters=False`` (nnU-Net's
  setting) DDP raises at the next iteration ("Expected to have finished reduction..."). Every variant runs
  three steps with different data per rank; afterwards the weights must be bit-identical on both ranks (the
  all-reduced gradients keep them in sync) and finite. The loss runs with ``batch_dice=True, ddp=True``, so
  its cross-rank all-gather of Dice statistics (nnU-Net's ``AllGatherGrad``) is exercised too.
* the trainer class a spawned worker finds by name (``recursive_find_trainer_class_by_name`` with
  ``nnUNet_extTrainer``) must be the same class (module + qualname) as the one the parent imports, or
  isinstance checks and pickled state would silently diverge.
"""
from __future__ import annotations

import json
import os
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunetv2_lightmedseg.network.variants import DEFAULT, NO_ANCHORS, NO_LSPM, NO_SKIP_ROUTER, STANDARD_CONV

pytestmark = pytest.mark.slow  # two spawned processes, each importing torch and nnU-Net

# the paper's network and the ablations that remove or replace modules (the anchor counts add none)
CHECKED = (DEFAULT, STANDARD_CONV, NO_LSPM, NO_ANCHORS, NO_SKIP_ROUTER)
VARIANTS = {v.name: dict(v.options) for v in CHECKED}
TRAINERS = [v.trainer for v in CHECKED]
WORLD = 2
STEPS = 3
NUM_CLASSES = 3


def _run_variant(rank: int, options: dict) -> dict:
    from torch.nn.parallel import DistributedDataParallel as DDP

    from nnunetv2_lightmedseg import LightMedSeg
    from nnunetv2_lightmedseg.loss.boundary_compound import BoundaryCompoundLoss

    torch.manual_seed(1234 + rank)  # deliberately different initialisations: DDP must broadcast rank 0's
    net = LightMedSeg(1, NUM_CLASSES, **options).to(memory_format=torch.channels_last_3d)
    model = DDP(net, find_unused_parameters=False)
    loss_fn = BoundaryCompoundLoss(has_regions=False, batch_dice=True, ddp=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(100 + rank)  # different data per rank
    losses = []
    for _ in range(STEPS):
        x = torch.randn(1, 1, 32, 32, 32, generator=g)
        target = ((x > 0.3).float() + (x > 1.2).float())  # labels 0/1/2, nnU-Net's float (B, 1, ...) target
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), target)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    flat = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(WORLD)]
    dist.all_gather(gathered, flat)
    return {"max_rank_diff": float((gathered[0] - gathered[1]).abs().max()),
            "finite": bool(torch.isfinite(flat).all()), "losses": losses,
            "grads_missing": [n for n, p in net.named_parameters() if p.grad is None]}


def _worker(rank: int, out_dir: str, ext_trainer: str) -> None:
    torch.set_num_threads(1)
    # rendezvous through a file in the test's own folder: no TCP port to pick, so none another process can take
    dist.init_process_group("gloo", init_method=Path(out_dir, "rendezvous").as_uri(), rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=120))
    result: dict = {"variants": {}, "trainers": {}}
    try:
        for name, options in VARIANTS.items():
            try:
                result["variants"][name] = _run_variant(rank, options)
            except Exception:  # noqa: BLE001 - reported to the parent, which fails the variant's test
                result["variants"][name] = {"error": traceback.format_exc()}
                break  # the other rank may be stuck in a collective: stop, do not run into a deadlock
        if rank == 0:
            os.environ["nnUNet_extTrainer"] = ext_trainer
            from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
            for t in TRAINERS:
                try:
                    cls = recursive_find_trainer_class_by_name(t)
                    result["trainers"][t] = [cls.__module__, cls.__qualname__]
                except Exception as e:  # noqa: BLE001
                    result["trainers"][t] = ["ERROR", repr(e)]
    finally:
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with the gloo backend is not available in this PyTorch build")
    from nnunetv2_lightmedseg.utils.nnunet_env import trainers_folder
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out), trainers_folder()), nprocs=WORLD, join=True)
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_ddp_steps_keep_ranks_identical(ddp_results, variant):
    for rank, res in enumerate(ddp_results):
        v = res["variants"].get(variant)
        assert v is not None, f"rank {rank} did not reach variant {variant} (an earlier variant failed)"
        assert "error" not in v, f"rank {rank}, variant {variant} failed under DDP:\n{v['error']}"
        assert v["finite"], f"rank {rank}, variant {variant}: non-finite weights after {STEPS} steps"
        assert not v["grads_missing"], f"variant {variant}: parameters without gradient: {v['grads_missing']}"
        assert v["max_rank_diff"] == 0.0, (f"variant {variant}: weights differ between ranks by "
                                           f"{v['max_rank_diff']} after {STEPS} DDP steps")
    # the ranks saw different data, so their losses differ: the test did not degenerate to one data stream
    assert ddp_results[0]["variants"][variant]["losses"] != ddp_results[1]["variants"][variant]["losses"]


@pytest.mark.parametrize("trainer", TRAINERS)
def test_trainer_refound_in_spawned_worker_is_same_class(ddp_results, trainer):
    import nnunetv2_lightmedseg.training as training
    cls = getattr(training, trainer)
    found = ddp_results[0]["trainers"][trainer]
    assert found[0] != "ERROR", f"spawned worker could not find {trainer}: {found[1]}"
    assert found == [cls.__module__, cls.__qualname__], (
        f"the worker re-found {trainer} as {found[0]}.{found[1]}, the parent imports "
        f"{cls.__module__}.{cls.__qualname__}: nnUNet_extTrainer must hold modules that re-export the package's "
        f"classes")
