"""The fruit task: synthetic, seeded, interpretable features of ten kinds of fruit.

Every fruit is described by 20 measurements (hue, gloss, wrinkliness, moisture, sugar, ...), each
in standard units (0 is the average fruit, ±1 one typical spread). A class is a prototype row of
:data:`PROTOTYPES` plus Gaussian noise.

Two distributions:

* **source** — the fruit the model is pretrained on;
* **shifted** — a new harvest sorted under new lighting: every measurement vector is transformed
  as ``x' = (I + U Vᵀ) x`` with ``U, V: (20, k)``. The first direction is planted so that glossy,
  moist fruit read darker and more wrinkled: grapes now look like raisins, and the pretrained
  model calls them raisins. The other ``k − 1`` directions are random. ``k = shift_rank`` is the
  shift's intrinsic rank: an exact fix exists that changes the first layer by a rank-k matrix,
  ``W0 (I + U Vᵀ)⁻¹ = W0 − W0 U (I + VᵀU)⁻¹ Vᵀ``, so a rank sweep shows a knee at r = k.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as _host_np  # data are generated on the host, then moved to the device

from .. import backend, validate

FRUITS = ("apple", "banana", "blueberry", "cherry", "grape", "lemon", "orange", "plum", "raisin",
          "strawberry")
FEATURES = ("hue", "saturation", "brightness", "gloss", "size", "elongation", "weight", "wrinkliness",
            "moisture", "sugar", "acidity", "firmness", "skin_thickness", "seeds", "stem", "aroma",
            "fuzz", "spots", "clustered", "density")
GRAPE, RAISIN = FRUITS.index("grape"), FRUITS.index("raisin")

# One row per fruit, one column per feature (abbreviated), in standard units.
_PROTOTYPE_TABLE = """
            hue  sat  bri glos size elon  wgt wrin mois  sug acid firm skin seed stem arom fuzz spot clus dens
apple       0.0  1.0  0.5  1.0  1.5  0.0  1.5 -1.0  1.0  0.5  0.5  1.5  0.0  1.0  1.0  0.5 -1.0  0.0 -1.0  0.5
banana      1.5  1.0  1.5 -0.5  1.5  2.5  1.0 -0.5  0.0  1.0 -1.0  0.0  1.0 -1.0  0.5  1.0 -1.0  1.0  1.0 -0.5
blueberry  -2.0  0.5 -1.0  0.0 -1.5  0.0 -1.5  0.0  0.5  0.0  0.5  0.0 -1.0 -1.0 -1.0  0.0  0.0 -1.0  1.0  0.5
cherry     -0.5  1.5  0.0  2.0 -1.0  0.0 -1.0 -1.5  1.0  1.0  0.5 -0.5 -1.0  0.5  2.0  0.5 -1.0 -1.0  1.0  0.5
grape      -1.5  0.5  0.5  1.5 -1.0  0.5 -1.0 -1.5  1.5  0.5  0.0  0.0 -1.0 -1.0  0.0  0.0 -1.0 -1.0  2.0  0.5
lemon       1.0  1.5  1.5  0.5  0.5  1.0  0.0 -0.5  1.0 -1.5  2.5  0.5  1.0  0.0 -0.5  1.5 -1.0  0.5 -1.0  0.0
orange      0.5  2.0  1.0  0.5  1.5  0.0  1.5  0.0  1.5  0.5  1.0  0.0  2.0  0.5 -0.5  1.5 -1.0  0.0 -1.0  0.0
plum       -1.0  0.5 -0.5  0.5  0.0  0.5  0.0 -1.0  1.0  0.5  0.5 -0.5 -0.5  1.0  0.5  0.5  0.5 -0.5 -1.0  1.0
raisin     -1.0 -0.5 -1.5 -1.5 -1.5  0.5 -1.5  2.0 -2.0  2.0 -0.5 -1.0 -0.5 -1.0 -1.0  0.5 -1.0 -1.0  1.5  1.5
strawberry -0.5  2.0  0.5  0.5 -0.5  0.5 -0.5 -0.5  1.0  1.0  0.5 -1.0 -1.5  2.5  1.0  2.0  0.5  2.5 -1.0 -0.5
"""
_ROWS = {row[0]: [float(v) for v in row[1:]]                                 # fruit -> its 20 values
         for row in map(str.split, _PROTOTYPE_TABLE.strip("\n").splitlines()[1:])}
PROTOTYPES = _host_np.array([_ROWS[fruit] for fruit in FRUITS])               # (10, 20)
NOISE = 0.9           # the spread of individual fruit around their prototype, in standard units


def shift_matrix(shift_rank: int = 2, strength: float = 1.0, seed: int = 1234):
    """The new harvest's transform ``M = I + U Vᵀ`` (20, 20) and its factors U, V (host arrays).

    Direction 1 (planted): ``v₁`` reads gloss and moisture; ``u₁`` moves a typical grape onto a
    typical raisin. Directions 2..k: random unit vectors, orthogonal to ``v₁`` and to each other,
    scaled by ``strength``.
    """
    shift_rank = validate.integer(shift_rank, "shift_rank", low=0, high=len(FEATURES))
    strength = validate.number(strength, "strength", low=0.0)
    d = len(FEATURES)
    U, V = _host_np.zeros((d, shift_rank)), _host_np.zeros((d, shift_rank))   # (d, k)
    if shift_rank:
        v1 = _host_np.zeros(d)
        v1[[FEATURES.index("gloss"), FEATURES.index("moisture")]] = 1.0 / _host_np.sqrt(2.0)
        grape, raisin = PROTOTYPES[GRAPE], PROTOTYPES[RAISIN]
        U[:, 0], V[:, 0] = (raisin - grape) / (v1 @ grape), v1
        rng = _host_np.random.default_rng(seed)
        Q, _ = _host_np.linalg.qr(_host_np.column_stack([v1, rng.standard_normal((d, 2 * shift_rank))]))
        V[:, 1:] = Q[:, 1:shift_rank]                                            # orthonormal, ⟂ v1
        G = rng.standard_normal((d, shift_rank - 1))
        U[:, 1:] = 1.6 * strength * G / _host_np.linalg.norm(G, axis=0)           # (d, k-1)
    return _host_np.eye(d) + U @ V.T, U, V


def sample_fruit(n: int, split: str = "source", shift_rank: int = 2, seed: int = 0, shift_seed: int = 1234,
                 shift_strength: float = 1.0):
    """``n`` fruit (balanced over classes, shuffled) as host arrays ``X: (n, 20)``, ``y: (n,)``.

    ``shift_strength`` scales the random directions 2..k of the shift (see :func:`shift_matrix`).
    """
    n = validate.positive_int(n, "n")
    split = validate.choice(split, "split", ("source", "shifted"))
    rng = _host_np.random.default_rng(seed)
    y = rng.permutation(_host_np.arange(n) % len(FRUITS))                       # (n,)
    X = PROTOTYPES[y] + NOISE * rng.standard_normal((n, len(FEATURES)))          # (n, 20)
    if split == "shifted":
        M, _, _ = shift_matrix(shift_rank, strength=shift_strength, seed=shift_seed)
        X = X @ M.T                                                              # (n, 20)  x' = M x
    return X, y


@dataclass
class FruitTask:
    """The four splits of the fruit story, on the current backend.

    source_train / source_test: for pretraining.  shift_train: the few labelled fruit of the
    new harvest used for fine-tuning.  shift_test: where we measure whether the fix worked.
    """

    source_train: tuple
    source_test: tuple
    shift_train: tuple
    shift_test: tuple
    shift_rank: int
    shift_strength: float = 1.0
    classes: tuple = FRUITS
    features: tuple = FEATURES

    @property
    def d_in(self) -> int:
        return len(self.features)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def to(self, backend_name: str | None = None) -> FruitTask:
        """Move every split's ``(X, y)`` to ``backend_name`` (default: the current backend); returns self."""
        return backend.to_device(self, backend_name)


def make_fruit_task(shift_rank: int = 2, n_pretrain: int = 4000, n_finetune: int = 500,
                    n_test: int = 2000, seed: int = 0, dtype=None, shift_strength: float = 1.0) -> FruitTask:
    """Generate every split (seeded) and move it to the current backend's device.

    ``shift_strength`` > 1 makes the random directions of the shift matter more: every direction
    a rank-r update cannot undo then costs accuracy, which sharpens the knee of a rank sweep at r = k.
    """
    shift_strength = validate.number(shift_strength, "shift_strength", low=0.0)
    shift_rank = validate.integer(shift_rank, "shift_rank", low=0, high=len(FEATURES))
    for name, n in (("n_pretrain", n_pretrain), ("n_finetune", n_finetune), ("n_test", n_test)):
        validate.positive_int(n, name)

    def split(n, kind, s):
        X, y = sample_fruit(n, kind, shift_rank, seed=seed * 10 + s, shift_strength=shift_strength)
        return backend.asarray(X, dtype=dtype), backend.asarray(y)

    return FruitTask(split(n_pretrain, "source", 1), split(n_test, "source", 2),
                     split(n_finetune, "shifted", 3), split(n_test, "shifted", 4), shift_rank, shift_strength)
