"""Several adapters on one frozen base, in notebooks 03 and 04: a style adapter and its strength,
switching between adapters, blending two (see :mod:`lora_np.widgets`)."""
from __future__ import annotations

import ipywidgets as widgets

from .. import backend, viz
from ..data.text import guess_style, style_markers
from ..experiments.multi_adapter import blend_accuracy, blend_adapters
from ..experiments.styles import sample, use_adapter
from ..lora import (
    adapter_layers,
    disable_adapters,
    list_adapters,
    lora_layers,
    set_adapter,
    set_adapter_strength,
)
from ..train import evaluate
from ..validate import number
from .base import Dashboard, _figure, _show


def _is_pair(data) -> bool:
    """True for a data set ``(X, y)`` of two arrays."""
    return isinstance(data, tuple) and len(data) == 2 and all(backend.is_array(a) for a in data)


class AdapterStrengthDashboard(Dashboard):
    """A dropdown of adapters ("none" first) and a strength slider in [0, 1]; a redraw takes
    ``state = (adapter, strength)``. Subclasses check what the library does not, then call
    :meth:`_build` and implement ``_draw(state)``.
    """

    NONE = "none"

    def _build(self, where: str, names, adapter, strength: float, description: str) -> None:
        strength = number(strength, "strength", where, low=0.0, high=1.0)     # the slider's range
        names = (self.NONE,) + tuple(names)
        if adapter is None:
            adapter = names[1] if len(names) > 1 else self.NONE
        if adapter not in names:
            raise ValueError(f"{where}: adapter={adapter!r} must be one of {names}")
        self.dropdown = widgets.Dropdown(options=names, value=adapter, description="adapter")
        slider = widgets.FloatSlider(value=strength, min=0.0, max=1.0, step=0.05, description="strength",
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
            raise ValueError(f"style_explorer: adapters must be a non-empty dict {{style: adapter}}, "
                             f"got {adapters!r}")
        if self.NONE in adapters:
            raise ValueError(f"style_explorer: {self.NONE!r} is reserved for 'no adapter'; "
                             "rename that adapter")
        # prompt, n_chars and the sampling settings are checked by sample(), at the first redraw
        self.model, self.vocab, self.adapters = model, vocab, adapters
        self.prompt, self.n_chars = prompt, n_chars
        self.sample_kwargs = dict(temperature=temperature, top_k=top_k, seed=seed)
        self._build("style_explorer", adapters, adapter, strength,
                    "Style adapters on one frozen language model")

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
            raise ValueError(f"adapter_explorer: {self.NONE!r} is reserved for 'adapters disabled'; "
                             "rename that adapter")
        if not isinstance(datasets, dict) or not datasets or not all(_is_pair(d) for d in datasets.values()):
            raise ValueError("adapter_explorer: datasets must be a non-empty dict {label: (X, y)} of arrays "
                             "(use lora_np.backend.asarray)")
        self.model, self.datasets = model, datasets
        self._build("adapter_explorer", adapters, adapter, strength,
                    "Several adapters on one frozen base model")

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
        what = ("adapters disabled (the base model)" if name == self.NONE
                else f"adapter {name!r} at strength {strength:.2f}")
        viz.plot_harvest_accuracy(accuracy, ax=fig.subplots(), title=f"Accuracy with {what}")
        _show(fig)
        print(f"{what}: " + ", ".join(f"{k} {v:.1%}" for k, v in accuracy.items()))
        return record


def adapter_explorer(model, datasets: dict, adapter: str | None = None,
                     strength: float = 1.0) -> AdapterExplorer:
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
            if not _is_pair(data):
                raise ValueError(f"blend_explorer: {arg} must be a pair (X, y) of arrays "
                                 "(use lora_np.backend.asarray)")
        blend_adapters(model, adapter_a, adapter_b, w, name, combination, rank)   # the library checks w, rank
        self.model, self.adapters, self.name = model, (adapter_a, adapter_b), name
        self.datasets = {"accuracy_a": data_a, "accuracy_b": data_b}
        self.combination, self.rank = combination, rank
        self.points = {}                                      # w -> (accuracy_a, accuracy_b)
        slider = widgets.FloatSlider(value=w, min=0.0, max=1.0, step=0.05, description="weight w",
                                     continuous_update=False)
        how = "" if combination == "linear" else f", compressed to rank {rank} by SVD"
        super().__init__(slider, f"Blending adapters: w·ΔW({adapter_a}) + (1 − w)·ΔW({adapter_b}){how}")
        self.redraw(w)

    def _draw(self, w) -> dict:
        a, b = self.adapters
        acc = blend_accuracy(self.model, a, b, float(w), self.datasets, self.name, self.combination,
                             self.rank)
        rank = max(layer.r for layer in adapter_layers(self.model, self.name).values())
        record = {"w": float(w), "accuracy_a": acc["accuracy_a"], "accuracy_b": acc["accuracy_b"],
                  "adapter": self.name, "combination": self.combination, "rank": rank}
        self.points[float(w)] = (acc["accuracy_a"], acc["accuracy_b"])
        ws = sorted(self.points)
        fig = _figure((7, 4))
        viz.plot_blend(ws, [self.points[k][0] for k in ws], [self.points[k][1] for k in ws],
                       ax=fig.subplots(), names=self.adapters, current=float(w))
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
