"""ipywidgets dashboards for the notebooks: move a slider for the rank r, watch what changes.

Each dashboard is a ``VBox`` (so a notebook cell displays it by naming it) with three extras:

* ``.slider`` — the rank slider (the strength slider in :class:`StyleExplorer` and
  :class:`AdapterExplorer`, which add a ``.dropdown`` for the adapter; the blend weight in
  :class:`BlendExplorer`); setting ``.slider.value = k`` from code redraws exactly as a drag does;
* ``.output`` — the ``Output`` widget the figure and the printed numbers are drawn into;
* ``.history`` — a kernel-side list with one dict per redraw (r, parameter counts, error or accuracy;
  adapter, strength, text and style markers; accuracy on each harvest, blend weight).

Tests and notebook checks assert on ``.history``, never on the output area: an ``Output``
widget's contents reach the kernel only after the cell has finished.

The dashboards only call library functions (:mod:`lora_np.experiments`, :mod:`lora_np.lora`,
:mod:`lora_np.viz`), and those check the arguments: a bad one fails the call with the library's
message. One module per notebook topic: :mod:`.lowrank` (01-02), :mod:`.adapters` (03-04),
:mod:`.budget` and :mod:`.ranks` (05), :mod:`.intrinsic` (06), :mod:`.peft_methods` (07), all
built on :mod:`.base`.

Figures are built as ``matplotlib.figure.Figure`` objects outside pyplot and shown as PNG
images, so none is registered with pyplot and none piles up or is shown twice by the inline
backend; nothing here needs a display to import or to run.
"""
from .adapters import (
           AdapterExplorer,
           AdapterStrengthDashboard,
           BlendExplorer,
           StyleExplorer,
           adapter_explorer,
           blend_explorer,
           style_explorer,
)
from .base import Dashboard
from .budget import MemoryCalculator, ParameterBudgetExplorer, memory_calculator, parameter_budget_explorer
from .intrinsic import IntrinsicDimensionExplorer, intrinsic_dimension_explorer
from .lowrank import LoraRankExplorer, LowRankExplorer, lora_rank_explorer, lowrank_explorer
from .peft_methods import PeftCostExplorer, peft_cost_explorer
from .ranks import RankSweepExplorer, rank_sweep_explorer

__all__ = ["Dashboard", "AdapterStrengthDashboard", "LowRankExplorer", "lowrank_explorer", "LoraRankExplorer",
           "lora_rank_explorer", "StyleExplorer", "style_explorer", "AdapterExplorer", "adapter_explorer",
           "BlendExplorer", "blend_explorer", "ParameterBudgetExplorer", "parameter_budget_explorer",
           "MemoryCalculator", "memory_calculator", "RankSweepExplorer", "rank_sweep_explorer",
           "PeftCostExplorer", "peft_cost_explorer", "IntrinsicDimensionExplorer",
           "intrinsic_dimension_explorer"]
