"""Optimizers that keep state only for trainable parameters.

With LoRA this is where much of the memory saving comes from: Adam keeps two moment arrays
per trained parameter, so freezing W0 removes ``2 · d_in · d_out`` numbers per layer while the
adapter adds ``2 · r · (d_in + d_out)``. :meth:`Optimizer.state_bytes` measures it.
"""
from __future__ import annotations

import numbers

from .backend import get_array_module
from .nn import Module, Parameter


def _positive(name, value, allow_zero=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
    return float(value)


def _is_fraction(value) -> bool:
    """A real number in [0, 1): a momentum or one of Adam's betas (a string or a bool is not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 <= value < 1.0


class Optimizer:
    """Base class. ``params``: a Module, an iterable of Parameters, or a list of groups
    ``{"params": [...], "lr": ...}`` (a group may override any hyper-parameter, e.g. LoRA+'s
    larger learning rate for B). Frozen parameters are dropped: they get no state at all.
    """

    def __init__(self, params, **hyper):
        if isinstance(params, Module):
            params = params.parameters()
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.groups = []
        for g in groups:
            ps = [p for p in g["params"] if isinstance(p, Parameter) and p.trainable]
            if any(not isinstance(p, Parameter) for p in g["params"]):
                raise TypeError("params must be Parameters (e.g. model.parameters())")
            self.groups.append({**hyper, **{k: v for k, v in g.items() if k != "params"}, "params": ps})
        if not any(g["params"] for g in self.groups):
            raise ValueError("the optimizer got no trainable parameters: is everything frozen?")
        for g in self.groups:
            self._check(g)
        self.state = {id(p): self._init_state(p, g) for g in self.groups for p in g["params"]}
        self.steps = 0

    def _check(self, group):
        _positive("lr", group["lr"])

    def _init_state(self, p, group) -> dict:
        return {}

    def zero_grad(self) -> None:
        for g in self.groups:
            for p in g["params"]:
                p.grad = None

    def step(self) -> None:
        self.steps += 1
        for g in self.groups:
            for p in g["params"]:
                if p.grad is not None:
                    self._update(p, self.state[id(p)], g)

    def _update(self, p, state, group):
        raise NotImplementedError

    def state_bytes(self) -> int:
        """Bytes held in optimizer state (moments, velocities) — zero for frozen parameters."""
        return sum(int(a.nbytes) for s in self.state.values() for a in s.values() if hasattr(a, "nbytes"))

    def num_trained(self) -> int:
        return sum(p.size for g in self.groups for p in g["params"])


class SGD(Optimizer):
    """v ← μ v + (g + λ θ);  θ ← θ − lr · v.   (PyTorch's form; μ = 0 is plain SGD.)"""

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def _check(self, g):
        super()._check(g)
        if not _is_fraction(g["momentum"]):
            raise ValueError(f"momentum must be in [0, 1), got {g['momentum']!r}")
        _positive("weight_decay", g["weight_decay"], allow_zero=True)

    def _init_state(self, p, group):
        return {"velocity": get_array_module(p.data).zeros_like(p.data)} if group["momentum"] else {}

    def _update(self, p, s, g):
        grad = p.grad + g["weight_decay"] * p.data if g["weight_decay"] else p.grad
        if "velocity" in s:
            s["velocity"] *= g["momentum"]
            s["velocity"] += grad
            grad = s["velocity"]
        p.data -= g["lr"] * grad


class Adam(Optimizer):
    """m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  θ ← θ − lr · m̂ / (√v̂ + ε),
    with bias corrections m̂ = m / (1 − β1ᵗ), v̂ = v / (1 − β2ᵗ).

    ``weight_decay`` is L2 added to the gradient (Adam); :class:`AdamW` decouples it.
    """

    decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _check(self, g):
        super()._check(g)
        betas = g["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(map(_is_fraction, betas))):
            raise ValueError(f"betas must be a pair (beta1, beta2) of numbers in [0, 1), got {betas!r}")
        _positive("eps", g["eps"])
        _positive("weight_decay", g["weight_decay"], allow_zero=True)

    def _init_state(self, p, group):
        xp = get_array_module(p.data)
        return {"m": xp.zeros_like(p.data), "v": xp.zeros_like(p.data), "t": 0}   # t: this parameter's steps

    def _update(self, p, s, g):
        xp = get_array_module(p.data)
        s["t"] += 1                                   # counted per parameter, as in PyTorch
        (b1, b2), t, lr, wd = g["betas"], s["t"], g["lr"], g["weight_decay"]
        grad = p.grad
        if wd and not self.decoupled:
            grad = grad + wd * p.data
        s["m"] *= b1
        s["m"] += (1 - b1) * grad
        s["v"] *= b2
        s["v"] += (1 - b2) * grad * grad
        step = (lr / (1 - b1 ** t)) * s["m"] / (xp.sqrt(s["v"] / (1 - b2 ** t)) + g["eps"])
        if wd and self.decoupled:
            p.data -= (lr * wd) * p.data
        p.data -= step.astype(p.data.dtype, copy=False)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): θ ← θ − lr·λ·θ, apart from the gradient."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
