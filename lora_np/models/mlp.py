"""A multi-layer perceptron classifier: Linear → activation → ... → Linear head.

Layers are named ``fc1, act1, fc2, act2, ..., head`` so that parameter names read like a
textbook (``fc1.weight``) and match ``torch.nn.Sequential(OrderedDict(...))`` key for key.
"""
from __future__ import annotations

from .. import backend, validate
from ..nn import GELU, Dropout, Linear, ReLU, Sequential, Tanh, as_rng, check_finite

ACTIVATIONS = {"relu": ReLU, "gelu": GELU, "tanh": Tanh}


class MLP(Sequential):
    """``MLP(d_in, hidden, n_classes)``: logits = head(act(fc_k(... act(fc1(x)))))."""

    def __init__(self, d_in: int, hidden=(256, 256), n_classes: int = 10, activation: str = "relu",
                 dropout: float = 0.0, seed=0, dtype=None):
        d_in = validate.positive_int(d_in, "d_in", "MLP")
        if isinstance(hidden, (list, tuple)):                  # () or []: no hidden layer, a linear model
            hidden = tuple(validate.int_list(hidden, "hidden", "MLP")) if hidden else ()
        else:
            hidden = (validate.positive_int(hidden, "hidden", "MLP"),)
        n_classes = validate.positive_int(n_classes, "n_classes", "MLP")
        activation = validate.choice(activation, "activation", tuple(ACTIVATIONS), "MLP")
        dropout = validate.fraction(dropout, "dropout", "MLP")
        rng, layers, width = as_rng(seed), {}, d_in
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = Linear(width, h, rng=rng, dtype=dtype)
            layers[f"act{i}"] = ACTIVATIONS[activation]()
            if dropout > 0:
                layers[f"drop{i}"] = Dropout(dropout, rng=rng.spawn())
            width = h
        layers["head"] = Linear(width, n_classes, rng=rng, dtype=dtype)
        super().__init__(layers)
        self.d_in, self.n_classes, self.hidden, self.activation = d_in, n_classes, hidden, activation

    def forward(self, x):
        """x: (N, d_in) -> logits: (N, n_classes). Rejects empty batches and NaN or inf inputs."""
        if not backend.is_array(x) or x.ndim != 2:
            raise ValueError(f"MLP: x must be a 2-D array (N, {self.d_in}), got "
                             f"{'shape ' + str(tuple(x.shape)) if backend.is_array(x) else type(x).__name__}")
        if x.shape[0] == 0:
            raise ValueError("MLP: x is an empty batch (0 rows); pass at least one example")
        check_finite(x, "MLP")
        return super().forward(x)                                         # (N, n_classes)
