"""``lightmedseg check-model``: can nnU-Net load this model without running code from it?

nnU-Net loads checkpoints with ``torch.load`` outside its weights-only mode and ``postprocessing.pkl`` with ``pickle``, so a
model someone else made (a folder, a ``.pth``, an ``nnUNetv2_export_model_to_zip`` file) can execute code when
``nnUNetv2_install_pretrained_model_from_zip`` / ``nnUNetv2_predict`` load it. This reads every checkpoint and pickle
inside without executing it: the objects each pickle would build are read from its opcodes and compared with what
nnU-Net writes (:mod:`nnunetv2_lightmedseg.checkpoints` for ``.pth``; nnU-Net's postprocessing functions for
``.pkl``). Zip members are read in memory, never extracted.
"""
from __future__ import annotations

import io
import os
import pickletools
import zipfile
from pathlib import Path, PurePosixPath
from typing import Dict, Iterator, List, Tuple

from ..checkpoints import CheckpointError, check_nnunet_layout, load_checkpoint, unsafe_globals
from ..errors import LightMedSegError

#: modules whose functions nnU-Net's postprocessing.pkl names (``(functions, kwargs)``)
PICKLE_ALLOWED_PREFIXES = ("nnunetv2.postprocessing.",)
_STRING_OPS = {"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING", "SHORT_BINSTRING"}


class UnsafeModelError(LightMedSegError):
    """A model holds files that could execute code when nnU-Net loads them, or files that cannot be read."""


def pickle_globals(data: bytes) -> List[str]:
    """The globals (``module.name``) a pickle would import, read from its opcodes (never executed). A
    ``STACK_GLOBAL`` whose names cannot be traced to string constants is reported as ``<unresolved>``."""
    found, strings, memo = [], [], {}
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        name = op.name
        if name in _STRING_OPS:
            strings.append(arg if isinstance(arg, str) else str(arg))
        elif name == "GLOBAL":
            found.append(str(arg).replace(" ", "."))
        elif name == "STACK_GLOBAL":
            found.append(f"{strings[-2]}.{strings[-1]}" if len(strings) >= 2 else "<unresolved>")
            strings = []
        elif name == "MEMOIZE":
            memo[len(memo)] = strings[-1] if strings else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = strings[-1] if strings else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            value = memo.get(arg)
            strings.append(value if value is not None else "<unresolved>")
    return found


def _unsafe_pickle_globals(data: bytes) -> List[str]:
    from ..checkpoints import _allowed_names
    allowed = _allowed_names()
    return sorted({g for g in pickle_globals(data) if g not in allowed and not g.startswith(PICKLE_ALLOWED_PREFIXES)})


def _members(path: Path) -> Iterator[Tuple[str, bytes]]:
    """``(name, bytes)`` of every checkpoint and pickle in a model folder, a zip, or the file itself."""
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.suffix in (".pth", ".pkl", ".pt") and p.is_file():
                yield str(p.relative_to(path)), p.read_bytes()
    elif zipfile.is_zipfile(path) and path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                name = info.filename
                parts = PurePosixPath(name).parts
                if name.startswith("/") or ".." in parts:
                    yield name, b"__path_traversal__"
                elif (info.external_attr >> 16) & 0o170000 == 0o120000:
                    yield name, b"__symlink__"
                elif PurePosixPath(name).suffix in (".pth", ".pkl", ".pt"):
                    yield name, z.read(info)
    else:
        yield path.name, path.read_bytes()


def check_model(path: str) -> Dict[str, List[str]]:
    """Inspect every checkpoint (``.pth``) and pickle (``.pkl``) of ``path`` (a model folder, an nnU-Net model zip
    or one file) without executing anything. Returns ``{"ok": [...], "unsafe": [...]}`` (one line per file);
    :class:`UnsafeModelError` is the caller's to raise when ``unsafe`` is not empty."""
    p = Path(path)
    if not p.exists():
        raise UnsafeModelError(f"{path} does not exist: give a model folder, a .pth checkpoint or an nnU-Net "
                               f"model .zip")
    ok, unsafe = [], []
    seen = 0
    for name, data in _members(p):
        seen += 1
        if data == b"__path_traversal__":
            unsafe.append(f"{name}: a zip member outside the model folder (path traversal)")
            continue
        if data == b"__symlink__":
            unsafe.append(f"{name}: a symbolic link inside the zip")
            continue
        if name.endswith(".pkl"):
            try:
                refused = _unsafe_pickle_globals(data)
            except Exception as e:  # not a pickle
                unsafe.append(f"{name}: not a readable pickle ({type(e).__name__})")
                continue
            (unsafe if refused else ok).append(
                f"{name}: would import {', '.join(refused)}" if refused else f"{name}: pickle of nnU-Net's "
                                                                              f"postprocessing functions only")
            continue
        try:
            refused = unsafe_globals(data)
            if refused:
                unsafe.append(f"{name}: loading it would build {', '.join(refused)}")
                continue
            checkpoint = load_checkpoint(data)
        except CheckpointError as e:
            unsafe.append(f"{name}: {str(e).replace('the checkpoint ', '')}")
            continue
        problems = check_nnunet_layout(checkpoint, name)
        if problems:
            unsafe.append("; ".join(problems))
            continue
        record = checkpoint.get("lightmedseg_network")
        n = sum(int(v.numel()) for v in checkpoint["network_weights"].values())
        ok.append(f"{name}: trainer {checkpoint['trainer_name']}, configuration "
                  f"{checkpoint['init_args']['configuration']}, {n:,} weights"
                  + (f", LightMedSeg record ({record.get('input_channels')} -> {record.get('num_classes')} "
                     f"channels)" if isinstance(record, dict) else ""))
    if not seen:
        raise UnsafeModelError(f"{path} holds no checkpoint (.pth): is it a model folder, a checkpoint or an "
                               f"nnU-Net model zip?")
    return {"ok": ok, "unsafe": unsafe}

