"""lora_np.gpt2.finetune on the committed tiny checkpoint: windows of ids, the training loop, sampling,
and the measured cost of one step (full fine-tuning against LoRA). Fast: a few seconds in all."""
from pathlib import Path

import numpy as np
import pytest

from lora_np import backend
from lora_np.data import generate_text
from lora_np.gpt2 import load_gpt2
from lora_np.gpt2.finetune import (
    complete,
    evaluate_loss,
    finetune,
    frozen_head_floor,
    step_cost,
    token_windows,
)
from lora_np.gpt2.tokenizer import GPT2Tokenizer
from lora_np.lora import LoraConfig, inject_lora
from lora_np.nn import SoftmaxCrossEntropy
from lora_np.train import TrainingDiverged

DATA = Path(__file__).parent / "data" / "gpt2_tiny"
TARGETS = ["c_attn", "c_proj", "c_fc"]


@pytest.fixture(scope="module")
def tok():
    return GPT2Tokenizer.from_folder(DATA)


@pytest.fixture(scope="module")
def text():
    return generate_text("verse", 60, seed=0)


def lora_model(targets=TARGETS):
    return inject_lora(load_gpt2(DATA), LoraConfig(r=4, lora_alpha=8, target_modules=targets))


# ------------------------------------------------------------------ token_windows

def test_windows_are_consecutive_ids_of_the_text(tok, text):
    ids = np.array(tok.encode(text))
    w = backend.to_numpy(token_windows(tok, text, context=16))
    assert w.shape == (1 + (len(ids) - 17) // 16, 17) and w.dtype == np.int64
    for i in (0, 1, len(w) - 1):
        assert (w[i] == ids[16 * i: 16 * i + 17]).all()
    assert (w[1:, 0] == w[:-1, -1]).all()                     # stride = context: one shared id
    ws = backend.to_numpy(token_windows(tok, text, context=16, stride=5))
    assert ws.shape == (1 + (len(ids) - 17) // 5, 17) and (ws[3] == ids[15:32]).all()


def test_windows_refuse_bad_arguments(tok, text):
    with pytest.raises(ValueError, match="context must be"):
        token_windows(tok, text, context=0)
    with pytest.raises(ValueError, match="stride must be"):
        token_windows(tok, text, context=8, stride=-1)
    with pytest.raises(ValueError, match=r"the text has \d+ tokens; one window needs context \+ 1 = 1001"):
        token_windows(tok, text[:200], context=1000)
    with pytest.raises(TypeError, match="text must be a string"):
        token_windows(tok, [1, 2, 3], context=2)
    with pytest.raises(TypeError, match="tokenizer must have encode"):
        token_windows("gpt2", text, context=2)


# ------------------------------------------------------------------ finetune

def test_finetune_lowers_the_loss_on_a_fixed_batch_and_trains_only_the_adapter(tok, text):
    model = lora_model()
    frozen = backend.to_numpy(model.transformer.h[0].attn.c_attn.weight.data).copy()
    batch = token_windows(tok, text, context=32)[:4]                               # (4, 33) one fixed batch
    before = step_cost(model, batch, repeats=1)                            # leaves the model as it was
    losses = finetune(model, batch, steps=30, lr=1e-2, batch_size=4, progress=False)
    assert len(losses) == 30 and all(isinstance(v, float) for v in losses)
    assert np.mean(losses[-5:]) < losses[0] - 0.3
    assert (backend.to_numpy(model.transformer.h[0].attn.c_attn.weight.data) == frozen).all()
    assert before["trainable"] == sum(p.size for p in model.parameters() if p.trainable)


def test_evaluate_loss_is_the_mean_over_every_position_whatever_the_batch_size(tok, text):
    model, windows = load_gpt2(DATA), token_windows(tok, text, context=16)[:5]        # (5, 17)
    whole = float(SoftmaxCrossEntropy()(model(windows[:, :-1]), windows[:, 1:]))
    assert abs(evaluate_loss(model, windows, batch_size=2) - whole) < 1e-5
    assert abs(evaluate_loss(model, windows) - whole) < 1e-5
    with pytest.raises(ValueError, match="batch_size must be"):
        evaluate_loss(model, windows, batch_size=0)


def test_finetune_is_seeded(tok, text):
    windows = token_windows(tok, text, context=16)
    a = finetune(lora_model(), windows, steps=3, lr=1e-3, batch_size=2, seed=5, progress=False)
    b = finetune(lora_model(), windows, steps=3, lr=1e-3, batch_size=2, seed=5, progress=False)
    c = finetune(lora_model(), windows, steps=3, lr=1e-3, batch_size=2, seed=6, progress=False)
    assert a == b and a != c


def test_finetune_refuses_bad_arguments(tok, text):
    model, windows = lora_model(), token_windows(tok, text, context=16)
    with pytest.raises(ValueError, match="steps must be"):
        finetune(model, windows, steps=0, lr=1e-3, batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be"):
        finetune(model, windows, steps=1, lr=1e-3, batch_size=0)
    with pytest.raises(ValueError, match="lr must be"):
        finetune(model, windows, steps=1, lr=-1.0, batch_size=2)
    with pytest.raises(ValueError, match=r"windows must be a 2-D integer array"):
        finetune(model, windows[0], steps=1, lr=1e-3, batch_size=2)
    with pytest.raises(ValueError, match="longer than the model's n_positions = 64"):
        finetune(model, token_windows(tok, text, context=80), steps=1, lr=1e-3, batch_size=2)
    with pytest.raises(ValueError, match=r"outside the model's vocabulary \[0, 511\]"):
        finetune(model, windows + 600, steps=1, lr=1e-3, batch_size=2)
    with pytest.raises(TypeError, match="model must be a GPT2LMHeadModel"):
        finetune(object(), windows, steps=1, lr=1e-3, batch_size=2)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")          # the overflow that the error reports
def test_finetune_stops_when_the_loss_diverges(tok, text):
    with pytest.raises(TrainingDiverged, match="lower learning rate"):
        finetune(lora_model(), token_windows(tok, text, context=16), steps=5, lr=1e30, batch_size=2,
                 progress=False)


# ------------------------------------------------------------------ complete

def test_complete_is_seeded_and_starts_with_the_prompt(tok):
    model = load_gpt2(DATA)
    a = complete(model, tok, "oh sweet", n_new=12, seed=1)
    assert a == complete(model, tok, "oh sweet", n_new=12, seed=1) and a.startswith("oh sweet")
    assert a != complete(model, tok, "oh sweet", n_new=12, seed=2)
    assert complete(model, tok, "oh", n_new=0) == "oh"
    assert isinstance(complete(model, tok, "", n_new=5), str)                      # starts from <|endoftext|>
    with pytest.raises(TypeError, match="prompt must be a string"):
        complete(model, tok, 3, n_new=2)
    with pytest.raises(ValueError, match="n_new must be"):
        complete(model, tok, "oh", n_new=-1)


# ------------------------------------------------------------------ step_cost

def test_step_cost_measures_positive_numbers_and_lora_keeps_far_less_optimizer_state(tok, text):
    batch = token_windows(tok, text, context=32)[:2]                                # (2, 33)
    full_model = load_gpt2(DATA)
    weights = backend.to_numpy(full_model.transformer.wte.weight.data).copy()
    full = step_cost(full_model, batch, repeats=2)
    assert (backend.to_numpy(full_model.transformer.wte.weight.data) == weights).all()   # restored
    assert all(p.grad is None for p in full_model.parameters())
    lora = step_cost(lora_model(), batch, repeats=2)
    for cost in (full, lora):
        assert cost["seconds_per_step"] > 0 and cost["params_bytes"] > 0 and cost["grads_bytes"] > 0
        assert cost["optimizer_bytes"] > 0 and (cost["batch"], cost["tokens"]) == (2, 32)
        if backend.get_backend() != "cupy":
            assert cost["peak_bytes"] > 0
    n = full["total"]
    assert full["trainable"] == n and full["params_bytes"] == 4 * n                 # float32, wte once
    assert full["optimizer_bytes"] == 2 * full["params_bytes"]                      # Adam's m and v
    assert full["grads_bytes"] == full["params_bytes"]
    assert lora["optimizer_bytes"] == 2 * 4 * lora["trainable"] < full["optimizer_bytes"] / 5
    assert lora["grads_bytes"] == 4 * lora["trainable"]


def test_step_cost_refuses_bad_arguments(tok, text):
    batch = token_windows(tok, text, context=8)[:2]
    with pytest.raises(ValueError, match="repeats must be"):
        step_cost(lora_model(), batch, repeats=0)
    with pytest.raises(ValueError, match="batch_ids must be a 2-D integer array"):
        step_cost(lora_model(), batch.astype("float32"))


# ------------------------------------------------------------------ frozen_head_floor

def test_no_training_of_the_blocks_goes_below_the_frozen_head_floor(tok, text):
    model = lora_model()
    window = token_windows(tok, text, context=40)[:1]                              # (1, 41)
    floor = frozen_head_floor(model, window[0])
    assert 0 < floor < np.log(512)
    finetune(model, window, steps=40, lr=3e-2, batch_size=1, progress=False)       # overfit one window
    loss = float(SoftmaxCrossEntropy()(model(window[:, :-1]), window[:, 1:]))
    assert floor <= loss
    head = lora_model(TARGETS + ["lm_head"])
    finetune(head, window, steps=40, lr=3e-2, batch_size=1, progress=False)
    assert float(SoftmaxCrossEntropy()(head(window[:, :-1]), window[:, 1:])) < floor   # the head: no floor


def test_the_floor_is_a_certified_lower_bound_at_any_number_of_iterations(tok, text):
    model, ids = lora_model(), token_windows(tok, text, context=60)[0]
    few, many = frozen_head_floor(model, ids, iterations=1), frozen_head_floor(model, ids, iterations=80)
    assert few <= many + 1e-6 and many - few < 0.05                      # converges from below
    with pytest.raises(ValueError, match="iterations must be"):
        frozen_head_floor(model, ids, iterations=0)


def test_the_floor_refuses_a_trainable_or_adapted_head(tok, text):
    ids = token_windows(tok, text, context=8)[0]
    with pytest.raises(ValueError, match="trainable \\(as in full fine-tuning\\) or adapted"):
        frozen_head_floor(load_gpt2(DATA), ids)
    with pytest.raises(ValueError, match="trainable \\(as in full fine-tuning\\) or adapted"):
        frozen_head_floor(lora_model(["c_attn", "lm_head"]), ids)
    with pytest.raises(ValueError, match="ids must be a 1-D integer array"):
        frozen_head_floor(lora_model(), ids[None, :])
