"""The package's one error base class.

Every error this package raises for bad input or a state the user can fix derives from :class:`LightMedSegError`;
``lightmedseg`` catches it once (``cli/main.py``) and prints ``lightmedseg <command>: <message>`` with exit code 2.
Anything else is a bug and keeps its traceback. It derives from ``RuntimeError`` so that callers that caught the
older per-module ``RuntimeError`` subclasses keep working.
"""
from __future__ import annotations


class LightMedSegError(RuntimeError):
    """A problem with the user's input, files or environment, with a message that says what to do."""
