"""The demo's work folder: nnUNet_raw/_preprocessed/_results, predictions and logs of one demo run.

The demo never deletes what it did not create: it writes only into a new or empty folder, or into one a previous
demo run created (marked by a :data:`MARKER` file), and replaces a previous run's contents only when asked to.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Tuple

from . import DemoError

MARKER = ".lightmedseg_demo"


def prepare_workdir(workdir: Path, overwrite: bool = False) -> Tuple[Path, bool]:
    """Create the demo's work folder, or reuse an empty one; returns (folder, created by this call).

    A folder a previous demo run created (marker file) is emptied only with ``overwrite``; any other non-empty
    folder is refused, so nothing the demo did not create is ever deleted."""
    workdir = Path(workdir).expanduser().resolve()
    created = not workdir.exists()
    if not created:
        if not workdir.is_dir():
            raise DemoError(f"--workdir {workdir} exists and is not a folder.")
        if any(workdir.iterdir()):
            if not (workdir / MARKER).exists():
                raise DemoError(f"--workdir {workdir} is not empty and was not created by `lightmedseg demo`; "
                                f"refusing to write there. Pass a new or empty folder.")
            if not overwrite:
                raise DemoError(f"--workdir {workdir} holds a previous `lightmedseg demo` run (its model, "
                                f"predictions and logs; see {workdir / 'demo_summary.json'}). Pass --overwrite to "
                                f"replace it, or another --workdir to keep it.")
            clean_workdir(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("work folder of `lightmedseg demo` (`lightmedseg demo --overwrite` may replace "
                                  "its contents)\n")
    return workdir, created


def clean_workdir(workdir: Path) -> None:
    """Delete the contents of a demo work folder (symlinked user datasets are unlinked, never followed)."""
    if not (workdir / MARKER).exists():
        return
    for child in workdir.iterdir():
        if child.is_symlink() or child.is_file():
            child.unlink()
        else:
            shutil.rmtree(child)
