"""``experiments.seeds.spread``: the mean and spread that every multi-seed table and error bar reports."""
import math

import pytest

from lora_np.experiments.seeds import spread


def test_spread_gives_mean_min_max_population_std_and_count():
    s = spread([0.90, 0.92, 0.97])
    assert s["mean"] == pytest.approx(0.93) and (s["min"], s["max"], s["n"]) == (0.90, 0.97, 3)
    assert s["std"] == pytest.approx(math.sqrt(((0.03) ** 2 + (0.01) ** 2 + (0.04) ** 2) / 3))


def test_the_mean_of_equal_values_stays_inside_their_range():
    s = spread([0.1] * 7)                      # fmean of equal floats could round a hair outside
    assert s["min"] <= s["mean"] <= s["max"] and s["std"] == 0.0


def test_no_values_is_an_error_that_says_so():
    with pytest.raises(ValueError, match="values is empty"):
        spread([])
