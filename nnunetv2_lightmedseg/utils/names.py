"""Names nnU-Net gives to things: ``DatasetXXX_Name`` folders and case identifiers of image/label files.

* Dataset folders: ``Dataset`` + a 3-digit id + ``_`` + a name (nnU-Net's ``convert_dataset_name_to_id`` reads
  the id from the same positions). Ids are turned into names with nnU-Net's own ``maybe_convert_to_dataset_name``
  where a lookup is needed (:mod:`nnunetv2_lightmedseg.plans`).
* Case identifiers: the file name without its file ending (the endings nnU-Net's image readers support, longest
  first, so ``.nii.gz`` wins over ``.gz``) and, for images, without the 4-digit channel suffix ``_XXXX``.
"""
from __future__ import annotations

import os
import re
from typing import List, Optional, Tuple

#: a dataset folder name as nnU-Net accepts it: group 1 the id, group 2 the name
DATASET_NAME_RE = re.compile(r"^Dataset(\d{3})_(.+)$")
#: characters of a dataset name this package writes (no spaces: nnU-Net's commands take it as one argument)
_NAME_CHARS = re.compile(r"^[A-Za-z0-9_\-]+$")
_CHANNEL_SUFFIX = re.compile(r"_\d{4}$")


def parse_dataset_name(folder_name: str) -> Optional[Tuple[int, str]]:
    """``"Dataset004_Hippocampus"`` -> ``(4, "Hippocampus")``; None for a name nnU-Net would not accept."""
    m = DATASET_NAME_RE.match(folder_name)
    return (int(m.group(1)), m.group(2)) if m else None


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset%03d_Name`` as nnU-Net requires it; raises ValueError for ids/names it cannot use."""
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"nnU-Net dataset ids have three digits (1-999), got {dataset_id}")
    if not _NAME_CHARS.match(name):
        raise ValueError(f"dataset name {name!r} must consist of letters, digits, '_' and '-' only")
    return f"Dataset{int(dataset_id):03d}_{name}"


def image_file_endings() -> List[str]:
    """The file endings nnU-Net's image readers/writers support (its ``LIST_OF_IO_CLASSES``), longest first."""
    from nnunetv2.imageio.reader_writer_registry import LIST_OF_IO_CLASSES

    endings = {e for io in LIST_OF_IO_CLASSES for e in io.supported_file_endings}
    return sorted(endings, key=lambda e: (-len(e), e))


def case_name(path: str, file_ending: Optional[str] = None, channel_suffix: bool = False) -> str:
    """The case identifier of an image or label file: its base name without ``file_ending`` (default: any
    ending nnU-Net reads, else the last extension) and, with ``channel_suffix``, without ``_XXXX``
    (``case_0000.nii.gz`` -> ``case``)."""
    name = os.path.basename(str(path))
    endings = [file_ending] if file_ending else image_file_endings()
    ending = next((e for e in endings if name.endswith(e)), None)
    name = name[: -len(ending)] if ending else os.path.splitext(name)[0]
    return _CHANNEL_SUFFIX.sub("", name) if channel_suffix else name
