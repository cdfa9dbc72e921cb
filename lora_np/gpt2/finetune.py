"""Fine-tuning GPT-2 on plain text: windows of token ids, the training loop, sampling, and what a step costs.

Next-token training. A text becomes one long list of ids t_0 … t_{n-1}; a *window* is context + 1
consecutive ids. Its first ``context`` ids are the input and its last ``context`` the labels, shifted
by one: the logits at position j are scored against t_{j+1}, so every position of every window is a
training example, and the loss is the mean cross-entropy over all of them,

    L = −(1 / (B·T)) Σ_b Σ_j log softmax(logits[b, j])[t_{b, j+1}].

The same loop serves full fine-tuning (every parameter trainable) and LoRA (``inject_lora`` first:
only A and B are trainable), because :class:`~lora_np.optim.Adam` keeps state only for trainable
parameters. :func:`step_cost` measures what that difference is worth: seconds and bytes of one step.

>>> windows = token_windows(tok, text, context=64)          # (N, 65) ids
>>> losses = finetune(model, windows, steps=300, lr=3e-3, batch_size=16)
>>> complete(model, tok, "oh ", n_new=40)
"""
from __future__ import annotations

import math
import statistics
import time
import tracemalloc

from .. import backend, validate
from ..models import generate
from ..nn import LoRALayer, Module, SoftmaxCrossEntropy
from ..optim import Adam
from ..train import TrainingDiverged, progress_bar

__all__ = ["token_windows", "finetune", "evaluate_loss", "complete", "frozen_head_floor", "step_cost"]


def _check_tokenizer(tokenizer, where: str) -> None:
    if not (callable(getattr(tokenizer, "encode", None)) and callable(getattr(tokenizer, "decode", None))):
        raise TypeError(f"{where}: tokenizer must have encode(text) and decode(ids) (a GPT2Tokenizer), "
                        f"got {type(tokenizer).__name__}")


def _check_model(model, where: str) -> None:
    if not isinstance(model, Module) or not hasattr(getattr(model, "config", None), "n_positions"):
        raise TypeError(f"{where}: model must be a GPT2LMHeadModel (with or without adapters), "
                        f"got {type(model).__name__}")


def _check_windows(windows, model, where: str, name: str = "windows") -> None:
    """An integer (N, T + 1) array, 2 ≤ T + 1, T ≤ n_positions, ids below the vocabulary's size."""
    if not backend.is_array(windows) or windows.ndim != 2 or windows.dtype.kind not in "iu":
        got = (f"shape {tuple(windows.shape)}, dtype {windows.dtype}" if backend.is_array(windows)
               else type(windows).__name__)
        raise ValueError(validate.message(name, "a 2-D integer array (N, context + 1) of token ids "
                                          "(token_windows makes one)", got, where))
    N, width = windows.shape
    if N == 0 or width < 2:
        raise ValueError(f"{where}: {name} has shape {tuple(windows.shape)}; it needs at least one window "
                         "of at least 2 ids (an input and its next token)")
    if width - 1 > model.config.n_positions:
        raise ValueError(f"{where}: {name} has context {width - 1} (shape {tuple(windows.shape)}), "
                         f"longer than the model's n_positions = {model.config.n_positions}; make windows "
                         f"with context <= {model.config.n_positions}")
    lo, hi = int(windows.min()), int(windows.max())
    if lo < 0 or hi >= model.config.vocab_size:
        raise ValueError(f"{where}: {name} holds ids in [{lo}, {hi}], outside the model's vocabulary "
                         f"[0, {model.config.vocab_size - 1}]: was the text encoded with this model's "
                         "tokenizer?")


# ------------------------------------------------------------------ data

def token_windows(tokenizer, text: str, context: int, stride: int | None = None):
    """Windows of ``context + 1`` consecutive token ids of ``text``: an int64 array (N, context + 1).

    Window i starts at token i·stride. ``stride`` defaults to ``context``: the inputs then tile the
    text, and consecutive windows share one id (the last label of one is the first input of the next).
    N = 1 + ⌊(n − context − 1) / stride⌋ for a text of n tokens; a shorter text is a ValueError.
    """
    where = "token_windows"
    _check_tokenizer(tokenizer, where)
    if not isinstance(text, str):
        raise TypeError(f"{where}: text must be a string, got {type(text).__name__}")
    context = validate.positive_int(context, "context", where)
    stride = context if stride is None else validate.positive_int(stride, "stride", where)
    ids = backend.asarray(tokenizer.encode(text), dtype="int64")                 # (n,)
    n = ids.shape[0]
    if n < context + 1:
        raise ValueError(f"{where}: the text has {n} tokens; one window needs context + 1 = {context + 1}: "
                         "pass a longer text or a smaller context")
    xp = backend.get_array_module(ids)
    starts = xp.arange(0, n - context, stride)                                   # (N,)
    return ids[starts[:, None] + xp.arange(context + 1)[None, :]]                # (N, context + 1)


# ------------------------------------------------------------------ training

def _step(model, optimizer, criterion, batch) -> float:
    """One training step on ``batch`` (B, T + 1): forward, loss, backward, Adam. Returns the loss."""
    x, y = batch[:, :-1], batch[:, 1:]                                           # (B, T) inputs and labels
    loss = float(criterion(model(x), y))                                         # logits (B, T, V)
    optimizer.zero_grad()
    model.backward(criterion.backward())                                         # dlogits (B, T, V)
    optimizer.step()
    return loss


def finetune(model, windows, steps: int, lr: float, batch_size: int, seed: int = 0,
             progress: bool = True) -> list:
    """Train ``model``'s trainable parameters with Adam for ``steps`` steps; return the losses (floats).

    Each step draws ``batch_size`` windows at random, with replacement (:class:`lora_np.backend.Rng`
    seeded with ``seed``: the same seed gives the same batches on every backend), and minimises the
    mean next-token cross-entropy over every position. ``progress``: a tqdm bar (the widget in Jupyter).
    A loss that is not finite stops training with :class:`lora_np.train.TrainingDiverged`.
    """
    where = "finetune"
    _check_model(model, where)
    _check_windows(windows, model, where)
    steps = validate.positive_int(steps, "steps", where)
    batch_size = validate.positive_int(batch_size, "batch_size", where)
    lr = validate.positive_number(lr, "lr", where)
    seed = validate.integer(seed, "seed", where, low=0)
    optimizer, criterion, rng = Adam(model, lr=lr), SoftmaxCrossEntropy(), backend.Rng(seed)
    N, losses = windows.shape[0], []
    bar = progress_bar(None, bool(progress), "fine-tuning", total=steps)
    model.train()
    try:
        for step in range(steps):
            batch = windows[rng.integers(0, N, (batch_size,))]                  # (B, T + 1)
            loss = _step(model, optimizer, criterion, batch)
            if not math.isfinite(loss):
                raise TrainingDiverged(f"{where}: the loss became {loss} at step {step}; try a lower "
                                       f"learning rate than lr={lr:g}")
            losses.append(loss)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
        model.clear_caches()
    return losses


def evaluate_loss(model, windows, batch_size: int = 32) -> float:
    """The mean next-token cross-entropy of ``model`` over every position of every window (nats per
    token), without training: the same L as :func:`finetune` minimises, on text it may not have seen."""
    where = "evaluate_loss"
    _check_model(model, where)
    _check_windows(windows, model, where)
    batch_size = validate.positive_int(batch_size, "batch_size", where)
    criterion, total, count, was_training = SoftmaxCrossEntropy(), 0.0, 0, model.training
    model.eval()
    try:
        for i in range(0, windows.shape[0], batch_size):
            batch = windows[i:i + batch_size]                                    # (b, T + 1)
            n = batch.shape[0] * (batch.shape[1] - 1)                            # positions scored
            total += float(criterion(model(batch[:, :-1]), batch[:, 1:])) * n
            count += n
    finally:
        model.train(was_training)
        model.clear_caches()
    return total / count


# ------------------------------------------------------------------ sampling

def complete(model, tokenizer, prompt: str, n_new: int, temperature: float = 0.8, top_k: int | None = None,
             seed: int = 0) -> str:
    """``prompt`` followed by ``n_new`` sampled tokens, decoded to text (the prompt included).

    Sampling is :func:`lora_np.models.generate`: softmax(logits / temperature) over the ``top_k``
    best tokens, drawn with a seeded uniform number, so the same seed writes the same text. An
    empty prompt starts from the end-of-text token, as GPT-2 does (it is not part of the result).
    """
    where = "complete"
    _check_model(model, where)
    _check_tokenizer(tokenizer, where)
    if not isinstance(prompt, str):
        raise TypeError(f"{where}: prompt must be a string, got {type(prompt).__name__}")
    n_new = validate.integer(n_new, "n_new", where, low=0)
    ids = tokenizer.encode(prompt)
    start = 0
    if not ids:
        eot = getattr(tokenizer, "eot_id", None)
        if eot is None:
            raise ValueError(f"{where}: the prompt is empty and the tokenizer has no end-of-text token to "
                             "start from; pass a non-empty prompt")
        ids, start = [eot], 1
    out = generate(model, backend.asarray(ids, dtype="int64"), n_new, temperature=temperature,
                   top_k=top_k, seed=seed)                                         # (len(ids) + n_new,)
    return tokenizer.decode([int(i) for i in backend.to_numpy(out)[start:]])


# ------------------------------------------------------------------ what a frozen head allows

def frozen_head_floor(model, ids, iterations: int = 50) -> float:
    """The lowest mean next-token loss on ``ids`` that ANY change to the blocks could reach while the
    final LayerNorm ``ln_f`` and the head stay frozen: a lower bound, even for a model that knew every
    next token for certain.

    The logits are h Wᵀ, W (V, d) the head's weight and h = g ⊙ n + b the output of ``ln_f``, whose
    normalised n has |n| ≤ √d whatever the blocks compute; so |h| ≤ H = max|g|·√d + |b|. For a target
    token c the lowest loss is then

        ℓ*(c) = min_{|h| ≤ H}  logsumexp(h Wᵀ) − h · w_c,

    a convex problem (log-sum-exp is convex, the ball is convex), solved by projected gradient descent:
    the gradient is ∇f = softmax(h Wᵀ) W − w_c, the step 1 / max_v |w_v|² (its Hessian Wᵀ(diag p − p pᵀ)W
    is at most that), then h is pulled back into the ball. What is returned is a *certified* lower bound
    whatever the number of iterations: by convexity ℓ*(c) ≥ f(h) + min_{|y| ≤ H} ∇f·(y − h) =
    f(h) − ∇f·h − H |∇f| (the Frank–Wolfe gap, 0 at the optimum). Returns Σ_c count(c) ℓ*(c) / Σ_c count(c)
    over the targets ids[1:]. A model whose head or ``ln_f`` is trained or adapted has no such floor.
    """
    where = "frozen_head_floor"
    _check_model(model, where)
    iterations = validate.positive_int(iterations, "iterations", where)
    ln, head = model.transformer.ln_f, model.lm_head
    if isinstance(head, LoRALayer) or any(p.trainable for p in (*ln.parameters(), *head.parameters())):
        raise ValueError(f"{where}: the head or ln_f of this model is trainable (as in full fine-tuning) or "
                         "adapted, so nothing bounds its logits; the floor holds for a frozen head, e.g. "
                         "after inject_lora on the blocks only")
    ids = backend.asarray(ids)
    if ids.ndim != 1 or ids.shape[0] < 2 or ids.dtype.kind not in "iu":
        raise ValueError(validate.message("ids", "a 1-D integer array of at least 2 token ids",
                                          f"shape {tuple(ids.shape)}, dtype {ids.dtype}", where))
    xp = backend.get_array_module(ids)
    W, g, b = head.weight.data, ln.weight.data, ln.bias.data                      # (V, d), (d,), (d,)
    H = float(xp.abs(g).max()) * math.sqrt(W.shape[1]) + float(xp.sqrt((b * b).sum()))
    targets, counts = xp.unique(ids[1:], return_counts=True)                     # (k,), (k,)
    Wc = W[targets]                                                              # (k, d) the targets' rows
    step = 1.0 / float((W * W).sum(axis=1).max())
    h = Wc * (H / xp.sqrt((Wc * Wc).sum(axis=1, keepdims=True)))                 # (k, d) start: along w_c
    for _ in range(iterations):
        z = h @ W.T                                                              # (k, V) logits
        p = xp.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)                                        # (k, V) softmax
        h = h - step * (p @ W - Wc)                                              # (k, d) gradient step
        h *= xp.minimum(1.0, H / xp.sqrt((h * h).sum(axis=1, keepdims=True)))    # back into |h| ≤ H
    z = h @ W.T                                                                  # (k, V)
    top = z.max(axis=1, keepdims=True)                                           # (k, 1)
    e = xp.exp(z - top)                                                          # (k, V)
    lse = xp.log(e.sum(axis=1)) + top[:, 0]                                      # (k,)
    loss = lse - z[xp.arange(z.shape[0]), targets]                               # (k,) f(h) ≥ ℓ*(c)
    grad = (e / e.sum(axis=1, keepdims=True)) @ W - Wc                           # (k, d) ∇f at h
    gap = (grad * h).sum(axis=1) + H * xp.sqrt((grad * grad).sum(axis=1))        # (k,) ≥ f(h) − ℓ*(c)
    return float(((loss - gap) * counts).sum() / counts.sum())


# ------------------------------------------------------------------ what a step costs

def _bytes(arrays) -> int:
    return sum(int(a.nbytes) for a in arrays if a is not None)


def step_cost(model, batch_ids, repeats: int = 3) -> dict:
    """Time and memory of ONE training step (forward, loss, backward, Adam) of ``model`` as it is:
    full fine-tuning when every parameter is trainable, LoRA when adapters are injected.

    ``batch_ids``: (B, T + 1) token ids, as :func:`token_windows` makes them. One warm-up step
    (it creates Adam's moments), then ``repeats`` timed steps; then one more step under
    :mod:`tracemalloc`. Everything is measured from arrays that exist, not from formulas:

    * ``seconds_per_step``: the median of the timed steps (a GPU is synchronised before the clock);
    * ``params_bytes``: every parameter's array (a tied weight once), frozen ones included;
    * ``grads_bytes``: the gradients a step leaves (``p.grad``; frozen parameters have none);
    * ``optimizer_bytes``: Adam's state (m and v of each trainable parameter);
    * ``peak_bytes``: the most host memory the step held at once beyond what existed before it
      (activations kept for the backward, gradients, temporaries), by tracemalloc, which sees
      NumPy's allocations. On CuPy device memory is not traced: ``None``.

    Also ``trainable`` and ``total`` parameter counts and the ``batch`` and ``tokens`` (B, T). The
    model is left as it was: the trained parameters are restored and the gradients cleared.
    """
    where = "step_cost"
    _check_model(model, where)
    _check_windows(batch_ids, model, where, name="batch_ids")
    repeats = validate.positive_int(repeats, "repeats", where)
    batch = backend.asarray(batch_ids)                                           # (B, T + 1)
    trainable = [p for p in model.parameters() if p.trainable]
    saved = [p.data.copy() for p in trainable]                                  # to undo the steps
    optimizer, criterion = Adam(model, lr=1e-3), SoftmaxCrossEntropy()
    xp = backend.get_array_module(batch)
    sync = getattr(getattr(xp, "cuda", None), "Device", None)
    model.train()
    try:
        _step(model, optimizer, criterion, batch)                                # warm-up: Adam's state
        seconds = []
        for _ in range(repeats):
            optimizer.zero_grad()
            t0 = time.perf_counter()
            _step(model, optimizer, criterion, batch)
            if sync is not None:
                sync().synchronize()
            seconds.append(time.perf_counter() - t0)
        optimizer.zero_grad()                                                    # the step makes its own
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            _step(model, optimizer, criterion, batch)
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            if not was_tracing:
                tracemalloc.stop()
        cost = {
            "seconds_per_step": statistics.median(seconds),
            "peak_bytes": None if backend.get_backend() == "cupy" else int(peak),
            "params_bytes": _bytes(p.data for p in model.parameters()),
            "grads_bytes": _bytes(p.grad for p in model.parameters()),
            "optimizer_bytes": int(optimizer.state_bytes()),
            "trainable": sum(p.size for p in trainable),
            "total": sum(p.size for p in model.parameters()),
            "batch": int(batch.shape[0]),
            "tokens": int(batch.shape[1] - 1),
        }
    finally:
        for p, data in zip(trainable, saved, strict=True):
            p.data[...] = data
        model.zero_grad()
        model.clear_caches()
    return cost
