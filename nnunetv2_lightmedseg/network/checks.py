"""Argument checks of the network's building blocks.

``ValueError`` with a message that names the block, the argument, what it must be and what it got: unlike
``assert``, these checks also run under ``python -O``.
"""
from __future__ import annotations

import numbers


def check_positive_ints(owner: str, **values) -> None:
    """Raise ``ValueError`` unless every keyword value is a positive integer (``bool`` is not one)."""
    for name, value in values.items():
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
