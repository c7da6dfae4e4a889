"""``lightmedseg explain``: what LightMedSeg looked at, as PNGs (anchors, LSPM maps, skip routing, decoder paths).

Input to the network. From a trained model, the case is preprocessed exactly as ``nnUNetv2_predict`` does it
(the configuration's preprocessor, ``run_case``: transpose, crop to non-zero, resample, normalise) and then cut
to ONE patch of the plans' patch size, centred on the preprocessed volume (padded with zeros where the volume
is smaller, as nnU-Net's sliding window pads). One patch, not a sliding window, because the maps are per
forward pass: anchors, gates and routing weights of overlapping windows cannot be averaged meaningfully.
Hippocampus-sized cases fit one patch entirely. Without a trained model (``-d`` omitted) a freshly initialised
LightMedSeg is used on the given image (z-scored per channel by nnU-Net's ``ZScoreNormalization``, centre
crop/pad to at most 128 per axis) or on a generated phantom: a demo of the figures, not of a model's judgement.

Geometry. Every map is shown on the grid the network computes on: the input padded at the far end to a
multiple of 16 (``forward_with_intermediates`` grids). Half- and lower-resolution maps are upsampled by
nearest-neighbour repetition, so their true resolution stays visible. Anchors are normalised voxel-centre
coordinates ``(i + 0.5) / L`` per axis (as the position bias reads them, paper §3.6), so anchor ``a`` is at
voxel ``a * L - 0.5``; all anchors are projected onto each of the three orthogonal planes. Axes are the
network's (nnU-Net's transposed) axes ``d, h, w``; pixel aspect follows the voxel spacing.

Slices: through the centroid of the predicted foreground (the structure the user wants to check), or the
centre of the grid when nothing is predicted. The same three slice indices are used in every figure.
"""
from __future__ import annotations

import json
import warnings
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..network import LightMedSeg
from ..utils.figures import new_figure
from ..utils.names import case_name
from ..errors import LightMedSegError
from ..utils.files import atomic_path, atomic_write_text, refuse_existing

AXES = ("d", "h", "w")
PATH_NAMES = ("depthwise 3x3x3", "GhostConv 3x3x3", "pointwise 1x1x1")
ROUTER_SOURCES = ("E1", "E2", "E3", "E4")
MAX_DEMO_SIZE = 128


class ExplainError(LightMedSegError):
    """Bad input for explain; the message says what to do."""


# --------------------------------------------------------------------------------------------- input handling
def channel_files(image_files: Sequence[str], num_channels: int, file_ending: str = ".nii.gz") -> List[str]:
    """The files of all channels of a case. Given only ``CASE_0000<ending>`` for a multi-channel model, the
    siblings ``CASE_0001..`` are found as nnUNetv2_predict finds a case's channels
    (``create_lists_from_splitted_dataset_folder``)."""
    files = [str(f) for f in image_files]
    for f in files:
        if not Path(f).is_file():
            raise ExplainError(f"image {f} not found")
    if len(files) == 1 and num_channels > 1:
        from nnunetv2.utilities.utils import create_lists_from_splitted_dataset_folder

        folder, first = os.path.split(files[0])
        if not first.endswith("_0000" + file_ending):
            raise ExplainError(f"the model expects {num_channels} channels; pass all of them with -i, or name the "
                               f"first CASE_0000{file_ending} so the others (CASE_0001...) are found")
        case = case_name(first, file_ending, channel_suffix=True)
        found = create_lists_from_splitted_dataset_folder(folder or os.curdir, file_ending, [case], num_processes=1)[0]
        found = [f if folder else os.path.basename(f) for f in found]
        files = [os.path.join(folder, f"{case}_{c:04d}{file_ending}") for c in range(num_channels)]
        missing = [f for f in files if f not in found]
        if missing:
            raise ExplainError(f"the model expects {num_channels} channels but {', '.join(missing)} is missing")
    if len(files) != num_channels:
        raise ExplainError(f"the model expects {num_channels} input channel(s), got {len(files)} image file(s)")
    return files


def center_crop_or_pad(data: np.ndarray, size: Sequence[int]) -> Tuple[np.ndarray, List[int]]:
    """Cut ``data (C, *spatial)`` to ``size`` around its centre, zero-padding axes that are smaller.
    Returns the patch and, per axis, the start of the patch in ``data`` coordinates (negative: padding)."""
    out = np.zeros((data.shape[0], *size), dtype=np.float32)
    starts, src, dst = [], [], []
    for s, t in zip(data.shape[1:], size):
        start = (s - t) // 2
        starts.append(int(start))
        a, b = max(start, 0), min(start + t, s)
        src.append(slice(a, b))
        dst.append(slice(a - start, b - start))
    out[(slice(None), *dst)] = data[(slice(None), *src)]
    return out, starts


def demo_volume(seed: int = 0, shape: Tuple[int, int, int] = (64, 64, 64)) -> np.ndarray:
    """A generated (1, *shape) phantom for ``explain`` without an image (the demo data of this package)."""
    from ..data.synthetic import label_case
    image, _ = label_case(np.random.default_rng(seed), shape)
    return image


# --------------------------------------------------------------------------------------------- the forward pass
def run_network(network: LightMedSeg, patch: np.ndarray) -> Dict[str, np.ndarray]:
    """``forward_with_intermediates`` on one patch (no grad, eval mode); tensors -> numpy without the batch."""
    network.eval()
    with torch.no_grad():
        out = network.forward_with_intermediates(torch.from_numpy(patch[None]).float())
    return {k: v[0].float().contiguous().numpy() for k, v in out.items()}


def upsample_to(vol: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """(C, *s) -> (C, *size) by nearest-neighbour (keeps the map's real resolution visible)."""
    t = torch.from_numpy(np.ascontiguousarray(vol))[None].float()
    return F.interpolate(t, size=tuple(int(s) for s in size), mode="nearest")[0].numpy()


def anchor_voxels(anchors: np.ndarray, grid: Sequence[int]) -> np.ndarray:
    """Normalised anchors (N, 3) -> voxel coordinates on ``grid`` (voxel centres at (i + 0.5) / L)."""
    return anchors * np.asarray(grid, dtype=np.float64)[None] - 0.5


def choose_slices(seg: np.ndarray) -> List[int]:
    fg = np.argwhere(seg > 0)
    if len(fg) == 0:
        return [s // 2 for s in seg.shape]
    return [int(round(c)) for c in fg.mean(0)]


# --------------------------------------------------------------------------------------------- drawing
def _plane(vol: np.ndarray, axis: int, index: int) -> np.ndarray:
    return np.take(vol, index, axis=axis)


def _plane_axes(axis: int) -> Tuple[int, int]:
    """(row axis, column axis) of the plane orthogonal to ``axis``."""
    return tuple(a for a in range(3) if a != axis)  # type: ignore[return-value]


def _aspect(spacing: Sequence[float], axis: int) -> float:
    r, c = _plane_axes(axis)
    return float(spacing[r]) / float(spacing[c])


def _view_title(axis: int, index: int) -> str:
    r, c = _plane_axes(axis)
    return f"{AXES[axis]} = {index} ({AXES[r]} x {AXES[c]} plane)"


def _show(ax, img, spacing, axis, **kw):
    im = ax.imshow(img, origin="lower", aspect=_aspect(spacing, axis), interpolation="nearest", **kw)
    r, c = _plane_axes(axis)
    ax.set_ylabel(AXES[r])
    ax.set_xlabel(AXES[c])
    return im


def _shared_range(vols) -> Tuple[float, float]:
    """One colour range for all panels of a figure (comparable panels), spanning the data rather than [0, 1]
    so that an undecided router (all weights near 1/4) still shows its spatial structure."""
    vols = list(vols)
    lo, hi = min(float(v.min()) for v in vols), max(float(v.max()) for v in vols)
    return lo, (hi if hi > lo else lo + 1e-3)


class Renderer:
    """Draws the figures for one case; each method writes one PNG and returns its path."""

    def __init__(self, out_dir: Path, case: str, image: np.ndarray, spacing: Sequence[float], slices: Sequence[int],
                 padded: bool, source: str) -> None:
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.case, self.image, self.spacing, self.slices = case, image, spacing, list(slices)
        self.padded, self.source = padded, source
        lo, hi = np.percentile(image, [1, 99.5])
        self.vmin, self.vmax = float(lo), float(hi if hi > lo else lo + 1)

    def _suptitle(self, fig, what: str) -> None:
        note = " | grid zero-padded to a multiple of 16" if self.padded else ""
        fig.suptitle(f"{self.case}: {what}\n{self.source}; grid {tuple(self.image.shape)} (d, h, w){note}",
                     fontsize=11)

    def _save(self, fig, name: str) -> Path:
        path = self.out / f"{self.case}_{name}.png"
        with atomic_path(str(path), suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        return path

    def _image(self, ax, axis: int):
        return _show(ax, _plane(self.image, axis, self.slices[axis]), self.spacing, axis, cmap="gray",
                     vmin=self.vmin, vmax=self.vmax)

    def anchors(self, vox: np.ndarray) -> Path:
        n = len(vox)
        colors = colormaps["tab20" if n > 10 else "tab10"](np.arange(n) % (20 if n > 10 else 10))
        fig = new_figure(figsize=(15, 5.4), layout="constrained")
        axes = fig.subplots(1, 3)
        for axis, ax in enumerate(axes):
            self._image(ax, axis)
            r, c = _plane_axes(axis)
            for i in range(n):
                ax.scatter(vox[i, c], vox[i, r], s=90, color=colors[i], edgecolors="white", linewidths=1.2, zorder=3)
                ax.annotate(str(i), (vox[i, c], vox[i, r]), xytext=(5, 4), textcoords="offset points",
                            color="white", fontsize=9, fontweight="bold", zorder=4)
            ax.set_title(_view_title(axis, self.slices[axis]))
        handles = [Line2D([], [], marker="o", ls="", color=colors[i],
                              label=f"{i}: ({vox[i, 0]:.1f}, {vox[i, 1]:.1f}, {vox[i, 2]:.1f})") for i in range(n)]
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), title="anchor: voxel (d, h, w)",
                   fontsize=8)
        self._suptitle(fig, f"{n} learned spatial anchors (§3.2), all projected onto each plane")
        return self._save(fig, "anchors")

    def lspm(self, texture: np.ndarray, gate: np.ndarray) -> Path:
        rows = [("image", None), ("LSPM texture map T (§3.3)", texture), ("LSPM gate (§3.3)", gate)]
        fig = new_figure(figsize=(13, 12), layout="constrained")
        axes = fig.subplots(3, 3)
        for row, (label, vol) in enumerate(rows):
            for axis in range(3):
                ax = axes[row, axis]
                if vol is None:
                    im = self._image(ax, axis)
                else:
                    im = _show(ax, _plane(vol, axis, self.slices[axis]), self.spacing, axis, cmap="magma",
                               vmin=0.0, vmax=max(1e-6, float(vol.max())) if vol.min() >= 0 else None)
                ax.set_title(f"{label}\n{_view_title(axis, self.slices[axis])}", fontsize=9)
                fig.colorbar(im, ax=ax, shrink=0.85)
        self._suptitle(fig, "LSPM texture and gating maps (computed at 1/2 resolution, shown upsampled)")
        return self._save(fig, "lspm")

    def _weight_maps(self, weights: Dict[int, np.ndarray], sources: Sequence[str], title, what: str, name: str,
                     size: Tuple[float, float], with_image: bool = False) -> Path:
        """One row per decoder stage, one panel per source (``weights[stage][source]``, on the plane orthogonal
        to d), colour range shared by all panels; ``with_image`` adds the image as the first column."""
        stages = sorted(weights)
        axis = 0
        fig = new_figure(figsize=(size[0], size[1] * len(stages)), layout="constrained")
        first = 1 if with_image else 0
        axes = fig.subplots(len(stages), len(sources) + first, squeeze=False)
        lo, hi = _shared_range(weights.values())
        for row, k in enumerate(stages):
            if with_image:
                self._image(axes[row, 0], axis)
                axes[row, 0].set_title(f"image, {_view_title(axis, self.slices[axis])}", fontsize=9)
            for s, source in enumerate(sources):
                ax = axes[row, s + first]
                im = _show(ax, _plane(weights[k][s], axis, self.slices[axis]), self.spacing, axis, cmap="viridis",
                           vmin=lo, vmax=hi)
                ax.set_title(title(k, source, _view_title(axis, self.slices[axis])), fontsize=9)
                fig.colorbar(im, ax=ax, shrink=0.85)
        self._suptitle(fig, f"{what}; colour range shared by all panels [{lo:.2f}, {hi:.2f}]")
        return self._save(fig, name)

    def skip_router(self, weights: Dict[int, np.ndarray], grid_fraction: Dict[int, str]) -> Path:
        return self._weight_maps(
            weights, ROUTER_SOURCES,
            lambda k, source, view: f"decoder stage {k} ({grid_fraction[k]} res.)\nweight of source {source}",
            "skip-router weights per voxel over encoder outputs E1-E4 (§3.5; softmax, sum to 1)", "skip_router",
            (20, 4.2), with_image=True)

    def decoder_paths(self, weights: Dict[int, np.ndarray], grid_fraction: Dict[int, str]) -> Path:
        return self._weight_maps(
            weights, PATH_NAMES,
            lambda k, source, view: f"decoder stage {k} ({grid_fraction[k]} res.): {source}\n{view}",
            "decoder three-path blending weights per voxel (§3.6; softmax over the three paths)", "decoder_paths",
            (13, 3.9))

    def prediction(self, seg: np.ndarray, label_names: Dict[int, str]) -> Path:
        n = int(max(max(label_names) if label_names else 0, seg.max())) + 1
        base = colormaps["tab10"](np.arange(10))
        cmap = ListedColormap(np.vstack([[0, 0, 0, 0], base[[3, 2, 0, 1, 4, 5, 6, 8, 9]]])[:max(n, 2)])
        fig = new_figure(figsize=(15, 9.5), layout="constrained")
        axes = fig.subplots(2, 3)
        for axis in range(3):
            self._image(axes[0, axis], axis)
            axes[0, axis].set_title(f"image, {_view_title(axis, self.slices[axis])}", fontsize=9)
            self._image(axes[1, axis], axis)
            s = _plane(seg, axis, self.slices[axis]).astype(float)
            s[s == 0] = np.nan
            _show(axes[1, axis], s, self.spacing, axis, cmap=cmap, vmin=-0.5, vmax=cmap.N - 0.5, alpha=0.55)
            axes[1, axis].set_title(f"prediction, {_view_title(axis, self.slices[axis])}", fontsize=9)
        handles = [Patch(color=cmap(i), label=f"{i}: {label_names.get(i, '?')}") for i in range(1, cmap.N)]
        if handles:
            fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), title="label")
        self._suptitle(fig, "prediction (nnU-Net's label conversion of the logits) overlaid on the image")
        return self._save(fig, "prediction")


# --------------------------------------------------------------------------------------------- orchestration
#: the files explain writes for a case, ``<case>_<name>.png`` and ``<case>_explain.json``
FIGURES = ("anchors", "lspm", "skip_router", "decoder_paths", "prediction")


def check_output_folder(out_dir: Path, case: str, overwrite: bool) -> None:
    """Refuse an ``-o`` that is a file, and (without ``overwrite``) one that holds this case's figures already."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ExplainError(f"-o {out_dir} is a file: give a folder for the PNGs (it is created if missing)")
    refuse_existing([out_dir / f"{case}_{n}.png" for n in FIGURES] + [out_dir / f"{case}_explain.json"],
                    overwrite)


def warn_non_finite(data: np.ndarray, case: str) -> None:
    """Warn (naming the case) when an image holds NaN/Inf voxels: nnU-Net's z-score normalisation spreads them to
    every voxel, so the whole output is NaN and the segmentation meaningless."""
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        warnings.warn(f"{case}: {bad} of {np.size(data)} image voxels are NaN or Inf; the normalised image and "
                      f"every output will be NaN. Replace them (e.g. with the image minimum) and run again",
                      stacklevel=3)


def explain_patch(network: LightMedSeg, patch: np.ndarray, out_dir: Path, case: str, spacing: Sequence[float],
                  to_segmentation, label_names: Dict[int, str], source: str, overwrite: bool = False) -> Dict:
    """Run the network on one patch (C, d, h, w) and write all figures; returns a summary (also saved as JSON).
    Existing figures of the case in ``out_dir`` are refused unless ``overwrite``; each file is written
    atomically."""
    check_output_folder(out_dir, case, overwrite)
    res = run_network(network, patch)
    grid = [s + (-s) % int(d) for s, d in zip(patch.shape[1:], network.divisor)]  # per-axis divisor
    image = np.zeros(grid, np.float32)
    image[tuple(slice(0, s) for s in patch.shape[1:])] = patch[0]
    logits = res["logits"]
    seg_small = np.asarray(to_segmentation(logits))
    seg = np.zeros(grid, np.int16)
    seg[tuple(slice(0, s) for s in patch.shape[1:])] = seg_small
    slices = choose_slices(seg)
    r = Renderer(out_dir, case, image, spacing, slices, padded=grid != list(patch.shape[1:]), source=source)
    files, summary = {}, {"case": case, "input_shape": list(patch.shape), "grid": grid, "slices": slices,
                          "spacing": [float(s) for s in spacing], "source": source}
    if "anchors" in res:
        vox = anchor_voxels(res["anchors"], grid)
        summary["anchors_normalised"] = res["anchors"].tolist()
        summary["anchors_voxel"] = vox.tolist()
        files["anchors"] = r.anchors(vox)
    if "texture" in res:
        files["lspm"] = r.lspm(upsample_to(res["texture"], grid)[0], upsample_to(res["gate"], grid)[0])
    frac = {}
    for k in range(1, 5):
        # per-axis downsampling of the stage (anisotropic schedules: e.g. 1 x 1/4 x 1/4)
        ratios = [g // s for g, s in zip(grid, res[f"blend_weights_stage{k}"].shape[1:])]
        frac[k] = ("full" if max(ratios) == 1 else f"1/{ratios[0]}" if len(set(ratios)) == 1
                   else " x ".join("1" if r == 1 else f"1/{r}" for r in ratios))
    routers = {k: upsample_to(res[f"router_weights_stage{k}"], grid) for k in (1, 2)
               if f"router_weights_stage{k}" in res}
    if routers:
        files["skip_router"] = r.skip_router(routers, frac)
    files["decoder_paths"] = r.decoder_paths({k: upsample_to(res[f"blend_weights_stage{k}"], grid)
                                              for k in range(1, 5)}, frac)
    files["prediction"] = r.prediction(seg, label_names)
    summary["labels_predicted"] = sorted(int(v) for v in np.unique(seg))
    summary["files"] = {k: str(v) for k, v in files.items()}
    atomic_write_text(str(Path(out_dir) / f"{case}_explain.json"), json.dumps(summary, indent=2))
    return summary


def explain_trained(predictor, image_files: Sequence[str], out_dir: Path, overwrite: bool = False) -> Dict:
    """Preprocess a case as nnUNetv2_predict does and explain one centred patch (see the module docstring)."""
    from .loading import find_lightmedseg
    network = find_lightmedseg(predictor.network)
    if network is None:
        raise ExplainError(f"the trained network is a {type(predictor.network).__name__}, not LightMedSeg: explain "
                           f"draws LightMedSeg's anchors, LSPM and routing maps")
    cm, pm, dj = predictor.configuration_manager, predictor.plans_manager, predictor.dataset_json
    files = channel_files(image_files, len(cm.normalization_schemes), dj.get("file_ending", ".nii.gz"))
    case = case_name(files[0], dj.get("file_ending"), channel_suffix=True)
    check_output_folder(out_dir, case, overwrite)  # before the (slow) preprocessing
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    warn_non_finite(SimpleITKIO().read_images(files)[0], case)
    preprocessor = cm.preprocessor_class(verbose=False)
    data, _, _ = preprocessor.run_case(files, None, pm, cm, dj)
    patch, _ = center_crop_or_pad(np.asarray(data, dtype=np.float32), [int(s) for s in cm.patch_size])
    lm = predictor.label_manager

    def to_seg(logits: np.ndarray) -> np.ndarray:
        return lm.convert_logits_to_segmentation(torch.from_numpy(logits)).numpy()

    names = {}
    for name, value in dj["labels"].items():
        if isinstance(value, int):
            names[value] = name
    if lm.has_regions:
        # regions: convert_logits_to_segmentation paints region i with regions_class_order[i]; the regions are
        # the non-background entries of dataset.json's labels, in order
        fg = [n for n in dj["labels"] if n != "background"]
        names = {int(v): fg[i] if i < len(fg) else f"region {i}" for i, v in enumerate(lm.regions_class_order)}
    source = (f"{predictor.trainer_name} ({pm.plans_name}), preprocessed as nnUNetv2_predict; "
              f"centred patch {list(cm.patch_size)}")
    return explain_patch(network, patch, out_dir, case, cm.spacing, to_seg, names, source, overwrite)


def explain_untrained(image_files: Optional[Sequence[str]], out_dir: Path, num_classes: int = 3,
                      seed: int = 0, network_options: Optional[Dict] = None, overwrite: bool = False) -> Dict:
    """Demo on a freshly initialised LightMedSeg (no trained model): the figures, not a model's judgement."""
    if image_files:
        from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
        files = channel_files(image_files, len(image_files))
        data, props = SimpleITKIO().read_images(files)
        spacing = [float(s) for s in props["spacing"]]
        case = case_name(files[0], channel_suffix=True)
        warn_non_finite(data, case)
    else:
        data, spacing, case = demo_volume(seed), [1.0, 1.0, 1.0], "generated_phantom"
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import ZScoreNormalization

    # per channel, over the whole image (ZScoreNormalization reads no intensity statistics)
    zscore = ZScoreNormalization(use_mask_for_norm=False, intensityproperties={}, target_dtype=np.float32)
    data = np.stack([zscore.run(np.array(c, dtype=np.float32)) for c in data])
    size = [min(max(16, s + (-s) % 16), MAX_DEMO_SIZE) for s in data.shape[1:]]
    patch, _ = center_crop_or_pad(data, size)
    torch.manual_seed(seed)
    network = LightMedSeg(data.shape[0], num_classes, **(network_options or {}))
    names = {i: f"class {i}" for i in range(1, num_classes)}
    source = f"UNTRAINED LightMedSeg({data.shape[0]}, {num_classes}), seed {seed}: demo of the figures only"
    return explain_patch(network, patch, out_dir, case, spacing, lambda lg: lg.argmax(0), names, source, overwrite)
