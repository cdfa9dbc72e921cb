"""Style adapters, in text: one frozen base language model, one small adapter per writing style.

This is what a style LoRA is meant to do for an image generator (an "ink-wash style" adapter should
change the look, not the subject), shown with characters: the base model writes plain fruit-shop
sentences; an adapter trained on inventory lines or on verse makes the same base write in that
style's marks, and its strength slides the output from one to the other. Whether the subject stays
is measured, not assumed: notebook 03 counts the fruit names (:func:`lora_np.data.text.fruit_mentions`)
and finds that these briefly trained adapters lose them.

>>> vocab = CharVocab()
>>> base, _ = pretrain_lm(vocab)                                   # plain style
>>> adapters = train_style_adapters(base, vocab, ("inventory", "verse"))
>>> model = lora_model_for(base)                                  # the base with empty LoRA layers
>>> use_adapter(model, adapters["verse"], strength=1.0)
>>> sample(model, vocab, "the ", 80)
"""
from __future__ import annotations

import copy

from .. import backend
from ..data.text import CharVocab, make_text_dataset
from ..lora import LoraConfig, inject_lora, load_lora_state_dict, lora_state_dict, set_adapter_strength
from ..models import TransformerConfig, TransformerLM, generate
from ..optim import Adam
from ..train import fit, progress_bar
from ..validate import message, positive_int

LM_CONFIG = dict(d_model=64, n_heads=4, n_layers=2, context=32)
STYLE_TARGETS = ("q", "v", "up", "down")


def pretrain_lm(vocab: CharVocab, style: str = "plain", n_lines: int = 800, epochs: int = 3,
                lr: float = 3e-3, batch_size: int = 64, stride: int = 8, seed: int = 0,
                config: TransformerConfig | None = None, progress: bool = False):
    """Train a character-level TransformerLM on one style. Returns ``(model, history)``.

    Training windows of ``context`` characters start every ``stride`` characters.
    """
    if config is None:
        config = TransformerConfig(vocab_size=vocab.size, seed=seed, **LM_CONFIG)
    X, Y = make_text_dataset(style, n_lines=n_lines, context=config.context, seed=seed, vocab=vocab,
                             stride=stride)
    model = TransformerLM(config)
    hist = fit(model, Adam(model, lr=lr), X, Y, epochs=epochs, batch_size=batch_size, seed=seed,
               progress=progress)
    return model, hist


def lora_model_for(base, r: int = 8, targets=STYLE_TARGETS, seed: int = 0):
    """A copy of ``base`` with (empty) LoRA layers on ``targets``, ready to receive an adapter."""
    config = LoraConfig(r=r, lora_alpha=2.0 * r, target_modules=list(targets), seed=seed)
    return inject_lora(copy.deepcopy(base), config)


def train_style_adapters(base, vocab: CharVocab, styles, r: int = 8, targets=STYLE_TARGETS,
                         n_lines: int = 300, epochs: int = 3, lr: float = 5e-3, batch_size: int = 64,
                         stride: int = 8, seed: int = 0, progress: bool = False) -> dict:
    """One adapter per style, each trained on its own copy of the frozen base.

    Returns ``{style: adapter}`` where an adapter is the dict of LoRA tensors (host arrays).
    ``progress``: a bar over the styles.
    """
    adapters = {}
    for i, style in enumerate(progress_bar(list(styles), progress, "style adapters")):
        model = lora_model_for(base, r, targets, seed)
        X, Y = make_text_dataset(style, n_lines=n_lines, context=base.config.context, seed=seed + 1 + i,
                                 vocab=vocab, stride=stride)
        fit(model, Adam(model, lr=lr), X, Y, epochs=epochs, batch_size=batch_size, seed=seed)
        adapters[style] = lora_state_dict(model)
    return adapters


def use_adapter(model, adapter: dict | None, strength: float = 1.0) -> None:
    """Load ``adapter`` into a LoRA model (``None``: switch every adapter off) at ``strength``."""
    if adapter is None:
        set_adapter_strength(model, 0.0)
        return
    load_lora_state_dict(model, adapter)
    set_adapter_strength(model, strength)


def sample(model: TransformerLM, vocab: CharVocab, prompt: str, n_chars: int = 120, temperature: float = 0.8,
           top_k: int | None = 10, seed: int = 0) -> str:
    """Generate ``n_chars`` characters after ``prompt`` and return the whole text."""
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(message("prompt", "a non-empty string", prompt, "sample"))
    n_chars = positive_int(n_chars, "n_chars", "sample")
    ids = backend.asarray(vocab.encode(prompt))
    return vocab.decode(generate(model, ids, n_chars, temperature=temperature, top_k=top_k, seed=seed))
