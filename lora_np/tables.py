"""Plain-text tables and byte counts, for results printed in a terminal or a notebook cell.

>>> rows = [["r=1", "212", "90.1%"], ["full", "73,738", "93.0%"]]
>>> print(text_table(["run", "trainable", "accuracy"], rows))
run   trainable  accuracy
-------------------------
r=1         212     90.1%
full     73,738     93.0%

Every table of the library is built here: labels on the left, numbers on the right, each column
as wide as its widest cell, a rule under the header (and ``None`` in ``rows`` for a rule of its own).
"""
from __future__ import annotations

from .validate import boolean, integer, message, number

__all__ = ["text_table", "format_bytes", "byte_unit", "BINARY_UNITS", "DECIMAL_UNITS"]

BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB")


def text_table(header, rows, align: str | None = None, gap: int = 2) -> str:
    """The rows under their header, one line each, columns separated by ``gap`` spaces.

    ``header``: the column titles; ``rows``: sequences of cells, one per column (each shown with
    ``str``, so format numbers before passing them), or ``None`` for a rule across the table (e.g.
    above a total). ``align``: one character per column, ``"<"`` (left) or ``">"`` (right); by
    default the first column is left-aligned and every other one right-aligned.
    """
    header = [str(h) for h in header]
    if not header:
        raise ValueError(message("header", "at least one column title", header, "text_table"))
    rows = [None if row is None else [str(cell) for cell in row] for row in rows]
    for i, row in enumerate(rows):
        if row is not None and len(row) != len(header):
            raise ValueError(message(f"rows[{i}]", f"{len(header)} cells, one per column", row, "text_table"))
    align = "<" + ">" * (len(header) - 1) if align is None else align
    if not isinstance(align, str) or len(align) != len(header) or set(align) - {"<", ">"}:
        raise ValueError(message("align", f"{len(header)} characters, each '<' or '>'", align, "text_table"))
    gap = integer(gap, "gap", "text_table", low=1)
    widths = [max([len(h)] + [len(row[j]) for row in rows if row is not None]) for j, h in enumerate(header)]

    def line(cells) -> str:
        return (" " * gap).join(f"{c:{a}{w}}" for c, a, w in zip(cells, align, widths, strict=True)).rstrip()

    rule = "-" * (sum(widths) + gap * (len(widths) - 1))
    return "\n".join([line(header), rule] + [rule if row is None else line(row) for row in rows])


def byte_unit(n: float, binary: bool = True) -> tuple:
    """``(unit, size)``: the largest unit with n ≥ 1 of it (1024ᵏ for binary, 1000ᵏ for decimal)."""
    n = number(n, "n", "byte_unit", low=0)
    units, base = (BINARY_UNITS, 1024) if boolean(binary, "binary", "byte_unit") else (DECIMAL_UNITS, 1000)
    k = 0
    while k + 1 < len(units) and n >= base ** (k + 1):
        k += 1
    return units[k], base ** k


def format_bytes(n: float, binary: bool = True, digits: int = 2) -> str:
    """``13.04 GiB`` (binary, powers of 1024) or ``14.00 GB`` (decimal, powers of 1000); under 1 kB or
    1 KiB, whole bytes: ``512 B``."""
    unit, size = byte_unit(n, binary)
    digits = integer(digits, "digits", "format_bytes", low=0)
    return f"{n:g} B" if size == 1 else f"{n / size:.{digits}f} {unit}"
