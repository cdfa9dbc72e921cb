"""Notebook 05's rank experiments: the knee of a planted-rank sweep sits at k, and which scaling
rule keeps the learning speed independent of r."""
import pytest

from lora_np import backend
from lora_np.data import make_fruit_task
from lora_np.experiments import pretrain
from lora_np.experiments.ranks import find_knee, planted_rank_sweep, planted_rank_task, scaling_sweep
from lora_np.widgets.ranks import rank_sweep_explorer


def test_find_knee_is_the_first_rank_most_of_the_way_to_the_best_loss():
    assert find_knee([1, 2, 3, 4], [2.0, 1.0, 0.21, 0.2]) == 3
    assert find_knee([1, 2, 3, 4], [2.0, 1.0, 0.5, 0.2]) == 4
    assert find_knee([4, 8], [0.3, 0.3]) == 4                     # a flat sweep: the smallest rank
    assert find_knee([1, 2, 3], [2.0, 1.0, 0.5], tol=0.5) == 2


@pytest.mark.parametrize("kwargs, match", [({"ranks": [], "losses": []}, "non-empty"),
                                           ({"ranks": [1, 2], "losses": [1.0]}, "one length"),
                                           ({"ranks": [1], "losses": [1.0], "tol": 1.0}, "tol")])
def test_find_knee_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        find_knee(**kwargs)


@pytest.mark.parametrize("bad", [0, 9, 2.0, True])
def test_planted_rank_task_rejects_bad_k(bad):
    with pytest.raises(ValueError, match="k .*planted rank"):
        planted_rank_task(bad)


@pytest.mark.parametrize("bad", [-1.0, "5", True])
def test_shift_strength_is_validated(bad):
    with pytest.raises(ValueError, match="shift_strength"):
        make_fruit_task(shift_strength=bad)


def test_shift_strength_one_is_the_demo_task_and_only_scales_the_random_directions():
    a = make_fruit_task(n_pretrain=50, n_test=50)
    b = make_fruit_task(n_pretrain=50, n_test=50, shift_strength=1.0)
    assert backend.to_numpy(a.shift_test[0]).tolist() == backend.to_numpy(b.shift_test[0]).tolist()
    one = make_fruit_task(shift_rank=1, n_pretrain=50, n_test=50, shift_strength=5.0)
    ref = make_fruit_task(shift_rank=1, n_pretrain=50, n_test=50)
    assert backend.to_numpy(one.shift_test[0]).tolist() == backend.to_numpy(ref.shift_test[0]).tolist()
    assert one.shift_strength == 5.0


def test_a_small_sweep_runs_on_every_backend():
    task = planted_rank_task(2, n_pretrain=300, n_finetune=200, n_test=200)
    base, _ = pretrain(task, hidden=(32, 32), epochs=2)
    sweep = planted_rank_sweep(base, task, ranks=(2, 1), epochs=1)
    assert sweep.ranks == [1, 2] and sweep.knee in (1, 2) and sweep.full is not None
    assert sweep.trainable == [1 * (20 + 32), 2 * (20 + 32)]       # LoRA on fc1 only: r (d_in + d_out)
    assert all(0.0 <= a <= 1.0 for a in sweep.accuracy)
    with pytest.raises(ValueError, match="swept ranks"):
        sweep.at(3)


@pytest.mark.host_only
def test_a_sweep_with_progress_shows_a_bar_on_stderr_and_gives_the_same_results(capfd):
    task = planted_rank_task(2, n_pretrain=200, n_finetune=60, n_test=60)
    base, _ = pretrain(task, hidden=(16, 16), epochs=1)
    quiet = planted_rank_sweep(base, task, ranks=(1, 2), epochs=1, include_full=False)
    assert "planted-rank sweep" not in capfd.readouterr().err
    shown = planted_rank_sweep(base, task, ranks=(1, 2), epochs=1, include_full=False, progress=True)
    err = capfd.readouterr().err
    assert "planted-rank sweep" in err and "0/2" in err                 # a bar over the two runs, on stderr
    assert shown.accuracy == quiet.accuracy and shown.val_loss == quiet.val_loss
    assert [r.history.step_loss for r in shown.runs] == [r.history.step_loss for r in quiet.runs]


@pytest.mark.once
@pytest.mark.parametrize("k", [2, 3])
def test_the_knee_of_a_planted_rank_sweep_is_at_k(k):
    task = planted_rank_task(k)
    base, _ = pretrain(task)
    sweep = planted_rank_sweep(base, task, ranks=(1, 2, 3, 4, 6), include_full=False)
    assert sweep.knee == k
    acc = dict(zip(sweep.ranks, sweep.accuracy, strict=True))
    assert acc[k] - acc[k - 1] > 0.02                  # the last needed rank still buys accuracy ...
    assert abs(acc[6] - acc[k]) < 0.015                # ... and ranks past k buy (almost) none


@pytest.mark.once
def test_alpha_over_r_keeps_the_learning_speed_independent_of_r_and_alpha_over_sqrt_r_does_not():
    task = make_fruit_task(shift_rank=2)
    base, _ = pretrain(task)
    sweeps = scaling_sweep(base, task, ranks=(1, 4, 16, 64), epochs=2)
    flat, rising = sweeps["alpha/r"].loss_after(2), sweeps["alpha/sqrt(r)"].loss_after(2)
    assert max(flat) / min(flat) < 1.1                              # the same speed at every r
    assert all(b < a for a, b in zip(rising, rising[1:], strict=False))   # larger r, faster
    assert rising[-1] < 0.6 * rising[0]
    assert sweeps["alpha/sqrt(r)"].scales == [8.0, 4.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="epoch"):
        sweeps["alpha/r"].loss_after(3)
    with pytest.raises(ValueError, match="rules"):
        scaling_sweep(base, task, rules=("alpha/r**2",))


def test_rank_sweep_explorer_moves_its_marker_and_records_each_redraw():
    task = planted_rank_task(2, n_pretrain=300, n_finetune=200, n_test=200)
    base, _ = pretrain(task, hidden=(16, 16), epochs=1)
    sweep = planted_rank_sweep(base, task, ranks=(1, 2, 3), epochs=1, include_full=False)
    dash = rank_sweep_explorer(sweep)
    assert dash.history[-1]["r"] == 2                                # starts at the planted rank
    dash.slider.value = 3
    assert dash.history[-1] == {**sweep.at(3), "past_knee": 3 >= sweep.knee}
    with pytest.raises(ValueError, match=r"r=5 must be one of sweep.ranks=\(1, 2, 3\)"):
        rank_sweep_explorer(sweep, r=5)
    with pytest.raises(TypeError, match="PlantedRankSweep"):
        rank_sweep_explorer([1, 2])
