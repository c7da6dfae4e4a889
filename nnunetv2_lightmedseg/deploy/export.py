"""Export a trained LightMedSeg to ONNX or TorchScript with dynamic batch and spatial sizes.

Why a wrapper (:class:`DynamicPadWrapper`). LightMedSeg pads its input to a multiple of 16 (stem stride 2,
three 2x poolings) and crops the logits back, but it decides *whether* to pad with a Python ``if``. Both
tracing exporters (TorchScript ``torch.jit.trace`` and the legacy ONNX exporter) record only the branch taken
at export time: exported at 32^3 the graph has no padding and fails for 40x36x52; exported at 40^3 it pads by
a constant and is wrong elsewhere. The wrapper pads with amounts computed from the traced input shape
(``(-s) % 16``, recorded as shape arithmetic, so they are dynamic), always feeds the network a multiple of 16
(its own ``if`` is then always False, the branch the trace records) and crops with dynamic slices. The
exported graph is therefore correct for every batch size and every spatial size >= 16; the parity check
proves it at the export size and at a size that is not a multiple of 16.

ONNX exporter. PyTorch >= 2.9 defaults to the ``torch.export``-based exporter (``dynamo=True``). We tried it
with dynamic shapes (``Dim.AUTO`` on batch and spatial axes, onnxscript 0.7.2, torch 2.14): torch.export fails
in its symbolic-shape solver on the padded size after the pooling chain ("The inequality
Eq(-((x/2)//2) + 4*((x/2)//8), 0) cannot be solved"), and it needs ``onnxscript``, which this project does not
depend on. So we use the legacy TorchScript-based exporter with ``dynamic_axes`` and check its result at two
sizes. The legacy exporter cannot express ``Tensor.contiguous(memory_format=channels_last_3d)``; the network,
which switches to channels-last on CPU for oneDNN speed, leaves that out while this exporter traces it (a memory
format is a storage layout, not a value, and ONNX tensors have no layout), so no exporter override is needed.

TorchScript. ``torch.jit.trace`` of the wrapper records shape arithmetic too, so the traced module is dynamic
in the same way (``torch.jit.script`` cannot compile the network's list comprehensions/dict outputs). The
traced graph is checked at two sizes like the ONNX model.
"""
from __future__ import annotations

import json
import statistics
import warnings
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .loading import find_lightmedseg
from ..errors import LightMedSegError
from ..network.checks import as_triple
from ..utils.files import atomic_path, atomic_write_text

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "logits"
EXTRA_HINT = "pip install -e '.[export]' in the clone (or the wheel with [export])"


class ExportError(LightMedSegError):
    """Export or its parity check failed; the message says why."""


def require_onnx():
    """Import onnx and onnxruntime or fail with the install command (they are the optional ``export`` extra)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as e:
        raise ExportError(f"ONNX export needs onnx and onnxruntime ({e}): {EXTRA_HINT}") from None
    return onnxruntime


class DynamicPadWrapper(nn.Module):
    """Pad the input to a multiple of ``divisor`` (an int, or one per axis D, H, W: the network's per-axis
    divisor) at the far end, run ``network``, crop the output back.

    Identical in effect to LightMedSeg's own padding, but expressed with traced shape arithmetic so exported
    graphs stay size-agnostic (see the module docstring).
    """

    def __init__(self, network: nn.Module, divisor: Union[int, Sequence[int]]) -> None:
        super().__init__()
        self.network = network
        self.divisor = as_triple(divisor, "DynamicPadWrapper", "divisor")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d, h, w = x.shape[2], x.shape[3], x.shape[4]
        kd, kh, kw = self.divisor
        x = F.pad(x, (0, (-w) % kw, 0, (-h) % kh, 0, (-d) % kd))
        return self.network(x)[:, :, :d, :h, :w]


def export_divisor(network: nn.Module) -> Tuple[int, int, int]:
    """The network's per-axis pad divisor ((1, 1, 1) for a network that is not LightMedSeg)."""
    lms = find_lightmedseg(network)
    return tuple(int(k) for k in lms.divisor) if lms is not None else (1, 1, 1)


def export_onnx(network: nn.Module, example: torch.Tensor, path: Path, opset: int = DEFAULT_OPSET) -> None:
    """Export ``network`` (eval mode) to ONNX with dynamic batch and spatial axes (legacy exporter)."""
    require_onnx()
    wrapped = DynamicPadWrapper(network, export_divisor(network)).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    axes = {0: "batch", 2: "depth", 3: "height", 4: "width"}
    with torch.no_grad(), warnings.catch_warnings():
        # TracerWarnings about the network's Python-side shape checks are expected (see module docstring)
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes})


def export_torchscript(network: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Trace ``network`` behind :class:`DynamicPadWrapper` and save it with ``torch.jit.save``."""
    wrapped = DynamicPadWrapper(network, export_divisor(network)).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapped, example, check_trace=False)
    torch.jit.save(traced, str(path))


class ExportedRunner:
    """Runs an exported model (ONNX via onnxruntime's CPU provider, or TorchScript) on numpy input."""

    def __init__(self, path: Path, fmt: str, threads: int = 2) -> None:
        self.fmt = fmt
        if fmt == "onnx":
            ort = require_onnx()
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        elif fmt == "torchscript":
            self.module = torch.jit.load(str(path), map_location="cpu").eval()
        else:
            raise ExportError(f"unknown format {fmt!r}; choose one of {FORMATS}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.fmt == "onnx":
            return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})[0]
        with torch.no_grad():
            return self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def parity_sizes(patch_size: Sequence[int], minimum: Union[int, Sequence[int]] = 16) -> List[Tuple[int, ...]]:
    """The export size (the patch) and a second size that differs on every axis and is not a multiple of the
    axis's divisor ``minimum`` (an int or one per axis; > 1) on any axis (so the dynamic padding is exercised),
    never below the network's minimum."""
    patch = tuple(int(s) for s in patch_size)
    minimum = as_triple(minimum, "parity_sizes", "minimum")
    other = []
    for s, delta, m in zip(patch, (5, -3, 7), minimum):
        o = max(m + 1, s + delta)
        if m > 1 and o % m == 0:
            o += 1
        other.append(o)
    return [patch, tuple(other)]


def check_parity(network: nn.Module, runner: ExportedRunner, input_channels: int,
                 sizes: Sequence[Sequence[int]], batch_sizes: Sequence[int] = (1, 2),
                 seed: int = 0) -> List[Dict]:
    """Max |exported - PyTorch| on the same random input at each size (batch sizes alternate)."""
    g = torch.Generator().manual_seed(seed)
    results = []
    for i, size in enumerate(sizes):
        b = batch_sizes[i % len(batch_sizes)]
        x = torch.randn((b, input_channels, *size), generator=g)
        with torch.no_grad():
            ref = network(x).float().numpy()
        out = runner(x.numpy())
        if out.shape != ref.shape:
            raise ExportError(f"exported model returned shape {out.shape} for input {tuple(x.shape)}, "
                              f"PyTorch returned {ref.shape}")
        results.append({"input_shape": list(x.shape), "max_abs_diff": float(np.abs(out - ref).max()),
                        "max_abs_logit": float(np.abs(ref).max())})
    return results


def inference_metadata(predictor, fmt: str, exporter: Optional[str], opset: Optional[int], fold, checkpoint: str,
                       plans_name: str, configuration: str) -> Dict:
    """What a deployment needs besides the network: nnU-Net's preprocessing and label conventions."""
    pm, cm, lm = predictor.plans_manager, predictor.configuration_manager, predictor.label_manager
    dj = predictor.dataset_json
    network = predictor.network
    lms = find_lightmedseg(network)
    intensity = pm.plans.get("foreground_intensity_properties_per_channel", {})
    channel_names = dj.get("channel_names", dj.get("modality", {}))
    channels = []
    for c in range(len(cm.normalization_schemes)):
        channels.append({
            "index": c,
            "name": channel_names.get(str(c), channel_names.get(c)),
            "normalization_scheme": cm.normalization_schemes[c],
            "use_mask_for_norm": bool(cm.use_mask_for_norm[c]) if cm.use_mask_for_norm else False,
            "intensity_properties": intensity.get(str(c), intensity.get(c)),
        })
    try:
        nnunet_version = metadata.version("nnunetv2")
    except metadata.PackageNotFoundError:
        nnunet_version = None
    from .. import __version__
    return {
        "format": fmt,
        "exporter": exporter,
        "opset": opset,
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_layout": "(batch, channels, *patch axes in the transposed order below); any batch and any spatial "
                        f"size >= {list(export_divisor(network))} voxels on the axes in that order",
        "dataset_name": pm.dataset_name,
        "plans_name": plans_name,
        "configuration": configuration,
        "fold": fold,
        "checkpoint": checkpoint,
        "trainer_name": predictor.trainer_name,
        "nnunet_version": nnunet_version,
        "lightmedseg_version": __version__,
        "torch_version": torch.__version__,
        "patch_size": [int(s) for s in cm.patch_size],
        "spacing": [float(s) for s in cm.spacing],
        "spacing_note": "target spacing of the configuration, in the transposed (network) axis order",
        "transpose_forward": [int(i) for i in pm.transpose_forward],
        "transpose_backward": [int(i) for i in pm.transpose_backward],
        "num_input_channels": int(len(cm.normalization_schemes)),
        "num_output_channels": int(lm.num_segmentation_heads),
        "channels": channels,
        "normalization_schemes": list(cm.normalization_schemes),
        "foreground_intensity_properties_per_channel": intensity,
        "labels": dj["labels"],
        "has_regions": bool(lm.has_regions),
        "regions_class_order": list(lm.regions_class_order) if lm.has_regions else None,
        "output_activation": "sigmoid" if lm.has_regions else "softmax",
        "segmentation_from_output": ("sigmoid, threshold 0.5 per region, then paint regions in "
                                     "regions_class_order" if lm.has_regions else "argmax over channels"),
        "inference_allowed_mirroring_axes": (list(predictor.allowed_mirroring_axes)
                                             if predictor.allowed_mirroring_axes is not None else None),
        "file_ending": dj.get("file_ending"),
        "network_divisor": list(export_divisor(network)),
        "network_config": ({k: _plain(v) for k, v in lms.config.items()}
                           if lms is not None else None),
    }


def benchmark_latency(network: nn.Module, runner: Optional[ExportedRunner], shape: Sequence[int],
                      threads: int = 2, repeats: int = 3, warmup: int = 1) -> Dict[str, float]:
    """Median CPU latency (seconds) of PyTorch (``threads`` intra-op threads, channels-last input, no_grad)
    and of the exported model (its runner is built with the same thread count), timed interleaved with the
    benchmark's :func:`~nnunetv2_lightmedseg.utils.timing.interleaved_timings`."""
    from ..cpu import undo_cpu_predictor
    from ..utils.timing import forward_callable, interleaved_timings

    undo_cpu_predictor(network)  # PyTorch at exactly `threads`, like the runner (not the predictor's choice)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randn(*shape)
        calls = {"pytorch_s": forward_callable(network, x.contiguous(memory_format=torch.channels_last_3d))}
        if runner is not None:
            xn = x.numpy()
            calls["exported_s"] = lambda: runner(xn)
        times = interleaved_timings(calls, runs=repeats, warmup=warmup)
        return {k: statistics.median(v) for k, v in times.items()}
    finally:
        torch.set_num_threads(prev)


def export_trained_model(predictor, output: Path, fmt: str = "onnx", opset: int = DEFAULT_OPSET,
                         tolerance: float = 1e-3, fold="0",
                         checkpoint: str = "checkpoint_final.pth", plans_name: str = "nnUNetPlans",
                         configuration: str = "3d_fullres") -> Dict:
    """Export ``predictor.network``, run the parity check, write ``<output>.json`` next to it.

    Returns the metadata dict (with a ``parity`` entry); raises :class:`ExportError` when a size's max
    abs difference exceeds ``tolerance``, and then writes nothing (an unfaithful model is never left where a
    deployment would pick it up). Both files are written atomically (``utils.files.atomic_path``).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    network = predictor.network.eval()
    patch = [int(s) for s in predictor.configuration_manager.patch_size]
    n_in = len(predictor.configuration_manager.normalization_schemes)
    example = torch.randn(1, n_in, *patch)
    output = Path(output)
    with atomic_path(output, suffix=output.suffix) as tmp_model:
        if fmt == "onnx":
            export_onnx(network, example, Path(tmp_model), opset=opset)
        else:
            export_torchscript(network, example, Path(tmp_model))
        runner = ExportedRunner(Path(tmp_model), fmt)
        parity = check_parity(network, runner, n_in, parity_sizes(patch, export_divisor(network)))
        meta = inference_metadata(predictor, fmt, "torch.onnx.export (legacy, dynamic_axes)" if fmt == "onnx"
                                  else "torch.jit.trace",
                                  opset if fmt == "onnx" else None, fold, checkpoint, plans_name, configuration)
        meta["parity"] = {"tolerance": tolerance, "checks": parity}
        worst = max(p["max_abs_diff"] for p in parity)
        if not np.isfinite(worst) or worst > tolerance:
            raise ExportError(f"parity check failed: max |exported - PyTorch| = {worst:.3g} > tolerance "
                              f"{tolerance:g} ({parity}); the exported model is not faithful and was not written")
        atomic_write_text(str(metadata_path(output)), json.dumps(meta, indent=2))
    return meta


def _plain(value):
    """Tuples (also nested, e.g. the per-axis strides) as JSON lists."""
    return [_plain(v) for v in value] if isinstance(value, (tuple, list)) else value


def metadata_path(model_path: Path) -> Path:
    """``model.onnx`` -> ``model.json`` (the inference metadata written next to the model)."""
    return Path(model_path).with_suffix(".json")
