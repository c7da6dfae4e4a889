"""Reading and checking a bundle folder (``bundle.json`` + one ONNX file per fold)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, List

from . import BUNDLE_JSON, FORMAT, FORMAT_VERSION, RuntimeInputError

SUPPORTED_NORMALIZATIONS = ("ZScoreNormalization", "CTNormalization", "NoNormalization",
                            "RescaleTo01Normalization", "RGBTo01Normalization")
SUPPORTED_READERS = ("SimpleITKIO",)
REQUIRED = ("format", "format_version", "input", "preprocessing", "sliding_window", "networks", "labels", "output")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_bundle(folder) -> Dict:
    """``bundle.json`` of ``folder`` as a dict, checked: format and version, the keys the runtime reads, every
    network file present with the recorded SHA-256. Raises :class:`RuntimeInputError` with what to do."""
    folder = Path(folder)
    meta_file = folder / BUNDLE_JSON
    if not folder.is_dir():
        raise RuntimeInputError(f"bundle folder {folder} does not exist: pass the folder written by "
                                f"'lightmedseg export --bundle' (--bundle DIR)")
    if not meta_file.is_file():
        raise RuntimeInputError(f"{folder} is not a bundle: it has no {BUNDLE_JSON} (write one with "
                                f"'lightmedseg export --bundle -d ID -c CONFIG -tr TRAINER -f FOLDS -o {folder}')")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RuntimeInputError(f"{meta_file} is not valid JSON ({e}): export the bundle again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RuntimeInputError(f"{meta_file} is not a LightMedSeg bundle (format {meta.get('format') if isinstance(meta, dict) else None!r}, "
                                f"expected {FORMAT!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise RuntimeInputError(f"{meta_file} has bundle format version {version!r}; this runtime reads version "
                                f"{FORMAT_VERSION}: install the nnunetv2-lightmedseg version that exported it "
                                f"({meta.get('created_by', {}).get('lightmedseg_version', 'unknown')}) or export "
                                f"the bundle again with this one")
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise RuntimeInputError(f"{meta_file} lacks {', '.join(missing)}: the file is damaged, export the bundle again")
    reader = meta["input"].get("image_reader_writer")
    if reader not in SUPPORTED_READERS:
        raise RuntimeInputError(f"{meta_file}: image reader {reader!r} is not supported by the runtime (only "
                                f"{', '.join(SUPPORTED_READERS)})")
    for ch in meta["input"]["channels"]:
        if ch["normalization_scheme"] not in SUPPORTED_NORMALIZATIONS:
            raise RuntimeInputError(f"{meta_file}: channel {ch['index']} uses normalisation "
                                    f"{ch['normalization_scheme']!r}, which the runtime does not implement")
    nets: List[Dict] = meta["networks"]
    if not nets:
        raise RuntimeInputError(f"{meta_file} lists no networks: export the bundle again")
    for net in nets:
        path = folder / net["file"]
        if Path(net["file"]).name != net["file"]:
            raise RuntimeInputError(f"{meta_file}: network file {net['file']!r} is not a plain file name")
        if not path.is_file():
            raise RuntimeInputError(f"bundle file {path} is missing: copy the whole bundle folder")
        if net.get("sha256") and sha256(path) != net["sha256"]:
            raise RuntimeInputError(f"{path} does not match the SHA-256 in {meta_file} (damaged or replaced): copy "
                                    f"the bundle again")
    meta["_folder"] = str(folder)
    return meta
