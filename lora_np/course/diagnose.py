"""Naming the mistake in a learner's LoRA pair: which common slip explains a wrong y or gradient.

On the same inputs, with G = dL/dy the upstream gradient and u = x Aᵀ, the right values are

    y  = x W0ᵀ + b0 + s u Bᵀ,        dx = G W0 + s (G B) A,    dA = s (G B)ᵀ x,    dB = s Gᵀ u.

A diagnosis computes what each common mistake would have produced (b0 or s left out, s², a path of
dx missing, a missing ``.T``) and names the first that matches the learner's array; failing that,
a factor c with learner = c · right (s, 1/s, s², −1); failing that, the formula to compare with.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np  # host-side by design: the checker's problems are small float64 NumPy arrays

from ..gradcheck import rel_error_tensor

MATCH = 1e-6                       # "the same array" for a candidate mistake (relative to the largest entry)
FORMULA = {"y": "y = x W0ᵀ + b0 + s (x Aᵀ) Bᵀ", "dx": "dx = G W0 + s (G B) A",
           "dA": "dA = s (G B)ᵀ x", "dB": "dB = s Gᵀ u, with u = x Aᵀ"}
VARIABLE = {"y": "y", "dx": "x", "dA": "A", "dB": "B"}


@dataclass
class Problem:
    """One random LoRA layer in float64, with an upstream gradient G: (N, d_out)."""
    x: np.ndarray                  # (N, d_in)
    W0: np.ndarray                 # (d_out, d_in)
    b0: np.ndarray                 # (d_out,)
    A: np.ndarray                  # (r, d_in)
    B: np.ndarray                  # (d_out, r)   nonzero, so that every gradient is
    s: float
    G: np.ndarray                  # (N, d_out)

    @classmethod
    def random(cls, seed: int, n: int = 5, d_in: int = 4, d_out: int = 3, r: int = 2, s: float = 1.5):
        rng = np.random.default_rng(seed)
        return cls(*(rng.standard_normal(shape) for shape in ((n, d_in), (d_out, d_in), (d_out,),
                                                              (r, d_in), (d_out, r))),
                   s, rng.standard_normal((n, d_out)))

    def args(self) -> tuple:
        """Fresh copies of (x, W0, b0, A, B, s): a learner's function may write into its inputs."""
        return self.x.copy(), self.W0.copy(), self.b0.copy(), self.A.copy(), self.B.copy(), self.s


def matches(a, b) -> bool:
    return a.shape == b.shape and rel_error_tensor(a, b) < MATCH


def _first(a, candidates):
    return next((why for value, why in candidates if matches(a, value)), None)


def _factor(a, right, s: float):
    """The hint for a = c · right, naming c when it is a power of s or −1; None when a is no multiple."""
    c = float(np.vdot(a, right) / max(np.vdot(right, right), 1e-300))
    if not matches(a, c * right):
        return None
    named = [(1 / s, f"off by the factor s = {s:g}: s is missing"),
             (s, f"off by the factor s = {s:g}: it carries s² = {s * s:g} where the forward has s once"),
             (1 / s ** 2, f"off by the factor s² = {s * s:g}: s is missing twice"),
             (s ** 2, f"off by the factor s² = {s * s:g}: s is applied three times"),
             (-1.0, "it has the wrong sign")]
    return next((why for value, why in named if math.isclose(c, value, rel_tol=1e-6)),
                f"it is {c:.3g} times the right value")


def forward_mistake(y, p: Problem, right) -> str:
    """Why ``y`` (of the right shape) differs from ``right``, the reference y."""
    s, base, adapter = p.s, p.x @ p.W0.T, (p.x @ p.A.T) @ p.B.T              # (N, d_out) each
    why = _first(y, [
        (base + s * adapter, "it is missing the bias b0"),
        (base + p.b0 + adapter, f"it is missing the scale s = {s:g} of the adapter's path s (x Aᵀ) Bᵀ"),
        (base + adapter, "it is missing both the bias b0 and the scale s"),
        (base + p.b0 + s * s * adapter, f"the adapter's path carries s² = {s * s:g}; s appears once"),
        (base + p.b0 + adapter / s, "the adapter's path is divided by s; s multiplies it"),
        (base + p.b0, "it is missing the adapter's path s (x Aᵀ) Bᵀ: that is the frozen layer alone"),
        (p.b0 + s * adapter, "it is missing the frozen path x W0ᵀ"),
        (s * (base + adapter) + p.b0, "s scales the frozen path too; only the adapter's path is scaled"),
    ]) or _factor(y, right, s) or "compare each term"
    return f"{why} — {FORMULA['y']}"


def gradient_mistake(name: str, g, p: Problem, right) -> str:
    """Why the gradient ``name`` ("dx", "dA" or "dB"), of the right shape, differs from ``right``."""
    s, G, gB = p.s, p.G, p.G @ p.B                                           # gB: (N, r)
    special = {"dx": [
        (G @ p.W0, "dx is missing the adapter's path s (G B) A: x reaches y through W0 and through A"),
        (s * gB @ p.A, "dx is missing G W0, the frozen path: W0 gets no gradient, but x still gets one "
                       "through it"),
        (G @ p.W0 + gB @ p.A, f"the adapter's path in dx is missing the factor s = {s:g}"),
        (G @ p.W0 + s * s * gB @ p.A, f"the adapter's path in dx carries s² = {s * s:g}; s appears once"),
        (s * (G @ p.W0 + gB @ p.A), "s multiplies the frozen path G W0 too; only the adapter's path "
                                    "is scaled"),
    ]}
    why = _first(g, special.get(name, ())) or _factor(g, right, s)
    if why is not None and name != "dx" and why.startswith("off by"):
        why = f"{name} has the shape of {VARIABLE[name]} but is {why}"
    return f"{why or 'compare it with the formula'} — {FORMULA[name]}"


def shape_mistake(name: str, g, right) -> str:
    """Why ``g`` has the wrong shape (a transpose, most often)."""
    var, shape = VARIABLE[name], right.shape
    if name == "y":
        expected = f"y has shape {g.shape}, expected (N, d_out) = {shape}"
        if g.shape == shape[::-1]:
            return f"{expected}: transposed? one row per sample, as in x: (N, d_in) — {FORMULA['y']}"
        return f"{expected} — {FORMULA['y']}"
    if g.shape == shape[::-1]:
        its = " Its transpose is right." if matches(g.T, right) else ""
        return (f"{name} has shape {g.shape}, {var} has {shape}: transposed?{its} A gradient has the shape "
                f"of its variable — {FORMULA[name]}")
    return f"{name} has shape {g.shape}, but {var} has {shape}: a gradient has the shape of its variable"


def transposed_operands(forward, seed: int):
    """A hint when ``forward`` fails on shapes: run it where d_in = d_out = r, so that a missing ``.T``
    does not raise, and name the operands it uses untransposed. None when that does not explain it.
    """
    q = Problem.random(seed + 1, n=5, d_in=4, d_out=4, r=4)
    try:
        y = np.asarray(forward(*q.args())[0], dtype=np.float64)
    except Exception:
        return None
    fixes = ("x @ W0 where it needs x @ W0.T (W0 is (d_out, d_in))",
             "x @ A where it needs x @ A.T (A is (r, d_in))",
             "u @ B where it needs u @ B.T (B is (d_out, r))")
    for flags in itertools.product((False, True), repeat=3):
        W0, A, B = (m if plain else m.T for m, plain in zip((q.W0, q.A, q.B), flags, strict=True))
        if any(flags) and matches(y, q.x @ W0 + q.b0 + q.s * (q.x @ A) @ B):
            return "it uses " + " and ".join(fix for fix, plain in zip(fixes, flags, strict=True) if plain)
    return None
