"""Trainer classes by name, found the way ``nnUNetv2_train -tr NAME`` finds them."""
from __future__ import annotations

import os


def trainer_class(name: str) -> type:
    """The nnU-Net trainer class ``name`` of this package: nnU-Net's own ``recursive_find_python_class`` over the
    package's training folder (as ``nnUNetv2_train`` searches ``nnunetv2/training/nnUNetTrainer``).
    ``LookupError`` naming the folder when no trainer class of that name exists there."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    folder = os.path.dirname(os.path.abspath(__file__))
    found = recursive_find_python_class(folder, name, __name__.rsplit(".", 1)[0])
    if not (isinstance(found, type) and issubclass(found, nnUNetTrainer)):
        raise LookupError(f"no nnU-Net trainer class {name!r} in {folder} (the trainers of "
                          f"nnunetv2_lightmedseg.training; see training/variants.py for the list)")
    return found
