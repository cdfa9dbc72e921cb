"""The Transformer: gradient checks of every module and of whole models with LoRA, causal
masking, B = 0 ⇒ base outputs, merging, dtype preservation, and clear errors."""
import copy

import numpy as np
import pytest

from lora_np import backend
from lora_np.gradcheck import check_model_gradients, cross_entropy
from lora_np.lora import inject_lora, merge_lora, trainable_report
from lora_np.models import MLP, TransformerConfig, TransformerLM, ViTClassifier, generate
from lora_np.nn import Dropout, Embedding, LayerNorm, Linear, SoftmaxCrossEntropy
from lora_np.nn.attention import FeedForward, MultiHeadAttention, TransformerBlock

OP_TOL, MODEL_TOL = 1e-7, 1e-6


def weighted_sum(rng):
    """loss = Σ out ⊙ G for a fixed random G (drawn on first use)."""
    state = {}

    def loss_and_grad(out):
        if "G" not in state:
            state["G"] = rng.standard_normal(out.shape)
        return float((out * state["G"]).sum()), state["G"]
    return loss_and_grad


def without_key_bias(errors, model):
    """The key projection's bias has an exactly zero gradient — softmax ignores a shift that is
    the same for every key, and q·(k_j + b) shifts every score of a query by q·b — so its
    relative error compares rounding noise with rounding noise. Check it is zero instead."""
    for name, p in model.named_parameters():
        if name.endswith("k.bias") and name in errors:
            assert float(abs(p.grad).max()) < 1e-12, f"{name} should get no gradient"
            del errors[name]
    return errors


def randomize_lora_B(model, rng):
    for name, p in model.named_parameters():
        if name.endswith("lora_B") or name.endswith("lora_A"):
            p.data = rng.standard_normal(p.shape) * 0.3


@pytest.mark.parametrize("make", [
    lambda: LayerNorm(6),
    lambda: MultiHeadAttention(8, 2, causal=False),
    lambda: MultiHeadAttention(8, 2, causal=True),
    lambda: FeedForward(8, 16),
    lambda: TransformerBlock(8, 2, 16, causal=True),
], ids=["layernorm", "attention", "causal-attention", "mlp-block", "residual-block"])
def test_module_gradients(float64, rng, make):
    module = make()
    x = rng.standard_normal((2, 4, 6 if isinstance(module, LayerNorm) else 8))
    errors = without_key_bias(check_model_gradients(module, x, weighted_sum(rng)), module)
    assert errors and max(errors.values()) < OP_TOL, errors


def test_embedding_module_gradient(float64, rng):
    emb = Embedding(7, 5, rng=1)
    errors = check_model_gradients(emb, rng.integers(0, 7, (2, 3)), weighted_sum(rng))
    assert list(errors) == ["weight"] and errors["weight"] < OP_TOL


def test_lm_with_lora_on_q_and_v(float64, rng):
    model = TransformerLM(TransformerConfig(d_model=8, n_heads=2, n_layers=2, context=6, vocab_size=11))
    inject_lora(model, r=2, lora_alpha=4, target_modules=["q", "v"])
    randomize_lora_B(model, rng)
    ids = rng.integers(0, 11, (2, 6))
    errors = check_model_gradients(model, ids, cross_entropy(rng.integers(0, 11, (2, 6))), max_coords=30)
    assert sorted(errors) == sorted(n for n, p in model.named_parameters() if p.trainable)
    assert len(errors) == 8 and max(errors.values()) < MODEL_TOL, errors
    assert all(p.grad is None for p in model.parameters() if not p.trainable)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_vit_full_gradients(float64, rng, pooling):
    cfg = TransformerConfig(d_model=8, n_heads=2, n_layers=1, n_classes=3, image_size=8, patch_size=4,
                            pooling=pooling)
    model = ViTClassifier(cfg)
    x = rng.random((2, 8, 8, 3))
    errors = check_model_gradients(model, x, cross_entropy(rng.integers(0, 3, (2,))), max_coords=20)
    errors = without_key_bias(errors, model)
    assert "pos" in errors and "patch_emb.weight" in errors and max(errors.values()) < MODEL_TOL, errors


def test_vit_with_lora_everywhere_including_embeddings(float64, rng):
    cfg = TransformerConfig(d_model=8, n_heads=2, n_layers=1, n_classes=3, image_size=8, patch_size=4)
    targets = ["q", "k", "v", "o", "up", "down", "head", "patch_emb"]
    model = inject_lora(ViTClassifier(cfg), r=2, target_modules=targets)
    randomize_lora_B(model, rng)
    errors = check_model_gradients(model, rng.random((2, 8, 8, 3)), cross_entropy(rng.integers(0, 3, (2,))))
    assert len(errors) == 16 and max(errors.values()) < MODEL_TOL, errors


def test_lm_with_embedding_lora(float64, rng):
    model = TransformerLM(TransformerConfig(d_model=8, n_heads=2, n_layers=1, context=5, vocab_size=9))
    inject_lora(model, r=2, target_modules=["tok_emb", "head"])
    randomize_lora_B(model, rng)
    ids, labels = rng.integers(0, 9, (2, 5)), rng.integers(0, 9, (2, 5))
    errors = check_model_gradients(model, ids, cross_entropy(labels))
    assert {"tok_emb.lora_A", "tok_emb.lora_B"} <= set(errors) and max(errors.values()) < MODEL_TOL, errors


def test_causal_masking_ignores_the_future(rng):
    model = TransformerLM(TransformerConfig(d_model=16, n_heads=4, n_layers=2, context=8, vocab_size=13))
    ids = rng.integers(0, 13, (1, 8))
    base = backend.to_numpy(model(ids))
    for t in range(7):
        changed = ids.copy()
        changed[0, t + 1] = (int(ids[0, t + 1]) + 5) % 13
        out = backend.to_numpy(model(changed))
        assert (out[0, : t + 1] == base[0, : t + 1]).all(), f"position ≤ {t} saw token {t + 1}"
        assert not (out[0, t + 1] == base[0, t + 1]).all()


def test_bidirectional_attention_sees_everything(rng):
    attn = MultiHeadAttention(8, 2, causal=False)
    x = rng.standard_normal((1, 4, 8))
    y0 = backend.to_numpy(attn(x))
    x2 = x.copy()
    x2[0, 3] = x2[0, 3] + 1.0
    assert not (backend.to_numpy(attn(x2))[0, 0] == y0[0, 0]).all()


@pytest.mark.parametrize("targets", [["q", "v"], ["q", "k", "v", "o", "up", "down", "tok_emb", "head"]])
def test_zero_adapters_equal_base_and_merge_equals_unmerged(float64, rng, targets):
    base = TransformerLM(TransformerConfig(d_model=8, n_heads=2, n_layers=2, context=6, vocab_size=11))
    ids = rng.integers(0, 11, (3, 6))
    ref = backend.to_numpy(base(ids))
    model = inject_lora(copy.deepcopy(base), r=2, target_modules=targets)
    assert (backend.to_numpy(model(ids)) == ref).all()     # ΔW = 0 at init: B = 0 (A = 0 for embeddings)
    randomize_lora_B(model, rng)
    unmerged = backend.to_numpy(model(ids))
    assert abs(unmerged - ref).max() > 1e-3
    merge_lora(model)
    merged = backend.to_numpy(model(ids))
    assert abs(merged - unmerged).max() < 1e-10


def test_float32_stays_float32_forward_and_backward(rng):
    cfg = TransformerConfig(d_model=8, n_heads=2, n_layers=1, n_classes=3, image_size=8)
    model = inject_lora(ViTClassifier(cfg), r=2, target_modules=["q", "v"])
    x = rng.random((2, 8, 8, 3))
    logits = model(x)
    assert logits.dtype == "float32"
    ce = SoftmaxCrossEntropy()
    ce(logits, rng.integers(0, 3, (2,)))
    model.backward(ce.backward())
    for p in model.trainable_parameters():
        assert p.grad.dtype == "float32" and p.data.dtype == "float32"


def test_table5_budget_is_equal(rng):
    cfg = TransformerConfig(d_model=32, n_heads=2, n_layers=2, n_classes=3, image_size=8)
    counts = {tuple(t): trainable_report(inject_lora(ViTClassifier(cfg), r=r, target_modules=t)).trainable
              for t, r in ((["q"], 8), (["q", "v"], 4), (["q", "k", "v", "o"], 2))}
    assert len(set(counts.values())) == 1, counts


def test_generation_is_deterministic_for_a_seed(rng):
    model = TransformerLM(TransformerConfig(d_model=16, n_heads=2, n_layers=1, context=8, vocab_size=10))
    prompt = rng.integers(0, 10, (3,))
    a = backend.to_numpy(generate(model, prompt, 12, temperature=1.0, top_k=5, seed=7))
    b = backend.to_numpy(generate(model, prompt, 12, temperature=1.0, top_k=5, seed=7))
    c = backend.to_numpy(generate(model, prompt, 12, temperature=1.0, top_k=5, seed=8))
    assert a.shape == (15,) and (a == b).all() and not (a == c).all()
    assert (a[:3] == backend.to_numpy(prompt)).all() and a.max() < 10


def test_top_k_one_is_greedy(rng):
    model = TransformerLM(TransformerConfig(d_model=16, n_heads=2, n_layers=1, context=8, vocab_size=10))
    prompt = rng.integers(0, 10, (2,))
    out = generate(model, prompt, 1, top_k=1, seed=3)
    assert int(out[-1]) == int(model(prompt[None, :])[0, -1].argmax())


def test_bad_inputs_give_clear_errors(rng):
    lm = TransformerLM(TransformerConfig(d_model=8, n_heads=2, n_layers=1, context=4, vocab_size=5))
    with pytest.raises(ValueError, match="longer than the context"):
        lm(rng.integers(0, 5, (1, 5)))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 4\]"):
        lm(rng.integers(5, 9, (1, 3)))
    with pytest.raises(ValueError, match="d_model .* divisible by n_heads"):
        TransformerConfig(d_model=10, n_heads=3, vocab_size=5).validate()
    with pytest.raises(ValueError, match="d_model .* divisible by n_heads"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="image_size .* divisible by patch_size"):
        ViTClassifier(TransformerConfig(n_classes=3, image_size=10, patch_size=4))
    vit = ViTClassifier(TransformerConfig(d_model=8, n_heads=2, n_layers=1, n_classes=3, image_size=8))
    with pytest.raises(ValueError, match="images must have shape"):
        vit(rng.random((2, 12, 12, 3)))
    with pytest.raises(ValueError, match="temperature"):
        generate(lm, rng.integers(0, 5, (2,)), 3, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        generate(lm, rng.integers(0, 5, (2,)), 3, top_k=9)


def test_set_submodule_reaches_inside_a_list_of_blocks():
    """``blocks.0.attn``: the path runs through a list element to an attribute of it."""
    from lora_np.nn import ReLU
    model = ViTClassifier(TransformerConfig(d_model=16, n_heads=2, n_layers=2, n_classes=3, image_size=8))
    first, second = model.blocks[0], model.blocks[1]
    model.set_submodule("blocks.0.attn", ReLU())
    assert isinstance(model.get_submodule("blocks.0.attn"), ReLU) and model.blocks[0] is first
    model.set_submodule("blocks.1", first)
    assert model.blocks[1] is first and second not in model.blocks
    with pytest.raises(KeyError, match="blocks.5"):
        model.set_submodule("blocks.5.attn", ReLU())


# --------------------------------------------------------------------------- bad arguments, named

@pytest.mark.host_only
@pytest.mark.parametrize("make, match", [
    (lambda: Linear(0, 3), "Linear: d_in must be a positive integer, got 0"),
    (lambda: Linear(3, 2.0), "Linear: d_out must be a positive integer, got 2.0"),
    (lambda: Linear(True, 3), "Linear: d_in must be a positive integer, got True"),
    (lambda: Linear(3, 2, bias=1), "Linear: bias must be True or False, got 1"),
    (lambda: Linear(3, 2, rng="seed"), "rng must be a lora_np.backend.Rng, an integer seed >= 0 or None"),
    (lambda: Linear(3, 2, rng=-1), "rng must be .* integer seed >= 0"),
    (lambda: Embedding(0, 4), "Embedding: num_embeddings must be a positive integer, got 0"),
    (lambda: Embedding(5, "4"), "Embedding: dim must be a positive integer, got '4'"),
    (lambda: Embedding(5, 4, std=-0.1), "Embedding: std must be a finite number >= 0, got -0.1"),
    (lambda: LayerNorm(-2), "LayerNorm: dim must be a positive integer, got -2"),
    (lambda: LayerNorm(4, eps=0.0), "LayerNorm: eps must be a finite positive number, got 0.0"),
    (lambda: Dropout(1.0), r"Dropout: p must be a number in \[0, 1\), got 1.0"),
    (lambda: Dropout(True), r"Dropout: p must be a number in \[0, 1\), got True"),
    (lambda: MultiHeadAttention(8, 0), "MultiHeadAttention: n_heads must be a positive integer, got 0"),
    (lambda: MultiHeadAttention(8, 2.0), "MultiHeadAttention: n_heads must be a positive integer, got 2.0"),
    (lambda: MultiHeadAttention(8, 2, causal="yes"), "MultiHeadAttention: causal must be True or False"),
    (lambda: FeedForward(8, 0), "FeedForward: hidden must be a positive integer, got 0"),
    (lambda: TransformerBlock(8, 2, -16), "TransformerBlock: mlp_hidden must be a positive integer"),
    (lambda: TransformerConfig(n_layers=0).validate(), "TransformerConfig: n_layers must be a positive"),
    (lambda: TransformerConfig(context=True).validate(), "TransformerConfig: context must be a positive"),
    (lambda: TransformerConfig(pooling="max").validate(),
     r"TransformerConfig: pooling must be one of \('cls', 'mean'\), got 'max'"),
    (lambda: TransformerConfig(vocab_size=0).validate(), "TransformerConfig: vocab_size must be a positive"),
    (lambda: TransformerLM(TransformerConfig()), "TransformerLM: vocab_size must be a positive integer"),
    (lambda: ViTClassifier(TransformerConfig()), "ViTClassifier: n_classes must be a positive integer"),
    (lambda: MLP(0, (8,), 3), "MLP: d_in must be a positive integer, got 0"),
    (lambda: MLP(4, (8, 0), 3), r"MLP: hidden must be a non-empty list of positive integers, got \(8, 0\)"),
    (lambda: MLP(4, 2.5, 3), "MLP: hidden must be a positive integer, got 2.5"),
    (lambda: MLP(4, (8,), 0), "MLP: n_classes must be a positive integer, got 0"),
    (lambda: MLP(4, (8,), 3, activation="swish"), "MLP: activation must be one of"),
    (lambda: MLP(4, (8,), 3, dropout=1.0), r"MLP: dropout must be a number in \[0, 1\)"),
])
def test_bad_sizes_and_settings_name_the_argument(make, match):
    error = TypeError if match.startswith("rng") else ValueError
    with pytest.raises(error, match=match):
        make()


@pytest.mark.host_only
def test_numpy_integers_are_accepted_as_sizes_and_stored_as_int():
    lin = Linear(np.int64(3), np.int32(2))
    mha = MultiHeadAttention(np.int64(8), np.int64(2))
    mlp = MLP(np.int64(4), [np.int64(8)], np.int64(3), dropout=np.float32(0.25))
    assert (lin.d_in, lin.d_out, mha.n_heads) == (3, 2, 2) and type(lin.d_in) is type(mha.n_heads) is int
    assert mlp.hidden == (8,) and type(mlp.hidden[0]) is int and type(mlp.drop1.p) is float
    assert MLP(4, (), 3).layers()[0].d_in == 4                       # no hidden layer: a linear model


def test_generate_checks_its_arguments(rng):
    lm = TransformerLM(TransformerConfig(d_model=8, n_heads=2, n_layers=1, context=4, vocab_size=5))
    prompt = backend.asarray(rng.integers(0, 5, (2,)))
    with pytest.raises(ValueError, match="generate: n_new must be a non-negative integer, got -1"):
        generate(lm, prompt, -1)
    with pytest.raises(ValueError, match="generate: temperature must be a finite positive number, got inf"):
        generate(lm, prompt, 2, temperature=float("inf"))
    with pytest.raises(ValueError, match=r"generate: top_k must be an integer in \[1, 5\], got 0"):
        generate(lm, prompt, 2, top_k=0)
    assert generate(lm, prompt, 2, top_k=np.int64(5)).shape == (4,)   # a NumPy integer is a fine top_k
    assert generate(lm, prompt, 0).shape == (2,)                        # nothing new: the prompt back
