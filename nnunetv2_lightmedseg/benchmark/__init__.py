"""Measurement tools shared by ``lightmedseg profile`` and ``lightmedseg benchmark``.

* :mod:`.plans_setup`   -- what both networks are built from (plans, configuration, dataset.json of a dataset)
* :mod:`.default_plans` -- the plans nnU-Net's default planner writes for a patch shape (no dataset needed)
* :mod:`.builders`      -- networks as nnU-Net builds them from plans (stock and LightMedSeg variants)
* :mod:`.entries`       -- the benchmark's rows (stock, LightMedSeg variants by name)
* :mod:`.train_step`    -- one training iteration through the network's own nnU-Net trainer
* :mod:`.measure` -- parameter/MAC counting, latency and peak-memory conventions (timing: ``utils.timing``)
* :mod:`.network` -- the network benchmark (rows, table, plot)
* :mod:`.results` -- comparison of two trained nnU-Net result folders (Dice, paired statistics, epoch times)
* :mod:`.curves`  -- learning curves (Dice vs iterations and vs hours) from nnU-Net's logs, plot, archive
"""
from ..utils.timing import interleaved_timings, summarize
from .measure import FLOP_CONVENTION, count_flops, count_macs, count_parameters
from .builders import build_lightmedseg_network, build_stock_network, stock_network_for_shape
from .default_plans import plans_for_shape
from .entries import ModelEntry
from .plans_setup import BenchmarkSetup, setup_from_dataset

__all__ = ["FLOP_CONVENTION", "count_flops", "count_macs", "count_parameters", "interleaved_timings", "summarize",
           "BenchmarkSetup", "ModelEntry", "build_lightmedseg_network", "build_stock_network", "plans_for_shape",
           "setup_from_dataset", "stock_network_for_shape"]
