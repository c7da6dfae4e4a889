"""Argument checks of the network's building blocks.

``ValueError`` with a message that names the block, the argument, what it must be and what it got: unlike
``assert``, these checks also run under ``python -O``.
"""
from __future__ import annotations

import numbers
from typing import Tuple


def check_positive_ints(owner: str, **values) -> None:
    """Raise ``ValueError`` unless every keyword value is a positive integer (``bool`` is not one)."""
    for name, value in values.items():
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")


def as_triple(value, owner: str, name: str) -> Tuple[int, int, int]:
    """One integer for every axis, or one per axis (D, H, W), as a tuple of three Python ints (numpy integers
    accepted, ``bool`` not); ``ValueError`` naming the block and the argument otherwise. The one place every
    int-or-triple argument (kernel sizes, strides, divisors) is normalised."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (int(value),) * 3
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) != 3 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{owner}: {name} must be an integer or three integers (D, H, W), got {value!r}")
    return tuple(int(v) for v in items)
