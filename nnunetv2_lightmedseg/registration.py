"""Register the LightMedSeg trainers with the nnU-Net of one Python environment, permanently.

``lightmedseg install-trainers`` writes one small module, :data:`SHIM_NAME`, into nnU-Net's own trainer folder
(``<site-packages>/nnunetv2/training/nnUNetTrainer/variants/``) of the environment it runs in. nnU-Net looks a
trainer up by name by importing the modules below that folder (``recursive_find_trainer_class_by_name``), so
``nnUNetv2_train/_predict/...`` then find ``nnUNetTrainer_LightMedSeg`` and every variant in any shell, job,
container or spawned worker of that environment, without ``nnUNet_extTrainer``.

Why this and not the alternatives:

* ``nnUNet_extTrainer`` (``lightmedseg env``) must be set in every shell and job, and holds an absolute path of
  the installed package: moving or reinstalling the package breaks inference of finished models.
* a ``.pth`` hook would run code at the start of every Python process of the environment, for every program.

The module written here imports the trainers *by package name* on first use (PEP 562 module ``__getattr__``),
so it survives moving or reinstalling nnunetv2-lightmedseg; it only answers names the package defines, and
if the package is uninstalled it answers none (nnU-Net's lookup of other trainers is unaffected). Reinstalling
nnU-Net itself may remove it: run the command again. ``--uninstall`` removes it (only a file this command
wrote). The class nnU-Net finds is ``nnunetv2_lightmedseg.training.<module>.<name>``, the same object as with
``nnUNet_extTrainer``.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Optional
from .errors import LightMedSegError
from .utils.files import atomic_write_text

SHIM_NAME = "nnunetv2_lightmedseg_trainers.py"
MARKER = "# nnunetv2-lightmedseg trainer registration (written by `lightmedseg install-trainers`)"

SHIM_SOURCE = f'''{MARKER}
# Remove with `lightmedseg install-trainers --uninstall` (or delete this file).
"""Lets nnU-Net find the LightMedSeg trainers (nnUNetTrainer_LightMedSeg and its variants) by name.

nnU-Net imports the modules below nnunetv2/training/nnUNetTrainer to look a trainer up and asks each for the
name. This module answers the names the installed nnunetv2_lightmedseg package defines, importing it by name
on first use; without that package it answers none.
"""


def __getattr__(name):
    if name.startswith("nnUNetTrainer"):
        try:
            from nnunetv2_lightmedseg.training import ALL_TRAINERS
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] != "nnunetv2_lightmedseg":
                raise
            raise AttributeError(name) from None  # the plugin was uninstalled: nothing to offer
        if name in ALL_TRAINERS:
            return ALL_TRAINERS[name]
    raise AttributeError(name)
'''


class RegistrationError(LightMedSegError):
    """The trainers could not be (un)registered; the message says why and what to do."""


def nnunet_trainer_variants_folder() -> Path:
    """``nnunetv2/training/nnUNetTrainer/variants`` of the nnU-Net this interpreter imports (not imported here)."""
    spec = importlib.util.find_spec("nnunetv2")
    if spec is None or not spec.submodule_search_locations:
        raise RegistrationError("nnunetv2 is not installed in this Python environment "
                                "(pip install -e . in the clone, or the wheel, installs it).")
    folder = Path(list(spec.submodule_search_locations)[0]) / "training" / "nnUNetTrainer" / "variants"
    if not (folder / "__init__.py").is_file():
        raise RegistrationError(f"{folder} is not nnU-Net's trainer variants package (nnunetv2 >= 2.8 expected).")
    return folder


def shim_path() -> Path:
    return nnunet_trainer_variants_folder() / SHIM_NAME


def is_ours(path: Path) -> bool:
    try:
        return path.read_text().startswith(MARKER)
    except OSError:
        return False


def installed() -> Optional[Path]:
    """The registration module if this environment has one written by us, else None."""
    path = shim_path()
    return path if path.is_file() and is_ours(path) else None


def install() -> Path:
    """Write (or refresh) the registration module; returns its path."""
    path = shim_path()
    if path.exists() and not is_ours(path):
        raise RegistrationError(f"{path} exists and was not written by `lightmedseg install-trainers`; not "
                                f"overwriting it. Move it away and run the command again.")
    try:
        # a fresh temporary file (mkstemp: unpredictable name, O_EXCL, never follows a planted symlink)
        atomic_write_text(str(path), SHIM_SOURCE)
    except (OSError, LightMedSegError) as e:
        raise RegistrationError(f"cannot write {path}: {getattr(e, 'strerror', None) or e}. Run the command as the user who "
                                f"owns this Python environment, or set nnUNet_extTrainer in each shell instead "
                                f"(eval \"$(lightmedseg env)\").") from None
    return path


def uninstall() -> Optional[Path]:
    """Remove the registration module (and its bytecode) if we wrote it; returns the removed path or None."""
    path = shim_path()
    if not path.exists():
        return None
    if not is_ours(path):
        raise RegistrationError(f"{path} was not written by `lightmedseg install-trainers`; not removing it.")
    try:
        path.unlink()
        for pyc in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
            pyc.unlink()
    except OSError as e:
        raise RegistrationError(f"cannot remove {path}: {e.strerror}. Run the command as the user who owns this "
                                f"Python environment.") from None
    return path
