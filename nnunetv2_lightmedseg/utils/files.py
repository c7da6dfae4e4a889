"""Writing files a user may already have: refuse to replace them unasked, and never leave half a file.

Every file this package writes where a user's files live goes through :func:`refuse_existing` (unless the user
passed ``--overwrite``) and :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_path`: the content
goes to a temporary file with an unpredictable name in the same folder (``tempfile.mkstemp``: created with
``O_EXCL``, so a planted symlink is never followed) and is moved into place with ``os.replace``, so an interrupt or
a full disk leaves either the old file or the new one.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterable, Iterator

from ..errors import LightMedSegError


class OutputExistsError(LightMedSegError):
    """An output would replace something that already exists and ``--overwrite`` was not given."""


def refuse_existing(paths: Iterable[str], overwrite: bool, flag: str = "--overwrite") -> None:
    """Raise :class:`OutputExistsError` naming every path of ``paths`` that exists, unless ``overwrite``."""
    if overwrite:
        return
    existing = [str(p) for p in paths if os.path.lexists(str(p))]
    if existing:
        raise OutputExistsError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; nothing "
                                f"was changed. Choose another output or pass {flag} to replace "
                                f"{'it' if len(existing) == 1 else 'them'}")


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a fresh temporary path next to ``path``; on success it replaces ``path`` atomically, on any error it is
    removed and ``path`` is left as it was. ``suffix`` keeps a file ending that a writer needs (``.onnx``)."""
    path = os.path.abspath(str(path))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise LightMedSegError(f"the folder {folder} does not exist: create it first or choose another output")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix + ".tmp", dir=folder)
    except PermissionError:
        raise LightMedSegError(f"cannot write to {folder} (permission denied): choose a writable output "
                               f"folder") from None
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates 0600; give the file the mode a plain open() would (the old file's, or 0666 less umask)
        os.chmod(tmp, os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    atomic_write_bytes(path, text.encode("utf-8"))
