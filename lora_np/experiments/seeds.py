"""Mean and spread over a few seeds: what every multi-seed table and error bar in the course reports.

With three seeds a standard deviation says little, so the figures draw min–max error bars and the
tables print ``mean [min, max]``; ``std`` (the population standard deviation) is kept alongside.
"""
from __future__ import annotations

import statistics


def spread(values) -> dict:
    """``{"mean", "min", "max", "std", "n"}`` of a few host numbers (one per seed).

    The mean is kept inside [min, max]: with equal values, rounding could put it a hair outside.
    """
    v = [float(x) for x in values]
    if not v:
        raise ValueError("spread: values is empty: there is no seed to summarise")
    low, high = min(v), max(v)
    return {"mean": min(max(statistics.fmean(v), low), high), "min": low, "max": high,
            "std": statistics.pstdev(v), "n": len(v)}
