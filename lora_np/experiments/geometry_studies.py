"""The LoRA paper's §7 (Hu et al., 2021) on the fruit MLP: train, then measure the update's geometry.

The measurements (energy, subspace similarity φ, amplification) are defined in
:mod:`.update_geometry`; here the fruit MLP is fine-tuned (fully, or with LoRA on one layer) and
they are applied to what training produced.

>>> spectra = delta_spectra(base, task)                # {"fc1": DeltaSpectrum, "fc2": ..., "head": ...}
>>> study = similarity_study(base, task)               # φ grids: r=8 vs r=64, two seeds, random
>>> print(format_amplification_table(amplification_table(base, task)))

**What the defaults measure** (make_fruit_task(shift_rank=2, seed=0), pretrain(seed=0): a
20 → 256 → 256 → 10 MLP; fine-tuning as :func:`~lora_np.experiments.finetune.finetune`: Adam,
30 epochs on the 500 shifted fruit, LoRA with s = 2 on one layer; seeds 1 and 2 in brackets):

* energy in the top 2 directions, ΔW against a random matrix: fc1 57% [57, 51] vs 16%, fc2 64% [64,
  57] vs 3%, head 60% [63, 58] vs 26%. fc1's update is *not* confined to the shift's k = 2 input
  directions V, as the exact fix is: 15% [19, 18] of its energy lies in span(V), where chance is
  2/20 = 10% (:func:`~.update_geometry.shift_alignment`). Full fine-tuning also changes fc2 and the
  head, and finds another, nearly low-rank, solution;
* φ(1, 1), chance 1/256: r = 8 vs r = 64 0.74 [0.59, 0.82]; r = 64, seed 0 vs 1: 0.87 [0.77, 0.85];
  random 0.005. The same adapter pairs before training: 0.00 (different seeds share no initial A);
* amplification on fc2 at r = 1 / 4 / 16 / 64: ‖UᵀWV‖_F = 1.6 / 2.1 / 3.5 / 6.5; W's top r 4.5 / 8.3
  / 11.4 / 13.2; random 0.04 / 0.24 / 0.90 / 3.6; factor 7.9 / 4.9 / 4.0 / 2.8 [6.1 / 5.3 / 3.8 / 3.3;
  6.5 / 6.3 / 4.3 / 3.2]. ΔW's directions hold ~40× more of W than random ones at r = 1 (2× at r = 64),
  yet 2-4× less than W's own top ones: ΔW favours directions W has but does not emphasise, less
  sharply than in the paper (GPT-3, r = 4: 16× random and 68× below W's top).

Runtimes on one core: delta_spectra ≈ 0.5 s, similarity_study ≈ 1.4 s, amplification_table ≈ 2.6 s
(pretrain ≈ 0.9 s).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from .. import backend
from ..backend import get_array_module
from ..data import FruitTask
from ..lora import LoraConfig, inject_lora
from ..nn import Module
from ..tables import text_table
from ..train import progress_bar
from ..validate import integer
from .finetune import finetune
from .update_geometry import amplification, energy_spectrum, random_like, subspace_similarity

LAYERS = ("fc1", "fc2", "head")
TOP_K = (1, 2, 4, 8)

# --------------------------------------------------------------------------- argument checks


def _weight(model: Module, layer: str, where: str):
    """The weight matrix (on the device) of the Linear (or LoRALinear) called ``layer``."""
    modules = dict(model.named_modules())
    if layer not in modules or getattr(getattr(modules[layer], "weight", None), "data", None) is None:
        names = sorted(k for k, m in modules.items() if getattr(m, "weight", None) is not None)
        raise ValueError(f"{where}: layer must name a Linear layer of the model, one of {names}; "
                         f"got {layer!r}")
    return modules[layer].weight.data                                                # (d_out, d_in)


def _check_inputs(base, task, where: str) -> None:
    if not isinstance(base, Module):
        raise TypeError(f"{where}: base must be a lora_np Module (the pretrained MLP), "
                        f"got {type(base).__name__}")
    if not isinstance(task, FruitTask):
        raise TypeError(f"{where}: task must be a FruitTask (make_fruit_task()), got {type(task).__name__}")


# --------------------------------------------------------------------------- 1. energy in the top directions

@dataclass
class DeltaSpectrum:
    """One layer's ΔW from full fine-tuning, beside a random matrix of the same shape and norm."""

    layer: str
    shape: tuple
    norm: float                    # ‖ΔW‖_F
    singular_values: object        # (q,) host, ΔW's
    energy: object                 # (q,) host, cumulative E(k)
    random_singular_values: object
    random_energy: object
    top_k: dict = field(default_factory=dict)          # {k: E(k)} of ΔW
    random_top_k: dict = field(default_factory=dict)   # {k: E(k)} of the random matrix

    def top_energy(self, k: int) -> float:
        """Share of ‖ΔW‖²_F in its top ``k`` directions."""
        k = integer(k, "k", "DeltaSpectrum.top_energy", low=1, high=len(self.energy))
        return float(self.energy[k - 1])

    def random_top_energy(self, k: int) -> float:
        """The same share for the random matrix."""
        k = integer(k, "k", "DeltaSpectrum.random_top_energy", low=1, high=len(self.random_energy))
        return float(self.random_energy[k - 1])


def full_finetune_deltas(base: Module, task: FruitTask, epochs: int = 30, seed: int = 0,
                         layers=LAYERS) -> dict:
    """Fully fine-tune a copy of ``base`` on the shifted fruit; ``{layer: ΔW = W_after − W0}``
    (device arrays)."""
    _check_inputs(base, task, "full_finetune_deltas")
    before = {name: _weight(base, name, "full_finetune_deltas") for name in layers}
    tuned = finetune(base, task, r=None, epochs=epochs, seed=seed).model
    return {name: tuned.get_submodule(name).weight.data - W0                      # (d_out, d_in) each
            for name, W0 in before.items()}


def delta_spectra(base: Module, task: FruitTask, epochs: int = 30, seed: int = 0, layers=LAYERS, ks=TOP_K,
                  deltas: dict | None = None) -> dict:
    """``{layer: DeltaSpectrum}``: ΔW's spectrum and a random matrix's, with E(k) for each k in ``ks``.

    Pass ``deltas`` (from :func:`full_finetune_deltas`) to reuse one fine-tuning run. k larger than
    a layer's q = min(d_out, d_in) is left out of its ``top_k``.
    """
    deltas = full_finetune_deltas(base, task, epochs, seed, layers) if deltas is None else deltas
    out = {}
    for i, (name, dW) in enumerate(deltas.items()):
        S, energy = energy_spectrum(dW)
        S_rand, energy_rand = energy_spectrum(random_like(dW, seed=seed + 1000 + i))
        keep = [k for k in ks if k <= len(S)]
        norm = backend.to_float(get_array_module(dW).linalg.norm(dW))
        out[name] = DeltaSpectrum(name, tuple(dW.shape), norm, S, energy, S_rand, energy_rand,
                                  {k: float(energy[k - 1]) for k in keep},
                                  {k: float(energy_rand[k - 1]) for k in keep})
    return out


# --------------------------------------------------------------------------- 2. subspace similarity

def train_adapter(base: Module, task: FruitTask, r: int, layer: str = "fc2", seed: int = 0, epochs: int = 30):
    """Fine-tune LoRA of rank ``r`` on ``layer`` alone (a copy of ``base``); return the trained LoRALinear."""
    _check_inputs(base, task, "train_adapter")
    _weight(base, layer, "train_adapter")
    tuned = finetune(base, task, r=r, target_modules=(layer,), epochs=epochs, seed=seed).model
    return tuned.get_submodule(layer)


def train_adapter_A(base: Module, task: FruitTask, r: int, layer: str = "fc2", seed: int = 0,
                    epochs: int = 30):
    """The trained adapter's ``A: (r, d_in)`` (on the device)."""
    return train_adapter(base, task, r, layer, seed, epochs).lora_A.data             # (r, d_in)


def initial_adapter_A(base: Module, r: int, layer: str = "fc2", seed: int = 0):
    """``A: (r, d_in)`` as :func:`train_adapter` initialises it (same seed), before any training."""
    config = LoraConfig(r=r, lora_alpha=2.0 * r, target_modules=[layer], seed=seed)
    model = inject_lora(copy.deepcopy(base), config)
    return model.get_submodule(layer).lora_A.data                                   # (r, d_in)


@dataclass
class SimilarityStudy:
    """φ grids of the §7.2 comparisons on one layer (host arrays keyed by a label)."""

    layer: str
    n: int                         # the layer's d_in: chance is φ(i, j) ≈ max(i, j)/n
    grids: dict                    # trained adapters, and random Gaussian matrices of the same shapes
    init_grids: dict               # the same adapter pairs at initialisation, before training

    def chance(self, i: int, j: int) -> float:
        return max(i, j) / self.n


def similarity_study(base: Module, task: FruitTask, ranks=(8, 64), layer: str = "fc2", seeds=(0, 1),
                     epochs: int = 30, random_seed: int = 12345, progress: bool = False) -> SimilarityStudy:
    """Train three adapters on ``layer`` and compare their A's row spaces (the LoRA paper's Figures 3-4):

    * ``"r=8 vs r=64"``: r₁ = ranks[0] (seed seeds[0]) against r₂ = ranks[1] (seed seeds[1]);
    * ``"r=64: seed 0 vs seed 1"``: the larger rank from both seeds;
    * ``"random r=8 vs r=64"``: Gaussian matrices of the same shapes: φ ≈ max(i, j)/n.

    The two ranks come from *different* seeds on purpose: with one seed the (8, n) initial A is the
    first 8 rows of the (64, n) one (one random stream), so their row spaces overlap before any
    training. ``init_grids`` holds the trained pairs' φ at initialisation, to show this is ≈ chance.
    ``progress``: a bar over the adapters trained.
    """
    _check_inputs(base, task, "similarity_study")
    n = int(_weight(base, layer, "similarity_study").shape[1])
    if len(tuple(ranks)) != 2 or len(tuple(seeds)) != 2 or seeds[0] == seeds[1]:
        raise ValueError(f"similarity_study: ranks must be two ranks (r1, r2) and seeds two different seeds, "
                         f"got ranks={ranks!r}, seeds={seeds!r}")
    (r1, r2), (s0, s1) = ranks, seeds
    where = f"similarity_study (layer {layer!r} has d_in = {n})"
    r1, r2 = integer(r1, "ranks[0]", where, low=1, high=n), integer(r2, "ranks[1]", where, low=1, high=n)
    pairs = {f"r={r1} vs r={r2}": ((r1, s0), (r2, s1)),
             f"r={r2}: seed {s0} vs seed {s1}": ((r2, s0), (r2, s1))}
    keys = sorted({key for pair in pairs.values() for key in pair})
    trained = {key: train_adapter_A(base, task, key[0], layer, key[1], epochs)
               for key in progress_bar(keys, progress, "adapters")}
    initial = {key: initial_adapter_A(base, key[0], layer, key[1]) for key in keys}
    grids = {label: subspace_similarity(trained[a], trained[b]) for label, (a, b) in pairs.items()}
    init_grids = {label: subspace_similarity(initial[a], initial[b]) for label, (a, b) in pairs.items()}
    some = trained[keys[0]]
    xp, rng = get_array_module(some), backend.Rng(random_seed).host         # drawn on the host
    G1 = xp.asarray(rng.standard_normal((r1, n)), dtype=some.dtype)           # (r1, n) on A's device
    G2 = xp.asarray(rng.standard_normal((r2, n)), dtype=some.dtype)           # (r2, n)
    grids[f"random r={r1} vs r={r2}"] = subspace_similarity(G1, G2)
    return SimilarityStudy(layer, n, grids, init_grids)


# --------------------------------------------------------------------------- 3. amplification

def amplification_table(base: Module, task: FruitTask, ranks=(1, 2, 4, 8, 16, 64), layer: str = "fc2",
                        epochs: int = 30, seed: int = 0, progress: bool = False) -> list:
    """Train LoRA at each rank on ``layer`` alone; one :func:`amplification` row (W = W0, ΔW = s B A)
    per rank.

    ``progress``: a bar over the ranks.
    """
    if not ranks:
        raise ValueError("amplification_table: ranks must name at least one rank, got an empty sequence")
    rows = []
    for r in progress_bar(list(ranks), progress, "amplification"):
        lora = train_adapter(base, task, r, layer, seed, epochs)
        rows.append(amplification(lora.weight.data, lora.delta_weight(), r, seed=seed))
    return rows


def format_amplification_table(rows) -> str:
    """One line per rank: ‖ΔW‖_F; ‖·ᵀ W ·‖_F in ΔW's, W's own and random top-r directions; the factor."""
    header = ("r", "‖ΔW‖_F", "ΔW dirs", "W top-r", "random", "factor")
    cells = [[row["r"], *(f"{row[key]:.3f}" for key in ("delta_norm", "W_in_delta", "W_top", "W_random")),
              f"{row['factor']:.2f}"] for row in rows]
    return text_table(header, cells, align=">" * len(header))
