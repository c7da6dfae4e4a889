"""Measurement tools shared by ``lightmedseg profile`` and ``lightmedseg benchmark``.

* :mod:`.models`  -- networks as nnU-Net builds them from plans (stock and LightMedSeg), training steps
* :mod:`.measure` -- parameter/MAC counting, interleaved latency, peak memory (conventions documented there)
* :mod:`.network` -- the network benchmark (rows, table, plot)
* :mod:`.results` -- comparison of two trained nnU-Net result folders (Dice, paired statistics, epoch times)
* :mod:`.curves`  -- learning curves (Dice vs iterations and vs hours) from nnU-Net's logs, plot, archive
"""
from .measure import FLOP_CONVENTION, count_flops, count_macs, count_parameters, interleaved_timings, summarize
from .models import (BenchmarkSetup, ModelEntry, build_lightmedseg_network, build_stock_network, plans_for_shape,
                     setup_from_dataset, stock_network_for_shape)

__all__ = ["FLOP_CONVENTION", "count_flops", "count_macs", "count_parameters", "interleaved_timings", "summarize",
           "BenchmarkSetup", "ModelEntry", "build_lightmedseg_network", "build_stock_network", "plans_for_shape",
           "setup_from_dataset", "stock_network_for_shape"]
