"""The demo's promise: LoRA at r ≤ 4 recovers ≥ 95% of full fine-tuning's accuracy on the
shifted fruit with under 5% of the parameters trainable — and it runs on every backend."""
from lora_np.demo import run_demo


def test_demo_fixes_the_grapes_with_a_small_rank(tmp_path, capsys):
    results = run_demo(out_dir=str(tmp_path), ranks=(1, 2, 4))
    out, err = capsys.readouterr()
    full = results[-1]
    assert full.r is None and full.percent == 100.0
    winners = [r for r in results[:-1] if r.accuracy >= 0.95 * full.accuracy and r.percent < 5.0]
    assert winners, "no LoRA rank ≤ 4 recovered 95% of full fine-tuning's accuracy"
    assert all(r.optimizer_bytes < full.optimizer_bytes / 10 for r in winners)
    assert "grape recall" in out and "full" in out and "r=4" in out
    for name in ("loss_curves.png", "rank_sweep.png", "confusion_before.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    # progress bars while training, on stderr only: the report on stdout stays readable
    assert all(f"{label}:" in err for label in ("pretraining", "fine-tuning at r=1", "fine-tuning fully"))
    assert "it/s" not in out and "\r" not in out


def test_cli_passes_no_progress_to_the_demo(monkeypatch, tmp_path):
    import lora_np.demo
    from lora_np.__main__ import main
    calls = []
    monkeypatch.setattr(lora_np.demo, "run_demo", lambda **kwargs: calls.append(kwargs))
    assert main(["demo", "--out", str(tmp_path)]) == 0
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    assert [c["progress"] for c in calls] == [True, False]


def test_cli_rejects_an_unknown_backend(capsys):
    from lora_np.__main__ import main
    assert main(["demo", "--backend", "tpu"]) == 2
    assert "backend must be one of" in capsys.readouterr().err
