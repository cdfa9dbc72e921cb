"""Training in a random subspace: the intrinsic dimension of an objective (Li et al., 2018).

A model has ``D`` parameters; flatten them all into one vector ``θ ∈ R^D``. Instead of training θ,
train a short vector ``z ∈ R^d`` (d ≪ D) that moves θ only along ``d`` fixed random directions:

    θ = θ₀ + P z,        θ₀: (D,) the initial parameters,   P: (D, d) random, fixed,   z: (d,) from 0.

The columns of P are Gaussian vectors scaled to unit length (Li et al.'s choice), so a unit step
of one coordinate of z moves θ by a unit distance. z starts at 0: the wrapped model starts
exactly at θ₀. The smallest d at which this reaches 90% of what full training reaches is the
task's *intrinsic dimension* d_int90 (:mod:`lora_np.experiments.intrinsic`).

**Backward, by the chain rule through a linear map.** With L the loss and g = ∇θ L (D,) — the
gradient the wrapped model's own backward already computes, flattened —

    ∂L/∂z_j = Σ_i (∂L/∂θ_i)(∂θ_i/∂z_j) = Σ_i g_i P_ij      ⇒      ∇z L = Pᵀ g   (d,).

**SAID** (structure-aware intrinsic dimension, Aghajanyan et al., 2020) adds one learned scale
λ_l per *parameter tensor* l (``fc1.weight`` and ``fc1.bias`` each get one, as in the authors'
code, which keeps one scale per named parameter), so the update of each tensor can grow or shrink
as a whole:

    θ_l = θ₀_l + λ_l (P z)_l,     ∇z L = Pᵀ (λ̃ ⊙ g),     ∂L/∂λ_l = ⟨(P z)_l, g_l⟩,

with λ̃ (D,) repeating λ_l over tensor l's entries. The trainable vector is (z, λ) and ``d``
counts both: z has d − m entries for m tensors. λ starts at 1, so SAID starts as the plain method
(the authors also start at ones). λ = 0 would be a dead start: both gradients vanish there
(∇z L = Pᵀ(0 ⊙ g) = 0 and ∂L/∂λ = ⟨P·0, g⟩ = 0). At z = 0 the gradient of λ is 0, but z moves in
the first step and λ follows from the second.

**Memory.** P is stored dense: D·d numbers (D = 5,994 and d = 1,000 cost 24 MB in float32), and
every forward and backward costs D·d multiply-adds on top of the model. Li et al. use the Fastfood
transform to avoid this for large D; a dense P is refused above ``max_entries`` (5e7 by default).

>>> model = MLP(20, (64, 64), 10)                  # D = 5,994
>>> sub = RandomSubspace(model, d=100)             # trains z (100,) only; the MLP is wrapped in place
>>> hist = fit(sub, Adam(sub, lr=3e-2), X, y)      # the optimizer sees z alone
"""
from __future__ import annotations

import numpy as _host_np  # P is drawn on the host (same seed, same P on every backend), then moved

from .. import backend, validate
from .module import Module, Parameter

MAX_ENTRIES = 5e7             # the largest dense P (D·d numbers) we agree to build


def random_projection(D: int, d: int, seed: int = 0, dtype=None):
    """A (D, d) host matrix of independent Gaussian columns, each scaled to unit length (float64)."""
    P = _host_np.random.default_rng(seed).standard_normal((D, d))            # (D, d)
    return P / _host_np.linalg.norm(P, axis=0, keepdims=True)                # (D, d)  ‖P[:, j]‖ = 1


class RandomSubspace(Module):
    """Wrap ``model`` so that only ``z`` (and, with ``said=True``, one scale per tensor) is trained.

    ``model``: any Module; *all* its parameters (D of them, frozen or not; a tied tensor once) form θ₀.
    It is wrapped in place: every forward overwrites its parameters with θ₀ + P z, so pass a copy to
    keep the original. ``d``: the subspace dimension, 1 ≤ d ≤ D (with ``said``: m < d ≤ D, m tensors).
    ``seed``: the seed of P. ``max_entries``: the largest D·d accepted for the dense P.

    The trainable parameters are ``z`` (d,) — or ``z`` (d − m,) and ``lam`` (m,) — so ``fit`` and
    ``Adam(wrapper)`` train exactly these. The wrapped model is kept out of the parameter tree
    (``self._model``; read it as ``.wrapped``): its own parameters stay "trainable" so that its
    backward computes ∇θ, but no optimizer built from the wrapper ever sees them.
    """

    def __init__(self, model: Module, d: int, seed: int = 0, said: bool = False,
                 max_entries: float = MAX_ENTRIES):
        if not isinstance(model, Module):
            raise TypeError(f"RandomSubspace: model must be a lora_np Module, got {type(model).__name__}")
        if isinstance(model, RandomSubspace):
            raise TypeError("RandomSubspace: model is already a RandomSubspace; wrap the inner model instead")
        try:                                     # a seed or a flag of the wrong type is a TypeError here
            said = validate.boolean(said, "said", where="RandomSubspace")
            seed = validate.integer(seed, "seed", where="RandomSubspace")
        except ValueError as err:
            raise TypeError(str(err)) from None
        named, seen = [], set()
        for name, p in model.named_parameters():               # a shared (tied) tensor counts once
            if id(p) not in seen:
                seen.add(id(p))
                named.append((name, p))
        if not named:
            raise ValueError("RandomSubspace: model has no parameters to reparameterise")
        dtypes = {p.dtype for _, p in named}
        if len(dtypes) != 1:
            raise ValueError("RandomSubspace: every parameter must have one dtype, "
                             f"got {sorted(map(str, dtypes))}")
        d = validate.positive_int(d, "d", where="RandomSubspace")
        D, m = sum(p.size for _, p in named), len(named)
        lowest = m + 1 if said else 1
        if not lowest <= d <= D:
            spent = f" (SAID spends {m} of d on the per-tensor scales)" if said else ""
            raise ValueError(f"RandomSubspace: d must be an integer in [{lowest}, D = {D}]{spent}, got {d}")
        if D * d > max_entries:
            raise ValueError(f"RandomSubspace: the dense projection P would hold D·d = {D:,}·{d:,} = "
                             f"{D * d:,} numbers (> max_entries = {max_entries:,.0f}, "
                             f"{D * d * 4 / 2 ** 20:,.0f} MiB in float32); "
                             "choose a smaller d or a smaller model")
        self.D, self.d, self.said, self.seed, self.n_tensors = D, d, said, seed, m
        dtype = named[0][1].dtype
        xp = backend.get_array_module(named[0][1].data)
        model.unfreeze()                                    # its backward must produce every ∇θ_l
        self._model = model
        self._names = [name for name, _ in named]
        self._params = [p for _, p in named]
        self._slices, start = [], 0
        for _, p in named:
            self._slices.append((start, start + p.size, tuple(p.shape)))
            start += p.size
        self._theta0 = xp.concatenate([p.data.reshape(-1) for _, p in named])            # (D,)
        d_z = d - m if said else d
        self._P = xp.asarray(random_projection(D, d_z, seed).astype(dtype))                # (D, d_z)
        self.z = Parameter(xp.zeros((d_z,), dtype=dtype))                                  # (d_z,)
        self.lam = Parameter(xp.ones((m,), dtype=dtype)) if said else None                 # (m,)
        sizes = _host_np.array([p.size for _, p in named])
        self._tensor_of = xp.asarray(_host_np.repeat(_host_np.arange(m), sizes))            # (D,) tensor id
        self.n_classes = getattr(model, "n_classes", None)
        self._cache = None

    @property
    def wrapped(self) -> Module:
        """The reparameterised model (its parameters hold θ₀ + P z after a forward)."""
        return self._model

    @property
    def P(self):
        """The fixed projection (D, d_z); read-only by convention."""
        return self._P

    @property
    def theta0(self):
        """The initial parameters θ₀ (D,), flattened in ``named_parameters`` order."""
        return self._theta0

    def _update(self):
        """u = P z (D,) and the per-entry scale λ̃ (D,) (None for the plain method)."""
        u = self._P @ self.z.data                                                     # (D,)
        lam_full = self.lam.data[self._tensor_of] if self.said else None              # (D,)
        return u, lam_full

    def _theta(self, u, lam_full):
        return self._theta0 + (u if lam_full is None else lam_full * u)               # (D,)

    def theta(self):
        """θ = θ₀ + P z  (θ₀ + λ̃ ⊙ P z with SAID), (D,)."""
        return self._theta(*self._update())

    def _write(self, theta) -> None:
        for (start, stop, shape), p in zip(self._slices, self._params, strict=True):
            p.data = theta[start:stop].reshape(shape)                                 # a view into θ

    def forward(self, x):
        """Write θ₀ + P z into the wrapped model, then run it on x."""
        u, lam_full = self._update()                                                  # (D,), (D,) | None
        self._write(self._theta(u, lam_full))                                         # (D,)
        self._model.zero_grad()
        self._cache = (u, lam_full)
        return self._model(x)

    def backward(self, dy):
        """∇z = Pᵀ g  (SAID: Pᵀ(λ̃ ⊙ g) and ∂L/∂λ_l = ⟨(P z)_l, g_l⟩), g = ∇θ L flattened."""
        (u, lam_full), self._cache = self._need_cache(self._cache), None
        dx = self._model.backward(dy)
        xp = backend.get_array_module(u)
        g = xp.concatenate([xp.zeros(p.size, dtype=u.dtype) if p.grad is None else p.grad.reshape(-1)
                            for p in self._params])                                   # (D,)
        self._model.zero_grad()                                                       # ∇θ is not kept
        if lam_full is None:
            self.z.accumulate(self._P.T @ g)                                          # (d,)
        else:
            self.z.accumulate(self._P.T @ (lam_full * g))                             # (d − m,)
            ug = u * g                                                                # (D,)
            self.lam.accumulate(xp.stack([ug[a:b].sum() for a, b, _ in self._slices]))  # (m,)
        return dx

    # ---- the wrapped model follows the wrapper's mode and caches
    def train(self, mode: bool = True) -> RandomSubspace:
        super().train(mode)
        self._model.train(mode)
        return self

    def clear_caches(self) -> None:
        super().clear_caches()
        self._model.clear_caches()

    def memory_bytes(self) -> int:
        """Bytes held by P and θ₀ (the price of a dense projection)."""
        return int(self._P.nbytes) + int(self._theta0.nbytes)

    def extra_repr(self) -> str:
        kind = f", SAID over {self.n_tensors} tensors" if self.said else ""
        return f"D={self.D:,}, d={self.d}{kind}, seed={self.seed}, wraps {type(self._model).__name__}"
