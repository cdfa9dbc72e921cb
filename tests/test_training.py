"""Optimizers and the training loop: frozen weights stay bit-identical, state only for what is
trained, reproducible runs, learning that works, divergence caught, and the update rules by hand."""
import math

import numpy as np
import pytest

from lora_np import backend
from lora_np.backend import to_numpy
from lora_np.data import make_fruit_task
from lora_np.gradcheck import rel_error
from lora_np.lora import inject_lora
from lora_np.models import MLP
from lora_np.nn import Parameter
from lora_np.optim import SGD, Adam, AdamW
from lora_np.train import TrainingDiverged, evaluate, fit


@pytest.fixture
def task():
    return make_fruit_task(n_pretrain=200, n_finetune=100, n_test=100)


def lora_model(seed=0, targets=("fc1", "fc2")):
    return inject_lora(MLP(20, (16, 16), 10, seed=seed), r=2, lora_alpha=4, target_modules=list(targets))


# --------------------------------------------------------------------------- frozen stays frozen

@pytest.mark.parametrize("make_opt", [
    lambda m: Adam(m, lr=1e-2),
    lambda m: AdamW(m, lr=1e-2, weight_decay=0.1),               # decay must not reach frozen weights
    lambda m: SGD(m, lr=0.1, momentum=0.9, weight_decay=0.01),
], ids=["adam", "adamw", "sgd"])
def test_frozen_parameters_are_bit_identical_and_never_get_a_gradient(task, make_opt):
    model = lora_model()                                         # head stays a plain, frozen Linear
    frozen = {n: p for n, p in model.named_parameters() if not p.trainable}
    trainable = {n: p for n, p in model.named_parameters() if p.trainable}
    assert len(frozen) == 6 and len(trainable) == 4
    before = {n: to_numpy(p.data).copy() for n, p in model.named_parameters()}
    steps = []

    def check(info):
        steps.append(info.step)
        for name, p in info.model.named_parameters():
            if p.trainable:
                assert p.grad is not None, f"{name} is trained but has no gradient at step {info.step}"
            else:
                assert p.grad is None, f"{name} is frozen but has a gradient at step {info.step}"

    fit(model, make_opt(model), *task.shift_train, epochs=3, batch_size=32, callbacks=[check])
    assert steps == list(range(1, 3 * math.ceil(100 / 32) + 1))
    for name, p in frozen.items():
        assert np.array_equal(to_numpy(p.data), before[name]), name
    for name, p in trainable.items():                            # and the adapters did move
        assert not np.array_equal(to_numpy(p.data), before[name]), name


# --------------------------------------------------------------------------- optimizer state

@pytest.mark.parametrize("make_opt, bytes_per_number", [
    (lambda m: Adam(m, lr=1e-3), 2 * 4),
    (lambda m: AdamW(m, lr=1e-3), 2 * 4),
    (lambda m: SGD(m, lr=0.1, momentum=0.9), 4),
    (lambda m: SGD(m, lr=0.1), 0),
], ids=["adam", "adamw", "sgd-momentum", "sgd"])
def test_optimizer_state_exists_only_for_trainable_parameters(make_opt, bytes_per_number):
    model = lora_model(targets=("fc1", "fc2", "head"))
    trainable = model.trainable_parameters()
    n = model.num_parameters(trainable_only=True)
    assert n == 2 * (20 + 16) + 2 * (16 + 16) + 2 * (16 + 10)
    opt = make_opt(model)
    assert len(opt.state) == len(trainable) == 6
    assert set(opt.state) == {id(p) for p in trainable}
    assert opt.num_trained() == n
    assert opt.state_bytes() == bytes_per_number * n


def test_adam_state_doubles_in_float64(float64):
    model = lora_model()
    assert Adam(model).state_bytes() == 2 * 8 * model.num_parameters(trainable_only=True)


def test_float32_training_stays_float32(task):
    model = lora_model()
    opt = Adam(model, lr=1e-2)
    fit(model, opt, *task.shift_train, epochs=1, batch_size=50)
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert all(a.dtype == np.float32 for s in opt.state.values() for a in s.values() if hasattr(a, "dtype"))


@pytest.mark.parametrize("cls", [SGD, Adam, AdamW])
def test_optimizer_over_a_frozen_model_is_refused(cls):
    with pytest.raises(ValueError, match="no trainable parameters"):
        cls(MLP(6, (8,), 3).freeze(), lr=0.1)


# --------------------------------------------------------------------------- reproducibility

def run(task, model_seed=0, fit_seed=0):
    model = lora_model(seed=model_seed)
    return fit(model, Adam(model, lr=1e-2), *task.shift_train, epochs=2, batch_size=16,
               seed=fit_seed).step_loss


def test_same_seed_gives_bit_identical_losses(task):
    first, second = run(task), run(task)
    assert len(first) == 2 * math.ceil(100 / 16)
    assert first == second                                       # floats compared exactly


def test_different_shuffling_seed_gives_different_losses(task):
    assert run(task, fit_seed=0) != run(task, fit_seed=1)


# --------------------------------------------------------------------------- progress bar

def train_with(task, progress):
    model = lora_model()
    hist = fit(model, Adam(model, lr=1e-2), *task.shift_train, epochs=2, batch_size=16, val=task.shift_test,
               progress=progress)
    return hist.as_dict(), model.state_dict()


def test_progress_bar_writes_to_stderr_and_changes_nothing(task, capfd):
    quiet_hist, quiet_weights = train_with(task, progress=False)
    assert capfd.readouterr() == ("", "")                        # no bar unless asked
    hist, weights = train_with(task, progress=True)
    out, err = capfd.readouterr()
    steps = 2 * math.ceil(100 / 16)
    assert out == ""                                             # stdout stays free for reports
    assert "training:" in err and f"/{steps} [" in err           # tqdm's "training:   0%|   | 0/14 [..."
    assert hist == quiet_hist                                    # floats compared exactly
    assert weights.keys() == quiet_weights.keys()
    assert all(np.array_equal(weights[k], quiet_weights[k]) for k in weights)


def test_progress_bar_takes_a_label(task, capfd):
    train_with(task, progress="fine-tuning r=2")
    out, err = capfd.readouterr()
    assert out == "" and "fine-tuning r=2:" in err and "training:" not in err


# --------------------------------------------------------------------------- learning works

def test_pretraining_reduces_the_loss(task):
    model = MLP(20, (16, 16), 10, seed=0)
    before = evaluate(model, *task.source_test)
    hist = fit(model, Adam(model, lr=1e-2), *task.source_train, epochs=10, batch_size=32,
               val=task.source_test)
    assert len(hist.epoch_loss) == len(hist.val_loss) == len(hist.val_accuracy) == 10
    assert hist.epoch_loss[-1] < 0.5 * hist.epoch_loss[0]
    assert hist.val_loss[-1] < before["loss"]
    assert hist.val_accuracy[-1] > 0.6 > before["accuracy"]      # ten classes: chance is 0.1


def test_lora_fine_tuning_fixes_the_shifted_fruit(task):
    model = MLP(20, (16, 16), 10, seed=0)
    fit(model, Adam(model, lr=1e-2), *task.source_train, epochs=20, batch_size=32)
    base_shift = evaluate(model, *task.shift_test)["accuracy"]
    inject_lora(model, r=2, lora_alpha=4, target_modules=None)
    fit(model, Adam(model, lr=1e-2), *task.shift_train, epochs=20, batch_size=32)
    tuned_shift = evaluate(model, *task.shift_test)["accuracy"]
    assert tuned_shift > base_shift + 0.2, (base_shift, tuned_shift)


# --------------------------------------------------------------------------- divergence and bad input

@pytest.mark.filterwarnings("ignore::RuntimeWarning")            # overflow is the point of this test
def test_huge_learning_rate_is_reported(task):
    model = MLP(20, (16, 16), 10)
    with pytest.raises(TrainingDiverged, match=r"at step \d+.*lower learning rate"):
        fit(model, SGD(model, lr=1e6), *task.source_train, epochs=5, batch_size=32)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_an_infinite_weight_stops_training_at_the_first_step(task):
    model = lora_model()
    B = model.fc1.lora_B.data
    B[0, 0] = float("inf")
    B_host = to_numpy(model.fc2.lora_B.data).copy()
    with pytest.raises(TrainingDiverged, match=r"at step 0\b.*lower learning rate"):
        fit(model, SGD(model, lr=0.1), *task.shift_train, epochs=1)
    assert np.array_equal(to_numpy(model.fc2.lora_B.data), B_host)   # no step was taken
    assert issubclass(TrainingDiverged, FloatingPointError)


@pytest.mark.parametrize("make_opt, name", [
    (lambda m: SGD(m, lr=0), "lr"),
    (lambda m: SGD(m, lr=-0.1), "lr"),
    (lambda m: SGD(m, lr="0.1"), "lr"),
    (lambda m: SGD(m, lr=True), "lr"),
    (lambda m: Adam(m, lr=float("nan")), "lr"),
    (lambda m: SGD(m, lr=0.1, momentum=1.0), "momentum"),
    (lambda m: SGD(m, lr=0.1, momentum=-0.5), "momentum"),
    (lambda m: SGD(m, lr=0.1, momentum="0.9"), "momentum"),
    (lambda m: SGD(m, lr=0.1, weight_decay=-1), "weight_decay"),
    (lambda m: Adam(m, betas=(1.0, 0.999)), "betas"),
    (lambda m: Adam(m, betas=(0.9, -0.1)), "betas"),
    (lambda m: Adam(m, betas=(0.9,)), "betas"),
    (lambda m: Adam(m, betas=0.9), "betas"),
    (lambda m: AdamW(m, eps=0), "eps"),
    (lambda m: AdamW(m, weight_decay=-0.01), "weight_decay"),
    (lambda m: Adam(m, lr=float("inf")), "lr"),                   # finite: inf would blow up at once
    (lambda m: SGD(m, lr=float("inf")), "lr"),
    (lambda m: AdamW(m, weight_decay=float("inf")), "weight_decay"),
    (lambda m: SGD(m, lr=0.1, weight_decay=float("nan")), "weight_decay"),
    (lambda m: SGD(m, lr=0.1, momentum=float("nan")), "momentum"),
    (lambda m: Adam(m, eps=float("inf")), "eps"),
    (lambda m: Adam(m, betas=(0.9, "0.999")), "betas"),
    (lambda m: Adam(m, betas=(True, 0.999)), "betas"),
])
def test_bad_hyper_parameters_are_refused(make_opt, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        make_opt(lora_model())


def test_hyper_parameter_errors_name_the_optimizer_and_the_group():
    model = lora_model()
    with pytest.raises(ValueError, match="^Adam: lr must be a finite positive number, got inf$"):
        Adam(model, lr=float("inf"))
    with pytest.raises(ValueError, match=r"^SGD: momentum must be a number in \[0, 1\), got 1.0$"):
        SGD(model, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match=r"^AdamW: betas\[1\] \(beta2\) must be a number in \[0, 1\)"):
        AdamW(model, betas=(0.9, 1.0))
    a, b = model.trainable_parameters()[:2], model.trainable_parameters()[2:]
    with pytest.raises(ValueError, match=r"^Adam \(param group 1\): lr must be a finite positive number"):
        Adam([{"params": a}, {"params": b, "lr": -1.0}], lr=1e-3)


def test_checked_hyper_parameters_are_stored_as_python_floats():
    opt = Adam(lora_model(), lr=np.float32(0.01), betas=[np.float64(0.9), 0.999], eps=1, weight_decay=0)
    g = opt.groups[0]
    assert g["betas"] == (0.9, 0.999) and g["lr"] == pytest.approx(0.01)
    assert (g["eps"], g["weight_decay"]) == (1.0, 0.0)
    assert all(type(v) is float for v in (g["lr"], *g["betas"], g["eps"], g["weight_decay"]))
    sgd = SGD(lora_model(), lr=1, momentum=np.float32(0.5)).groups[0]
    assert type(sgd["lr"]) is type(sgd["momentum"]) is type(sgd["weight_decay"]) is float


@pytest.mark.parametrize("kwargs, name", [
    (dict(epochs=0), "epochs"), (dict(epochs=-1), "epochs"), (dict(epochs=2.5), "epochs"),
    (dict(epochs=True), "epochs"), (dict(batch_size=0), "batch_size"), (dict(batch_size=1.5), "batch_size"),
])
def test_bad_fit_arguments_are_refused(task, kwargs, name):
    model = lora_model()
    with pytest.raises(ValueError, match=rf"\b{name} must be a positive integer"):
        fit(model, SGD(model, lr=0.1), *task.shift_train, **kwargs)


def test_fit_refuses_x_and_y_of_different_lengths(task):
    model = lora_model()
    X, y = task.shift_train
    with pytest.raises(ValueError, match=r"\(100, 20\) and \(99,\)"):
        fit(model, SGD(model, lr=0.1), X, y[:99])


def test_fit_refuses_an_empty_data_set(task):
    model = lora_model()
    X, y = task.shift_train
    with pytest.raises(ValueError, match="empty"):
        fit(model, SGD(model, lr=0.1), X[:0], y[:0])


# --------------------------------------------------------------------------- update rules by hand

THETA0 = [1.0, -2.0, 0.5]
GRADS = [[0.1, -0.2, 0.3], [0.5, 0.4, -0.1], [-0.3, 0.2, 0.2]]


def run_optimizer(make_opt):
    """Three steps on one float64 parameter with fixed gradients; returns θ after each step."""
    p = Parameter(backend.asarray(THETA0))
    opt, out = make_opt([p]), []
    for g in GRADS:
        opt.zero_grad()
        p.grad = backend.asarray(g)
        opt.step()
        out.append(to_numpy(p.data).copy())
    return out


@pytest.mark.parametrize("momentum, wd", [(0.0, 0.0), (0.9, 0.0), (0.9, 0.01)])
def test_sgd_update_rule_by_hand(float64, momentum, wd):
    lr, theta, v = 0.1, np.array(THETA0), np.zeros(3)
    expected = []
    for g in map(np.array, GRADS):
        g = g + wd * theta
        v = momentum * v + g
        theta = theta - lr * (v if momentum else g)
        expected.append(theta)
    got = run_optimizer(lambda ps: SGD(ps, lr=lr, momentum=momentum, weight_decay=wd))
    for e, a in zip(expected, got, strict=True):
        assert rel_error(a, e) < 1e-14


@pytest.mark.parametrize("cls, wd", [(Adam, 0.0), (Adam, 0.1), (AdamW, 0.1)])
def test_adam_update_rule_by_hand(float64, cls, wd):
    lr, (b1, b2), eps = 0.01, (0.9, 0.999), 1e-8
    theta, m, v = np.array(THETA0), np.zeros(3), np.zeros(3)
    expected = []
    for t, g in enumerate(map(np.array, GRADS), start=1):
        if cls is Adam:
            g = g + wd * theta                                   # L2 through the gradient
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        if cls is AdamW:
            theta = theta - lr * wd * theta                      # decoupled decay
        theta = theta - lr * m_hat / (np.sqrt(v_hat) + eps)
        expected.append(theta)
    got = run_optimizer(lambda ps: cls(ps, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd))
    for e, a in zip(expected, got, strict=True):
        assert rel_error(a, e) < 1e-12
    if cls is Adam and wd == 0:                                  # the first step is lr · sign(g)
        assert np.abs(got[0] - (np.array(THETA0) - lr * np.sign(GRADS[0]))).max() < 1e-6 * lr


def test_parameters_without_a_gradient_are_not_updated(float64):
    p, q = Parameter(backend.asarray([1.0, 2.0])), Parameter(backend.asarray([3.0]))
    opt = Adam([p, q], lr=0.1)
    p.grad = backend.asarray([0.5, -0.5])
    opt.step()
    assert np.array_equal(to_numpy(q.data), [3.0])
    assert not np.array_equal(to_numpy(p.data), [1.0, 2.0])
