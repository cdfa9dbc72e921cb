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

from ..backend import get_array_module
from .exercises import Exercise, choice_of, numeric, register
from .notebook06_checks import check_li_answer, check_phi, check_phi_answer, li_d_int90

__all__ = ["phi", "check_phi", "li_d_int90", "EXERCISES_06"]
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


# ------------------------------------------------------------------ the exercises

EXERCISES_06: dict[str, Exercise] = {
    "phi_by_hand": Exercise(
        prompt=("Write phi(A1, A2, i, j) = ‖U1[:, :i]ᵀ U2[:, :j]‖²_F / min(i, j), with U the right-singular "
                "vectors of each adapter's A (r, n) as columns, strongest first. Pass the function itself."),
        answer=phi,
        check=check_phi_answer,
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
        check=check_li_answer,
        solution=("# Reference solution (lora_np/course/notebook06.py)\n\n" + inspect.getsource(li_d_int90)
                  + "\n# On the notebook's sweep:\n"
                    "# li_d_int90(sweep.dims, sweep.accuracy, sweep.full_accuracy)\n"
                    "# Its threshold 0.9·full is 0.1·chance below chance + 0.9·(full − chance)."),
    ),
}

register(EXERCISES_06)
