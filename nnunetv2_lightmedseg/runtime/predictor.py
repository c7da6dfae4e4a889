"""BundlePredictor: a bundle's networks in onnxruntime and the nnU-Net pipeline of :mod:`.pipeline` around them."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from . import RuntimeInputError
from .bundle import load_bundle
from .pipeline import (ensemble, export_segmentation, postprocess, preprocess, read_images, sliding_window,
                       write_seg)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OnnxNetwork:
    """One fold's ONNX network on onnxruntime's CPU provider: numpy (1, c, x, y, z) float32 -> logits."""

    def __init__(self, path: Path, input_name: str, output_name: str, threads: int, spin: bool = True) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads == 1 or not spin:  # idle pool threads must not spin on the cores the other session needs
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise RuntimeInputError(f"onnxruntime cannot load {path}: {str(e).splitlines()[0]}") from None
        self.input_name, self.output_name = input_name, output_name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: x})[0]


class ThreadTunedNetwork:
    """One fold's network with onnxruntime's intra-op thread count chosen from timed calls, as the package's
    trainer chooses PyTorch's (cpu/threads.py): the candidates (all cores this process may use, and 1)
    are tried interleaved on the first calls (after one warm-up call each), the lower median is kept (a median of
    three: one call slowed by another process does not decide), and the choice is tried again every ``recheck``
    calls (twice as many calls after each check that keeps the choice, up to 1024), so that a machine whose
    other load comes and goes is followed. The tuned sessions do not spin-wait between calls (onnxruntime's
    ``allow_spinning`` off), so that the idle one does not slow the other on a shared machine. Every
    thread count gives bit-identical logits (onnxruntime splits a convolution's output, not its sums), so the
    choice changes the speed only.

    Measured on the 2-core machine with two trainings beside it: 1 thread 4.8-7.0 s, 2 threads 9.6-11.7 s for
    the same 5 hippocampus cases with mirroring (docs/deployment.md)."""

    def __init__(self, path: Path, input_name: str, output_name: str, candidates: Sequence[int],
                 trials: int = 3, recheck: int = 64) -> None:
        self.candidates = sorted(set(int(c) for c in candidates), reverse=True)
        self.sessions = {c: OnnxNetwork(path, input_name, output_name, c, spin=False) for c in self.candidates}
        self.trials, self.recheck, self.max_recheck = trials, recheck, 1024
        self.chosen = None
        self._start_trial()

    def _start_trial(self) -> None:
        self.times = {c: [] for c in self.candidates}
        self.warm = set()
        self.previous: Optional[int] = self.chosen
        self.chosen: Optional[int] = None
        self.calls = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import time

        if self.chosen is None and len(self.candidates) > 1:
            c = min(self.candidates, key=lambda k: (k in self.warm, len(self.times[k])))
            t0 = time.perf_counter()
            out = self.sessions[c](x)
            if c in self.warm:
                self.times[c].append(time.perf_counter() - t0)
            self.warm.add(c)
            if all(len(v) >= self.trials for v in self.times.values()):
                self.chosen = min(self.candidates, key=lambda k: float(np.median(self.times[k])))
                if self.chosen == self.previous:  # a check that keeps the choice: the next one comes later
                    self.recheck = min(2 * self.recheck, self.max_recheck)
            return out
        self.calls += 1
        if self.calls >= self.recheck and len(self.candidates) > 1:
            self._start_trial()
        return self.sessions[self.chosen if self.chosen is not None else self.candidates[0]](x)


class BundlePredictor:
    """Segments cases with a bundle as ``nnUNetv2_predict`` with the bundle's folds would.

    ``use_mirroring`` is nnUNetv2_predict's test-time mirroring (``--disable_tta`` turns it off);
    ``threads`` onnxruntime's intra-op threads (default None: chosen from timed calls between all cores this
    process may use and 1, see :class:`ThreadTunedNetwork`);
    """

    def __init__(self, bundle_dir, use_mirroring: bool = True, threads: Optional[int] = None,
                 use_postprocessing: bool = True) -> None:
        self.bundle = load_bundle(bundle_dir)
        self.folder = Path(bundle_dir)
        self.use_mirroring = use_mirroring
        self.use_postprocessing = use_postprocessing
        self.threads = threads
        self.networks: List[OnnxNetwork] = []
        for net in self.bundle["networks"]:
            path = self.folder / net["file"]
            if threads:
                self.networks.append(OnnxNetwork(path, net["input_name"], net["output_name"], threads))
            else:
                self.networks.append(ThreadTunedNetwork(path, net["input_name"], net["output_name"],
                                                        (available_cores(), 1)))

    @property
    def num_input_channels(self) -> int:
        return len(self.bundle["input"]["channels"])

    @property
    def file_ending(self) -> str:
        return self.bundle["input"]["file_ending"]

    def predict_logits(self, data: np.ndarray, progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
        """The preprocessed case's logits (float16, network axes), folds ensembled."""
        sw = self.bundle["sliding_window"]
        axes = self.bundle["mirroring"]["allowed_axes"] if self.use_mirroring else None
        per_fold = []
        for k, net in enumerate(self.networks):
            report = None if progress is None else (
                lambda i, n, k=k: progress(k * n + i, n * len(self.networks)))
            per_fold.append(sliding_window(net, data, self.bundle["output"]["num_heads"], sw["patch_size"],
                                           sw["tile_step_size"], axes, sw["gaussian"], report))
        return ensemble(per_fold)

    def predict_case(self, files: Sequence[str], progress=None):
        """(label map in the input's array order, properties) for one case's channel files."""
        if len(files) != self.num_input_channels:
            raise RuntimeInputError(f"the bundle's model takes {self.num_input_channels} channel(s) per case "
                                    f"({', '.join(c['name'] or str(c['index']) for c in self.bundle['input']['channels'])}), "
                                    f"got {len(files)}: {', '.join(map(str, files))}")
        data, props = read_images(files)
        if data.shape[0] != self.num_input_channels:
            raise RuntimeInputError(f"{files[0]} holds {data.shape[0]} channels; the model takes "
                                    f"{self.num_input_channels}")
        data, props = preprocess(data, props, self.bundle)
        logits = self.predict_logits(data, progress)
        seg = export_segmentation(logits, props, self.bundle)
        if self.use_postprocessing and self.bundle.get("postprocessing"):
            seg = postprocess(seg, self.bundle["postprocessing"])
        return seg, props

    def predict_to_file(self, files: Sequence[str], output_file: str, progress=None) -> None:
        seg, props = self.predict_case(files, progress)
        write_seg(seg, output_file, props)

