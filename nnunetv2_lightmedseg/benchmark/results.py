"""Comparison of two trained nnU-Net result folders (``lightmedseg benchmark results``).

Input is what nnU-Net itself wrote: ``fold_X/validation/summary.json`` (``compute_metrics_on_folder``:
``metric_per_case`` with per-label ``Dice``, ``mean``, ``foreground_mean``) and ``fold_X/training_log_*.txt``
(``Epoch time: X s`` per epoch). Per-case differences are ``B - A`` over the cases both folders evaluated;
uncertainty is a seeded paired bootstrap (``scipy.stats.bootstrap`` on the per-case differences, percentile 95% CI
of the mean difference) plus the Wilcoxon signed-rank test and the exact sign test (``scipy.stats``, a dependency
of nnU-Net). The summary files are read with :func:`nnunetv2_lightmedseg.utils.summary.load_summary`.
"""
from __future__ import annotations

import glob
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..utils.summary import FG, load_summary
from ..utils.tables import cell, table_lines

EPOCH_TIME = re.compile(r"Epoch time:\s*([0-9.]+)\s*s")


#: what the paired CI and tests do not contain (printed under the table, written to the JSON's ``method``)
CI_SCOPE = ("The CI and tests are over cases, for these two trained models: they do not contain training randomness "
            "(two trainings of one LightMedSeg recipe differed by 0.017 mean Dice on Dataset004 fold 0, "
            "docs/decisions.md#run-to-run-noise); with one run per trainer, read differences of that size as noise.")


# ---------------------------------------------------------------------------------------------- reading
def epoch_times(fold_folder: str) -> List[float]:
    """All ``Epoch time: X s`` values of the fold's ``training_log_*.txt`` files (in file-name = time order).
    An interrupted and continued training writes several logs; all epochs are kept."""
    out: List[float] = []
    for log in sorted(glob.glob(os.path.join(fold_folder, "training_log_*.txt"))):
        with open(log, errors="replace") as f:
            out += [float(m.group(1)) for m in EPOCH_TIME.finditer(f.read())]
    return out


# ---------------------------------------------------------------------------------------------- statistics
def paired_bootstrap_ci(diff: Sequence[float], n_boot: int = 10000, seed: int = 0,
                        alpha: float = 0.05) -> Tuple[float, float]:
    """Percentile bootstrap CI of the mean of paired differences (cases resampled with replacement), by
    ``scipy.stats.bootstrap`` on the per-case differences (the one-sample form of a paired bootstrap), seeded.
    One case: the interval is that case's difference; none: NaN."""
    from scipy.stats import bootstrap

    d = np.asarray(diff, dtype=float)
    if d.size < 2:  # scipy needs two observations; one case resamples to itself
        v = float(d[0]) if d.size else float("nan")
        return v, v
    res = bootstrap((d,), np.mean, n_resamples=n_boot, confidence_level=1 - alpha, method="percentile",
                    rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def sign_test(diff: Sequence[float]) -> float:
    """Exact two-sided sign test (zero differences dropped)."""
    from scipy.stats import binomtest
    d = np.asarray(diff, dtype=float)
    pos, neg = int((d > 0).sum()), int((d < 0).sum())
    if pos + neg == 0:
        return 1.0
    return float(binomtest(pos, pos + neg, 0.5).pvalue)


def wilcoxon_test(diff: Sequence[float]) -> Optional[float]:
    """Two-sided Wilcoxon signed-rank p-value (None when every difference is zero or n < 2)."""
    from scipy.stats import wilcoxon
    d = np.asarray(diff, dtype=float)
    if d.size < 2 or not np.any(d != 0):
        return None
    return float(wilcoxon(d).pvalue)


def paired_stats(a: Sequence[float], b: Sequence[float], n_boot: int = 10000, seed: int = 0) -> dict:
    """Differences ``b - a`` over pairs where both are finite: mean, 95% bootstrap CI, Wilcoxon and sign test."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    d = b[ok] - a[ok]
    lo, hi = paired_bootstrap_ci(d, n_boot, seed)
    return {"n": int(d.size), "mean_a": float(a[ok].mean()) if d.size else None,
            "mean_b": float(b[ok].mean()) if d.size else None,
            "mean_diff": float(d.mean()) if d.size else None, "ci95": [lo, hi],
            "b_better": int((d > 0).sum()), "a_better": int((d < 0).sum()), "ties": int((d == 0).sum()),
            "wilcoxon_p": wilcoxon_test(d), "sign_test_p": sign_test(d)}


# ---------------------------------------------------------------------------------------------- comparison
def compare_summaries(sa: Dict[str, dict], sb: Dict[str, dict], n_boot: int = 10000, seed: int = 0) -> dict:
    """Compare per-fold summaries of A and B (``{fold_name: load_summary(...)}``, same fold names).

    Per fold: each trainer's Dice per label and foreground mean as nnU-Net reported them. Overall: cases of all
    folds pooled (each case is validated in exactly one fold of a cross-validation); per label and for the
    per-case foreground mean, the paired statistics of ``B - A``.
    """
    folds = [f for f in sa if f in sb]
    if not folds:
        raise ValueError(f"no fold in common: A has {sorted(sa)}, B has {sorted(sb)}")
    labels = [lab for lab in sa[folds[0]]["labels"] if lab in sb[folds[0]]["labels"]]
    per_fold = {}
    pooled_a: Dict[str, Dict[str, float]] = {}
    pooled_b: Dict[str, Dict[str, float]] = {}
    for f in folds:
        common = sorted(set(sa[f]["cases"]) & set(sb[f]["cases"]))
        per_fold[f] = {"n_cases_a": len(sa[f]["cases"]), "n_cases_b": len(sb[f]["cases"]),
                       "n_paired": len(common),
                       "a": {**{lab: sa[f]["mean"][lab] for lab in labels}, FG: sa[f]["foreground_mean"]},
                       "b": {**{lab: sb[f]["mean"][lab] for lab in labels}, FG: sb[f]["foreground_mean"]}}
        per_fold[f]["diff"] = {k: per_fold[f]["b"][k] - per_fold[f]["a"][k] for k in per_fold[f]["a"]}
        for c in common:
            pooled_a[f"{f}/{c}"] = sa[f]["cases"][c]
            pooled_b[f"{f}/{c}"] = sb[f]["cases"][c]
    keys = sorted(pooled_a)
    overall = {}
    for lab in labels + [FG]:
        overall[lab] = paired_stats([pooled_a[k].get(lab, np.nan) for k in keys],
                                    [pooled_b[k].get(lab, np.nan) for k in keys], n_boot, seed)
    cases = [{"case": k, "a": pooled_a[k][FG], "b": pooled_b[k][FG]} for k in keys]
    return {"labels": labels, "folds": per_fold, "overall": overall, "cases": cases,
            "bootstrap": {"resamples": int(n_boot), "seed": int(seed)}}


def resolve_trainer_folder(dataset: str, configuration: str, trainer: str, plans: str = "nnUNetPlans") -> str:
    """``nnUNet_results/DatasetXXX/TRAINER__PLANS__CONFIG`` as nnU-Net names it."""
    from nnunetv2.paths import nnUNet_results
    from nnunetv2.utilities.file_path_utilities import get_output_folder
    if not nnUNet_results.is_set():
        raise ValueError("nnUNet_results is not set: export nnUNet_results=... or pass --a/--b folders")
    try:
        return get_output_folder(dataset, trainer, plans, configuration)
    except RuntimeError as e:  # nnU-Net's dataset lookup: no dataset with this ID
        raise ValueError(f"-d {dataset}: {' '.join(str(e).split())}") from None


def fold_names(folder: str, folds: Optional[Sequence[str]]) -> List[str]:
    if folds:
        return [f if str(f).startswith("fold_") else f"fold_{f}" for f in folds]
    found = sorted(os.path.basename(p) for p in glob.glob(os.path.join(folder, "fold_*"))
                   if os.path.isfile(os.path.join(p, "validation", "summary.json")))
    if not found:
        raise ValueError(f"no fold_X/validation/summary.json under {folder}: has the training finished "
                         f"(nnU-Net validates at the end), and is this a TRAINER__PLANS__CONFIG folder?")
    return found


def load_trainer_folder(folder: str, folds: Sequence[str]) -> Tuple[Dict[str, dict], Dict[str, List[float]]]:
    if not os.path.isdir(folder):
        raise ValueError(f"results folder {folder} does not exist")
    summaries, times = {}, {}
    for f in folds:
        summaries[f] = load_summary(os.path.join(folder, f, "validation", "summary.json"))
        times[f] = epoch_times(os.path.join(folder, f))
    return summaries, times


def epoch_time_stats(times: Dict[str, List[float]]) -> dict:
    allt = [t for v in times.values() for t in v]
    return {"per_fold": {f: {"n_epochs": len(v), "mean_s": float(np.mean(v)) if v else None,
                             "median_s": float(np.median(v)) if v else None} for f, v in times.items()},
            "n_epochs": len(allt), "mean_s": float(np.mean(allt)) if allt else None,
            "median_s": float(np.median(allt)) if allt else None}


def predict_and_evaluate(trainer_folder: str, folds: Sequence[int], images: str, labels: str, out_dir: str,
                         device: str = "cpu", checkpoint: str = "checkpoint_final.pth",
                         use_mirroring: bool = True) -> str:
    """Predict ``images`` with nnU-Net's ``nnUNetPredictor`` (the ensemble of ``folds``) and evaluate against
    ``labels`` with nnU-Net's ``compute_metrics_on_folder2``; returns the path of the summary.json written.
    Predictor settings are ``nnUNetv2_predict``'s defaults (step 0.5, Gaussian, mirroring unless
    ``use_mirroring=False``, i.e. ``--disable_tta``)."""
    import torch
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder2
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    for d, what in ((images, "--test-images"), (labels, "--test-labels")):
        if not os.path.isdir(d):
            raise ValueError(f"{what} folder {d} does not exist")
    os.makedirs(out_dir, exist_ok=True)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=use_mirroring,
                                device=torch.device(device), verbose=False, verbose_preprocessing=False,
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(trainer_folder, use_folds=tuple(folds),
                                                   checkpoint_name=checkpoint)
    # sequential: no worker processes to spawn (each would re-import torch and nnU-Net); on CPU the network
    # dominates the time anyway, so overlapping preprocessing with inference gains little
    predictor.predict_from_files_sequential(images, out_dir, save_probabilities=False, overwrite=True)
    summary = os.path.join(out_dir, "summary.json")
    compute_metrics_on_folder2(labels, out_dir, os.path.join(trainer_folder, "dataset.json"),
                               os.path.join(trainer_folder, "plans.json"), summary, num_processes=1)
    return summary


# ---------------------------------------------------------------------------------------------- output
def format_results(cmp: dict, name_a: str, name_b: str, times_a: Optional[dict] = None,
                   times_b: Optional[dict] = None) -> str:
    labels = cmp["labels"] + [FG]
    lines = [f"A = {name_a}", f"B = {name_b}", "",
             "Dice per fold (nnU-Net validation summary.json means; fg_mean = nnU-Net's foreground_mean)"]
    head = ["fold", "label", "A", "B", "B-A"]
    body = []
    for f, d in cmp["folds"].items():
        for lab in labels:
            body.append([f, lab, f"{d['a'][lab]:.4f}", f"{d['b'][lab]:.4f}", f"{d['diff'][lab]:+.4f}"])
    lines += table_lines(head, body, indent="  ")
    boot = cmp.get("bootstrap", {})
    lines += ["", f"Overall, paired over cases of all folds (B - A; 95% CI: paired bootstrap, "
                  f"{boot.get('resamples', '?')} resamples, seed {boot.get('seed', '?')}; p: Wilcoxon signed-rank / "
                  f"exact sign test)"]
    head = ["label", "n", "A", "B", "B-A", "95% CI", "B>A", "A>B", "Wilcoxon p", "sign p"]
    body = []
    for lab in labels:
        s = cmp["overall"][lab]
        if not s["n"]:
            body.append([lab, "0"] + ["-"] * 8)
            continue
        body.append([lab, str(s["n"]), f"{s['mean_a']:.4f}", f"{s['mean_b']:.4f}", f"{s['mean_diff']:+.4f}",
                     f"[{s['ci95'][0]:+.4f}, {s['ci95'][1]:+.4f}]", str(s["b_better"]), str(s["a_better"]),
                     "-" if s["wilcoxon_p"] is None else f"{s['wilcoxon_p']:.3g}", f"{s['sign_test_p']:.3g}"])
    lines += table_lines(head, body, indent="  ")
    lines += [f"  {CI_SCOPE}"]
    if times_a is None or times_b is None:
        return "\n".join(lines)
    lines += ["", "Wall time per epoch (training_log_*.txt 'Epoch time')"]
    body = []
    for name, t in (("A", times_a), ("B", times_b)):
        body.append([name, str(t["n_epochs"]), cell(t["mean_s"], ".2f"), cell(t["median_s"], ".2f")])
    lines += table_lines(["trainer", "epochs", "mean s", "median s"], body, indent="  ")
    if times_a["median_s"] and times_b["median_s"]:
        lines.append(f"  B/A median epoch time: {times_b['median_s'] / times_a['median_s']:.3f}")
    return "\n".join(lines)


def plot_results(cmp: dict, name_a: str, name_b: str, path: str) -> None:
    """Left: overall Dice per label (pooled cases) for A and B, annotated with B - A and its paired-bootstrap 95% CI
    (drawn as an error bar on B's bar, shifted by A's mean); right: per-case foreground-mean Dice, B against A,
    with the identity line."""
    from ..utils.figures import new_figure, save_png

    labels = cmp["labels"] + [FG]
    fig = new_figure(figsize=(11, 4.6))
    ax1, ax2 = fig.subplots(1, 2)
    x = np.arange(len(labels))
    ma = [cmp["overall"][lab]["mean_a"] or 0 for lab in labels]
    mb = [cmp["overall"][lab]["mean_b"] or 0 for lab in labels]
    ax1.bar(x - 0.2, ma, 0.4, label=f"A: {name_a}", color="tab:gray")
    ax1.bar(x + 0.2, mb, 0.4, label=f"B: {name_b}", color="tab:blue")
    for i, lab in enumerate(labels):
        s = cmp["overall"][lab]
        if s["mean_diff"] is not None:
            lo, hi = s["ci95"]
            if lo is not None and hi is not None:  # the CI of B - A, placed around B's mean (= A + diff)
                ax1.errorbar(i + 0.2, mb[i], yerr=[[s["mean_diff"] - lo], [hi - s["mean_diff"]]], fmt="none",
                             ecolor="black", capsize=3, lw=1)
            ax1.annotate(f"{s['mean_diff']:+.3f}\n[{lo:+.3f}, {hi:+.3f}]" if lo is not None else
                         f"{s['mean_diff']:+.3f}", (i, max(ma[i], mb[i]) + (hi - s["mean_diff"] if hi is not None
                                                                           else 0)),
                         ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax1.set_xticks(x)
    ax1.set_xticklabels([f"label {lab}" if lab != FG else "fg mean" for lab in labels])
    ax1.set_ylabel("Dice (pooled validation cases)")
    ax1.set_ylim(0, 1.08)
    ax1.legend(fontsize=8, loc="lower right")
    ax1.set_title("Dice per label (annotation: B - A, 95% bootstrap CI)", fontsize=10)
    a = np.array([c["a"] for c in cmp["cases"]], dtype=float)
    b = np.array([c["b"] for c in cmp["cases"]], dtype=float)
    ax2.scatter(a, b, s=12, alpha=0.7)
    lo = float(np.nanmin(np.concatenate([a, b]))) if a.size else 0.0
    lo = min(lo, 1.0) - 0.02
    ax2.plot([lo, 1], [lo, 1], "k--", lw=1)
    ax2.set_xlim(lo, 1.0)
    ax2.set_ylim(lo, 1.0)
    ax2.set_xlabel(f"A: {name_a}")
    ax2.set_ylabel(f"B: {name_b}")
    s = cmp["overall"][FG]
    if s["n"]:
        ax2.set_title(f"per-case fg-mean Dice (n={s['n']}, B-A {s['mean_diff']:+.4f}, "
                      f"CI [{s['ci95'][0]:+.4f}, {s['ci95'][1]:+.4f}])", fontsize=9)
    fig.tight_layout()
    save_png(fig, path, dpi=110)
