"""nnU-Net's ``summary.json`` (what ``nnUNetv2_evaluate_folder`` / ``compute_metrics_on_folder`` and the final
validation of ``nnUNetv2_train`` write), read with nnU-Net's own ``load_summary_json``.

nnU-Net keys labels and regions as ``str(label_or_region)``: ``"1"``, ``"(1, 2, 3)"``; ``load_summary_json``
turns them back into ``1`` and ``(1, 2, 3)`` (``key_to_label_or_region``). :func:`load_summary` hands them on
as the strings nnU-Net writes (the keys of ``benchmark results``/``curves`` tables and JSON); :func:`named_dice`
names them after dataset.json's labels (the demo's report).
"""
from __future__ import annotations

import math
import os
from typing import Dict, Tuple, Union

FG = "fg_mean"  # per-case mean Dice over the foreground labels/regions


def load_summary(path: str) -> dict:
    """Read an nnU-Net ``summary.json``: ``{"labels": [...], "mean": {label: Dice}, "foreground_mean": Dice,
    "cases": {case_id: {label: Dice, "fg_mean": Dice}}}`` (labels as nnU-Net writes the keys, e.g. ``"1"`` or
    ``"(1, 2)"``, background excluded from ``labels``; ``Dice`` NaN where a label is absent from reference and
    prediction, as nnU-Net records it)."""
    from nnunetv2.evaluation.evaluate_predictions import label_or_region_to_key, load_summary_json

    from .names import case_name

    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist: run nnU-Net's validation for this fold "
                                f"(nnUNetv2_train ... --val) or check the folder")
    try:
        raw = load_summary_json(path)
        raw["foreground_mean"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path} is not an nnU-Net summary.json (no {e.args[0]!r})") from None
    labels = list(raw["mean"])
    key = {lab: label_or_region_to_key(lab) for lab in labels}
    cases: Dict[str, Dict[str, float]] = {}
    for c in raw["metric_per_case"]:
        d = {key[lab]: float(c["metrics"][lab]["Dice"]) for lab in labels if lab in c["metrics"]}
        fg = [d[key[lab]] for lab in labels if lab != 0 and key[lab] in d and not math.isnan(d[key[lab]])]
        d[FG] = sum(fg) / len(fg) if fg else float("nan")
        cases[case_name(c.get("prediction_file") or c.get("reference_file"))] = d
    return {"labels": [key[lab] for lab in labels if lab != 0],
            "mean": {key[lab]: float(raw["mean"][lab]["Dice"]) for lab in labels},
            "foreground_mean": float(raw["foreground_mean"]["Dice"]), "cases": cases}


def _label_or_region(value) -> Union[int, Tuple[int, ...]]:
    """A dataset.json label value or a summary key as one comparable value: ``3``, ``[3]``, ``(3,)`` -> 3;
    ``[1, 2]``, ``"(1, 2)"`` -> (1, 2)."""
    if isinstance(value, str):
        from nnunetv2.evaluation.evaluate_predictions import key_to_label_or_region
        value = key_to_label_or_region(value)
    if isinstance(value, (list, tuple)):
        value = tuple(int(v) for v in value)
        return value[0] if len(value) == 1 else value
    return int(value)


def named_dice(summary_file: str, dataset_json: dict) -> Tuple[Dict[str, float], float, int]:
    """Per-class (or per-region) mean Dice, foreground mean and case count of a ``summary.json``.

    Keys are named after dataset.json's labels (a key without a name keeps nnU-Net's spelling); a NaN (class
    absent from every reference and prediction) stays NaN.
    """
    s = load_summary(summary_file)
    names = {_label_or_region(value): name for name, value in dataset_json["labels"].items() if name != "background"}
    per_class = {names.get(_label_or_region(k), k): dice for k, dice in s["mean"].items()}
    return per_class, s["foreground_mean"], len(s["cases"])
