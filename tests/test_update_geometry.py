"""The geometry of an update (lora_np.experiments.update_geometry and .geometry_studies): ΔW's energy,
subspace similarity φ, amplification."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_np import backend
from lora_np.data import make_fruit_task, shift_matrix
from lora_np.experiments import (
    DeltaSpectrum,
    SimilarityStudy,
    amplification,
    amplification_table,
    chance_similarity,
    delta_spectra,
    energy_spectrum,
    finetune,
    format_amplification_table,
    full_finetune_deltas,
    initial_adapter_A,
    pretrain,
    random_like,
    shift_alignment,
    similarity_study,
    subspace_similarity,
    train_adapter_A,
)
from lora_np.viz.update_geometry import plot_amplification, plot_delta_spectra, plot_similarity


@pytest.fixture(scope="module")
def fruit():
    """The demo's task and pretrained MLP (20 → 256 → 256 → 10), built once on the host."""
    with backend.use_backend("numpy", dtype="float32"):
        task = make_fruit_task(shift_rank=2, seed=0)
        base, _ = pretrain(task, seed=0)
    return base, task


def on_device(fruit):
    """Copies of the fixture on the test's backend."""
    base, task = fruit
    return copy.deepcopy(base).to(), copy.deepcopy(task).to()


def host(a):
    return backend.asarray(np.asarray(a, dtype=float))


# --------------------------------------------------------------------------- 1. energy spectrum

def test_energy_of_a_rank_k_matrix_is_complete_at_k(rng, float64):
    M = rng.standard_normal((12, 3)) @ rng.standard_normal((3, 9))        # rank 3
    S, energy = energy_spectrum(M)
    assert isinstance(S, np.ndarray) and S.shape == energy.shape == (9,)
    assert np.all(np.diff(S) <= 1e-12) and np.all(np.diff(energy) >= -1e-12)
    assert energy[1] < 1.0 and energy[2] == pytest.approx(1.0, abs=1e-12)
    assert energy[0] == pytest.approx(S[0] ** 2 / (S ** 2).sum())


def test_random_like_matches_shape_norm_dtype_and_device_and_spreads_its_energy(rng, xp):
    M = rng.standard_normal((64, 48))
    R = random_like(M, seed=3)
    assert type(R) is type(M) and R.dtype == M.dtype and tuple(R.shape) == (64, 48)
    assert backend.to_float(xp.linalg.norm(R)) == pytest.approx(backend.to_float(xp.linalg.norm(M)), rel=1e-5)
    assert np.array_equal(backend.to_numpy(R), backend.to_numpy(random_like(M, seed=3)))
    assert not np.array_equal(backend.to_numpy(R), backend.to_numpy(random_like(M, seed=4)))
    _, energy = energy_spectrum(R)
    assert energy[0] < 0.1 and energy[7] < 0.5            # no few directions dominate a Gaussian matrix


@pytest.mark.parametrize("bad, error, match", [
    ([[1.0, 2.0]], TypeError, "must be an array"),
    (np.zeros(3) + 1, ValueError, "must be a non-empty 2-D matrix"),
    (np.zeros((0, 3)), ValueError, "must be a non-empty 2-D matrix"),
    (np.array([[1.0, np.nan]]), ValueError, "contains NaN"),
    (np.zeros((2, 3)), ValueError, "is all zeros"),
])
def test_bad_matrices_are_refused_with_the_argument_named(bad, error, match):
    arg = bad if isinstance(bad, list) else backend.asarray(bad)
    with pytest.raises(error, match=f"energy_spectrum: M {match}"):
        energy_spectrum(arg)
    with pytest.raises(error, match=f"random_like: M {match}"):
        random_like(arg)
    with pytest.raises(error, match=f"subspace_similarity: A1 {match}"):
        subspace_similarity(arg, backend.asarray(np.ones((1, 3))))


@pytest.mark.once
def test_full_finetuning_puts_far_more_energy_in_few_directions_than_a_random_matrix(fruit):
    base, task = fruit
    W0 = backend.to_numpy(base.get_submodule("fc1").weight.data).copy()
    deltas = full_finetune_deltas(base, task, epochs=10)
    assert np.array_equal(backend.to_numpy(base.get_submodule("fc1").weight.data), W0)     # base untouched
    spectra = delta_spectra(base, task, deltas=deltas)
    assert list(spectra) == ["fc1", "fc2", "head"]
    assert all(isinstance(s, DeltaSpectrum) for s in spectra.values())
    assert spectra["fc1"].shape == (256, 20) and set(spectra["head"].top_k) == {1, 2, 4, 8}
    for sp in spectra.values():
        for k in (1, 2):
            assert sp.top_k[k] > 2 * sp.random_top_k[k], (sp.layer, k)
    fc2 = spectra["fc2"]
    assert fc2.top_energy(2) > 0.5 and fc2.top_energy(2) > 10 * fc2.random_top_energy(2)   # random: 3%
    with pytest.raises(ValueError, match="k must be"):
        spectra["fc1"].top_energy(21)
    aligned = shift_alignment(deltas["fc1"], task)            # honest: not confined to the shift's V
    assert aligned["chance"] == pytest.approx(0.1)
    assert 0 <= aligned["energy_in_shift"] <= 1 and 0 <= aligned["phi"] <= 1


def test_the_exact_fix_lies_in_the_shift_directions_and_a_random_update_does_not(fruit, float64):
    base, task = on_device(fruit)
    M, _, _ = shift_matrix(task.shift_rank)
    W0 = backend.to_numpy(base.get_submodule("fc1").weight.data).astype(float)         # (256, 20)
    fix = shift_alignment(host(W0 @ np.linalg.inv(M) - W0), task)                       # W0 (I + U Vᵀ)⁻¹ − W0
    assert fix["energy_in_shift"] == pytest.approx(1.0, abs=1e-9)
    assert fix["phi"] == pytest.approx(1.0, abs=1e-9)
    noise = shift_alignment(host(np.random.default_rng(0).standard_normal((256, 20))), task)
    assert abs(noise["energy_in_shift"] - 0.1) < 0.05
    with pytest.raises(ValueError, match="first layer"):
        shift_alignment(host(np.ones((4, 7))), task)


# --------------------------------------------------------------------------- 2. subspace similarity

@settings(max_examples=20, deadline=None)
@given(st.integers(1, 8), st.integers(0, 20), st.integers(0, 2 ** 16))
def test_phi_of_a_matrix_with_itself_is_one_on_the_diagonal_and_bounded(r, extra, seed):
    A = backend.asarray(np.random.default_rng(seed).standard_normal((r, r + extra)), dtype="float64")
    phi = subspace_similarity(A, A)
    assert phi.shape == (r, r) and phi.dtype == np.float64
    assert np.allclose(np.diag(phi), 1.0) and phi.max() <= 1 + 1e-9 and phi.min() >= 0
    assert np.allclose(phi, phi.T)                                        # φ(A, A) is symmetric


@pytest.mark.host_only
def test_phi_of_random_matrices_is_max_i_j_over_n():
    """E φ(i, j) = max(i, j)/n in Rⁿ; n = 64 gives j/64 for i ≤ j. For i = 1, φ(1, j) ~ Beta(j/2, (n−j)/2),
    whose standard deviation is at most √(2·(n/2)²/(n²(n+2))) ≈ 0.087: the mean of D draws is within
    4·0.087/√D of j/n (larger i average more overlaps and vary less)."""
    gen, n, draws = np.random.default_rng(0), 64, 40
    phis = [subspace_similarity(host(gen.standard_normal((8, n))), host(gen.standard_normal((n, n))))
            for _ in range(draws)]
    mean = np.mean(phis, axis=0)                                                        # (8, 64)
    sd = np.sqrt(2 * (n / 2) ** 2 / (n ** 2 * (n + 2)))
    assert np.abs(mean - chance_similarity(8, n, n)).max() < 4 * sd / np.sqrt(draws)
    assert np.allclose(mean[:, -1], 1.0)                                           # j = n: the whole space


def test_phi_depends_only_on_the_ordered_row_space(rng, float64):
    A1, A2 = rng.standard_normal((4, 20)), rng.standard_normal((9, 20))
    phi = subspace_similarity(A1, A2)
    assert phi.shape == (4, 9)
    assert np.allclose(subspace_similarity(-3.7 * A1, 0.01 * A2), phi)             # scaling
    Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((4, 4)))
    assert np.allclose(subspace_similarity(host(Q) @ A1, A2), phi)                   # rotating the rows
    M = host(np.random.default_rng(2).standard_normal((4, 4)) + 4 * np.eye(4))      # any invertible M:
    assert np.allclose(subspace_similarity(M @ A1, A2)[-1], phi[-1])                 # the same row space
    assert np.allclose(subspace_similarity(A2, A1), phi.T)                         # symmetric


def test_phi_rejects_different_input_spaces_and_tall_matrices(rng):
    with pytest.raises(ValueError, match="same input space"):
        subspace_similarity(rng.standard_normal((2, 5)), rng.standard_normal((2, 6)))
    with pytest.raises(ValueError, match="r <= n"):
        subspace_similarity(rng.standard_normal((7, 5)), rng.standard_normal((2, 5)))
    with pytest.raises(ValueError, match="r1 must be"):
        chance_similarity(0, 3, 10)


@pytest.mark.once
def test_trained_adapters_share_their_top_directions_far_beyond_chance(fruit):
    base, task = fruit
    study = similarity_study(base, task, ranks=(4, 32), epochs=10)
    assert isinstance(study, SimilarityStudy) and study.n == 256
    small_big, seeds, random = study.grids.values()
    assert small_big.shape == (4, 32) and seeds.shape == (32, 32) and random.shape == (4, 32)
    assert small_big[0, 0] > 0.4 and seeds[0, 0] > 0.4 > 100 * study.chance(1, 1)   # the top direction recurs
    assert small_big[0, :8].max() > 0.6                                            # in the big one's top 8
    for before in study.init_grids.values():                                         # different seeds: chance
        assert before[0, 0] < 0.05
    assert random[0, 0] < 0.05 and abs(random[:, -1].mean() - 32 / 256) < 0.05
    with pytest.raises(ValueError, match="two different seeds"):
        similarity_study(base, task, seeds=(0, 0))
    with pytest.raises(ValueError, match="d_in = 20"):
        similarity_study(base, task, ranks=(4, 32), layer="fc1")


def test_initial_A_is_exactly_what_training_starts_from(fruit):
    """B starts at 0, so dA = s (G B)ᵀ x = 0 in the first step: A after step 1 is still its initial value."""
    base, task = on_device(fruit)
    first = []

    def keep_first(info):                                   # a copy: the optimizer updates A in place
        if not first:
            first.append(backend.to_numpy(info.model.get_submodule("fc1").lora_A.data).copy())

    finetune(base, task, r=3, target_modules=("fc1",), epochs=1, seed=5, callbacks=[keep_first])
    A0 = initial_adapter_A(base, 3, layer="fc1", seed=5)
    assert np.array_equal(backend.to_numpy(A0), first[0])
    A = train_adapter_A(base, task, 3, layer="fc1", seed=5, epochs=1)
    assert tuple(A.shape) == (3, 20) and type(A) is type(A0)
    assert not np.array_equal(backend.to_numpy(A), first[0])
    with pytest.raises(ValueError, match="layer must name a Linear"):
        train_adapter_A(base, task, 2, layer="act1")
    with pytest.raises(TypeError, match="base must be"):
        train_adapter_A("model", task, 2)


# --------------------------------------------------------------------------- 3. amplification

def test_an_update_along_w_s_top_direction_is_maximally_correlated(float64):
    W = host(np.diag([5.0, 3.0, 1.0, 0.5]))
    along = amplification(W, host(np.diag([2.0, 0.0, 0.0, 0.0])), r=1)
    assert along["W_in_delta"] == pytest.approx(5.0) == pytest.approx(along["W_top"])
    assert along["factor"] == pytest.approx(2.0 / 5.0) and along["delta_norm"] == pytest.approx(2.0)
    weakest = amplification(W, host(np.diag([0.0, 0.0, 0.0, 2.0])), r=1)              # W's weakest direction
    assert weakest["W_in_delta"] == pytest.approx(0.5) and weakest["factor"] == pytest.approx(4.0)


def test_an_update_orthogonal_to_w_s_top_directions_sees_what_random_directions_see(float64):
    """W = (a rank-4 part, σ = 40) + unit Gaussian noise G, 64×64. ΔW in the complement of W's top 4
    sees only noise, ‖UᵀGV‖_F ≈ r; random r-frames see ≈ r ‖W‖_F/64 ≈ 1.6 r: the same order, while
    W's own top 4 hold ≈ 80."""
    gen, r = np.random.default_rng(0), 4
    P, _ = np.linalg.qr(gen.standard_normal((64, 64)))
    Q, _ = np.linalg.qr(gen.standard_normal((64, 64)))
    W = 40 * P[:, :r] @ Q[:, :r].T + gen.standard_normal((64, 64))                         # (64, 64)
    dW = P[:, r:2 * r] @ np.diag([4.0, 3.0, 2.0, 1.0]) @ Q[:, r:2 * r].T                   # ⟂ W's top 4
    row = amplification(host(W), host(dW), r=r, seed=1)
    assert row["W_random"] / 3 < row["W_in_delta"] < 3 * row["W_random"]
    assert row["W_in_delta"] < row["W_top"] / 10
    assert row["W_random"] == pytest.approx(row["W_random_expected"], rel=0.35)


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 12), st.integers(2, 12), st.integers(0, 2 ** 16), st.data())
def test_w_s_own_top_directions_hold_the_most_of_w(m, n, seed, data):
    gen = np.random.default_rng(seed)
    r = data.draw(st.integers(1, min(m, n)))
    k = data.draw(st.integers(1, min(m, n)))
    W = backend.asarray(gen.standard_normal((m, n)), dtype="float64")
    dW = backend.asarray(gen.standard_normal((m, k)) @ gen.standard_normal((k, n)), dtype="float64")
    row = amplification(W, dW, r, seed=seed, n_random=2)
    assert row["W_top"] >= row["W_in_delta"] - 1e-9 >= -1e-9
    assert row["W_top"] >= row["W_random"] - 1e-9
    assert row["W_top"] <= row["W_norm"] + 1e-9


@pytest.mark.parametrize("kwargs, error, match", [
    ({"r": 0}, ValueError, "r must be"), ({"r": 5}, ValueError, r"r must be an integer in \[1, 4\]"),
    ({"r": 1.5}, ValueError, "r must be"), ({"r": 1, "n_random": 0}, ValueError, "n_random"),
    ({"r": 1, "dW": np.ones((4, 3))}, ValueError, "same shape"),
    ({"r": 1, "dW": np.zeros((4, 4))}, ValueError, "dW is all zeros"),
])
def test_amplification_rejects_bad_arguments(kwargs, error, match):
    kwargs = dict(kwargs)
    dW = backend.asarray(kwargs.pop("dW", np.eye(4)))
    with pytest.raises(error, match=match):
        amplification(backend.asarray(np.eye(4)), dW, **kwargs)


@pytest.mark.once
def test_lora_updates_amplify_directions_w_has_but_does_not_emphasise(fruit):
    base, task = fruit
    rows = amplification_table(base, task, ranks=(1, 4, 16), epochs=10)
    assert [row["r"] for row in rows] == [1, 4, 16]
    for row in rows:     # more of W than random directions hold, clearly less than W's own top r
        assert 2.5 * row["W_random"] < row["W_in_delta"] < 0.75 * row["W_top"]
        assert row["factor"] > 1.0
    assert rows[0]["W_in_delta"] > 20 * rows[0]["W_random"]        # r = 1: far more (the gap shrinks with r)
    assert rows[0]["factor"] > rows[-1]["factor"]                     # a low rank amplifies the most
    assert format_amplification_table(rows).count("\n") == len(rows) + 1
    with pytest.raises(ValueError, match="at least one rank"):
        amplification_table(base, task, ranks=())


# --------------------------------------------------------------------------- every backend, and the figures

def test_a_tiny_run_on_every_backend_and_the_figures(fruit):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    base, task = on_device(fruit)
    spectra = delta_spectra(base, task, layers=("fc1", "head"), epochs=1)
    study = similarity_study(base, task, ranks=(2, 4), epochs=1)
    rows = amplification_table(base, task, ranks=(1, 2), epochs=1)
    assert all(np.isfinite(row["factor"]) for row in rows)
    assert all(np.isfinite(g).all() for g in study.grids.values())
    figs = [plot_delta_spectra(spectra, mark_k=task.shift_rank), plot_similarity(study),
            plot_similarity(study.init_grids, max_dim=2), plot_amplification(rows)]
    for fig in figs:
        panels = [ax for ax in fig.axes if ax.get_title()]
        assert panels and all(ax.get_xlabel() and ax.get_ylabel() for ax in panels)
    assert len(figs[0].axes) == 4 and len(figs[1].axes) == 6                      # 2×2 panels; 3 maps + bars
    with pytest.raises(TypeError, match="DeltaSpectrum"):
        plot_delta_spectra({"fc1": rows[0]})
    with pytest.raises(TypeError, match="SimilarityStudy"):
        plot_similarity([])
    with pytest.raises(TypeError, match="amplification"):
        plot_amplification([])
    plt.close("all")
