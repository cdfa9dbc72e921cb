"""The demo's promise: LoRA at r ≤ 4 recovers ≥ 95% of full fine-tuning's accuracy on the
shifted fruit with under 5% of the parameters trainable — and it runs on every backend."""
from lora_np.demo import run_demo


def test_demo_fixes_the_grapes_with_a_small_rank(tmp_path, capsys):
    results = run_demo(out_dir=str(tmp_path), ranks=(1, 2, 4))
    out = capsys.readouterr().out
    full = results[-1]
    assert full.r is None and full.percent == 100.0
    winners = [r for r in results[:-1] if r.accuracy >= 0.95 * full.accuracy and r.percent < 5.0]
    assert winners, "no LoRA rank ≤ 4 recovered 95% of full fine-tuning's accuracy"
    assert all(r.optimizer_bytes < full.optimizer_bytes / 10 for r in winners)
    assert "grape recall" in out and "full" in out and "r=4" in out
    for name in ("loss_curves.png", "rank_sweep.png", "confusion_before.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_cli_rejects_an_unknown_backend(capsys):
    from lora_np.__main__ import main
    assert main(["demo", "--backend", "tpu"]) == 2
    assert "backend must be one of" in capsys.readouterr().err
