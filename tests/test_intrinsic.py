"""Random-subspace training and the intrinsic dimension (notebook 06).

θ = θ₀ + P z: the gradient of z is Pᵀ∇θ (and SAID's scales get ⟨(P z)_l, ∇θ_l⟩), checked against
central differences; z = 0 is the base model exactly; training moves z (and λ) only; a small seeded
sweep rises with d and finds d_int90; the dashboard records one history entry per redraw.
"""
import numpy as np
import pytest
from matplotlib.figure import Figure

from lora_np import backend
from lora_np.data import make_fruit_task
from lora_np.experiments.finetune import pretrain
from lora_np.experiments.intrinsic import (
    IntrinsicSweep,
    d_int90,
    intrinsic_dimension_sweep,
    lora_comparison,
    pretraining_study,
    said_comparison,
    subspace_finetune,
    width_study,
)
from lora_np.gradcheck import check_model_gradients, cross_entropy
from lora_np.models import MLP
from lora_np.nn import Linear, ReLU, Sequential, SoftmaxCrossEntropy
from lora_np.nn.subspace import RandomSubspace, random_projection
from lora_np.optim import Adam
from lora_np.train import fit
from lora_np.viz.intrinsic import (
    plot_intrinsic_sweep,
    plot_normalized_sweeps,
    plot_pretraining_study,
    plot_width_study,
)
from lora_np.widgets.intrinsic import intrinsic_dimension_explorer

H = backend.to_numpy


def small_mlp(seed=0):
    return MLP(5, (7, 6), 4, seed=seed)                    # D = 40 + 48 + 30 = 118


# --------------------------------------------------------------------------- the module


@pytest.mark.parametrize("said", [False, True])
def test_subspace_gradients_match_central_differences(rng, float64, said):
    sub = RandomSubspace(small_mlp(), d=20, seed=3, said=said)
    sub.z.data = rng.standard_normal(tuple(sub.z.shape)) * 0.3          # away from z = 0, where ∂L/∂λ = 0
    if said:
        sub.lam.data = rng.uniform(0.5, 1.5, tuple(sub.lam.shape))
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 4, (8,))
    errors = check_model_gradients(sub, x, cross_entropy(y), max_coords=40)
    assert set(errors) == ({"z", "lam", "input"} if said else {"z", "input"})
    assert max(errors.values()) < 1e-6, errors


def test_a_tied_tensor_is_one_block_of_theta_and_gets_both_gradients(rng, float64):
    first, second = Linear(4, 4, rng=1), Linear(4, 4, rng=2)
    second.weight = first.weight                                         # tied: one tensor, used twice
    sub = RandomSubspace(Sequential(first, ReLU(), second), d=12, seed=1)
    assert sub.D == 16 + 4 + 4                                           # the shared weight counted once
    sub.z.data = rng.standard_normal((12,)) * 0.3
    x, y = rng.standard_normal((5, 4)), rng.integers(0, 4, (5,))
    assert max(check_model_gradients(sub, x, cross_entropy(y)).values()) < 1e-6


def test_z_zero_gives_exactly_the_base_model(rng):
    base = small_mlp()
    x = rng.standard_normal((6, 5))
    expected = H(base(x))
    for said in (False, True):
        sub = RandomSubspace(small_mlp(), d=30, said=said)
        assert np.array_equal(H(sub(x)), expected)
        assert np.array_equal(H(sub.theta()), H(sub.theta0))


def test_only_z_and_lam_are_trained_and_theta0_and_P_stay_bit_identical(rng):
    X, y = rng.standard_normal((64, 5)), rng.integers(0, 4, (64,))
    for said in (False, True):
        sub = RandomSubspace(small_mlp(), d=16, said=said)
        assert sub.num_parameters(trainable_only=True) == 16 == sub.num_parameters()
        opt = Adam(sub, lr=0.05)
        assert opt.num_trained() == 16
        theta0, P = H(sub.theta0).copy(), H(sub.P).copy()
        hist = fit(sub, opt, X, y, epochs=5, batch_size=16)
        assert hist.epoch_loss[-1] < hist.epoch_loss[0]
        assert np.array_equal(H(sub.theta0), theta0) and np.array_equal(H(sub.P), P)
        assert np.abs(H(sub.z.data)).max() > 0
        if said:
            assert not np.allclose(H(sub.lam.data), 1.0)
        sub(X)                                                           # the model holds θ₀ + P z now
        flat = np.concatenate([H(p.data).ravel() for p in sub.wrapped.parameters()])
        assert np.allclose(flat, H(sub.theta()), atol=1e-6)
        assert all(p.grad is None for p in sub.wrapped.parameters())     # ∇θ is never kept


def test_projection_columns_have_unit_norm_and_depend_only_on_the_seed(xp):
    sub = RandomSubspace(small_mlp(), d=10, seed=5)
    norms = H(xp.sqrt((sub.P ** 2).sum(axis=0)))
    assert np.allclose(norms, 1.0, atol=1e-6)
    assert sub.P.dtype == backend.default_dtype() and tuple(sub.P.shape) == (118, 10)
    assert np.array_equal(H(sub.P), random_projection(118, 10, seed=5).astype(np.float32))   # host draw
    assert not np.array_equal(H(sub.P), H(RandomSubspace(small_mlp(), d=10, seed=6).P))


def test_said_starts_at_lam_one_with_zero_lam_gradient_then_lam_moves(rng):
    sub = RandomSubspace(small_mlp(), d=16, said=True)
    m = len(sub.wrapped.parameters())
    assert sub.n_tensors == m == 6 and tuple(sub.z.shape) == (16 - m,)
    assert np.array_equal(H(sub.lam.data), np.ones(m, dtype=np.float32))
    x, y = rng.standard_normal((8, 5)), rng.integers(0, 4, (8,))
    crit, opt = SoftmaxCrossEntropy(), Adam(sub, lr=0.1)
    for step in range(2):
        opt.zero_grad()
        crit(sub(x), y)
        sub.backward(crit.backward())
        if step == 0:
            assert np.array_equal(H(sub.lam.grad), np.zeros(m, dtype=np.float32))   # P z = 0
            assert np.abs(H(sub.z.grad)).max() > 0
        opt.step()
    assert np.abs(H(sub.lam.grad)).max() > 0                            # z has moved: λ learns


def test_at_d_equal_D_the_subspace_reaches_any_parameter_vector(rng, xp, float64):
    sub = RandomSubspace(small_mlp(seed=0), d=118)                      # P square, invertible
    target = small_mlp(seed=1)
    theta_star = xp.concatenate([p.data.reshape(-1) for p in target.parameters()])     # (D,)
    sub.z.data = xp.linalg.solve(sub.P, theta_star - sub.theta0)                       # (D,)
    x = rng.standard_normal((4, 5))
    assert np.allclose(H(sub(x)), H(target(x)), atol=1e-9)


def test_dense_projection_memory_and_repr():
    sub = RandomSubspace(small_mlp(), d=10)
    assert sub.memory_bytes() == 4 * 118 * 10 + 4 * 118
    assert "D=118" in repr(sub) and "d=10" in repr(sub)


@pytest.mark.host_only
def test_subspace_moves_to_the_emulated_device(rng):
    sub = RandomSubspace(small_mlp(), d=8).to("emulated")
    with backend.use_backend("emulated"):
        out = sub(backend.Rng(0).standard_normal((3, 5)))
        assert isinstance(out, backend.DeviceArray) and isinstance(sub.P, backend.DeviceArray)


@pytest.mark.parametrize("kwargs, err, match", [
    ({"d": 119}, ValueError, r"d must be an integer in \[1, D = 118\], got 119"),
    ({"d": 0}, ValueError, "d must be a positive integer"),
    ({"d": 2.0}, ValueError, "d must be a positive integer"),
    ({"d": True}, ValueError, "d must be a positive integer"),
    ({"d": 6, "said": True}, ValueError, r"\[7, D = 118\].*SAID spends 6"),
    ({"d": 4, "said": 1}, TypeError, "said must be True or False"),
    ({"d": 4, "seed": "a"}, TypeError, "seed must be an integer"),
    ({"d": 100, "max_entries": 1000}, ValueError, "D·d = 118·100 = 11,800 numbers"),
])
def test_bad_arguments_are_refused_clearly(kwargs, err, match):
    with pytest.raises(err, match=match):
        RandomSubspace(small_mlp(), **kwargs)


def test_bad_models_are_refused_and_backward_needs_a_forward():
    with pytest.raises(TypeError, match="model must be a lora_np Module"):
        RandomSubspace("mlp", 4)
    with pytest.raises(TypeError, match="already a RandomSubspace"):
        RandomSubspace(RandomSubspace(small_mlp(), 4), 2)
    with pytest.raises(ValueError, match="one dtype"):
        model = small_mlp()
        model.fc1.bias.data = model.fc1.bias.data.astype("float64")
        RandomSubspace(model, 4)
    with pytest.raises(RuntimeError, match="before forward"):
        RandomSubspace(Linear(3, 2), 2).backward(backend.asarray(np.ones((1, 2))))


# --------------------------------------------------------------------------- experiments (one small config)

_SMALL = {}
SMALL_DIMS = (8, 16, 64, 256)
FAST = {"epochs": 12}


def small():
    """A small seeded fruit task, a pretrained (32, 32) MLP (D = 2,058) and its sweep; built once."""
    if not _SMALL:
        task = make_fruit_task(n_pretrain=1500, n_finetune=300, n_test=600)
        base, _ = pretrain(task, hidden=(32, 32), epochs=8)
        _SMALL.update(task=task, base=base,
                      sweep=intrinsic_dimension_sweep(base, task, SMALL_DIMS, full_epochs=20, **FAST))
    return _SMALL


@pytest.mark.once
def test_accuracy_rises_with_d_and_d_int90_is_found():
    s = small()
    sweep = s["sweep"]
    a = sweep.normalized()
    assert sweep.D == 2058 and sweep.dims == list(SMALL_DIMS) and sweep.chance == 0.1
    assert sweep.full_accuracy > 0.85 and a[0] < 0.9                  # below the level at first ...
    assert sweep.accuracy[-1] > sweep.accuracy[0] + 0.2 and a[-1] >= 0.9    # ... and above it at the end
    d90 = sweep.d_int90
    assert d90 is not None and SMALL_DIMS[0] < d90 < SMALL_DIMS[-1]
    assert 0.02 < d90 / sweep.D < 0.15                                   # a few percent of the parameters
    i = next(i for i, v in enumerate(a) if v >= 0.9)
    assert sweep.dims[i - 1] <= d90 <= sweep.dims[i]                    # between the bracketing dims
    assert sweep.at(16)["fraction"] == 16 / 2058


def test_d_int90_interpolates_on_a_log_axis_and_reports_the_grid_edges():
    def sweep(acc):
        return IntrinsicSweep([10, 100, 1000], acc, 5000, full_accuracy=1.0, chance=0.0, before=0.0)
    assert d_int90(sweep([0.5, 0.8, 1.0])) == pytest.approx(10 ** 2.5)  # halfway between 100 and 1000
    assert d_int90(sweep([0.95, 0.8, 1.0])) == 10.0                     # first d already there: at most 10
    assert d_int90(sweep([0.1, 0.2, 0.3])) is None                      # above the grid
    assert d_int90(sweep([0.5, 0.9, 1.0])) == pytest.approx(100)
    assert d_int90(sweep([0.5, 0.7, 0.8]), level=0.7) == pytest.approx(100)
    with pytest.raises(ValueError, match=r"level must be a number in \(0, 1\]"):
        d_int90(sweep([0.5, 0.8, 1.0]), level=1.5)
    with pytest.raises(TypeError, match="IntrinsicSweep"):
        d_int90([0.5, 0.8])
    with pytest.raises(ValueError, match="not above chance"):
        IntrinsicSweep([1], [0.1], 10, full_accuracy=0.1, chance=0.1, before=0.1).normalized()


@pytest.mark.once
def test_said_lora_and_studies_on_the_small_config():
    s = small()
    task, base, sweep = s["task"], s["base"], s["sweep"]
    said = said_comparison(base, task, plain=sweep, **FAST)
    assert said.sweeps[0] is sweep and said.sweeps[1].said and said.labels == ["random subspace", "SAID"]
    assert said.sweeps[1].full_accuracy == sweep.full_accuracy
    assert said.sweeps[1].accuracy[-1] > said.sweeps[1].accuracy[0]
    lora = lora_comparison(base, task, sweep, ranks=(1, 2), epochs=15)
    assert lora.trainable == [1 * (20 + 32) + 1 * (32 + 32), 2 * (20 + 32) + 2 * (32 + 32)]
    assert lora.r_level in (1, 2) and lora.lora_params == lora.trainable[lora.ranks.index(lora.r_level)]
    assert lora.d_int90 == sweep.d_int90
    for fig in (plot_intrinsic_sweep(sweep, lora=lora, current=64), plot_normalized_sweeps(said)):
        ax = fig.axes[0]
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title() and ax.get_legend() is not None
    widths = width_study(task, widths=((8,), (16,)), dims=(4, 16, 64), pretrain_epochs=4, full_epochs=10,
                         epochs=6)
    assert widths.D == [20 * 8 + 8 + 8 * 10 + 10, 20 * 16 + 16 + 16 * 10 + 10] and len(widths.d_int90) == 2
    assert "d_int90/D" in widths.table()
    levels = pretraining_study(task, levels=(0, 8), hidden=(32, 32), dims=(8, 32, 128, 512), full_epochs=20,
                               **FAST)
    assert levels.labels == ["random init", "8 epochs"]
    assert levels.sweeps[0].before < 0.3 < levels.sweeps[1].before
    assert levels.sweeps[1].accuracy[0] == sweep.accuracy[0]             # the same pretrained base, d = 8
    scratch, pretrained = levels.d_int90                                 # measured: ≈ 230 and ≈ 100
    assert pretrained is not None and scratch is not None and pretrained < 0.7 * scratch
    if any(d is not None for d in widths.d_int90):
        assert plot_width_study(widths).axes[0].get_xlabel()
    fig = plot_pretraining_study(levels)
    assert isinstance(fig, Figure) and all(ax.get_ylabel() and ax.get_title() for ax in fig.axes)


def test_experiment_arguments_are_checked():
    task = make_fruit_task(n_pretrain=50, n_finetune=50, n_test=50)
    base = MLP(task.d_in, (4,), task.n_classes)
    with pytest.raises(ValueError, match="dims must be a non-empty list"):
        intrinsic_dimension_sweep(base, task, dims=())
    with pytest.raises(ValueError, match="dims must be a non-empty list"):
        intrinsic_dimension_sweep(base, task, dims=(0, 4))
    with pytest.raises(ValueError, match="widths must name at least one"):
        width_study(task, widths=())
    with pytest.raises(ValueError, match=r"levels \(epochs of pretraining\) must be a non-empty list of"):
        pretraining_study(task, levels=(-1,))
    with pytest.raises(TypeError, match="sweep must be an IntrinsicSweep"):
        lora_comparison(base, task, sweep={"dims": [1]})
    with pytest.raises(TypeError, match="IntrinsicSweep"):
        plot_intrinsic_sweep([1, 2])
    with pytest.raises(TypeError, match="IntrinsicStudy"):
        plot_width_study([1, 2])
    res = subspace_finetune(base, task, d=8, epochs=1)
    assert res.d == 8 and res.D == 20 * 4 + 4 + 4 * 10 + 10 and res.fraction == 8 / res.D
    assert isinstance(res.model, RandomSubspace) and 0.0 <= res.accuracy <= 1.0


# --------------------------------------------------------------------------- the dashboard


def test_explorer_trains_each_d_once_and_records_history():
    task = make_fruit_task(n_pretrain=300, n_finetune=200, n_test=200)
    base = MLP(task.d_in, (16,), task.n_classes)                       # D = 506
    dash = intrinsic_dimension_explorer(base, task, dims=(8, 32, 128), d=8, epochs=3)
    assert len(dash.history) == 1 and dash.history[0]["d"] == 8 and not dash.history[0]["cached"]
    dash.slider.value = 32
    dash.slider.value = 8
    assert [h["d"] for h in dash.history] == [8, 32, 8]
    assert [h["cached"] for h in dash.history] == [False, False, True]
    last = dash.history[-1]
    assert last["D"] == 506 and last["fraction"] == 8 / 506 and last["tried"] == [8, 32]
    assert last["normalized"] == pytest.approx((last["accuracy"] - 0.1) / (last["full_accuracy"] - 0.1))
    sweep = IntrinsicSweep([8, 32], [0.4, 0.6], 506, full_accuracy=0.8, chance=0.1, before=0.2)
    seeded = intrinsic_dimension_explorer(base, task, dims=(8, 32, 128), d=32, sweep=sweep, epochs=2)
    assert seeded.history[0]["cached"] and seeded.history[0]["accuracy"] == 0.6
    seeded.slider.value = 128
    assert seeded.history[-1]["tried"] == [8, 32, 128] and not seeded.history[-1]["cached"]


def test_explorer_arguments_are_checked():
    task = make_fruit_task(n_pretrain=50, n_finetune=50, n_test=50)
    base = MLP(task.d_in, (4,), task.n_classes)                        # D = 134
    with pytest.raises(ValueError, match="must be one of dims"):
        intrinsic_dimension_explorer(base, task, dims=(8, 16), d=4)
    with pytest.raises(ValueError, match="at most D = 134"):
        intrinsic_dimension_explorer(base, task, dims=(8, 256), d=8)
    with pytest.raises(ValueError, match="exceed the 4 per-tensor scales"):
        intrinsic_dimension_explorer(base, task, dims=(4, 16), d=16, said=True)
    with pytest.raises(TypeError, match="sweep must be an IntrinsicSweep or None"):
        intrinsic_dimension_explorer(base, task, dims=(8, 16), d=8, sweep=[0.5])
