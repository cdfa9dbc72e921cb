"""Argument checks: a wrong value is refused with a ValueError that names the argument and the place,
True/False never pass for numbers, NumPy scalars are accepted, and what comes back is a plain Python
type (so a NumPy scalar never leaks into a model's settings or a float32 computation).

These are host-side checks: every test runs once, whatever backends the suite runs under.
"""
import math

import numpy as np
import pytest

from lora_np import validate

pytestmark = pytest.mark.host_only


# --------------------------------------------------------------------------- the wording

def test_message_is_the_one_wording():
    assert validate.message("r", "a positive integer", 0, "LoRALinear") == \
        "LoRALinear: r must be a positive integer, got 0"
    assert validate.message("r", "a positive integer", "4") == "r must be a positive integer, got '4'"


def test_the_documented_example():
    with pytest.raises(ValueError, match=r"^LoRALinear: r must be a positive integer, got 0$"):
        validate.positive_int(0, "r", where="LoRALinear")


# --------------------------------------------------------------------------- integers

@pytest.mark.parametrize("value, kwargs, expected", [
    (3.0, {}, "an integer"),                                   # 3.0 is a float, not an integer
    (-1, {"low": 0}, "a non-negative integer"),
    (0, {"low": 1}, "a positive integer"),
    (7, {"low": 8}, "an integer >= 8"),
    (5, {"high": 4}, "an integer <= 4"),
    (9, {"low": 1, "high": 5}, r"an integer in \[1, 5\]"),
])
def test_integer_bounds_are_named_in_the_message(value, kwargs, expected):
    with pytest.raises(ValueError, match=rf"^f: k must be {expected}, got {value}$"):
        validate.integer(value, "k", "f", **kwargs)


def test_integer_accepts_its_bounds():
    assert validate.integer(-7, "k") == -7
    assert validate.integer(0, "k", low=0) == 0 and validate.integer(4, "k", high=4) == 4
    assert validate.integer(1, "k", low=1, high=5) == 1 and validate.integer(5, "k", low=1, high=5) == 5


@pytest.mark.parametrize("bad", [True, False, 2.0, "3", None, [1], np.float64(2.0), np.bool_(True)])
def test_integer_refuses_non_integers_and_bools(bad):
    with pytest.raises(ValueError, match=r"^where: n must be an integer, got "):
        validate.integer(bad, "n", "where")


@pytest.mark.parametrize("value", [np.int64(5), np.int32(5), np.uint8(5), 5])
def test_integers_accept_numpy_scalars_and_return_int(value):
    for out in (validate.integer(value, "n"), validate.positive_int(value, "n"),
                validate.integer(value, "n", low=0, high=5)):
        assert out == 5 and type(out) is int


@pytest.mark.parametrize("bad", [0, -3, True, 1.0, "1", np.int64(0)])
def test_positive_int_refuses(bad):
    with pytest.raises(ValueError, match=r"^Linear: d_in must be a positive integer, got "):
        validate.positive_int(bad, "d_in", "Linear")


def test_where_is_optional():
    with pytest.raises(ValueError, match=r"^n must be a positive integer, got 0$"):
        validate.positive_int(0, "n")


# --------------------------------------------------------------------------- lists of integers

def test_int_list_returns_a_list_of_ints():
    out = validate.int_list((np.int64(3), 4), "hidden", "MLP")
    assert out == [3, 4] and type(out) is list and all(type(v) is int for v in out)
    assert validate.int_list([0, 2], "levels", low=0) == [0, 2]


@pytest.mark.parametrize("bad, kind", [
    ([], "positive"), ((), "positive"), ([1, 0], "positive"), ([1, True], "positive"), ([1, 2.0], "positive"),
    ("12", "positive"), (3, "positive"), (np.array([1, 2]), "positive"),
])
def test_int_list_refuses(bad, kind):
    with pytest.raises(ValueError, match=rf"^MLP: hidden must be a non-empty list of {kind} integers, got "):
        validate.int_list(bad, "hidden", "MLP")


def test_int_list_names_its_lower_bound():
    with pytest.raises(ValueError, match="levels must be a non-empty list of non-negative integers"):
        validate.int_list([-1], "levels", low=0)
    with pytest.raises(ValueError, match="sizes must be a non-empty list of .*8"):
        validate.int_list([4], "sizes", low=8)


# --------------------------------------------------------------------------- real numbers

@pytest.mark.parametrize("value", [np.float32(0.5), np.float64(0.5), 0.5, np.int64(1), 1])
def test_numbers_accept_numpy_scalars_and_return_float(value):
    for out in (validate.number(value, "x"), validate.finite_number(value, "x"),
                validate.positive_number(value, "x"), validate.fraction(value, "x", include_one=True)):
        assert out == float(value) and type(out) is float


@pytest.mark.parametrize("bad", [True, False, "0.1", None, float("nan"), float("inf"), -float("inf"),
                                 np.float32("nan"), 1j])
def test_finite_number_refuses_bools_strings_and_non_finite_values(bad):
    with pytest.raises(ValueError, match=r"^f: x must be a finite number, got "):
        validate.finite_number(bad, "x", "f")
    with pytest.raises(ValueError, match=r"^f: x must be a finite number, got "):
        validate.number(bad, "x", "f")


@pytest.mark.parametrize("value, kwargs, expected", [
    (-0.5, {"low": 0.0}, "a finite number >= 0"),
    (0.0, {"low": 0.0, "low_open": True}, "a finite number > 0"),
    (2.5, {"high": 2.0}, "a finite number <= 2"),
    (2.0, {"high": 2.0, "high_open": True}, "a finite number < 2"),
    (1.5, {"low": 0.0, "high": 1.0}, r"a number in \[0, 1\]"),
    (0.0, {"low": 0.0, "high": 1.0, "low_open": True}, r"a number in \(0, 1\]"),
    (1.0, {"low": 0.0, "high": 1.0, "high_open": True}, r"a number in \[0, 1\)"),
])
def test_number_bounds_are_named_in_the_message(value, kwargs, expected):
    with pytest.raises(ValueError, match=rf"^where: s must be {expected}, got {value}$"):
        validate.number(value, "s", "where", **kwargs)


def test_number_accepts_its_closed_ends():
    assert validate.number(0, "s", low=0.0, high=1.0) == 0.0
    assert validate.number(1, "s", low=0.0, high=1.0) == 1.0
    with pytest.raises(ValueError, match=r"must be a number in \[0, 1\], got inf"):
        validate.number(float("inf"), "s", low=0.0, high=1.0)


@pytest.mark.parametrize("bad", [0, 0.0, -1e-3, True, "1e-3", None, float("nan"), float("inf"),
                                 np.float64(-1)])
def test_positive_number_refuses(bad):
    with pytest.raises(ValueError, match=r"^Adam: lr must be a finite positive number, got "):
        validate.positive_number(bad, "lr", "Adam")


@pytest.mark.parametrize("bad", [1.0, -0.1, 1, True, False, "0.5", float("nan")])
def test_fraction_refuses_values_outside_zero_one(bad):
    with pytest.raises(ValueError, match=r"^Dropout: p must be a number in \[0, 1\), got "):
        validate.fraction(bad, "p", "Dropout")


def test_fraction_may_include_one():
    assert validate.fraction(1, "strength", include_one=True) == 1.0 and validate.fraction(0, "p") == 0.0
    with pytest.raises(ValueError, match=r"strength must be a number in \[0, 1\], got 1.5"):
        validate.fraction(1.5, "strength", include_one=True)


# --------------------------------------------------------------------------- flags and choices

def test_boolean_accepts_only_true_and_false():
    assert validate.boolean(True, "causal") is True and validate.boolean(False, "causal") is False
    for bad in (1, 0, "false", "True", None):
        with pytest.raises(ValueError, match=r"^MultiHeadAttention: causal must be True or False, got "):
            validate.boolean(bad, "causal", "MultiHeadAttention")


def test_choice_returns_the_value_or_names_the_options():
    assert validate.choice("gelu", "activation", ("gelu", "relu")) == "gelu"
    assert validate.choice(2, "k", range(4)) == 2                          # any iterable of options
    with pytest.raises(ValueError, match=r"^MLP: activation must be one of \('gelu', 'relu'\), got 'swish'$"):
        validate.choice("swish", "activation", ["gelu", "relu"], "MLP")
    with pytest.raises(ValueError, match=r"k must be one of \(0, 1\), got True"):
        validate.choice(True, "k", (0, 1))                                 # True == 1, but it is not 1
    assert math.isclose(validate.choice(0.5, "w", (0.25, 0.5)), 0.5)


def test_the_predicates_refuse_booleans_and_accept_numpy_scalars():
    assert validate.is_int(3) and validate.is_int(np.int64(3)) and not validate.is_int(True)
    assert not validate.is_int(3.0) and not validate.is_int("3")
    assert validate.is_real(2.5) and validate.is_real(np.float32(2.5)) and validate.is_real(4)
    assert not validate.is_real(False) and not validate.is_real("2.5")
