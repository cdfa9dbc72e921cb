"""Optimizers that keep state only for trainable parameters.

With LoRA this is where much of the memory saving comes from: Adam keeps two moment arrays
per trained parameter, so freezing W0 removes ``2 · d_in · d_out`` numbers per layer while the
adapter adds ``2 · r · (d_in + d_out)``. :meth:`Optimizer.state_bytes` measures it.

Hyper-parameters are checked when the optimizer is built, group by group: a learning rate and
``eps`` must be finite and > 0, a weight decay finite and >= 0, a momentum and each of Adam's
betas in [0, 1). A bad value is a ``ValueError`` that names it (``"Adam: lr must be a finite
positive number, got inf"``); the checked values are stored as plain Python floats.
"""
from __future__ import annotations

import math

from . import validate
from .backend import get_array_module
from .nn import Module, Parameter


class Optimizer:
    """Base class. ``params``: a Module, an iterable of Parameters, or a list of groups
    ``{"params": [...], "lr": ...}`` (a group may override any hyper-parameter, e.g. LoRA+'s
    larger learning rate for B). Frozen parameters are dropped: they get no state at all.
    """

    def __init__(self, params, **hyper):
        self._model = params if isinstance(params, Module) else None     # to check against at the first step
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
        name = type(self).__name__
        for i, g in enumerate(self.groups):
            self._check(g, name if len(self.groups) == 1 else f"{name} (param group {i})")
        self.state = {id(p): self._init_state(p, g) for g in self.groups for p in g["params"]}
        self.steps = 0
        self._buffers = {}                                               # scratch arrays (Adam's _work)

    def _check(self, group: dict, where: str) -> None:
        """Check the group's hyper-parameters in place (each becomes a plain float)."""
        group["lr"] = validate.positive_number(group["lr"], "lr", where)

    def _init_state(self, p, group) -> dict:
        return {}

    def zero_grad(self) -> None:
        for g in self.groups:
            for p in g["params"]:
                p.grad = None

    def check_params(self, model: Module | None = None) -> None:
        """Raise unless this optimizer holds exactly the model's trainable parameters.

        An optimizer made before ``inject_lora`` holds the base's weights, which are now frozen, and
        not the adapter's, so training would silently change nothing. Called at the first
        :meth:`step` (with the model the optimizer was made from) and by ``fit``.
        """
        mine = {id(p): p for g in self.groups for p in g["params"]}
        frozen = [p for p in mine.values() if not p.trainable]
        model = model if model is not None else self._model
        missing = [] if model is None else [n for n, p in model.named_parameters()
                                            if p.trainable and id(p) not in mine]
        if frozen or missing:
            what = (f"{len(missing)} trainable parameter(s) of the model are not in it (e.g. {missing[0]!r})"
                    if missing else "")
            what += ("; " if what and frozen else "") + (f"it holds {len(frozen)} parameter(s) that are now "
                                                         "frozen" if frozen else "")
            raise ValueError(f"{type(self).__name__}: the optimizer does not hold the model's trainable "
                             f"parameters: {what}. Create the optimizer after inject_lora (and after "
                             "freezing, unfreezing or moving the model), e.g. Adam(model, lr=...)")

    def step(self) -> None:
        if self.steps == 0:
            self.check_params()
        self.steps += 1
        for g in self.groups:
            for p in g["params"]:
                if p.grad is not None:
                    self._update(p, self.state[id(p)], g)

    def _update(self, p, state, group):
        raise NotImplementedError

    def state_bytes(self) -> int:
        """Bytes held in optimizer state (moments, velocities) — zero for frozen parameters."""
        return sum(int(a.nbytes) for s in self.state.values() for a in s.values()
                   if hasattr(a, "nbytes"))

    def num_trained(self) -> int:
        return sum(p.size for g in self.groups for p in g["params"])


class SGD(Optimizer):
    """v ← μ v + (g + λ θ);  θ ← θ − lr · v.   (PyTorch's form; μ = 0 is plain SGD.)"""

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def _check(self, g, where):
        super()._check(g, where)
        g["momentum"] = validate.fraction(g["momentum"], "momentum", where)
        g["weight_decay"] = validate.number(g["weight_decay"], "weight_decay", where, low=0.0)

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

    def _check(self, g, where):
        super()._check(g, where)
        betas = g["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise ValueError(validate.message("betas", "a pair (beta1, beta2) of numbers in [0, 1)",
                                              betas, where))
        g["betas"] = (validate.fraction(betas[0], "betas[0] (beta1)", where),
                      validate.fraction(betas[1], "betas[1] (beta2)", where))
        g["eps"] = validate.positive_number(g["eps"], "eps", where)
        g["weight_decay"] = validate.number(g["weight_decay"], "weight_decay", where, low=0.0)

    def _init_state(self, p, group):
        xp = get_array_module(p.data)
        return {"m": xp.zeros_like(p.data), "v": xp.zeros_like(p.data), "t": 0}   # t: this parameter's steps

    def _update(self, p, s, g):
        """The update above, in place: m and v change in their own memory and the step is formed in
        one work array shared by all parameters, so a step allocates nothing per parameter. Plainly:
        ``m̂ = m / (1 − β1ᵗ); v̂ = v / (1 − β2ᵗ); θ −= lr · m̂ / (√v̂ + ε)`` (a test checks they agree)."""
        xp = get_array_module(p.data)
        s["t"] += 1                                   # counted per parameter, as in PyTorch
        (b1, b2), t, lr, wd = g["betas"], s["t"], g["lr"], g["weight_decay"]
        grad, m, v = p.grad, s["m"], s["v"]
        if wd and not self.decoupled:
            grad = grad + wd * p.data                 # L2: the decay joins the gradient
        w = self._work(p.data)                        # (p's shape) scratch
        m *= b1
        xp.multiply(grad, 1 - b1, out=w)
        m += w                                        # m ← β1 m + (1−β1) g
        v *= b2
        xp.multiply(grad, grad, out=w)
        w *= 1 - b2
        v += w                                        # v ← β2 v + (1−β2) g²
        xp.sqrt(v, out=w)
        w *= 1.0 / math.sqrt(1 - b2 ** t)
        w += g["eps"]                                 # √v̂ + ε
        xp.divide(m, w, out=w)
        w *= lr / (1 - b1 ** t)                       # lr · m̂ / (√v̂ + ε)
        if wd and self.decoupled:
            p.data *= 1.0 - lr * wd                   # AdamW: θ ← θ − lr·λ·θ
        p.data -= w

    def _work(self, like):
        """A scratch array of ``like``'s shape and dtype, a view of one buffer per dtype and backend
        sized for the largest parameter (the optimizer's only memory besides m and v)."""
        key = (type(like), like.dtype.str)
        buffers = self._buffers
        if key not in buffers or buffers[key].size < like.size:
            largest = max(p.data.size for g in self.groups for p in g["params"]
                          if (type(p.data), p.data.dtype.str) == key)
            buffers[key] = get_array_module(like).empty(max(largest, like.size), dtype=like.dtype)
        return buffers[key][:like.size].reshape(like.shape)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): θ ← θ − lr·λ·θ, apart from the
    gradient."""

    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
