"""How many parameters are trained: per layer and in total, like PEFT's print_trainable_parameters."""
from __future__ import annotations

from dataclasses import dataclass

from ..nn import Module


@dataclass
class LayerCount:
    name: str
    trainable: int
    total: int


@dataclass
class TrainableReport:
    """Per-module counts (modules that own parameters directly) and the totals."""

    layers: list
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def summary(self) -> str:
        """PEFT's one-line format."""
        return (f"trainable params: {self.trainable:,} || all params: {self.total:,} || "
                f"trainable%: {self.percent:.4f}")

    def __str__(self) -> str:
        w = max([len(r.name) for r in self.layers] + [5])
        lines = [f"{'layer':<{w}}  {'trainable':>10}  {'total':>10}  {'%':>7}"]
        for r in self.layers:
            pct = 100.0 * r.trainable / r.total if r.total else 0.0
            lines.append(f"{r.name:<{w}}  {r.trainable:>10,}  {r.total:>10,}  {pct:>6.2f}%")
        lines.append(f"{'total':<{w}}  {self.trainable:>10,}  {self.total:>10,}  {self.percent:>6.2f}%")
        return "\n".join(lines)


def trainable_report(model: Module) -> TrainableReport:
    """Count trainable and total parameters of every module that owns parameters.

    A Parameter shared by two modules (a tied weight: GPT-2's head uses its token embedding) is
    counted once, in the first module that holds it, as ``named_parameters`` lists it.
    """
    rows, seen = [], set()
    for name, module in model.named_modules():
        own = [c for _, c in module._children() if not isinstance(c, Module) and id(c) not in seen]
        seen.update(id(c) for c in own)
        if own:
            rows.append(LayerCount(name or "(root)", sum(p.size for p in own if p.trainable),
                                   sum(p.size for p in own)))
    return TrainableReport(rows, sum(r.trainable for r in rows), sum(r.total for r in rows))


def print_trainable_parameters(model: Module) -> None:
    print(trainable_report(model).summary())
