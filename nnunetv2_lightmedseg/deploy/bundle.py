"""``lightmedseg export --bundle``: a trained model as one folder that segments images without PyTorch or nnU-Net.

The folder holds the ONNX network of each fold (exported by :func:`.export.export_onnx`, checked against PyTorch
at two sizes by :func:`.export.check_parity`) and ``bundle.json``: everything nnU-Net's predictor does between a
file on disk and a label map on disk, read from the predictor nnU-Net builds for the model (plans, dataset.json,
the checkpoint's mirroring axes) and from ``postprocessing.pkl`` when nnUNetv2_find_best_configuration wrote one.
:mod:`nnunetv2_lightmedseg.runtime` runs it (``lightmedseg-run``).

``postprocessing.pkl`` is a pickle; it is read with :class:`PostprocessingUnpickler`, which resolves only nnU-Net's
postprocessing function (as a name, nothing is imported or called) and numpy's scalar constructor, and refuses
every other global, so a planted file cannot run code.
"""
from __future__ import annotations

import io
import json
import pickle
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..runtime import BUNDLE_JSON, FORMAT, FORMAT_VERSION
from ..runtime.bundle import SUPPORTED_NORMALIZATIONS, SUPPORTED_READERS, sha256
from ..runtime.files import atomic_path


class BundleError(RuntimeError):
    """The bundle cannot be written; the message says why and what to do."""


PP_MODULE = "nnunetv2.postprocessing.remove_connected_components"
PP_FUNCTIONS = ("remove_all_but_largest_component_from_segmentation",)
_NUMPY_OK = {("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}


class _PPFunction:
    def __init__(self, name: str) -> None:
        self.name = name


class PostprocessingUnpickler(pickle.Unpickler):
    """Unpickles nnU-Net's ``(functions, kwargs)`` postprocessing tuple and nothing else (see module docstring)."""

    def find_class(self, module, name):
        if module == PP_MODULE and name in PP_FUNCTIONS:
            return _PPFunction(name)
        if (module, name) in _NUMPY_OK:
            return np.dtype if name == "dtype" else _numpy_scalar()
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not nnU-Net's postprocessing")


def _numpy_scalar():
    """numpy's scalar constructor (numpy._core in numpy 2, numpy.core before)."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:
        from numpy.core.multiarray import scalar
    return scalar


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


def read_postprocessing(path: Path) -> List[Dict]:
    """nnU-Net's postprocessing.pkl as JSON steps ``[{"function": name, "kwargs": {...}}]``, without executing
    anything from it; :class:`BundleError` for anything else."""
    try:
        with open(path, "rb") as f:
            obj = PostprocessingUnpickler(io.BytesIO(f.read())).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as e:
        raise BundleError(f"{path} was not loaded ({e}); a pickle can run code, so only nnU-Net's postprocessing "
                          f"file is accepted: remove it or pass --no_postprocessing") from None
    if not (isinstance(obj, tuple) and len(obj) == 2 and len(obj[0]) == len(obj[1])
            and all(isinstance(fn, _PPFunction) for fn in obj[0]) and all(isinstance(k, dict) for k in obj[1])):
        raise BundleError(f"{path} does not hold nnU-Net's (functions, kwargs) postprocessing tuple: remove it or "
                          f"pass --no_postprocessing")
    return [{"function": fn.name, "kwargs": _plain(kw)} for fn, kw in zip(*obj)]


def _check_supported(predictor, configuration: str) -> None:
    pm, cm, lm = predictor.plans_manager, predictor.configuration_manager, predictor.label_manager
    c = cm.configuration
    problems = []
    if len(cm.patch_size) != 3:
        problems.append(f"configuration {configuration} is {len(cm.patch_size)}D (the runtime runs 3D models)")
    if pm.plans.get("image_reader_writer", "SimpleITKIO") not in SUPPORTED_READERS:
        problems.append(f"image reader {pm.plans.get('image_reader_writer')} (the runtime reads with SimpleITK only)")
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        if c.get(key) != "resample_data_or_seg_to_shape":
            problems.append(f"{key} {c.get(key)} (the runtime reproduces resample_data_or_seg_to_shape)")
    if c.get("preprocessor_name", "DefaultPreprocessor") != "DefaultPreprocessor":
        problems.append(f"preprocessor {c.get('preprocessor_name')} (the runtime reproduces DefaultPreprocessor)")
    if pm.plans.get("label_manager", "LabelManager") != "LabelManager":
        problems.append(f"label manager {pm.plans.get('label_manager')}")
    if c.get("previous_stage"):
        problems.append("a cascade stage (needs the previous stage's segmentation)")
    for s in cm.normalization_schemes:
        if s not in SUPPORTED_NORMALIZATIONS:
            problems.append(f"normalisation {s}")
    if getattr(lm.inference_nonlin, "__name__", "") not in ("sigmoid", "softmax_helper_dim0"):
        problems.append(f"inference nonlinearity {lm.inference_nonlin}")
    if problems:
        raise BundleError("this model uses what the bundle runtime does not reproduce: " + "; ".join(problems))


def _resampling(c: Dict, kind: str) -> Dict:
    kw = dict(c.get(f"resampling_fn_{kind}_kwargs", {}))
    if kw.get("is_seg"):
        raise BundleError(f"resampling_fn_{kind}_kwargs has is_seg=True; the runtime resamples {kind} as data")
    from nnunetv2.configuration import ANISO_THRESHOLD
    return {"function": c.get(f"resampling_fn_{kind}"), "order": int(kw.get("order", 3 if kind == "data" else 1)),
            "order_z": int(kw.get("order_z", 0)), "force_separate_z": kw.get("force_separate_z"),
            "separate_z_anisotropy_threshold": float(kw.get("separate_z_anisotropy_threshold", ANISO_THRESHOLD))}


def bundle_metadata(predictor, *, dataset, configuration: str, trainer: str, plans: str, checkpoint: str,
                    folds: Sequence, networks: List[Dict], postprocessing: Optional[List[Dict]],
                    postprocessing_source: Optional[str]) -> Dict:
    """bundle.json's content for ``predictor`` (any fold's: the plans, dataset.json and labels are the folder's)."""
    import torch

    pm, cm, lm, dj = predictor.plans_manager, predictor.configuration_manager, predictor.label_manager, \
        predictor.dataset_json
    c = cm.configuration
    intensity = pm.foreground_intensity_properties_per_channel
    names = dj.get("channel_names", dj.get("modality", {}))
    channels = [{"index": i, "name": names.get(str(i)), "normalization_scheme": s,
                 "use_mask_for_norm": bool(cm.use_mask_for_norm[i]) if cm.use_mask_for_norm else False,
                 "intensity_properties": _plain(intensity.get(str(i))) if intensity else None}
                for i, s in enumerate(cm.normalization_schemes)]
    from .. import __version__

    def version(pkg):
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_by": {"lightmedseg_version": __version__, "nnunet_version": version("nnunetv2"),
                       "torch_version": torch.__version__, "onnxruntime_version": version("onnxruntime")},
        "source": {"dataset": pm.dataset_name, "trainer": trainer, "plans": plans, "configuration": configuration,
                   "folds": [str(f) for f in folds], "checkpoint": checkpoint},
        "input": {"file_ending": dj["file_ending"], "image_reader_writer": pm.plans.get("image_reader_writer",
                                                                                        "SimpleITKIO"),
                  "channels": channels},
        "preprocessing": {
            "transpose_forward": [int(i) for i in pm.transpose_forward],
            "transpose_backward": [int(i) for i in pm.transpose_backward],
            "crop_to_nonzero": True,
            "target_spacing": [float(s) for s in cm.spacing],
            "resampling_data": _resampling(c, "data"),
            "resampling_probabilities": _resampling(c, "probabilities"),
        },
        "sliding_window": {"patch_size": [int(s) for s in cm.patch_size], "tile_step_size": 0.5,
                           "gaussian": {"sigma_scale": 1. / 8, "value_scaling_factor": 10},
                           "accumulation_dtype": "float16"},
        "mirroring": {"allowed_axes": [int(a) for a in predictor.allowed_mirroring_axes]
                      if predictor.allowed_mirroring_axes is not None else None},
        "networks": networks,
        "ensemble": "mean of the folds' sliding-window logits (float16), as nnUNetPredictor",
        "labels": {"labels": _plain(dj["labels"]), "has_regions": bool(lm.has_regions),
                   "regions_class_order": [int(r) for r in lm.regions_class_order] if lm.has_regions else None,
                   "output_activation": "sigmoid" if lm.has_regions else "softmax"},
        "postprocessing": postprocessing,
        "postprocessing_source": postprocessing_source,
        "output": {"file_ending": dj["file_ending"], "num_heads": int(lm.num_segmentation_heads),
                   "num_foreground_labels": len(lm.foreground_labels)},
    }


def export_bundle(dataset, configuration: str, trainer: str, folds: Sequence, output: Path,
                  plans: str = "nnUNetPlans", checkpoint: str = "checkpoint_final.pth", overwrite: bool = False,
                  postprocessing: Optional[str] = "auto", tolerance: float = 1e-3, opset: Optional[int] = None,
                  log=print) -> Dict:
    """Write the bundle folder ``output`` (see the module docstring); returns bundle.json's content.

    ``postprocessing``: "auto" (the model folder's postprocessing.pkl when present), None (none), or a path.
    """
    import torch

    from .export import DEFAULT_OPSET, ExportedRunner, check_parity, export_divisor, export_onnx, parity_sizes
    from .loading import load_predictor, model_folder

    output = Path(output)
    if output.exists() and not output.is_dir():
        raise BundleError(f"-o {output} exists and is not a folder: choose a folder for the bundle")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise BundleError(f"{output} exists and is not empty; nothing was changed. Choose an empty or new folder "
                          f"or pass --overwrite to replace the bundle files in it")
    folds = [f if str(f) == "all" else int(f) for f in folds]
    if len(set(map(str, folds))) != len(folds):
        raise BundleError(f"-f lists a fold twice: {' '.join(map(str, folds))}")
    folder = model_folder(dataset, configuration, trainer, plans)
    missing = [str(f) for f in folds if not (folder / f"fold_{f}" / checkpoint).is_file()]
    if missing:
        raise BundleError(f"no {checkpoint} for fold(s) {', '.join(missing)} in {folder}: train them first or "
                          f"pick the trained folds with -f (nothing was written)")
    pp_steps, pp_source = None, None
    if postprocessing:
        pp_file = folder / "postprocessing.pkl" if postprocessing == "auto" else Path(postprocessing)
        if pp_file.is_file():
            pp_steps, pp_source = read_postprocessing(pp_file), str(pp_file)
        elif postprocessing != "auto":
            raise BundleError(f"postprocessing file {pp_file} not found")
    output.mkdir(parents=True, exist_ok=True)
    networks, first = [], None
    for fold in folds:
        predictor = load_predictor(dataset, configuration, fold, trainer, plans, checkpoint)
        if first is None:
            _check_supported(predictor, configuration)
            first = predictor
        elif predictor.allowed_mirroring_axes != first.allowed_mirroring_axes:
            raise BundleError(f"fold {fold} was trained with mirroring axes {predictor.allowed_mirroring_axes}, "
                              f"fold {folds[0]} with {first.allowed_mirroring_axes}: bundle them separately")
        network = predictor.network.eval()
        cm = predictor.configuration_manager
        n_in = len(cm.normalization_schemes)
        patch = [int(s) for s in cm.patch_size]
        name = f"fold_{fold}.onnx"
        with atomic_path(str(output / name), suffix=".onnx") as tmp:
            export_onnx(network, torch.randn(1, n_in, *patch), Path(tmp), opset=opset or DEFAULT_OPSET)
            parity = check_parity(network, ExportedRunner(Path(tmp), "onnx"), n_in,
                                  parity_sizes(patch, export_divisor(network)))
            worst = max(p["max_abs_diff"] for p in parity)
            if not np.isfinite(worst) or worst > tolerance:
                raise BundleError(f"fold {fold}: the ONNX network differs from PyTorch by {worst:.3g} (> "
                                  f"{tolerance:g}); nothing was written for it")
            digest = sha256(Path(tmp))
        networks.append({"fold": str(fold), "file": name, "sha256": digest, "input_name": "image",
                         "output_name": "logits", "opset": opset or DEFAULT_OPSET,
                         "parity_vs_pytorch": {"tolerance": tolerance, "checks": parity}})
        log(f"fold {fold}: {output / name} (max |ONNX - PyTorch| {worst:.2g})")
    meta = bundle_metadata(first, dataset=dataset, configuration=configuration, trainer=trainer, plans=plans,
                           checkpoint=checkpoint, folds=folds, networks=networks, postprocessing=pp_steps,
                           postprocessing_source=pp_source)
    with atomic_path(str(output / BUNDLE_JSON)) as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=2))
    log(f"bundle: {output / BUNDLE_JSON} (format {FORMAT} v{FORMAT_VERSION}; "
        f"postprocessing: {pp_source or 'none'})")
    return meta


def run_cli(args) -> int:
    """The ``--bundle`` branch of ``lightmedseg export`` (arguments of cli/export.py)."""
    import sys

    from .loading import ModelLoadError
    from .export import ExportError

    folds = args.fold if isinstance(args.fold, (list, tuple)) else str(args.fold).replace(",", " ").split()
    if args.output is None:
        print("lightmedseg export: -o DIR is required with --bundle (the bundle folder to write)", file=sys.stderr)
        return 2
    pp = None if getattr(args, "no_postprocessing", False) else (getattr(args, "postprocessing", None) or "auto")
    try:
        export_bundle(args.dataset, args.configuration, args.trainer, folds, args.output, plans=args.plans,
                      checkpoint=args.checkpoint, overwrite=getattr(args, "overwrite", False), postprocessing=pp,
                      tolerance=args.tolerance, opset=args.opset)
    except (BundleError, ModelLoadError, ExportError) as e:
        print(f"lightmedseg export: {e}", file=sys.stderr)
        return 1 if isinstance(e, ExportError) else 2
    return 0
