"""Atomic writes: a temporary file with an unpredictable name in the target folder, then ``os.replace``."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a fresh temporary path next to ``path`` (``tempfile.mkstemp``: O_EXCL, unpredictable name); on success
    it replaces ``path`` atomically, on any error it is removed and ``path`` is left as it was. ``suffix`` keeps a
    file ending a writer needs to pick its format (``.nii.gz``)."""
    path = os.path.abspath(str(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp" + suffix,
                               dir=os.path.dirname(path))
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
