"""Plain-text tables (``lightmedseg profile``, ``benchmark network/results/curves``)."""
from __future__ import annotations

from typing import List, Optional, Sequence


def cell(value: Optional[float], spec: str, missing: str = "-") -> str:
    """A number formatted with ``spec`` for a table cell; ``missing`` for None or NaN (not measured)."""
    return missing if value is None or value != value else format(value, spec)


def table_lines(head: Sequence[str], body: Sequence[Sequence[object]], indent: str = "", align: str = "<") -> List[str]:
    """``head``, a rule of dashes and ``body``, columns padded to their widest cell and separated by two spaces.

    ``align`` holds one character per column, ``<`` (left) or ``>`` (right); the last one applies to the
    remaining columns. Every cell is padded, the last column too, so that the lines have equal length.
    """
    rows = [[str(c) for c in r] for r in body]
    head = [str(h) for h in head]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)] if rows else [len(h) for h in head]

    def line(cells: Sequence[str]) -> str:
        return indent + "  ".join(c.rjust(w) if align[min(j, len(align) - 1)] == ">" else c.ljust(w)
                                  for j, (c, w) in enumerate(zip(cells, widths)))

    return [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
