"""Prediction time of trained models with nnU-Net's own predictor, interleaved (``lightmedseg benchmark predict``).

What a CPU user feels is how many cases per minute ``nnUNetv2_predict`` gets through. This module times exactly
that work for two (or more) trained models on the same cases: each model is loaded once the way
``nnUNetv2_predict`` loads it (:func:`~nnunetv2_lightmedseg.deploy.loading.load_predictor`), then every case goes
through nnU-Net's ``nnUNetPredictor.predict_from_files_sequential``: nnU-Net's preprocessing (resampling,
normalisation), the sliding-window prediction with or without test-time mirroring, and the export of the
segmentation (resampling back, writing the file). ``nnUNetv2_predict`` overlaps preprocessing and export with the
network in worker processes (``-npp``/``-nps``); on a 2-core CPU those workers share the same cores, so the
sequential path measures the same work without the scheduling noise of three processes.

Interleaving: per case the models run in the order A, B for even cases and B, A for odd cases (ABBA), so slow
drifts of background load and cache effects fall on both. One untimed warm-up case per model comes first. The
load average before and after is reported: figures taken on a busy machine must say so.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..utils.names import case_name
from ..utils.tables import cell, table_lines
from ..utils.timing import summarize


def cases_from_folder(folder: str, file_ending: str) -> List[List[str]]:
    """One list of channel files per case (nnU-Net naming ``CASE_XXXX.ending``), via nnU-Net's own helper."""
    from nnunetv2.utilities.utils import create_lists_from_splitted_dataset_folder

    if not os.path.isdir(folder):
        raise ValueError(f"input folder {folder} does not exist")
    cases = create_lists_from_splitted_dataset_folder(folder, file_ending)
    if not cases:
        raise ValueError(f"no images ending in {file_ending} in {folder} (nnU-Net naming: CASE_0000{file_ending})")
    return cases


def validation_cases(dataset: str, fold: int, file_ending: str) -> List[List[str]]:
    """The raw images (``nnUNet_raw/DATASET/imagesTr``) of nnU-Net's fold-``fold`` validation cases, as listed in
    ``nnUNet_preprocessed/DATASET/splits_final.json`` (written by the first ``nnUNetv2_train`` of the dataset)."""
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    name = maybe_convert_to_dataset_name(dataset)
    splits_file = Path(nnUNet_preprocessed or "") / name / "splits_final.json"
    if not splits_file.is_file():
        raise ValueError(f"{splits_file} not found: nnU-Net writes it when a fold of {name} is first trained")
    splits = load_json(str(splits_file))
    if not 0 <= fold < len(splits):
        raise ValueError(f"fold {fold} not in {splits_file} (it has folds 0-{len(splits) - 1})")
    images = Path(nnUNet_raw or "") / name / "imagesTr"
    by_case = {os.path.basename(c[0])[:-len(file_ending) - 5]: c for c in cases_from_folder(str(images), file_ending)}
    missing = [k for k in splits[fold]["val"] if k not in by_case]
    if missing:
        raise ValueError(f"{len(missing)} fold-{fold} validation case(s) have no image in {images}, e.g. {missing[0]}")
    return [by_case[k] for k in sorted(splits[fold]["val"])]


def abba_order(names: Sequence[str], case_index: int) -> List[str]:
    """A, B, ... for even cases and the reverse for odd ones (ABBA interleaving)."""
    return list(names) if case_index % 2 == 0 else list(reversed(names))


def time_predictions(predictors: Dict[str, object], cases: Sequence[Sequence[str]], file_ending: str,
                     mirroring: bool, out_dir: str, warmup: int = 1,
                     progress: Optional[Callable[[str], None]] = None) -> Dict[str, List[float]]:
    """Seconds per case for each predictor (nnU-Net's preprocessing + sliding window + export), ABBA-interleaved.

    ``mirroring`` sets nnU-Net's test-time mirroring (``use_mirroring``; the axes are the model's own,
    ``allowed_mirroring_axes`` from its trainer). Predictions are written below ``out_dir/<name>/``.
    """
    names = list(predictors)
    for name, p in predictors.items():
        p.use_mirroring = bool(mirroring)
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)

    def run(name: str, files: Sequence[str]) -> float:
        out = os.path.join(out_dir, name, case_name(files[0], file_ending, channel_suffix=True))
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints a line per case
            predictors[name].predict_from_files_sequential([list(files)], [out], save_probabilities=False,
                                                           overwrite=True)
        return time.perf_counter() - t0

    for i in range(min(warmup, len(cases))):
        for name in names:
            run(name, cases[i])
            if progress:
                progress(f"warm-up {name}")
    times: Dict[str, List[float]] = {n: [] for n in names}
    for i, files in enumerate(cases):
        for name in abba_order(names, i):
            times[name].append(run(name, files))
            if progress:
                progress(f"case {i + 1}/{len(cases)} {name}: {times[name][-1]:.2f} s")
    return times


def prediction_rows(times: Dict[str, Dict[str, List[float]]], reference: str) -> List[dict]:
    """One row per (mirroring, model): seconds per case, cases per minute, and the speed-up over ``reference``
    (ratio of total times, and the median of the per-case ratios)."""
    rows = []
    for setting, per_model in times.items():
        ref = np.asarray(per_model[reference], dtype=float)
        for name, t in per_model.items():
            a = np.asarray(t, dtype=float)
            rows.append({"mirroring": setting, "model": name, "cases": int(a.size), "seconds_per_case": summarize(a),
                         "total_s": float(a.sum()), "cases_per_minute": float(60.0 * a.size / a.sum()),
                         "speedup_vs_reference": float(ref.sum() / a.sum()),
                         "median_case_speedup": float(np.median(ref / a)), "reference": reference})
    return rows


def format_prediction_table(rows: List[dict], header: str) -> str:
    body = []
    for r in rows:
        s = r["seconds_per_case"]
        body.append([r["mirroring"], r["model"], f"{cell(s['median'], '.2f')} [{cell(s['q25'], '.2f')}, "
                     f"{cell(s['q75'], '.2f')}]", f"{r['cases_per_minute']:.1f}", f"{r['speedup_vs_reference']:.2f}x",
                     f"{r['median_case_speedup']:.2f}x"])
    lines = [header, ""]
    lines += table_lines(["mirroring", "model", "s/case median [IQR]", "cases/min", "speed-up (total)",
                          "per-case median"], body, align="<<<>")
    lines.append("")
    lines.append(f"speed-up = time of {rows[0]['reference']} / time of the model (higher is faster); per case: "
                 f"nnU-Net preprocessing + sliding window + export, one process")
    return "\n".join(lines)


def run_prediction_benchmark(dataset: str, configuration: str, trainers: Sequence[str], fold, plans: str,
                             checkpoint: str, cases: Sequence[Sequence[str]], file_ending: str,
                             mirroring: Sequence[bool], threads: int, warmup: int = 1,
                             progress: Optional[Callable[[str], None]] = None) -> Tuple[List[dict], dict]:
    """Load each trainer's model once, time every case with each mirroring setting; return rows and run info."""
    from ..deploy.loading import load_predictor
    from ..cpu.allocator import configure_cpu_allocator
    from ..cpu.threads import inference_threads_report
    from ..network.record import unwrap

    torch.set_num_threads(threads)
    allocator = configure_cpu_allocator()  # as LightMedSeg's predictor runs on a CPU-only machine; both models
    load_before = os.getloadavg()
    predictors, load_s = {}, {}
    for t in trainers:
        t0 = time.perf_counter()
        predictors[t] = load_predictor(dataset, configuration, fold, t, plans, checkpoint)
        load_s[t] = time.perf_counter() - t0
    times: Dict[str, Dict[str, List[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="lightmedseg_benchmark_predict_") as tmp:
        for m in mirroring:
            setting = "on" if m else "off"
            if progress:
                progress(f"mirroring {setting}")
            times[setting] = time_predictions(predictors, cases, file_ending, m, os.path.join(tmp, setting),
                                              warmup=warmup, progress=progress)
    info = {"threads": threads, "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()], "model_load_s": load_s,
            "device": "cpu", "warmup_cases": warmup, "cpu_allocator": allocator,
            "inference_threads": {t: inference_threads_report(unwrap(p.network)) for t, p in predictors.items()}}
    return prediction_rows(times, trainers[0]), info
