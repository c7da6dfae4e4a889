"""Loading nnU-Net checkpoints without executing code from them.

A ``.pth`` file is a pickle: ``torch.load`` with the weights-only mode switched off, as nnU-Net calls it, runs whatever an object's
``__reduce__`` asks for, so a shared checkpoint can run a shell command on the machine that loads it. Every load of
ours goes through :func:`load_checkpoint`: PyTorch's ``weights_only`` unpickler (tensors, containers, numbers,
strings) plus exactly the non-tensor types nnU-Net's checkpoints hold (:data:`NNUNET_CHECKPOINT_GLOBALS`: numpy
scalars in the training log, ``torch.device`` in ``init_args``). Anything else is refused with the names of the
objects it would have built. :func:`inspect_checkpoint` says the same without loading (``lightmedseg check-model``).
"""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import zipfile
from typing import Any, BinaryIO, Dict, Iterator, List, Union

from .errors import LightMedSegError


class CheckpointError(LightMedSegError):
    """A checkpoint cannot be read (missing, truncated, not a PyTorch file)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint would build objects outside the allow-list: loading it could run code."""


def _numpy_globals() -> List[Any]:
    import numpy as np
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = [getattr(np.dtypes, name) for name in dir(np.dtypes)
              if name.endswith("DType") and name not in ("ObjectDType", "VoidDType", "StringDType")]
    return [scalar, np.dtype, *dtypes]


def checkpoint_globals() -> List[Any]:
    """The non-tensor globals nnU-Net checkpoints hold, beyond what ``weights_only`` allows by default: numpy
    scalars and dtypes (``logging`` and ``_best_ema`` hold ``np.float64`` values) and ``torch.device``
    (``init_args['device']``)."""
    import torch
    return [*_numpy_globals(), torch.device]


#: names of :func:`checkpoint_globals` as they appear in a pickle (what check-model compares against)
def _allowed_names() -> set:
    return {f"{g.__module__}.{g.__qualname__}" for g in checkpoint_globals()} | {"torch.device"}


Source = Union[str, os.PathLike, BinaryIO, bytes]


def _as_file(source: Source):
    return io.BytesIO(source) if isinstance(source, bytes) else source


def _describe(source: Source) -> str:
    return "the checkpoint" if isinstance(source, (bytes, io.IOBase)) else str(source)


def _first_sentence(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text.split(". ")[0].rstrip(".")


def unsafe_globals(source: Source) -> List[str]:
    """The globals (``module.name``) a checkpoint's pickle would build that are not on the allow-list, read from the
    pickle's opcodes without executing it (``torch.serialization.get_unsafe_globals_in_checkpoint``)."""
    import torch
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(_as_file(source))
    except FileNotFoundError:
        raise CheckpointError(f"{_describe(source)} does not exist") from None
    except Exception as e:  # not a zip / torch file, truncated, garbage
        raise CheckpointError(f"{_describe(source)} is not a readable PyTorch checkpoint ({_first_sentence(e)}); "
                              f"is it truncated or another kind of file?") from None
    allowed = _allowed_names()
    return sorted(g for g in found if g not in allowed)


def load_checkpoint(source: Source, map_location: Any = "cpu") -> Dict[str, Any]:
    """``torch.load`` of an nnU-Net checkpoint that cannot execute code: ``weights_only=True`` with
    :func:`checkpoint_globals` allowed. Raises :class:`UnsafeCheckpointError` (naming the refused objects) or
    :class:`CheckpointError` (missing, truncated, not a checkpoint)."""
    import torch

    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise CheckpointError(f"{source} is a folder, not a checkpoint: give the .pth file" if os.path.isdir(source)
                              else f"{source} does not exist")
    try:
        with torch.serialization.safe_globals(checkpoint_globals()):
            load = getattr(torch.load, "original_torch_load", torch.load)  # not safe_torch_load's guard itself
            checkpoint = load(_as_file(source), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            refused = sorted(set(re.findall(r"GLOBAL ([\w.]+)", str(e))))
            if not refused:  # no object named: unreadable (garbage, truncated) unless the opcodes name one
                if hasattr(source, "seek"):
                    source.seek(0)
                refused = unsafe_globals(source)  # raises CheckpointError for a file that is no checkpoint
            refused = refused or ["an object the weights-only loader does not build"]
            raise UnsafeCheckpointError(
                f"{_describe(source)} is refused: loading it would build {', '.join(refused)}, which an nnU-Net "
                f"checkpoint never holds, so it could run code. Do not load it with nnU-Net either; ask its "
                f"author for a clean checkpoint (lightmedseg check-model PATH tells which files are safe)") from None
        raise CheckpointError(f"{_describe(source)} is not a readable PyTorch checkpoint ({e}); is it truncated "
                              f"or another kind of file?") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = _first_sentence(e)
        raise CheckpointError(f"{_describe(source)} is not a readable PyTorch checkpoint ({first}); is it "
                              f"truncated or another kind of file?") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{_describe(source)} holds a {type(checkpoint).__name__}, not an nnU-Net checkpoint "
                              f"(a dict with 'network_weights')")
    return checkpoint


def check_nnunet_layout(checkpoint: Dict[str, Any], where: str) -> List[str]:
    """Problems that would stop nnU-Net's predictor or ``-pretrained_weights`` on this (safely loaded) checkpoint."""
    import torch

    problems = []
    weights = checkpoint.get("network_weights")
    if not isinstance(weights, dict) or not weights:
        problems.append(f"{where}: no 'network_weights' state dict")
    elif not all(isinstance(v, torch.Tensor) for v in weights.values()):
        problems.append(f"{where}: 'network_weights' holds non-tensor values")
    if not isinstance(checkpoint.get("trainer_name"), str):
        problems.append(f"{where}: no 'trainer_name' (nnU-Net's predictor finds the trainer by it)")
    init_args = checkpoint.get("init_args")
    if not isinstance(init_args, dict) or not isinstance(init_args.get("configuration"), str):
        problems.append(f"{where}: no 'init_args' with the configuration name")
    return problems


@contextlib.contextmanager
def safe_torch_load() -> Iterator[None]:
    """Within the block, ``torch.load`` never executes code: nnU-Net's own loaders (``nnUNetTrainer.load_checkpoint``,
    ``nnUNetPredictor.initialize_from_trained_model_folder``), which switch the weights-only mode off, get
    :func:`load_checkpoint` instead, so a malicious checkpoint is refused wherever nnU-Net is called from our code.
    (nnU-Net's trainer cannot be handed the loaded dict instead: its ``load_checkpoint`` only assigns the checkpoint
    when given a path.)"""
    import torch

    original = torch.load

    def guarded(f, map_location=None, *args, **kwargs):
        kwargs.pop("weights_only", None)
        kwargs.pop("pickle_module", None)
        return load_checkpoint(f, map_location if map_location is not None else "cpu")

    guarded.original_torch_load = original
    torch.load = guarded
    try:
        yield
    finally:
        torch.load = original
