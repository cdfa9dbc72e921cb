"""Notebook 00's exercises and checkers (registered with :func:`lora_np.course.exercises.register`).

* ``pretraining_curve`` — predict the shape of the held-out accuracy curve before it is drawn;
* ``mlp_params_20_64_10`` — count the parameters of a small MLP (computation);
* ``full_ft_gib_1b3`` — the memory of full fine-tuning with Adam, in GiB (computation);
* ``inject_before_training`` — what LoRA changes before any training step (prediction);
* ``accuracy_function`` — write ``accuracy(model, X, y)`` (code), checked on models whose accuracy
  is known by construction.

Every right answer is computed here from the quantities in its question.
"""
from __future__ import annotations

import inspect
import math
import random

from .. import backend
from ..models import MLP
from ..train import predict
from .exercises import GIB, Exercise, call_for_number, choice_of, numeric, register


def choice_prompt(question: str, options: dict) -> str:
    """A multiple-choice prompt: the question, then one ``(letter) text`` line per option."""
    return question + "\n" + "\n".join(f"({k}) {text}" for k, text in options.items())


# ------------------------------------------------------------------ predict, then observe: the curve
CURVE_OPTIONS = {
    "a": "a steady climb from about 10% to about 95%, a few points per epoch",
    "b": "near its final value after the first epoch, then ups and downs of about a point",
    "c": "a climb until the last epoch, ending at 100%",
    "d": "first a dip below chance, then a climb",
}

# ------------------------------------------------------------------ an MLP 20 -> 64 -> 10
D_IN, HIDDEN, N_CLASSES = 20, 64, 10
MLP_PARAMS = (HIDDEN * D_IN + HIDDEN) + (N_CLASSES * HIDDEN + N_CLASSES)

# ------------------------------------------------------------------ full fine-tuning of 1.3B parameters
N_1B3 = 1.3e9
BYTES_FP32_ADAM = 4 + 4 + 8              # weight + gradient + Adam's two moments, fp32
FULL_FT_GIB = N_1B3 * BYTES_FP32_ADAM / GIB

# ------------------------------------------------------------------ LoRA before training
INJECT_OPTIONS = {
    "a": "the same as the pretrained model's",
    "b": "back at chance, because A is random",
    "c": "a little better, because the model now has more parameters",
    "d": "slightly different: a small random change, because A is random",
}


# ------------------------------------------------------------------ accuracy(model, X, y)
def accuracy(model, X, y):
    """The fraction of rows of X (N, d_in) whose predicted class equals y (N,): a float in [0, 1]."""
    predicted = predict(model, X)                                   # (N,) host class indices
    return float((predicted == backend.to_numpy(y)).mean())


ACCURACY_CASES = ((0.7, 200, 1), (0.45, 120, 2))   # (accuracy by construction, N, seed)


def _accuracy_case(share: float, n: int, seed: int):
    """A small MLP, N random fruit and labels that agree with its predictions on exactly ``share`` of them."""
    model = MLP(d_in=20, hidden=(32,), n_classes=10, seed=seed)
    rng = random.Random(seed)
    X = backend.asarray([[rng.gauss(0, 1) for _ in range(20)] for _ in range(n)])     # (N, 20)
    labels = predict(model, X).copy()                              # (N,) host: what the model says
    wrong = rng.sample(range(n), round((1 - share) * n))
    labels[wrong] = (labels[wrong] + 1) % 10                       # a different class: a wrong answer
    return model, X, backend.asarray(labels)


def _check_accuracy(fn) -> tuple[bool, str]:
    if not callable(fn):
        return False, f"expected your function accuracy (without calling it), got a {type(fn).__name__}"
    for share, n, seed in ACCURACY_CASES:
        model, X, y = _accuracy_case(share, n, seed)
        value, why = call_for_number(fn, (model, X, y))
        if why:
            return False, why
        if not math.isfinite(value):
            return False, f"your function returned {value}: not a number"
        if math.isclose(value, share, abs_tol=1e-6):
            continue
        if math.isclose(value, 100 * share, abs_tol=1e-4):
            return False, "that is a percentage: return a fraction between 0 and 1"
        if math.isclose(value, share * n, abs_tol=1e-3):
            return False, "that is the number of right answers: divide by the number of fruit"
        if math.isclose(value, 1 - share, abs_tol=1e-6):
            return False, "that is the share of wrong answers: count where the prediction equals y"
        return False, (f"on {n} test fruit where the right share is known, your function returned "
                       f"{value:.4g}: compare predict(model, X) with y, element by element, and average")
    return True, "right: the share of fruit whose predicted class is the true one (tested on two models)"


EXERCISES_00 = {
    "pretraining_curve": Exercise(
        prompt=choice_prompt("Untrained, the model is right on about 10% of held-out fruit (chance). "
                             "Pretraining runs 15 epochs, each one pass over the 4,000 training fruit in "
                             "batches of 64. What will the held-out accuracy do, epoch by epoch?",
                             CURVE_OPTIONS),
        answer="b",
        check=choice_of("b", options={
            "a": "a few points per epoch would leave the model far from done after one epoch, but one "
                 "epoch is already 63 optimizer steps, and this task is not hard: how much of the job "
                 "can 63 steps do?",
            "b": "",
            "c": "100% on held-out fruit would mean no fruit is ambiguous, but individual fruit scatter "
                 "around their kind's prototype, and some land closer to another kind's",
            "d": "each step moves the parameters to make the training fruit's right answers more likely; "
                 "nothing pushes the model below chance"},
            right="right: the first epoch (63 steps) does nearly all the work; after it the held-out "
                  "accuracy wobbles by about a point, and the last epoch is not the best one"),
        solution=("(b). One epoch is 4,000 / 64 ≈ 63 Adam steps, enough for this easy task: the held-out "
                  "accuracy is about 95% after the first epoch. The later epochs lower the training loss a "
                  "little more, but the held-out accuracy only moves up and down by about a point (between "
                  "94% and 96% for each of three seeds): noise of the shuffling and of a 2,000-fruit test "
                  "set, not progress. Which epoch looks best is luck."),
    ),
    "mlp_params_20_64_10": Exercise(
        prompt=(f"How many parameters does an MLP {D_IN} → {HIDDEN} → {N_CLASSES} have (one hidden layer "
                f"of {HIDDEN} units; each of the two layers has a weight matrix and a bias)?"),
        answer=MLP_PARAMS,
        check=numeric(MLP_PARAMS, integer=True, mistakes=[
            (HIDDEN * D_IN + N_CLASSES * HIDDEN, "that leaves out the biases: each layer has one per output"),
            (HIDDEN * D_IN + HIDDEN, "that is the first layer alone; add the second, 64 → 10"),
            (N_CLASSES * HIDDEN + N_CLASSES, "that is the second layer alone; add the first, 20 → 64"),
            (D_IN * HIDDEN * N_CLASSES, "the layers' counts add, they do not multiply: a layer's weight "
                                        "is d_out × d_in"),
            (D_IN + HIDDEN + N_CLASSES, "that counts the units, not the parameters: a layer's weight is "
                                        "d_out × d_in"),
            (HIDDEN * D_IN + D_IN + N_CLASSES * HIDDEN + HIDDEN,
             "a bias has one entry per output (d_out), not per input"),
        ], too_large="each layer has d_out × d_in weights and d_out biases; add the two layers",
           too_small="each layer has d_out × d_in weights and d_out biases; add the two layers",
           right="right: weights and biases of both layers; most of them sit in the weight matrices"),
        solution=(f"layer 1: W (64, 20) = {HIDDEN * D_IN}, b (64,) = {HIDDEN}\n"
                  f"layer 2: W (10, 64) = {N_CLASSES * HIDDEN}, b (10,) = {N_CLASSES}\n"
                  f"total: {HIDDEN * D_IN} + {HIDDEN} + {N_CLASSES * HIDDEN} + {N_CLASSES} = {MLP_PARAMS}."),
    ),
    "full_ft_gib_1b3": Exercise(
        prompt=("Full fine-tuning with Adam in fp32 costs 16 bytes per trained parameter: the weight (4), "
                "its gradient (4) and Adam's two moments (8). How much memory does full fine-tuning of a "
                "1.3-billion-parameter model need, activations not counted? Answer in GiB (2³⁰ bytes), "
                "within 1 %."),
        answer=FULL_FT_GIB,
        check=numeric(FULL_FT_GIB, rel_tol=0.01, mistakes=[
            (N_1B3 * BYTES_FP32_ADAM / 1e9, "that is in GB (10⁹ bytes); the question asks for GiB, "
                                            "2³⁰ bytes each"),
            (N_1B3 * 4 / GIB, "that is the weights alone; their gradients and Adam's moments are stored too"),
            (N_1B3 * 8 / GIB, "that is weights and gradients; Adam's two moments take 8 bytes more"),
            (N_1B3 * 12 / GIB, "one of the three parts is missing: 4 + 4 + 8 bytes per parameter"),
            (N_1B3 * 2 / GIB, "that is the weights in fp16, for answering questions, not for training"),
            (N_1B3 * BYTES_FP32_ADAM, "that is in bytes; divide by 2³⁰ bytes per GiB"),
            (N_1B3 * BYTES_FP32_ADAM / 2 ** 20, "that is in MiB; a GiB is 2¹⁰ MiB"),
        ], too_large="parameters × bytes per parameter, then divide by 2³⁰ bytes per GiB",
           too_small="parameters × bytes per parameter, then divide by 2³⁰ bytes per GiB",
           right="right: close to a 24 GiB card's capacity before a single activation is stored"),
        solution=(f"bytes = 1.3·10⁹ × 16 = {N_1B3 * BYTES_FP32_ADAM:.3e};\n"
                  f"GiB = bytes / 2³⁰ = {N_1B3 * BYTES_FP32_ADAM:.3e} / {GIB} ≈ {FULL_FT_GIB:.2f} GiB "
                  f"({N_1B3 * BYTES_FP32_ADAM / 1e9:.1f} GB in powers of ten)."),
    ),
    "inject_before_training": Exercise(
        prompt=choice_prompt("You inject LoRA (r = 4 on fc1 and fc2) into the pretrained model, as in "
                             "section 3, and do not train it. Its accuracy on the new harvest will be:",
                             INJECT_OPTIONS),
        answer="a",
        check=choice_of("a", options={
            "a": "",
            "b": "A is random, but the update is the product ΔW = s·B·A: look at how B is initialised",
            "c": "new parameters help only once training has set them: what does ΔW = s·B·A equal "
                 "before the first step?",
            "d": "A is random, but ΔW = s·B·A also depends on B: look at how B is initialised"},
            right="right: B starts at zero, so ΔW = s·B·A = 0 and the model computes exactly what the "
                  "pretrained one computes; training then moves B away from zero"),
        solution=("(a). LoRA initialises A at random and B at zero, so ΔW = s·B·A = 0: the injected model "
                  "computes W0 x + b0, exactly the pretrained model's output, and so has its accuracy. "
                  "Check it: grape_report(model, task.shift_test)['accuracy'] equals before['accuracy']. "
                  "Training starts from the pretrained model, not from a perturbed one."),
    ),
    "accuracy_function": Exercise(
        prompt=("Write accuracy(model, X, y): the fraction (a number between 0 and 1) of the rows of X "
                "whose predicted class, predict(model, X), equals the label in y. Pass the function "
                "itself to the checker."),
        answer=accuracy,
        check=_check_accuracy,
        solution=("Compare the predicted classes with the labels element by element and average the "
                  "matches (True counts 1, False 0):\n\n" + inspect.getsource(accuracy)),
    ),
}

register(EXERCISES_00)
