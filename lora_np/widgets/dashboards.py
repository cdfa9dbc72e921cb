"""The dashboards of notebooks 01-04, and what every dashboard shares: ``Dashboard``, ``_figure``
and ``_show`` (see :mod:`lora_np.widgets`).
"""
from __future__ import annotations

import io

import ipywidgets as widgets
from IPython.display import Image, display

from .. import backend, viz
from ..data.text import guess_style, style_markers
from ..experiments import finetune, low_rank_approx, lowrank_param_count, relative_error
from ..experiments.multi_adapter import blend_accuracy
from ..experiments.finetune import DEFAULT_TARGETS
from ..experiments.styles import sample, use_adapter
from ..lora import (adapter_layers, disable_adapters, list_adapters, lora_layers, set_adapter,
                   set_adapter_strength)
from ..train import evaluate


def _figure(figsize):
    """A Figure that pyplot knows nothing about (nothing to close, nothing shown twice)."""
    from matplotlib.figure import Figure
    return Figure(figsize=figsize)


def _show(fig, dpi: int = 90) -> None:
    """Display a Figure as a PNG image in the current output (an Output widget's, inside ``with``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    display(Image(data=buf.getvalue(), format="png"))


def _choice_slider(where: str, arg: str, value, options, name: str, description: str):
    """A ``SelectionSlider`` over positive integer ``options`` starting at ``value``; both are checked
    with errors that name the dashboard (``where``) and the argument."""
    options = tuple(options)
    if not options or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in options):
        raise ValueError(f"{where}: {name} must be positive integers, got {options!r}")
    if value not in options:
        raise ValueError(f"{where}: {arg}={value!r} must be one of {name}={options}")
    return widgets.SelectionSlider(options=options, value=value, description=description, continuous_update=False)


class Dashboard(widgets.VBox):
    """A slider above an output area, plus the kernel-side ``history`` of every redraw."""

    def __init__(self, slider, description: str = ""):
        self.slider = slider
        self.output = widgets.Output()
        self.history = []
        header = [widgets.HTML(f"<b>{description}</b>")] if description else []
        super().__init__(header + [slider, self.output])
        slider.observe(self._on_change, names="value")

    def _on_change(self, change) -> None:
        self.redraw(change["new"])

    def redraw(self, r) -> dict:
        """Recompute and redraw for rank ``r``; append the record to ``history`` and return it."""
        record = None
        with self.output:                # inside IPython, an error here is shown there and swallowed
            self.output.clear_output(wait=True)
            record = self._draw(r)
        if record is None:
            raise RuntimeError(f"{type(self).__name__}: redrawing for {r!r} failed; "
                               "the traceback is shown in the dashboard's output area")
        self.history.append(record)
        return record

    def _draw(self, r) -> dict:
        raise NotImplementedError


class AdapterStrengthDashboard(Dashboard):
    """A dropdown of adapters ("none" first) and a strength slider in [0, 1]; a redraw takes
    ``state = (adapter, strength)``. Subclasses validate their own arguments, then call
    :meth:`_build` and implement ``_draw(state)``.
    """

    NONE = "none"

    def _build(self, where: str, names, adapter, strength: float, description: str) -> None:
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
            raise ValueError(f"{where}: strength must be a number in [0, 1], got {strength!r}")
        names = (self.NONE,) + tuple(names)
        if adapter is None:
            adapter = names[1] if len(names) > 1 else self.NONE
        if adapter not in names:
            raise ValueError(f"{where}: adapter={adapter!r} must be one of {names}")
        self.dropdown = widgets.Dropdown(options=names, value=adapter, description="adapter")
        slider = widgets.FloatSlider(value=float(strength), min=0.0, max=1.0, step=0.05, description="strength",
                                     continuous_update=False)
        super().__init__(slider, description)
        self.children = self.children[:-2] + (self.dropdown,) + self.children[-2:]
        self.dropdown.observe(self._on_change, names="value")
        self.redraw()

    def _on_change(self, change) -> None:
        self.redraw()

    def redraw(self, state=None) -> dict:
        """Redraw for ``state = (adapter, strength)``, by default the widgets' current values."""
        return super().redraw((self.dropdown.value, self.slider.value) if state is None else state)


class LowRankExplorer(Dashboard):
    """The matrix ``M``, its best rank-r approximation B·A and the error, for r on a slider."""

    def __init__(self, M, r: int = 1):
        if not backend.is_array(M) or M.ndim != 2:
            raise ValueError("lowrank_explorer: M must be a 2-D array (use lora_np.backend.asarray)")
        self.M = M
        self.m, self.n = M.shape
        k = min(self.m, self.n)
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= k:
            raise ValueError(f"lowrank_explorer: r must be an integer in [1, min(m, n) = {k}], got r={r!r}")
        slider = widgets.IntSlider(value=r, min=1, max=k, step=1, description="rank r",
                                   continuous_update=False)
        super().__init__(slider, f"Best rank-r approximation of a {self.m}×{self.n} matrix")
        self.redraw(r)

    def _draw(self, r) -> dict:
        B, A = low_rank_approx(self.M, r)                      # (m, r), (r, n)
        approx = B @ A                                         # (m, n)
        err = relative_error(self.M, approx)
        record = {"r": int(r), "params": lowrank_param_count(self.m, self.n, r),
                  "full_params": self.m * self.n, "rel_error": err}
        fig = _figure((12, 3.6))
        viz.plot_lowrank(self.M, approx, r, axes=fig.subplots(1, 3))
        _show(fig)
        print(f"r = {r}: {record['params']:,} numbers in B and A vs {record['full_params']:,} in M "
              f"({record['params'] / record['full_params']:.1%}); relative error {err:.4f}")
        return record


def lowrank_explorer(M, r: int = 1) -> LowRankExplorer:
    """A slider for r (1..min(m, n)) redrawing ``M``, its best rank-r approximation and the error."""
    return LowRankExplorer(M, r)


class LoraRankExplorer(Dashboard):
    """Fine-tune a copy of ``base`` with LoRA at the rank on the slider; draw the loss curves.

    Each rank is trained once and cached (``.results[r]``), so moving back is instant; the plot
    shows every rank trained so far, the current one drawn thickest.
    """

    def __init__(self, base, task, ranks=(1, 2, 4, 8, 16), r: int = 4, epochs: int = 30, **finetune_kwargs):
        slider = _choice_slider("lora_rank_explorer", "r", r, ranks, "ranks", "LoRA rank r")
        self.base, self.task, self.epochs, self.kwargs = base, task, epochs, finetune_kwargs
        self.results = {}
        targets = finetune_kwargs.get("target_modules", DEFAULT_TARGETS)
        super().__init__(slider, f"LoRA fine-tuning on the shifted fruit (adapting {', '.join(targets)})")
        self.redraw(r)

    def _draw(self, r) -> dict:
        cached = r in self.results
        if not cached:
            self.results[r] = finetune(self.base, self.task, r=r, epochs=self.epochs, **self.kwargs)
        res = self.results[r]
        record = {"r": int(r), "trainable": res.trainable, "total": res.total, "percent": res.percent,
                  "accuracy": res.accuracy, "grape_recall": res.grape_recall, "seconds": res.seconds,
                  "cached": cached}
        fig = _figure((7, 4))
        ax = fig.subplots()
        runs = [self.results[k] for k in sorted(self.results)]
        viz.plot_loss_curves(runs, ax=ax)
        for line, run in zip(ax.get_lines(), runs):
            line.set_linewidth(2.5 if run.r == r else 1.0)
            line.set_alpha(1.0 if run.r == r else 0.5)
        ax.set_title(f"Fine-tuning on the new harvest: LoRA r = {r} (other ranks tried: faded)")
        _show(fig)
        print(f"r = {r}: trainable parameters {res.trainable:,} of {res.total:,} ({res.percent:.2f}%)\n"
              f"shifted-fruit accuracy {res.accuracy:.1%}, grape recall {res.grape_recall:.1%}"
              f"  (trained in {res.seconds:.2f} s{', cached' if cached else ''})")
        return record


def lora_rank_explorer(base, task, ranks=(1, 2, 4, 8, 16), r: int = 4, epochs: int = 30,
                       **finetune_kwargs) -> LoraRankExplorer:
    """A slider over ``ranks`` that fine-tunes ``base`` on ``task`` with LoRA at rank r and redraws.

    ``epochs`` and any other keyword (``seed``, ``lr``, ``target_modules``, ...) go to
    :func:`lora_np.experiments.finetune`.
    """
    return LoraRankExplorer(base, task, ranks=ranks, r=r, epochs=epochs, **finetune_kwargs)


class StyleExplorer(AdapterStrengthDashboard):
    """Pick a style adapter and its strength; the frozen base model writes a fresh sample.

    ``model`` is a LoRA model (:func:`lora_np.experiments.styles.lora_model_for`) whose adapter
    slots this dashboard fills: every redraw loads the chosen adapter at the chosen strength
    (``"none"`` switches every adapter off, whatever the slider says) and samples with a fixed
    seed, so the text changes only because the adapter or its strength did.
    ``.dropdown`` is the adapter, ``.slider`` the strength; each ``history`` record holds
    ``adapter``, ``strength`` (the slider's value), ``text``, ``markers`` (:func:`style_markers`)
    and ``guess`` (:func:`guess_style`).
    """

    def __init__(self, model, vocab, adapters: dict, prompt: str = "the ", n_chars: int = 120,
                 adapter: str | None = None, strength: float = 1.0, temperature: float = 0.8,
                 top_k: int | None = 10, seed: int = 0):
        if not lora_layers(model):
            raise ValueError("style_explorer: model has no LoRA layers to load an adapter into; "
                             "pass lora_model_for(base)")
        if not isinstance(adapters, dict) or not adapters:
            raise ValueError(f"style_explorer: adapters must be a non-empty dict {{style: adapter}}, got {adapters!r}")
        if self.NONE in adapters:
            raise ValueError(f"style_explorer: {self.NONE!r} is reserved for 'no adapter'; rename that adapter")
        if isinstance(n_chars, bool) or not isinstance(n_chars, int) or n_chars <= 0:
            raise ValueError(f"style_explorer: n_chars must be a positive integer, got {n_chars!r}")
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"style_explorer: prompt must be a non-empty string, got {prompt!r}")
        vocab.encode(prompt)                                   # a clear error now for a character it lacks
        self.model, self.vocab, self.adapters, self.prompt, self.n_chars = model, vocab, adapters, prompt, n_chars
        self.sample_kwargs = dict(temperature=temperature, top_k=top_k, seed=seed)
        self._build("style_explorer", adapters, adapter, strength, "Style adapters on one frozen language model")

    def _draw(self, state) -> dict:
        name, strength = state
        use_adapter(self.model, None if name == self.NONE else self.adapters[name], strength)
        text = sample(self.model, self.vocab, self.prompt, self.n_chars, **self.sample_kwargs)
        markers = style_markers(text)
        record = {"adapter": name, "strength": float(strength), "text": text, "markers": markers,
                  "guess": guess_style(text)}
        print(f"adapter {name!r}" + ("" if name == self.NONE else f" at strength {strength:.2f}")
              + f"  (reads as: {record['guess']})\n")
        print(text)
        print("\n" + "   ".join(f"{k} {v:.2f}" for k, v in markers.items() if k in _SHOWN_MARKERS))
        return record


_SHOWN_MARKERS = ("upper_frac", "semicolons", "ats", "commas", "oh")


def style_explorer(model, vocab, adapters: dict, prompt: str = "the ", n_chars: int = 120,
                   adapter: str | None = None, strength: float = 1.0, **sample_kwargs) -> StyleExplorer:
    """A dropdown of ``adapters`` (plus "none") and a strength slider (0..1) that regenerate a sample.

    ``model``: a LoRA model from :func:`lora_np.experiments.styles.lora_model_for` (the dashboard
    loads adapters into it); ``adapters``: ``{style: adapter}`` from ``train_style_adapters``.
    ``temperature``, ``top_k`` and ``seed`` go to :func:`lora_np.experiments.styles.sample`.
    """
    return StyleExplorer(model, vocab, adapters, prompt=prompt, n_chars=n_chars, adapter=adapter,
                         strength=strength, **sample_kwargs)


class AdapterExplorer(AdapterStrengthDashboard):
    """Switch between the adapters of one model and set the active one's strength; each change
    measures the test accuracy on every data set.

    ``.dropdown`` picks the adapter (``"none"``: adapters disabled, the base model exactly) and
    ``.slider`` its strength (:func:`lora_np.lora.set_adapter_strength`). The choice is left in
    the model: the adapter stays active at that strength. Each ``history`` record holds
    ``adapter``, ``strength`` (the slider's value) and ``accuracy`` (``{label: accuracy}``).
    """

    def __init__(self, model, datasets: dict, adapter: str | None = None, strength: float = 1.0):
        adapters = list_adapters(model)                       # a clear error when the model has none
        if self.NONE in adapters:
            raise ValueError(f"adapter_explorer: {self.NONE!r} is reserved for 'adapters disabled'; rename that adapter")
        if not isinstance(datasets, dict) or not datasets or not all(
                isinstance(d, tuple) and len(d) == 2 and all(backend.is_array(a) for a in d) for d in datasets.values()):
            raise ValueError("adapter_explorer: datasets must be a non-empty dict {label: (X, y)} of arrays "
                             "(use lora_np.backend.asarray)")
        self.model, self.datasets = model, datasets
        self._build("adapter_explorer", adapters, adapter, strength, "Several adapters on one frozen base model")

    def _draw(self, state) -> dict:
        name, strength = state
        if name == self.NONE:
            disable_adapters(self.model)
        else:
            set_adapter(self.model, name)
            set_adapter_strength(self.model, float(strength))
        accuracy = {label: evaluate(self.model, *data)["accuracy"] for label, data in self.datasets.items()}
        record = {"adapter": name, "strength": float(strength), "accuracy": accuracy}
        fig = _figure((6, 3.5))
        what = "adapters disabled (the base model)" if name == self.NONE else f"adapter {name!r} at strength {strength:.2f}"
        viz.plot_harvest_accuracy(accuracy, ax=fig.subplots(), title=f"Accuracy with {what}")
        _show(fig)
        print(f"{what}: " + ", ".join(f"{k} {v:.1%}" for k, v in accuracy.items()))
        return record


def adapter_explorer(model, datasets: dict, adapter: str | None = None, strength: float = 1.0) -> AdapterExplorer:
    """A dropdown of the model's adapters (plus "none") and a strength slider (0..1); each change
    switches the model and measures the accuracy on every ``datasets = {label: (X, y)}``.
    """
    return AdapterExplorer(model, datasets, adapter=adapter, strength=strength)


class BlendExplorer(Dashboard):
    """Blend two adapters, w·ΔW_a + (1 − w)·ΔW_b, with w on a slider; measure both harvests.

    Every redraw replaces the model's adapter ``name`` by the new blend
    (:func:`lora_np.experiments.blend_accuracy` → ``delete_adapter`` + ``add_weighted_adapter``),
    leaves it active, and measures the test accuracy on ``data_a`` and ``data_b`` (``(X, y)``
    pairs). The plot shows every weight tried so far. ``combination="svd"`` with ``rank``
    compresses each blend to that rank. Each ``history`` record holds ``w``, ``accuracy_a``,
    ``accuracy_b``, ``adapter`` (the blend's name), ``combination`` and ``rank`` (the blend's
    largest layer rank).
    """

    def __init__(self, model, adapter_a: str, adapter_b: str, data_a, data_b, w: float = 0.5,
                 name: str = "blend", combination: str = "linear", rank: int | None = None):
        adapters = list_adapters(model)                       # a clear error when the model has none
        for arg, a in (("adapter_a", adapter_a), ("adapter_b", adapter_b)):
            if a not in adapters or a == name:
                raise ValueError(f"blend_explorer: {arg}={a!r} must be one of the model's adapters "
                                 f"{[n for n in adapters if n != name]}")
        if adapter_a == adapter_b:
            raise ValueError(f"blend_explorer: adapter_a and adapter_b must differ, both are {adapter_a!r}")
        for arg, data in (("data_a", data_a), ("data_b", data_b)):
            if not (isinstance(data, tuple) and len(data) == 2 and all(backend.is_array(d) for d in data)):
                raise ValueError(f"blend_explorer: {arg} must be a pair (X, y) of arrays (use lora_np.backend.asarray)")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= w <= 1.0:
            raise ValueError(f"blend_explorer: w must be a number in [0, 1], got {w!r}")
        if combination not in ("linear", "svd"):
            raise ValueError(f"blend_explorer: combination must be 'linear' or 'svd', got {combination!r}")
        if combination == "svd" and (isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0):
            raise ValueError(f"blend_explorer: combination='svd' needs a positive integer rank, got {rank!r}")
        self.model, self.adapters, self.name = model, (adapter_a, adapter_b), name
        self.datasets = {"accuracy_a": data_a, "accuracy_b": data_b}
        self.combination, self.rank = combination, rank
        self.points = {}                                      # w -> (accuracy_a, accuracy_b)
        slider = widgets.FloatSlider(value=float(w), min=0.0, max=1.0, step=0.05, description="weight w",
                                     continuous_update=False)
        how = "" if combination == "linear" else f", compressed to rank {rank} by SVD"
        super().__init__(slider, f"Blending adapters: w·ΔW({adapter_a}) + (1 − w)·ΔW({adapter_b}){how}")
        self.redraw(w)

    def _draw(self, w) -> dict:
        a, b = self.adapters
        acc = blend_accuracy(self.model, a, b, float(w), self.datasets, self.name, self.combination, self.rank)
        rank = max(layer.r for layer in adapter_layers(self.model, self.name).values())
        record = {"w": float(w), "accuracy_a": acc["accuracy_a"], "accuracy_b": acc["accuracy_b"],
                  "adapter": self.name, "combination": self.combination, "rank": rank}
        self.points[float(w)] = (acc["accuracy_a"], acc["accuracy_b"])
        ws = sorted(self.points)
        fig = _figure((7, 4))
        viz.plot_blend(ws, [self.points[k][0] for k in ws], [self.points[k][1] for k in ws], ax=fig.subplots(),
                       names=self.adapters, current=float(w))
        _show(fig)
        print(f"w = {w:.2f}: accuracy on {a}'s harvest {record['accuracy_a']:.1%}, "
              f"on {b}'s harvest {record['accuracy_b']:.1%}  (adapter {self.name!r}, rank {rank} per layer)")
        return record


def blend_explorer(model, adapter_a: str, adapter_b: str, data_a, data_b, w: float = 0.5, name: str = "blend",
                   combination: str = "linear", rank: int | None = None) -> BlendExplorer:
    """A slider for w in [0, 1] that activates the blend w·ΔW_a + (1 − w)·ΔW_b of two adapters of
    ``model`` and measures the accuracy on ``data_a`` and ``data_b`` (each ``(X, y)``).

    The blend is the model's adapter ``name``, rebuilt at every move and left active.
    """
    return BlendExplorer(model, adapter_a, adapter_b, data_a, data_b, w=w, name=name, combination=combination,
                         rank=rank)
