"""Checking arguments where the library is entered: one function per kind of value.

Every check returns the value in a plain Python type (``int``, ``float``, ``bool``) and raises a
``ValueError`` that names the argument, says what was expected and shows what came:

>>> positive_int(0, "r", where="LoRALinear")
Traceback (most recent call last):
ValueError: LoRALinear: r must be a positive integer, got 0

``True`` and ``False`` are refused wherever a number is expected (Python counts them as 0 and 1,
which hides mistakes such as ``r=True``). NumPy's integer and float scalars are accepted.
"""
from __future__ import annotations

import math
import numbers

__all__ = ["is_int", "is_real", "integer", "positive_int", "int_list", "number", "positive_number",
           "finite_number", "fraction", "boolean", "choice", "message"]


def message(name: str, expected: str, value, where: str | None = None) -> str:
    """``"where: name must be expected, got value"`` — the one wording of every argument error."""
    prefix = f"{where}: " if where else ""
    return f"{prefix}{name} must be {expected}, got {value!r}"


def is_int(value) -> bool:
    """An integer, and not True or False (Python counts them as 1 and 0)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """A real number, and not True or False."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(value, name: str, where: str | None = None, low: int | None = None,
            high: int | None = None) -> int:
    """An integer in [low, high] (either bound may be None)."""
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            expected = f"an integer in [{low}, {high}]"
        elif low is not None:
            expected = {0: "a non-negative integer", 1: "a positive integer"}.get(low, f"an integer >= {low}")
        elif high is not None:
            expected = f"an integer <= {high}"
        else:
            expected = "an integer"
        raise ValueError(message(name, expected, value, where))
    return int(value)


def positive_int(value, name: str, where: str | None = None) -> int:
    """An integer >= 1 (a rank, a width, a count)."""
    return integer(value, name, where, low=1)


def int_list(values, name: str, where: str | None = None, low: int = 1) -> list:
    """A non-empty list or tuple of integers, each >= ``low``."""
    ok = isinstance(values, (list, tuple)) and values and all(is_int(v) and v >= low for v in values)
    if not ok:
        kind = {0: "non-negative", 1: "positive"}.get(low, f">= {low}")
        raise ValueError(message(name, f"a non-empty list of {kind} integers", values, where))
    return [int(v) for v in values]


def number(value, name: str, where: str | None = None, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number in the interval [low, high] (``low_open``/``high_open``: exclude the ends)."""
    ok = is_real(value) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        if low is None and high is None:
            expected = "a finite number"
        elif high is None:
            expected = f"a finite number {'>' if low_open else '>='} {low:g}"
        elif low is None:
            expected = f"a finite number {'<' if high_open else '<='} {high:g}"
        else:
            expected = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(message(name, expected, value, where))
    return float(value)


def finite_number(value, name: str, where: str | None = None) -> float:
    """Any finite real number (not NaN, not ±inf)."""
    return number(value, name, where)


def positive_number(value, name: str, where: str | None = None) -> float:
    """A finite number > 0 (a learning rate, alpha, a scale)."""
    if not (is_real(value) and math.isfinite(value) and value > 0):
        raise ValueError(message(name, "a finite positive number", value, where))
    return float(value)


def fraction(value, name: str, where: str | None = None, include_one: bool = False) -> float:
    """A probability-like number in [0, 1) (``include_one``: [0, 1])."""
    return number(value, name, where, low=0.0, high=1.0, high_open=not include_one)


def boolean(value, name: str, where: str | None = None) -> bool:
    """True or False, and nothing else (the string ``"false"`` is not a boolean)."""
    if not isinstance(value, bool):
        raise ValueError(message(name, "True or False", value, where))
    return value


def choice(value, name: str, options, where: str | None = None):
    """One of ``options`` (compared with ==)."""
    options = tuple(options)
    if isinstance(value, bool) or value not in options:
        raise ValueError(message(name, f"one of {options}", value, where))
    return value
