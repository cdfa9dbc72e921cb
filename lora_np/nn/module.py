"""Parameters and the Module base class: forward keeps a cache, backward fills ``param.grad``.

A module's parameters have dotted names that mirror the module tree (``fc1.weight``,
``fc1.lora_A``), exactly like PyTorch's ``named_parameters`` and therefore one-to-one with PEFT's
keys. A frozen parameter (``trainable=False``) never receives a gradient array: its ``grad``
stays ``None`` and the backward pass skips the matmul that would have produced it.
"""
from __future__ import annotations

from .. import backend, validate


class Parameter:
    """An array plus its gradient and whether it is trained.

    ``data``: the values (an array of the current backend).
    ``grad``: filled by ``backward`` for trainable parameters, ``None`` otherwise.
    """

    __slots__ = ("data", "grad", "trainable")

    def __init__(self, data, trainable: bool = True):
        self.data = data
        self.grad = None
        self.trainable = validate.boolean(trainable, "trainable", "Parameter")

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: int(self.data.size))

    def accumulate(self, g):
        """Add ``g`` into ``grad`` (a parameter used twice gets the sum of both gradients)."""
        if not self.trainable:
            raise RuntimeError("internal error: a gradient was computed for a frozen parameter")
        self.grad = g if self.grad is None else self.grad + g

    def __repr__(self):
        kind = "trainable" if self.trainable else "frozen"
        return f"Parameter(shape={tuple(self.shape)}, dtype={self.dtype}, {kind})"


class Module:
    """Base class. Subclasses set Parameters and Modules as attributes and define
    ``forward(x) -> y`` (keeping what backward needs) and ``backward(dy) -> dx``.
    """

    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    # ---- the module tree
    def _children(self):
        """(name, Parameter | Module) in definition order; lists of modules are numbered."""
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            if isinstance(value, (Parameter, Module)):
                yield name, value
            elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Module) for v in value):
                for i, v in enumerate(value):
                    yield f"{name}.{i}", v

    def named_modules(self, prefix: str = ""):
        """Every module in the tree with its dotted name; the root is ``""``."""
        yield prefix, self
        for name, child in self._children():
            if isinstance(child, Module):
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, prefix: str = "", _seen=None):
        """Every parameter with its dotted name, e.g. ``("fc1.lora_A", Parameter(...))``.

        A Parameter shared by two layers (a tied weight: GPT-2's head uses its token embedding) is
        listed once, under its first name, as PyTorch does: counted once, stepped once, saved once.
        """
        seen = set() if _seen is None else _seen
        for name, child in self._children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, Parameter):
                if id(child) not in seen:
                    seen.add(id(child))
                    yield full, child
            else:
                yield from child.named_parameters(full, seen)

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.trainable]

    def get_submodule(self, name: str) -> Module:
        """The module at a dotted path (``"fc1"``, ``"blocks.0.attn"``)."""
        modules = dict(self.named_modules())
        if name not in modules:
            raise KeyError(f"no submodule named {name!r}; modules are {sorted(k for k in modules if k)}")
        return modules[name]

    def set_submodule(self, name: str, module: Module) -> None:
        """Replace the module at a dotted path (used to swap a Linear for a LoRALinear)."""
        head, _, last = name.rpartition(".")
        if head and last.isdigit():                            # "blocks.0": an element of a list of modules
            owner_path, _, list_attr = head.rpartition(".")
            seq = getattr(self.get_submodule(owner_path), list_attr, None)
            if isinstance(seq, list) and int(last) < len(seq):
                seq[int(last)] = module
                return
        parent = self.get_submodule(head)
        if not isinstance(getattr(parent, last, None), Module):
            raise KeyError(f"no submodule named {name!r}")
        setattr(parent, last, module)

    # ---- modes and gradients
    def train(self, mode: bool = True) -> Module:
        mode = validate.boolean(mode, "mode", f"{type(self).__name__}.train")
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def clear_caches(self) -> None:
        """Drop every cached forward (after inference, so no memory is held for a backward)."""
        for _, m in self.named_modules():
            if hasattr(m, "_cache"):
                m._cache = None

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def freeze(self) -> Module:
        for p in self.parameters():
            p.trainable = False
        return self

    def unfreeze(self) -> Module:
        for p in self.parameters():
            p.trainable = True
        return self

    def state_dict(self) -> dict:
        """name -> a host (NumPy) copy of every parameter."""
        return {name: backend.to_numpy(p.data).copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict) -> None:
        """Copy host arrays into the parameters of the same names (shapes and dtypes must match)."""
        params = dict(self.named_parameters())
        missing, extra = set(params) - set(state), set(state) - set(params)
        if missing or extra:
            raise KeyError(f"state dict does not match the model: missing {sorted(missing)}, "
                           f"unexpected {sorted(extra)}")
        for name, p in params.items():
            value = state[name]
            if tuple(value.shape) != tuple(p.shape):
                raise ValueError(f"{name}: expected shape {tuple(p.shape)}, got {tuple(value.shape)}")
            p.data = backend.asarray(value, dtype=p.dtype)

    def to(self, backend_name: str | None = None) -> Module:
        """Move this module to ``backend_name`` ("numpy", "emulated", "cupy"; default: the current
        backend) in place and return it: every Parameter and gradient, and every array the module
        keeps aside (a LoRA model's inactive adapters and base layers, merge backups, VeRA's shared
        matrices). See :func:`lora_np.backend.to_device`. Create the optimizer after moving.
        """
        backend.to_device(self, backend_name)
        return self

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.size for p in self.parameters() if p.trainable or not trainable_only)

    # ---- helpers for subclasses
    def _need_cache(self, cache):
        if cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward(): "
                               "run a forward pass first (and call backward once per forward)")
        return cache

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        subs = [(n, c) for n, c in self._children() if isinstance(c, Module)]
        for name, child in subs:
            lines.append("  (" + name + "): " + repr(child).replace("\n", "\n  "))
        return lines[0] + (")" if not subs else "\n" + "\n".join(lines[1:]) + "\n)")
