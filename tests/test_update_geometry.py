"""Notebook 06's update geometry: ΔW's energy, subspace similarity φ, amplification."""
import numpy as np
import pytest

from lora_np import backend
from lora_np.data import make_fruit_task
from lora_np.experiments import pretrain
from lora_np.experiments.update_geometry import (amplification, amplification_table, delta_spectra, energy_spectrum,
                                                 format_amplification_table, random_like, similarity_study,
                                                 subspace_similarity)
from lora_np.viz.update_geometry import plot_amplification, plot_delta_spectra, plot_similarity


@pytest.fixture(scope="module")
def fruit():
    task = make_fruit_task(shift_rank=2, seed=0)
    with backend.use_backend("numpy"):
        base, _ = pretrain(task.to("numpy"), seed=0)
    return base, task


def on_device(fruit):
    base, task = fruit
    import copy
    return copy.deepcopy(base).to(), copy.deepcopy(task).to()


# --------------------------------------------------------------------------- energy

def test_energy_of_a_rank_k_matrix_is_complete_at_k(rng, xp, float64):
    M = rng.standard_normal((12, 3)) @ rng.standard_normal((3, 9))        # rank 3
    S, energy = energy_spectrum(M)
    assert S.shape == (9,) and np.all(np.diff(S) <= 1e-12) and np.all(np.diff(energy) >= -1e-12)
    assert energy[2] == pytest.approx(1.0, abs=1e-12) and energy[1] < 1.0


def test_random_like_matches_shape_norm_dtype_and_device(rng, xp):
    M = rng.standard_normal((7, 5))
    R = random_like(M, seed=3)
    assert type(R) is type(M) and R.dtype == M.dtype and tuple(R.shape) == (7, 5)
    assert backend.to_float(xp.linalg.norm(R)) == pytest.approx(backend.to_float(xp.linalg.norm(M)), rel=1e-5)


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((0, 3)), [[1.0]]])
def test_bad_matrices_are_refused(bad):
    with pytest.raises(ValueError, match="2-D array"):
        energy_spectrum(bad if not isinstance(bad, np.ndarray) else backend.asarray(bad))


@pytest.mark.once
def test_full_finetuning_puts_more_energy_in_few_directions_than_a_random_matrix(fruit):
    base, task = fruit
    spectra = delta_spectra(base, task, epochs=10)
    assert set(spectra) == {"fc1", "fc2", "head"}
    for sp in spectra.values():
        for k in (1, 2, 4):
            assert sp.top_energy(k) > 1.5 * sp.random_top_energy(k), (sp.layer, k)
    assert spectra["fc2"].top_energy(4) > 5 * spectra["fc2"].random_top_energy(4)   # 256×256: random spreads thin
    with pytest.raises(ValueError, match="r must be"):
        spectra["fc1"].top_energy(21)


# --------------------------------------------------------------------------- subspace similarity

def test_phi_of_an_adapter_with_itself_is_one_on_the_diagonal_and_bounded(rng, float64):
    A = rng.standard_normal((6, 30))
    phi = subspace_similarity(A, A)
    assert phi.shape == (6, 6)
    assert np.allclose(np.diag(phi), 1.0) and phi.max() <= 1 + 1e-9 and phi.min() >= 0


def test_phi_depends_on_the_singular_directions_only(rng, float64):
    A1, A2 = rng.standard_normal((4, 20)), rng.standard_normal((9, 20))
    phi = subspace_similarity(A1, A2)
    Q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((4, 4)))
    assert np.allclose(subspace_similarity(3.7 * A1, A2), phi)                       # scale
    assert np.allclose(subspace_similarity(backend.asarray(Q) @ A1, A2), phi)         # rotate the rows
    M = backend.asarray(np.random.default_rng(2).standard_normal((4, 4)) + 4 * np.eye(4))
    assert subspace_similarity(M @ A1, A2)[-1, -1] == pytest.approx(phi[-1, -1])      # same row space


@pytest.mark.host_only
def test_phi_of_random_matrices_is_near_max_i_j_over_n():
    """For random subspaces of R^n, E ‖U_iᵀ U_j‖² = i j / n, so E φ(i, j) = max(i, j) / n: j/64 for i ≤ j."""
    rng, n = np.random.default_rng(0), 64
    phis = [subspace_similarity(backend.asarray(rng.standard_normal((8, n))), backend.asarray(rng.standard_normal((n, n))))
            for _ in range(30)]
    mean = np.mean(phis, axis=0)                                                       # (8, 64)
    i, j = np.arange(1, 9)[:, None], np.arange(1, n + 1)[None, :]
    assert np.abs(mean - np.maximum(i, j) / n).max() < 0.04
    assert np.allclose(mean[:, -1], 1.0)                                               # j = n: the whole space


def test_phi_rejects_different_input_spaces(rng):
    with pytest.raises(ValueError, match="same input space"):
        subspace_similarity(rng.standard_normal((2, 5)), rng.standard_normal((2, 6)))


@pytest.mark.once
def test_trained_adapters_share_their_top_directions_far_beyond_chance(fruit):
    base, task = fruit
    grids = similarity_study(base, task, ranks=(4, 32), epochs=10)
    small_big, seeds, random = grids.values()
    assert small_big.shape == (4, 32) and seeds.shape == (32, 32)
    n = 256                                                                            # fc2's input width
    assert small_big[0, 0] > 0.5 and seeds[0, 0] > 0.5                                 # the top direction recurs
    assert random[0, 0] < 10 / n and abs(random[:, -1].mean() - 32 / n) < 0.05         # chance: max(i, j)/n


# --------------------------------------------------------------------------- amplification

def test_amplification_of_an_update_along_w_s_top_direction_is_its_singular_value(float64):
    W = backend.asarray(np.diag([5.0, 3.0, 1.0, 0.0]))
    along = amplification(W, backend.asarray(np.diag([2.0, 0.0, 0.0, 0.0])), r=1)
    assert along["W_in_delta"] == pytest.approx(5.0) == pytest.approx(along["W_top"])
    assert along["factor"] == pytest.approx(2.0 / 5.0)
    unused = amplification(W, backend.asarray(np.diag([0.0, 0.0, 0.0, 2.0])), r=1)   # a direction W never uses
    assert unused["W_in_delta"] == pytest.approx(0.0, abs=1e-12) and unused["factor"] > 1e6


@pytest.mark.host_only
@pytest.mark.parametrize("seed", range(5))
def test_w_s_own_directions_hold_the_most_of_w(seed):
    rng = np.random.default_rng(seed)
    W, dW = rng.standard_normal((10, 8)), rng.standard_normal((10, 3)) @ rng.standard_normal((3, 8))
    for r in (1, 2, 3):
        row = amplification(backend.asarray(W), backend.asarray(dW), r, seed=seed)
        assert row["W_top"] >= row["W_in_delta"] - 1e-9 >= -1e-9


@pytest.mark.parametrize("kwargs, match", [({"r": 0}, "r must be"), ({"r": 5}, "r must be"),
                                           ({"r": 1, "dW": np.zeros((4, 3))}, "one shape")])
def test_amplification_rejects_bad_arguments(kwargs, match):
    kwargs = dict(kwargs)
    W = backend.asarray(np.eye(4))
    dW = backend.asarray(kwargs.pop("dW", np.eye(4)))
    with pytest.raises(ValueError, match=match):
        amplification(W, dW, **kwargs)


@pytest.mark.once
def test_lora_updates_amplify_directions_w_does_not_emphasise(fruit):
    base, task = fruit
    rows = amplification_table(base, task, ranks=(1, 4, 16), epochs=10)
    for row in rows:     # more of W than random directions hold, far less than W's own top directions
        assert row["W_random"] < row["W_in_delta"] < 0.6 * row["W_top"]
    assert rows[0]["factor"] > rows[-1]["factor"] > 1.0       # a low rank amplifies the most
    assert format_amplification_table(rows).count("\n") == len(rows) + 1


def test_a_tiny_run_on_every_backend_and_the_figures(fruit):
    base, task = on_device(fruit)
    spectra = delta_spectra(base, task, layers=("fc1",), epochs=1)
    grids = similarity_study(base, task, ranks=(2, 4), epochs=1)
    rows = amplification_table(base, task, ranks=(1, 2), epochs=1)
    import matplotlib
    matplotlib.use("Agg")
    for fig in (plot_delta_spectra(spectra), plot_similarity(grids), plot_amplification(rows)):
        panels = [ax for ax in fig.axes if ax.get_title()]
        assert panels and all(ax.get_xlabel() and ax.get_ylabel() for ax in panels)
