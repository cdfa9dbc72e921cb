"""``benchmarks/bench.py`` (``make bench``) runs, and its parts measure what they say.

Nothing here asserts a speed: the quick run only checks that every model, size and mode is
measured and reported. The torch mirror's test (skipped without torch) checks that the torch step
the benchmark compares against trains the same model: in float64, the same losses over three Adam
steps (in float32, Adam's division by √v amplifies rounding where a gradient is near zero).
"""
import json
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_models as bm  # noqa: E402
import gemm_profile as gp  # noqa: E402

pytestmark = pytest.mark.host_only


def test_the_quick_run_measures_every_model_size_and_mode_and_writes_the_report(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--threads", "1",
                    "--results", str(tmp_path), "--docs", str(tmp_path)], check=True, capture_output=True,
                   timeout=600)
    data = json.loads((tmp_path / "bench.json").read_text())
    (run,) = data["runs"]
    measured = {(r["model"], r["mode"]) for r in run["rows"]}
    assert measured == {(m, mode) for m, modes in bm.MODES.items() for mode in modes}
    for r in run["rows"]:
        assert r["lora_np_ms"] > 0 and 0 < r["matmul_share"] <= 1 and r["n_matmuls"] > 0
    assert {(m["model"], m["mode"]) for m in run["memory"]} == measured
    full = {m["model"]: m["optimizer_bytes"] for m in run["memory"] if m["mode"] == "full"}
    for m in run["memory"]:
        if m["mode"] != "full":
            assert 0 < m["optimizer_bytes"] < full[m["model"]]            # LoRA's Adam state is smaller
    assert len(run["latency"]) == sum(len(modes) - 1 for modes in bm.MODES.values())
    page = (tmp_path / "benchmarks.md").read_text()
    assert data["meta"]["date"] in page and "## Step time" in page
    assert (tmp_path / "img" / "bench.png").stat().st_size > 0
    if run["torch"] is None:
        assert "not installed" in page


def test_the_gpt2_cost_quick_run_measures_both_modes():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpt2_cost.py"), "--quick"], check=True,
                         capture_output=True, text=True, timeout=300).stdout
    full, lora = [line for line in out.splitlines() if line.startswith(("| full", "| lora"))]
    assert "136,960 of 136,960" in full and "4,096 of 141,056" in lora      # r=8 on 2 × c_attn (64 → 192)


def test_the_recording_sees_every_product_of_a_linear_layer_step():
    """An MLP 24 -> 32 -> 32 -> 10 trained fully: 3 forward products, and per layer dx and dW
    (the first layer's dx is still formed) -> 9 products, with FLOPs 2·m·k·n each."""
    size = bm.QUICK_SIZES["mlp"]["S"]
    net, x, y = bm.build("mlp", size, "full")
    log = gp.record_matmuls(net, x, y, bm.make_step)
    N, d, w = size["batch"], size["d_in"], size["width"]
    weights = d * w + w * w + w * 10
    assert len(log) == 9
    assert gp.flops(log) == pytest.approx(3 * 2.0 * N * weights)


def test_a_replayed_operand_keeps_the_recorded_layout():
    a = np.ones((6, 4), dtype=np.float32).T                               # (4, 6), a transposed view
    rebuilt = gp._operand(a.shape, a.strides, a.dtype.str, np.random.default_rng(0))
    assert rebuilt.shape == a.shape and rebuilt.strides == a.strides and not rebuilt.flags.c_contiguous


def test_the_torch_mirror_trains_the_same_model():
    torch = pytest.importorskip("torch")
    import torch_mirror as tm
    torch.manual_seed(0)
    for model, modes in bm.MODES.items():
        size = bm.QUICK_SIZES[model]["S"]
        for mode in modes:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net, x, y = bm.build(model, size, mode, dtype="float64")
            for name, p in net.named_parameters():
                if "lora_B" in name:
                    p.data[...] = 0.1                                      # so that the adapter matters
            tnet = tm.mirror(net, model, size, bm.n_heads(size.get("d_model", 64)))
            ours, theirs = bm.make_step(net, x, y), tm.make_step(tnet, x, y)
            for _ in range(3):
                assert float(ours()) == pytest.approx(float(theirs()), rel=1e-10), (model, mode)
