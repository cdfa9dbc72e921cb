"""Notebook 06's checker of φ by hand, and its exercises (registered with
:func:`lora_np.course.exercises.register`).

* :func:`check_phi` checks a learner's ``phi(A1, A2, i, j)``, the LoRA paper's subspace similarity
  (§7.2), against the library's :func:`~lora_np.experiments.update_geometry.subspace_similarity` on two
  pairs of small adapters, and names the common mistakes (left instead of right singular vectors, the
  rows of Vᵀ cut the wrong way, a missing square, no division by min(i, j), A used without its SVD, i
  and j swapped, counting from 0). It never raises on the learner's mistakes.
* :func:`phi` is the reference, shown by ``show_solution("phi_by_hand")``; :func:`li_d_int90` the
  reference of the code exercise.

Every right answer of an exercise is computed here from the quantities in its question:

* E‖U₁ᵀU₂‖²_F = i·j/n for independent random subspaces of Rⁿ of dimensions i and j (each of the i unit
  vectors keeps j/n of its squared length in the other subspace), so E φ = max(i, j)/n;
* d_int90 interpolated on a log-d axis: d = d₀·(d₁/d₀)^t, t = (0.9 − a₀)/(a₁ − a₀);
* φ(i, r₂) depends on A₂ only through its row space, which M·A₂ shares for every invertible M;
* Li et al.'s d_int90 is the first d with accuracy ≥ 0.9·(full fine-tuning's accuracy): the library's
  :func:`~lora_np.experiments.intrinsic.d_int90` with chance set to 0.
"""
from __future__ import annotations

import inspect
import math
import re

from .. import backend, validate
from ..backend import get_array_module
from ..experiments.intrinsic import IntrinsicSweep, d_int90
from ..experiments.update_geometry import subspace_similarity
from .exercises import Exercise, choice_of, numeric, register
from .feedback import Feedback

# ------------------------------------------------------------------ the reference φ


def phi(A1, A2, i, j):
    """φ(A1, A2, i, j) = ‖U1[:, :i]ᵀ U2[:, :j]‖²_F / min(i, j)  (the LoRA paper, §7.2).

    A1: (r1, n), A2: (r2, n): two adapters' A, reading the same n inputs; 1 <= i <= r1, 1 <= j <= r2.
    U holds A's right-singular vectors as columns, strongest first: the input directions A reads.
    """
    xp = get_array_module(A1, A2)                       # NumPy for NumPy arrays (write np in the notebook)
    _, _, Vt1 = xp.linalg.svd(A1, full_matrices=False)   # Vt1: (r1, n)  its rows: A1's right-singular vectors
    _, _, Vt2 = xp.linalg.svd(A2, full_matrices=False)   # Vt2: (r2, n)
    U1 = Vt1.T[:, :i]                                    # (n, i)   A1's top-i input directions
    U2 = Vt2.T[:, :j]                                    # (n, j)   A2's top-j input directions
    overlap = U1.T @ U2                                  # (i, j)   cosines between those directions
    return float((overlap ** 2).sum() / min(i, j))       # squared Frobenius norm, divided by min(i, j)


# ------------------------------------------------------------------ the checker of a learner's φ

N_IN = 16                          # the inputs both adapters read (n)
SHARED = 3                         # the adapters share 3 input directions, so φ is far from chance
MATCH = 1e-6                       # "the same value": relative to 1, the scale of φ
CASES = {(8, 4): ((1, 1), (2, 3), (3, 1), (5, 4), (8, 2), (8, 4)),     # ranks 8 and 4
         (4, 4): ((1, 1), (2, 3), (3, 2), (4, 4))}                     # equal ranks: more slips still run
SHAPES = ("U1[:, :i] must be (n, i) and U2[:, :j] (n, j), so that U1[:, :i].T @ U2[:, :j] is (i, j): "
          "U = Vt.T, the right-singular vectors as columns")


def _adapters(r1: int, r2: int, seed: int):
    """Two host float64 adapters A1: (r1, n), A2: (r2, n) that share a few input directions."""
    rng = backend.Rng(seed).host                                           # NumPy's generator, on the host
    shared = rng.standard_normal((SHARED, N_IN))                           # (3, n)
    A1 = rng.standard_normal((r1, SHARED)) @ shared + 0.5 * rng.standard_normal((r1, N_IN))   # (r1, n)
    A2 = rng.standard_normal((r2, SHARED)) @ shared + 0.5 * rng.standard_normal((r2, N_IN))   # (r2, n)
    return A1, A2


def _sq(M) -> float:
    return float((M ** 2).sum())


def _variants(A1, A2, i: int, j: int) -> dict:
    """{mistake: the value it gives, or None where it cannot run (its shapes do not fit)}."""
    xp = get_array_module(A1, A2)
    L1, _, Vt1 = xp.linalg.svd(A1, full_matrices=False)                   # L: (r, r), Vt: (r, n)
    L2, _, Vt2 = xp.linalg.svd(A2, full_matrices=False)
    r1, r2 = A1.shape[0], A2.shape[0]
    U1, U2 = Vt1.T, Vt2.T                                                  # (n, r1), (n, r2)
    M = U1[:, :i].T @ U2[:, :j]                                            # (i, j) the right overlap
    k = min(i, j)
    R1 = A1 / xp.linalg.norm(A1, axis=1, keepdims=True)                    # A's rows, made unit length
    R2 = A2 / xp.linalg.norm(A2, axis=1, keepdims=True)
    same = r1 == r2
    return {
        "left": _sq(L1[:, :i].T @ L2[:, :j]) / k if same else None,
        "cut": _sq(Vt1[:, :i].T @ Vt2[:, :j]) / k if same else None,
        "no_square": math.sqrt(_sq(M)) / k,
        "no_divide": _sq(M),
        "max": _sq(M) / max(i, j),
        "spectral": float(xp.linalg.norm(M, 2)) ** 2 / k,
        "no_svd": _sq(A1[:i] @ A2[:j].T) / k,
        "no_svd_unit": _sq(R1[:i] @ R2[:j].T) / k,
        "swapped": _sq(U1[:, :j].T @ U2[:, :i]) / k if j <= r1 and i <= r2 else None,
        "from_zero": (_sq(U1[:, :i + 1].T @ U2[:, :j + 1]) / min(i + 1, j + 1)
                      if i < r1 and j < r2 else None),
    }


MISTAKES = {
    "left": ("it uses the LEFT singular vectors (the U of np.linalg.svd, (r, r)): they combine A's rows, "
             "they are not directions in the n-dimensional input space; φ compares the RIGHT ones, the rows "
             "of Vt, as columns: U = Vt.T, (n, r)"),
    "cut": ("it keeps the first i columns of Vt, i.e. the first i coordinates of every direction; the "
            "directions are Vt's rows: take U = Vt.T, (n, r), then its first i columns"),
    "no_square": "the Frobenius norm is not squared: φ uses ‖U1ᵢᵀ U2ⱼ‖²_F, the sum of the squared entries",
    "no_divide": ("it is not divided by min(i, j): ‖U1ᵢᵀ U2ⱼ‖²_F can reach min(i, j), and the division "
                  "puts φ in [0, 1]"),
    "max": "it is divided by max(i, j); φ divides by min(i, j), the largest ‖U1ᵢᵀ U2ⱼ‖²_F can be",
    "spectral": ("it squares the largest singular value of the overlap (np.linalg.norm(M, 2)); the Frobenius "
                 "norm adds every squared entry: np.linalg.norm(M) or (M ** 2).sum() before the square root"),
    "no_svd": ("it uses A's rows directly, without the SVD: they are neither unit length nor orthogonal nor "
               "ordered by strength; U1 must hold A1's right-singular vectors, from np.linalg.svd(A1)"),
    "no_svd_unit": ("it uses A's rows made unit length, without the SVD: they are still not orthogonal nor "
                    "ordered by strength; U1 must hold A1's right-singular vectors, from np.linalg.svd(A1)"),
    "swapped": ("i and j are swapped: i counts A1's top directions (U1[:, :i]) and j A2's (U2[:, :j])"),
    "from_zero": ("it is φ(i + 1, j + 1), one direction too many on each side: i and j count from 1, "
                  "U1[:, :i] already holds the top i (a slice ends before i), and a grid's entry for (i, j) "
                  "is at [i - 1, j - 1]"),
}


def _call(fn, A1, A2, i, j):
    """(value, None) or (None, the exception): the learner's code never makes the checker raise."""
    try:
        return fn(A1.copy(), A2.copy(), i, j), None
    except Exception as err:                          # any mistake in the learner's code is feedback
        return None, err


def _number(value, i: int, j: int, r1: int, r2: int):
    """(float, None) or (None, why): φ is one real number."""
    if value is None:
        return None, "phi returned None: end it with `return` and the number"
    if isinstance(value, bool):
        return None, "phi returned True or False; it must return a number"
    if validate.is_real(value):
        return float(value), None
    try:
        a = backend.to_numpy(value)
    except Exception:                                 # not an array at all
        return None, f"phi returned a {type(value).__name__}; it must return one number"
    if a.dtype.kind not in "fiu":
        return None, f"phi returned a {type(value).__name__} of {a.dtype}; it must return one number"
    if a.size == 1:
        return float(a.reshape(())), None
    if a.shape == (i, j):
        return None, (f"phi returned an array of shape ({i}, {j}): that is the overlap "
                      f"U1[:, :i].T @ U2[:, :j]; φ is one number, its squared Frobenius norm divided by "
                      f"min(i, j)")
    if a.shape == (r1, r2):
        return None, "phi returned the whole (r1, r2) grid; it must return the one number φ(i, j)"
    return None, f"phi returned an array of shape {a.shape}; it must return one number"


def _raised(err: Exception, mistake: str | None) -> str:
    """What the learner's exception says, then the mistake when one is recognised, else a hint on shapes."""
    first = re.sub(r", with gufunc signature \S+", "", (str(err).splitlines() or [""])[0])
    text = f"raised {type(err).__name__}: {first}"
    if mistake:
        return f"{text} — {mistake}"
    if isinstance(err, ValueError) and any(w in first for w in ("matmul", "broadcast", "shapes", "align")):
        return f"{text} — the shapes do not fit: {SHAPES}"
    return text


def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and abs(a - b) <= MATCH * max(1.0, abs(b))


def _diagnose(values: dict, variants: dict, right: dict) -> str | None:
    """The first mistake whose values match the learner's wherever both exist and that differs from the
    right values somewhere; None when none does."""
    for name in MISTAKES:
        pairs = [(values[c], variants[c][name], right[c]) for c in values if variants[c][name] is not None]
        if pairs and all(_close(v, w) for v, w, _ in pairs) and any(not _close(w, r) for _, w, r in pairs):
            return MISTAKES[name]
    return None


def _generic(value: float) -> str:
    if not 0.0 <= value <= 1.0 + MATCH:
        return ("φ must lie in [0, 1]: use orthonormal directions (the SVD's), square the Frobenius norm and "
                "divide by min(i, j)")
    return ("check each step: U = Vt.T from np.linalg.svd(A, full_matrices=False), its first i (or j) "
            "columns, the squared Frobenius norm of U1[:, :i].T @ U2[:, :j], divided by min(i, j)")


def check_phi(fn, seed: int = 0) -> Feedback:
    """Check a learner's ``phi(A1, A2, i, j) -> float`` against the library's ``subspace_similarity``.

    Two pairs of random float64 adapters reading n = 16 inputs (ranks 8 and 4, then 4 and 4, sharing a
    few directions), at several (i, j). One ✓/✗ line per pair of adapters; a ✗ names the (i, j), the
    learner's value, and the mistake that explains all of the learner's values when one does. A scaffold
    that raises ``NotImplementedError`` is "not written yet". Raises only when ``fn`` is not a function.
    """
    if not callable(fn):
        raise ValueError(validate.message("fn", "a function (pass phi, not phi(...))", fn, where="check_phi"))
    seed = validate.integer(seed, "seed", where="check_phi", low=0)
    fb = Feedback()
    values, variants, right, errors = {}, {}, {}, {}
    for k, ((r1, r2), pairs) in enumerate(CASES.items()):
        A1, A2 = _adapters(r1, r2, seed + k)
        grid = subspace_similarity(A1, A2)                                 # (r1, r2) host, the library's
        for i, j in pairs:
            case = (r1, r2, i, j)
            right[case], variants[case] = float(grid[i - 1, j - 1]), _variants(A1, A2, i, j)
            result, err = _call(fn, A1, A2, i, j)
            if isinstance(err, NotImplementedError):
                fb.fail("phi: not written yet (it raises NotImplementedError): fill in the TODOs and run "
                        "its cell")
                return fb
            if err is None:
                result, why = _number(result, i, j, r1, r2)
                if why:
                    fb.fail(why)
                    return fb
                values[case] = result
            else:
                errors[case] = err
    mistake = _diagnose(values, variants, right) if values else None
    for r1, r2 in CASES:
        where = f"adapters of ranks {r1} and {r2} (n = {N_IN})"
        cases = [c for c in right if c[:2] == (r1, r2)]
        raised = [c for c in cases if c in errors]
        wrong = [c for c in cases if c in values and not _close(values[c], right[c])]
        if raised:
            c = raised[0]
            fb.fail(f"{where}: phi(A1, A2, i={c[2]}, j={c[3]}) {_raised(errors[c], mistake)}")
        elif wrong:
            c = wrong[0]
            fb.fail(f"{where}: φ({c[2]}, {c[3]}) = {values[c]:.4g} is wrong — "
                    f"{mistake or _generic(values[c])}")
        else:
            worst = max(abs(values[c] - right[c]) for c in cases)
            shown = ", ".join(f"({c[2]}, {c[3]})" for c in cases)
            fb.ok(f"{where}: φ(i, j) matches subspace_similarity at {shown} "
                  f"(largest difference {worst:.0e})")
    if fb.passed:
        fb.note("your phi agrees with lora_np.experiments.subspace_similarity, which computes every (i, j) "
                "at once with cumulative sums")
    return fb


def _check_phi_exercise(fn) -> tuple[bool, str]:
    if not callable(fn):
        return False, "pass your function itself: phi, not phi(...)"
    fb = check_phi(fn)
    return fb.passed, "\n" + str(fb)


# ------------------------------------------------------------------ before the slider: a prediction
SLIDER_OPTIONS = {
    "a": ("(a) it grows in proportion to d: reaching 90% of the way from chance to full fine-tuning takes "
          "about 90% of the D = 6,154 parameters;"),
    "b": ("(b) it climbs steeply over a few doublings of d, then levels off near full fine-tuning: 90% of "
          "the way is reached with a small share of D (a few percent or less);"),
    "c": ("(c) it stays at the untouched model's accuracy until d is a large share of D: random directions "
          "cannot help;"),
    "d": "(d) it is already at full fine-tuning's accuracy at the smallest d, 16.",
}
SLIDER_ANSWER = "b"

# ------------------------------------------------------------------ φ of random subspaces
CH_I, CH_J, CH_N = 8, 48, 256
CH_SQ = CH_I * CH_J / CH_N                 # E ‖U1ᵢᵀ U2ⱼ‖²_F

# ------------------------------------------------------------------ d_int90 between two swept d
D0, A0, D1, A1_ = 64, 0.86, 128, 0.96
T90 = (0.9 - A0) / (A1_ - A0)
D90 = math.exp(math.log(D0) + T90 * (math.log(D1) - math.log(D0)))

# ------------------------------------------------------------------ φ under an invertible M
INVARIANCE_OPTIONS = {
    "a": "(a) it is multiplied by 9 when M = 3·I;",
    "b": "(b) it does not change, for every invertible M;",
    "c": ("(c) it does not change when M is a rotation or a multiple of I, but it does for other "
          "invertible M;"),
    "d": "(d) it drops to about chance, since M scrambles A₂'s directions.",
}
INVARIANCE_ANSWER = "b"


# ------------------------------------------------------------------ code: Li et al.'s d_int90

def li_d_int90(dims, accuracy, full_accuracy, level=0.9):
    """Li et al.'s intrinsic dimension: the smallest d whose accuracy reaches level · full_accuracy.

    dims: the swept d, increasing; accuracy: the accuracy at each; full_accuracy: the baseline's (here
    full fine-tuning's). Between the last d below the threshold and the first at or above it, interpolate
    on a log-d axis; the first crossing counts. Returns None when no d reaches the threshold.
    """
    threshold = level * full_accuracy                  # 90% of the baseline's accuracy, not from chance
    for k, (d, acc) in enumerate(zip(dims, accuracy, strict=True)):
        if acc >= threshold:
            if k == 0:
                return float(d)                        # the first d already reaches it: d_int90 is at most d
            d0, a0 = dims[k - 1], accuracy[k - 1]
            t = (threshold - a0) / (acc - a0)          # how far between the two points the threshold lies
            return float(math.exp(math.log(d0) + t * (math.log(d) - math.log(d0))))
    return None


LI_CASES = (                         # (dims, accuracy, full_accuracy): chance is 0.1 in every one
    ((32, 64, 128), (0.50, 0.84, 0.90), 0.927),           # between Li's threshold and the one from chance
    ((16, 32, 64, 128, 256), (0.30, 0.50, 0.75, 0.88, 0.90), 0.93),
    ((8, 16), (0.95, 0.96), 0.95),                        # the first d already reaches it
    ((16, 32, 64), (0.20, 0.40, 0.60), 0.90),             # never reached
    ((16, 32, 64, 128), (0.20, 0.86, 0.70, 0.90), 0.90),  # not monotone: the first crossing counts
)
LI_CHANCE = 0.1


def _library_d90(dims, accuracy, full, chance=0.0, level=0.9):
    """The library's d_int90 on a sweep with this chance level (0: Li et al.'s definition)."""
    sweep = IntrinsicSweep(list(dims), list(accuracy), D=10_000, full_accuracy=full, chance=chance,
                           before=0.0)
    return d_int90(sweep, level)


def _li_variant(dims, accuracy, full, kind: str):
    """What a common slip returns on one case."""
    threshold = 0.9 if kind == "raw" else 0.9 * full
    hits = [k for k, a in enumerate(accuracy) if a >= threshold]
    if kind == "last":
        below = [k for k in range(1, len(accuracy)) if accuracy[k] >= threshold > accuracy[k - 1]]
        hits = below[-1:] or hits[:1]
    if not hits:
        return None
    k = hits[0]
    if k == 0:
        return float(dims[0])
    d0, a0, d, a = dims[k - 1], accuracy[k - 1], dims[k], accuracy[k]
    t = (threshold - a0) / (a - a0)
    if kind == "first_d":
        return float(d)
    if kind == "linear":
        return float(d0 + t * (d - d0))
    return float(math.exp(math.log(d0) + t * (math.log(d) - math.log(d0))))


LI_MISTAKES = {
    "chance": ("it measures from chance, as the library's d_int90 does: Li et al.'s threshold is 0.9 times "
               "the baseline's accuracy, with no chance level in it"),
    "raw": "its threshold is an accuracy of 0.9 itself; Li et al.'s is 0.9 times the baseline's accuracy",
    "first_d": ("it returns the first d that reaches the threshold, without interpolating between it and the "
                "d before"),
    "linear": "it interpolates linearly in d; the sweep is spaced in powers of two, so interpolate in log d",
    "last": "it takes the last crossing of the threshold; the first one counts",
}


def _li_value(value):
    if value is None:
        return None, None
    if isinstance(value, bool) or not (validate.is_real(value) or getattr(value, "size", 0) == 1):
        return None, f"it returned a {type(value).__name__}: return a number, or None when no d reaches it"
    try:
        return float(value), None
    except (TypeError, ValueError):
        return None, f"it returned a {type(value).__name__}: return a number, or None when no d reaches it"


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def _check_li(fn) -> tuple[bool, str]:
    if not callable(fn):
        return False, "pass your function itself: li_d_int90, not li_d_int90(...)"
    got = []
    for dims, acc, full in LI_CASES:
        try:
            value = fn(list(dims), list(acc), full)
        except NotImplementedError:
            return False, "li_d_int90: not written yet (it raises NotImplementedError): fill in the TODOs"
        except Exception as err:                     # any mistake in the learner's code is feedback
            return False, f"li_d_int90(dims={list(dims)}, ...) raised {type(err).__name__}: {err}"
        value, why = _li_value(value)
        if why:
            return False, why
        got.append(value)
    right = [_library_d90(*case) for case in LI_CASES]
    if all(_same(g, r) for g, r in zip(got, right, strict=True)):
        return True, ("right: Li et al.'s d_int90 is the library's with the chance level set to 0; on the "
                      "notebook's sweep it is at most the chance-normalised one")
    slips = {"chance": [_library_d90(*case, chance=LI_CHANCE) for case in LI_CASES],
             **{kind: [_li_variant(*case, kind) for case in LI_CASES] for kind in ("raw", "first_d", "linear",
                                                                                      "last")}}
    k = next(n for n, (g, r) in enumerate(zip(got, right, strict=True)) if not _same(g, r))
    dims, acc, full = LI_CASES[k]
    shown = "None" if got[k] is None else f"{got[k]:.4g}"
    where = f"on dims={list(dims)}, accuracy={list(acc)}, full_accuracy={full} it returned {shown}"
    for kind, values in slips.items():
        if all(_same(g, v) for g, v in zip(got, values, strict=True)):
            return False, f"{where}: {LI_MISTAKES[kind]}"
    if right[k] is None:
        return False, f"{where}: no d reaches 0.9 × full_accuracy there, so return None"
    if got[k] is None:
        return False, f"{where}: some d reaches 0.9 × full_accuracy there"
    return False, (f"{where}: find the first d at or above 0.9 × full_accuracy, then interpolate between "
                   f"it and the d before on a log-d axis (or return that d when it is the sweep's first)")


# ------------------------------------------------------------------ the exercises

EXERCISES_06: dict[str, Exercise] = {
    "phi_by_hand": Exercise(
        prompt=("Write phi(A1, A2, i, j) = ‖U1[:, :i]ᵀ U2[:, :j]‖²_F / min(i, j), with U the right-singular "
                "vectors of each adapter's A (r, n) as columns, strongest first. Pass the function itself."),
        answer=phi,
        check=_check_phi_exercise,
        solution="# Reference solution (lora_np/course/notebook06.py)\n\n" + inspect.getsource(phi),
    ),
    "predict_d_slider": Exercise(
        prompt=("Before the sweep and the slider: as d grows from 16 to 512 on the (64, 64) MLP (D = 6,154 "
                "parameters), how does the accuracy on the shifted fruit behave?\n"
                + "\n".join(SLIDER_OPTIONS.values())),
        answer=SLIDER_ANSWER,
        check=choice_of(SLIDER_ANSWER, options={
            "a": ("no: that would make a random subspace no better than training a random share of the "
                  "parameters; think of how many numbers the fix of a rank-2 shift really needs"),
            "b": "",
            "c": ("no: each random direction moves every parameter a little, so even a few of them can carry "
                  "a low-dimensional fix"),
            "d": ("no: 16 numbers are very few to steer 6,154 parameters along random directions; the curve "
                  "starts near the untouched model"),
        }, right=("right: the fix is low-dimensional, so a small d reaches it, and more directions add "
                  "little once it is reached")),
        solution=("(b). A fix that itself has few degrees of freedom (here a rank-2 shift) can be reached "
                  "through any d random directions once d is somewhat above its own dimension: the sweep "
                  "crosses 90% of the way from chance to full fine-tuning at d ≈ 84, 1.4% of D, and is flat "
                  "from d = 128 on. Below that the optimizer cannot reach a good point inside the random "
                  "subspace, and the accuracy stays near the untouched model's."),
    ),
    "phi_chance_overlap": Exercise(
        prompt=(f"Two independent random subspaces of Rⁿ, n = {CH_N}: U1 with i = {CH_I} orthonormal "
                f"columns, U2 with j = {CH_J}. What is the expected value of ‖U1ᵀ U2‖²_F, before dividing by "
                f"min(i, j)? (a number, within 1 %)"),
        answer=CH_SQ,
        check=numeric(CH_SQ, rel_tol=0.01, mistakes=[
            (CH_SQ / min(CH_I, CH_J), "that is φ itself, after dividing by min(i, j); the question asks for "
                                      "the squared norm before it"),
            (min(CH_I, CH_J) / CH_N, "that is min(i, j)/n; each of the i columns of U1 keeps j/n of its "
                                     "squared length in span U2"),
            (float(min(CH_I, CH_J)), "that is the largest possible value, reached when one subspace contains "
                                     "the other; random subspaces overlap far less"),
            (CH_I * CH_J / CH_N ** 2, "that divides by n twice; one unit vector keeps j/n of its squared "
                                      "length in a random j-dimensional subspace"),
        ], too_large="add up, over the i columns of U1, the expected squared length each keeps in span U2",
           too_small="add up, over the i columns of U1, the expected squared length each keeps in span U2",
           right="right: i·j/n, so E φ = i·j/n / min(i, j) = max(i, j)/n, the chance level of the heatmaps"),
        solution=(f"‖U1ᵀU2‖²_F = Σ over the columns u of U1 of ‖U2ᵀu‖², the squared length of u's "
                  f"projection on span U2. A unit vector of Rⁿ spreads its squared length evenly over n "
                  f"orthogonal directions on average, so a random j-dimensional subspace keeps j/n of it. "
                  f"Over i columns: "
                  f"i·j/n = {CH_I}·{CH_J}/{CH_N} = {CH_SQ:g}. Divided by min(i, j) = {min(CH_I, CH_J)}: "
                  f"E φ = max(i, j)/n = {max(CH_I, CH_J)}/{CH_N} = {CH_SQ / min(CH_I, CH_J):g}."),
    ),
    "d_int90_interpolation": Exercise(
        prompt=(f"The sweep's normalised accuracy is a = {A0} at d = {D0} and a = {A1_} at d = {D1}. The "
                f"library interpolates d_int90 on a log-d axis between them. What is d_int90? (within 0.5)"),
        answer=D90,
        check=numeric(D90, abs_tol=0.5, mistakes=[
            (D0 + T90 * (D1 - D0), "that interpolates linearly in d; the sweep doubles d each step, so "
                                   "interpolate in log d"),
            (float(D1), "that is the first swept d that reaches 0.9; interpolate between it and the d "
                        "before"),
            (D0 * (D1 / D0) ** (1 - T90), "that measures t from the upper end: t = (0.9 − a₀)/(a₁ − a₀) is "
                                          "the share of the way from d₀"),
            (D0 + (1 - T90) * (D1 - D0), "that is linear in d and measures t from the upper end"),
            ((D0 + D1) / 2, "that is the midpoint; 0.9 is not halfway between the two a, and the axis is "
                            "log d"),
        ], too_large="t = (0.9 − a₀)/(a₁ − a₀), then log d = log d₀ + t·(log d₁ − log d₀)",
           too_small="t = (0.9 − a₀)/(a₁ − a₀), then log d = log d₀ + t·(log d₁ − log d₀)",
           right="right: d₀·(d₁/d₀)^t, the point where the straight line on the log-d plot crosses 0.9"),
        solution=(f"t = (0.9 − a₀)/(a₁ − a₀) = (0.9 − {A0})/({A1_} − {A0}) = {T90:.2f};\n"
                  f"log d = log {D0} + t·(log {D1} − log {D0}), so d = {D0}·({D1}/{D0})^{T90:.2f} "
                  f"= {D0}·2^{T90:.2f} ≈ {D90:.1f}.\n"
                  f"(The notebook's d_int90 comes from the unrounded accuracies.)"),
    ),
    "phi_invariance": Exercise(
        prompt=("Replace the rank-64 adapter's A₂ (64 × 256) by M·A₂, with M an invertible 64 × 64 matrix. "
                "What happens to φ(8, 64), the last column of the left heatmap?\n"
                + "\n".join(INVARIANCE_OPTIONS.values())),
        answer=INVARIANCE_ANSWER,
        check=choice_of(INVARIANCE_ANSWER, options={
            "a": ("no: φ is built from singular vectors, which have unit length whatever A's scale; and it "
                  "is divided by min(i, j) to stay in [0, 1]"),
            "b": "",
            "c": ("no: a general M does change A₂'s singular vectors one by one, but at j = 64 φ uses all of "
                  "them: what span do the rows of M·A₂ have?"),
            "d": ("no: M mixes A₂'s rows, but a mixture of rows stays in the space the rows span; ask what "
                  "φ(i, 64) depends on"),
        }, right=("right: with j = r₂ = 64, U₂ spans A₂'s whole row space, and the rows of M·A₂ span the "
                  "same space")),
        solution=("(b). At j = r₂ = 64 the 64 columns of U₂ are an orthonormal basis of the row space of "
                  "A₂. Every row of M·A₂ is a combination of A₂'s rows, and M is invertible, so M·A₂ has the "
                  "same row space: the same subspace, so U₂U₂ᵀ (the projection onto it) and φ(i, 64) are "
                  "unchanged. "
                  "For j < 64 only a multiple of I or a rotation (orthogonal M) keeps φ(i, j): a general M "
                  "reorders and mixes the individual singular directions. Try it with subspace_similarity."),
    ),
    "li_d_int90": Exercise(
        prompt=("Write li_d_int90(dims, accuracy, full_accuracy, level=0.9): Li et al.'s intrinsic "
                "dimension, the smallest d whose accuracy reaches level·full_accuracy, interpolated on a "
                "log-d axis between the last d below and the first at or above (the first d if it already "
                "reaches it, None if none does). Pass the function itself."),
        answer=li_d_int90,
        check=_check_li,
        solution=("# Reference solution (lora_np/course/notebook06.py)\n\n" + inspect.getsource(li_d_int90)
                  + "\n# On the notebook's sweep:\n"
                    "# li_d_int90(sweep.dims, sweep.accuracy, sweep.full_accuracy)\n"
                    "# Its threshold 0.9·full is 0.1·chance below chance + 0.9·(full − chance)."),
    ),
}

register(EXERCISES_06)
