"""Notebook 05's budget dashboards: parameters of one weight against r, and a memory calculator
for real model sizes. Both are pure arithmetic, so every redraw is instant."""
from __future__ import annotations

import ipywidgets as widgets

from ..experiments.budget import (
    MODEL_PRESETS,
    PRECISION_PRESETS,
    compare_memory,
    format_memory_table,
    parameter_budget,
)
from ..tables import format_bytes
from ..validate import integer
from ..viz.budget import plot_memory, plot_parameter_budget
from .base import Dashboard, _figure, _show

# The rank sliders' descriptions: distinct, so that a notebook with both dashboards (and notebook 05's
# rank-sweep slider, "LoRA rank r") names each control once.
BUDGET_RANK = "rank r (one W)"
MEMORY_RANK = "rank r (model)"

RANK_CHOICES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CHECKPOINT_FORMATS = {1: "int8", 2: "fp16", 4: "fp32"}           # bytes per saved parameter -> its name


class _MultiWidgetDashboard(Dashboard):
    """A Dashboard whose redraw reads several widgets; ``_syncing`` silences the changes it makes itself."""

    _syncing = False

    def _on_change(self, change) -> None:
        if not self._syncing:
            self._sync()
            self.redraw()

    def _sync(self) -> None:
        """Bring dependent widgets in line (e.g. the rank range) before a redraw."""


class ParameterBudgetExplorer(_MultiWidgetDashboard):
    """Sliders for d_in, d_out and r (``.d_in_slider``, ``.d_out_slider``, ``.slider``); prints the two
    counts, the fraction and the break-even rank, and draws :func:`plot_parameter_budget`."""

    def __init__(self, d_in: int = 256, d_out: int = 256, r: int = 8, max_dim: int = 1024):
        budget = parameter_budget(d_in, d_out, [r])                  # clear errors for bad d_in, d_out, r
        max_dim = integer(max_dim, "max_dim", "parameter_budget_explorer", low=max(budget.d_in, budget.d_out))
        self.d_in_slider = widgets.IntSlider(value=budget.d_in, min=1, max=max_dim, description="d_in",
                                             continuous_update=False)
        self.d_out_slider = widgets.IntSlider(value=budget.d_out, min=1, max=max_dim, description="d_out",
                                              continuous_update=False)
        slider = widgets.IntSlider(value=r, min=1, max=min(d_in, d_out), description=BUDGET_RANK,
                                   continuous_update=False, style={"description_width": "initial"})
        super().__init__(slider, "Parameters of one weight W (d_out × d_in): full fine-tuning vs LoRA")
        self.children = self.children[:-2] + (self.d_in_slider, self.d_out_slider) + self.children[-2:]
        for w in (self.d_in_slider, self.d_out_slider):
            w.observe(self._on_change, names="value")
        self.redraw()

    def _sync(self) -> None:
        self._syncing = True
        try:                             # a lower max clamps r to min(d_in, d_out), without a redraw
            self.slider.max = min(self.d_in_slider.value, self.d_out_slider.value)
        finally:
            self._syncing = False

    def redraw(self, state=None) -> dict:
        """Redraw for ``state = (d_in, d_out, r)``, by default the sliders' current values."""
        return super().redraw((self.d_in_slider.value, self.d_out_slider.value, self.slider.value)
                              if state is None else state)

    def _draw(self, state) -> dict:
        d_in, d_out, r = state
        budget = parameter_budget(d_in, d_out)                       # every rank 1..min(d_in, d_out)
        record = budget.at(r)
        fig = _figure((7, 4.2))
        plot_parameter_budget(budget, r=r, ax=fig.subplots())
        _show(fig)
        be = budget.break_even
        print(f"W: {d_out}×{d_in}.  full fine-tuning trains d_in·d_out = {record['full']:,} parameters; "
              f"LoRA at r = {r} trains r·(d_in + d_out) = {record['lora']:,} ({record['fraction']:.2%}).")
        print(f"break-even rank r* = {be.rank:.2f}: " + (
            f"LoRA saves parameters for r <= {be.largest_saving_rank}." if be.largest_saving_rank
            else "no rank saves anything for a weight this thin."))
        return record


def parameter_budget_explorer(d_in: int = 256, d_out: int = 256, r: int = 8,
                              max_dim: int = 1024) -> ParameterBudgetExplorer:
    """Sliders for d_in, d_out (1..max_dim) and r (1..min(d_in, d_out)) redrawing the parameter budget."""
    return ParameterBudgetExplorer(d_in, d_out, r, max_dim)


class MemoryCalculator(_MultiWidgetDashboard):
    """Dropdowns for the model (``.dropdown``), the precision (``.precision_dropdown``) and the LoRA
    targets (``.targets_dropdown``), and a rank slider (``.slider``, powers of two allowed by the
    targets' shapes). Prints :func:`format_memory_table` and draws :func:`plot_memory` (with lines at
    an RTX 4090's 24 GiB and an A100's 80 GiB).

    ``checkpoint_bytes``: bytes per saved parameter; ``None`` (the default) saves in the precision's
    weight format (2 for fp16, 4 for fp32), so the checkpoint follows the precision dropdown.
    """

    def __init__(self, preset: str = "LLaMA-7B", precision: str = "fp16 mixed precision + Adam", r: int = 4,
                 targets=None, checkpoint_bytes: float | None = None):
        compare_memory(preset, precision, r, targets,                        # clear errors for every argument
                       2 if checkpoint_bytes is None else checkpoint_bytes)
        model = MODEL_PRESETS[preset] if isinstance(preset, str) else None
        if model is None or PRECISION_PRESETS.get(precision) is None:
            raise ValueError(f"memory_calculator: preset and precision must be preset names: "
                             f"one of {tuple(MODEL_PRESETS)} and one of {tuple(PRECISION_PRESETS)}")
        targets = model.default_targets if targets is None else model.check_targets(targets)
        sets = dict((tuple(t), label) for label, t in model.target_sets)
        if targets not in sets:
            raise ValueError(f"memory_calculator: targets={targets!r} must be one of the preset's target "
                             f"sets {[tuple(t) for _, t in model.target_sets]}")
        ranks = self._ranks(preset, targets)
        if r not in ranks:
            raise ValueError(f"memory_calculator: r={r!r} must be one of {ranks} for these targets")
        self.checkpoint_bytes = checkpoint_bytes
        self.dropdown = widgets.Dropdown(options=tuple(MODEL_PRESETS), value=preset, description="model")
        self.precision_dropdown = widgets.Dropdown(options=tuple(PRECISION_PRESETS), value=precision,
                                                   description="precision")
        self.targets_dropdown = widgets.Dropdown(options=self._target_options(preset), value=targets,
                                                 description="targets")
        slider = widgets.SelectionSlider(options=ranks, value=r, description=MEMORY_RANK,
                                         continuous_update=False, style={"description_width": "initial"})
        super().__init__(slider, "Training memory: full fine-tuning vs LoRA")
        extra = (self.dropdown, self.precision_dropdown, self.targets_dropdown)
        self.children = self.children[:-2] + extra + self.children[-2:]
        for w in extra:
            w.observe(self._on_change, names="value")
        self.redraw()

    @staticmethod
    def _target_options(preset: str):
        return [(label, tuple(t)) for label, t in MODEL_PRESETS[preset].target_sets]

    @staticmethod
    def _ranks(preset: str, targets) -> tuple:
        shapes = MODEL_PRESETS[preset].shapes
        top = min(min(shapes[t]) for t in targets)                   # r <= min(d_in, d_out) of every target
        return tuple(k for k in RANK_CHOICES if k <= top)

    def _sync(self) -> None:
        """A new model gets its own target sets (the same choice kept where it can be) and the ranks
        they allow."""
        self._syncing = True
        try:
            preset = self.dropdown.value
            options = self._target_options(preset)
            current, values = self.targets_dropdown.value, [t for _, t in options]
            if tuple(self.targets_dropdown.options) != tuple(options):
                self.targets_dropdown.options = options
            self.targets_dropdown.value = current if current in values else values[0]
            ranks = self._ranks(preset, self.targets_dropdown.value)
            r = self.slider.value if self.slider.value in ranks else ranks[-1]
            if tuple(self.slider.options) != ranks:
                self.slider.options = ranks
            self.slider.value = r
        finally:
            self._syncing = False

    def redraw(self, state=None) -> dict:
        """Redraw for ``state = (preset, precision, targets, r)``, by default the widgets' values."""
        if state is None:
            state = (self.dropdown.value, self.precision_dropdown.value, self.targets_dropdown.value,
                     self.slider.value)
        return super().redraw(state)

    def checkpoint_format(self, precision: str) -> tuple:
        """``(bytes per saved parameter, its name)`` for ``precision``: its weights' format unless
        ``checkpoint_bytes`` was given."""
        n = self.checkpoint_bytes
        if n is None:
            n = PRECISION_PRESETS[precision].weight_bytes
        return n, CHECKPOINT_FORMATS.get(n, f"{n:g} bytes per parameter")

    def _draw(self, state) -> dict:
        preset, precision, targets, r = state
        saved_bytes, saved_as = self.checkpoint_format(precision)
        full, lora = compare_memory(preset, precision, r, targets, saved_bytes)
        record = {"model": preset, "precision": precision, "targets": tuple(targets), "r": int(r),
                  "trainable": lora.trainable, "fraction": lora.fraction, "full_total": full.total,
                  "lora_total": lora.total, "ratio": full.total / lora.total,
                  "full_checkpoint": full.checkpoint, "lora_checkpoint": lora.checkpoint,
                  "checkpoint_bytes": saved_bytes,
                  "full": full.as_dict(), "lora": lora.as_dict()}
        fig = _figure((6, 4.5))
        plot_memory(full, lora, ax=fig.subplots())
        _show(fig)
        n_layers = MODEL_PRESETS[preset].n_layers
        print(f"{preset}, {precision}; LoRA r = {r} on {', '.join(targets)}"
              + (f" in each of its {n_layers} layers" if n_layers > 1 else "") + "\n")
        print(format_memory_table(full, lora))
        print(f"\ncheckpoint, saved in {saved_as} ({saved_bytes:g} B per parameter): "
              f"{format_bytes(full.checkpoint)} → {format_bytes(lora.checkpoint)} "
              f"({full.checkpoint / lora.checkpoint:,.0f}× smaller)")
        return record


def memory_calculator(preset: str = "LLaMA-7B", precision: str = "fp16 mixed precision + Adam", r: int = 4,
                      targets=None, checkpoint_bytes: float | None = None) -> MemoryCalculator:
    """Dropdowns for the model preset, the precision and the targets, a slider for r; prints the
    memory table and draws full fine-tuning against LoRA (:mod:`lora_np.experiments.budget`).
    The checkpoint is saved in the precision's weight format unless ``checkpoint_bytes`` is given."""
    return MemoryCalculator(preset, precision, r, targets, checkpoint_bytes)
