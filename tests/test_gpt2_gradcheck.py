"""Float64 gradient checks of what GPT-2 adds: < 1e-7 per operation, < 1e-6 for the whole model."""
import pytest

from lora_np import backend
from lora_np import functional as F
from lora_np.gpt2 import GPT2Config, GPT2LMHeadModel
from lora_np.gradcheck import check_model_gradients, cross_entropy, numerical_gradient, rel_error
from lora_np.gradcheck import weighted_sum as scalar
from lora_np.lora import inject_lora
from lora_np.nn import Conv1D, LoRAConv1D

OP_TOL, MODEL_TOL = 1e-7, 1e-6


@pytest.fixture(autouse=True)
def _f64(float64):
    yield


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(5,), (2, 3)])
def test_conv1d(rng, bias, lead):
    x, W = rng.standard_normal(lead + (4,)), rng.standard_normal((4, 3))         # W: (d_in, d_out)
    b = rng.standard_normal((3,)) if bias else None
    y, cache = F.conv1d_forward(x, W, b)
    G = rng.standard_normal(y.shape)
    dx, dW, db = F.conv1d_backward(G, cache)

    def f():
        return scalar(F.conv1d_forward(x, W, b)[0], G)
    assert rel_error(numerical_gradient(f, x), dx) < OP_TOL
    assert rel_error(numerical_gradient(f, W), dW) < OP_TOL
    if bias:
        assert rel_error(numerical_gradient(f, b), db) < OP_TOL
    else:
        assert db is None
    assert rel_error(y, F.linear_forward(x, W.T, b)[0]) < 1e-14                 # Linear with Wᵀ


def test_conv1d_frozen_gives_only_dx(rng):
    x, W, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal((3,))
    y, cache = F.conv1d_forward(x, W, b)
    G = rng.standard_normal(y.shape)
    dx, dW, db = F.conv1d_backward(G, cache, need_weight_grad=False)
    assert dW is None and db is None
    assert rel_error(numerical_gradient(lambda: scalar(F.conv1d_forward(x, W, b)[0], G), x), dx) < OP_TOL


def test_split_qkv(rng):
    qkv = rng.standard_normal((2, 3, 12))
    (q, k, v), d = F.split_qkv_forward(qkv)
    assert d == 4 and q.shape == k.shape == v.shape == (2, 3, 4)
    Gs = [rng.standard_normal((2, 3, 4)) for _ in range(3)]
    dqkv = F.split_qkv_backward(*Gs)

    def f():
        parts, _ = F.split_qkv_forward(qkv)
        return sum(scalar(p, G) for p, G in zip(parts, Gs, strict=True))
    assert rel_error(numerical_gradient(f, qkv), dqkv) < OP_TOL
    with pytest.raises(ValueError, match=r"a multiple of 3\), got shape \(2, 3, 10\)"):
        F.split_qkv_forward(qkv[..., :10])


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_lora_conv1d_layer(rng, dropout):
    base = Conv1D(5, 4, rng=1)
    base.bias.data = rng.standard_normal((4,))
    layer = LoRAConv1D(base, r=2, alpha=3.0, dropout=dropout, rng=2)
    layer.lora_B.data = rng.standard_normal((4, 2))                               # B ≠ 0 so that dA ≠ 0
    x = rng.standard_normal((2, 3, 5))
    G = rng.standard_normal((2, 3, 4))
    state = {}

    def f():
        layer._rng = backend.Rng(7)                        # the same dropout mask in every evaluation
        state["y"] = layer(x)
        return scalar(state["y"], G)
    f()
    dx = layer.backward(G)
    for name, arr, g in (("x", x, dx), ("A", layer.lora_A.data, layer.lora_A.grad),
                         ("B", layer.lora_B.data, layer.lora_B.grad)):
        assert rel_error(numerical_gradient(f, arr), g) < OP_TOL, name
    assert base.weight.grad is None and base.bias.grad is None                   # frozen: never formed


def test_lora_conv1d_merges_in_the_checkpoints_layout(rng):
    base = Conv1D(5, 4, rng=1)
    layer = LoRAConv1D(base, r=2, alpha=3.0, rng=2)
    layer.lora_B.data = rng.standard_normal((4, 2))
    x = rng.standard_normal((3, 5))
    y = layer(x)
    W0 = base.weight.data.copy()
    layer.merge()
    assert layer.weight.data.shape == (5, 4)                                      # still (d_in, d_out)
    assert rel_error(layer(x), y) < 1e-12
    assert rel_error(layer.weight.data, W0 + 1.5 * (layer.lora_B.data @ layer.lora_A.data).T) < 1e-14
    layer.unmerge()
    assert (layer.weight.data == W0).all()


def tiny(**kw):
    cfg = dict(vocab_size=13, n_positions=8, n_embd=8, n_layer=2, n_head=2)
    return GPT2LMHeadModel(GPT2Config(**{**cfg, **kw}), dtype="float64")


def perturb(model, rng, which=("ln_", "bias", "lora_")):
    """LayerNorm and biases start at 1/0 and B at 0: give them values, so their gradients are tested."""
    for name, p in model.named_parameters():
        if any(w in name for w in which):
            p.data = p.data + rng.standard_normal(p.shape) * 0.3


def test_gpt2_full_fine_tuning_gradients(rng):
    model = tiny()
    perturb(model, rng)
    ids = rng.integers(0, 13, (2, 6))
    errors = check_model_gradients(model, ids, cross_entropy(rng.integers(0, 13, (2, 6))), max_coords=30)
    assert sorted(errors) == sorted(n for n, _ in model.named_parameters())
    assert "lm_head.weight" not in errors                          # tied: one Parameter, under wte's name
    assert len(errors) == 4 + 2 * 12 and max(errors.values()) < MODEL_TOL, errors


def test_the_tied_embedding_collects_the_gradients_of_both_uses(rng):
    """dwte = (head's part) + (lookup's part): each alone is wrong, their sum is the numerical gradient."""
    model = tiny(n_layer=1)
    ids, labels = rng.integers(0, 13, (2, 5)), rng.integers(0, 13, (2, 5))
    loss = cross_entropy(labels)
    model.zero_grad()
    model.backward(loss(model(ids))[1])
    total = model.transformer.wte.weight.grad
    model.zero_grad()
    dh = model.lm_head.backward(loss(model(ids))[1])
    head_only = model.transformer.wte.weight.grad.copy()
    model.transformer.backward(dh)
    assert rel_error(model.transformer.wte.weight.grad, total) < 1e-14
    num = numerical_gradient(lambda: loss(model(ids))[0], model.transformer.wte.weight.data)
    assert rel_error(num, total) < MODEL_TOL
    assert rel_error(num, head_only) > 1e-2 and rel_error(num, total - head_only) > 1e-2


def test_gpt2_with_lora_on_c_attn_and_c_fc(rng):
    model = tiny()
    perturb(model, rng, which=("ln_", "bias"))
    inject_lora(model, r=2, lora_alpha=4, target_modules=["c_attn", "c_fc"])
    perturb(model, rng, which=("lora_",))
    ids = rng.integers(0, 13, (2, 6))
    errors = check_model_gradients(model, ids, cross_entropy(rng.integers(0, 13, (2, 6))), max_coords=30)
    assert sorted(errors) == sorted(f"transformer.h.{i}.{m}.lora_{t}" for i in range(2)
                                    for m in ("attn.c_attn", "mlp.c_fc") for t in "AB")
    assert max(errors.values()) < MODEL_TOL, errors
    assert all(p.grad is None for p in model.parameters() if not p.trainable)


def test_gpt2_with_lora_everywhere_including_the_tied_head_and_wte(rng):
    model = tiny(n_layer=1)
    perturb(model, rng, which=("ln_", "bias"))
    inject_lora(model, r=2, lora_alpha=4, target_modules=["c_attn", "c_proj", "c_fc", "lm_head", "wte"])
    perturb(model, rng, which=("lora_",))
    ids = rng.integers(0, 13, (2, 6))
    errors = check_model_gradients(model, ids, cross_entropy(rng.integers(0, 13, (2, 6))), max_coords=30)
    assert len(errors) == 2 * 6 and max(errors.values()) < MODEL_TOL, errors
