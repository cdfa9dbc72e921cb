"""LoRA+ (Hayou et al., 2024): train B with a larger learning rate than A.

With B = 0 at the start and A random, the two matrices play different roles; the paper shows that
for wide layers the efficient choice is lr_B = ratio · lr_A with ratio ≫ 1 (they suggest 16).
Here that is just two optimizer parameter groups:

>>> groups = loraplus_param_groups(model, lr=1e-3, ratio=16.0)
>>> opt = Adam(groups, lr=1e-3)          # lora_B at 1.6e-2, everything else trainable at 1e-3

Every trainable parameter whose dotted name ends in ``lora_B`` gets lr·ratio; every other
trainable parameter (lora_A, a DoRA magnitude, a tuned bias) gets lr. (PEFT's
``create_loraplus_optimizer`` also puts 1-D parameters in B's group and gives LoRA embeddings
their own rate; this follows the paper's rule for A and B only.)
"""
from __future__ import annotations

from .. import validate
from ..nn import Module


def loraplus_param_groups(model: Module, lr: float, ratio: float = 16.0) -> list[dict]:
    """Optimizer groups: ``[{"params": others, "lr": lr}, {"params": lora_Bs, "lr": lr * ratio}]``.

    Frozen parameters are left out. Raises ValueError for a non-positive ``lr`` or ``ratio`` and
    when the model has no trainable ``lora_B`` (no LoRA injected, or a VeRA model).
    """
    if not isinstance(model, Module):
        raise TypeError(f"loraplus_param_groups: model must be a Module, got {type(model).__name__}")
    where = "loraplus_param_groups"
    lr, ratio = validate.positive_number(lr, "lr", where), validate.positive_number(ratio, "ratio", where)
    trainable = [(n, p) for n, p in model.named_parameters() if p.trainable]
    b_params = [p for n, p in trainable if n.endswith("lora_B")]
    others = [p for n, p in trainable if not n.endswith("lora_B")]
    if not b_params:
        raise ValueError("loraplus_param_groups: the model has no trainable lora_B parameter; "
                         "inject LoRA (or DoRA / PiSSA) first")
    groups = [{"params": others, "lr": lr}] if others else []
    return groups + [{"params": b_params, "lr": lr * ratio}]
