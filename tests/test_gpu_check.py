"""The GPU check script runs here too: quick, CPU only, and writes its JSON and Markdown table."""
import json
import pathlib
import subprocess
import sys

import pytest

from lora_np.experiments import timing

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
pytestmark = pytest.mark.host_only


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--cpu-only", "--skip-tests",
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "gpu_check.json").read_text()), (out / "gpu_check.md").read_text(), proc.stdout


def test_json_has_one_row_per_model_and_size_with_cupy_marked_unavailable(report):
    data, _, _ = report
    assert data["quick"] is True and data["cpu_only"] is True
    assert data["cupy"]["available"] is False and data["cupy"]["reason"]
    assert data["gpu_tests"]["ran"] is False
    sizes = ([("mlp", s) for s in timing.QUICK_MLP_SIZES]
             + [("transformer", s) for s in timing.QUICK_TRANSFORMER_SIZES])
    assert [(r["model"], r["size"]) for r in data["results"]] == sizes
    for row in data["results"]:
        assert row["numpy_ms"] > 0 and "cupy_ms" not in row and row["speedup"] is None
        assert row["label"] == timing.size_label(row["model"], row["size"])


def test_markdown_table_has_every_row_and_says_cupy_is_unavailable(report):
    data, md, stdout = report
    assert "| model | size | numpy ms/step | cupy ms/step | speed-up |" in md
    rows = [line for line in md.splitlines() if line.startswith("| MLP") or line.startswith("| Transformer")]
    assert len(rows) == len(data["results"])
    assert all(row.split("|")[4].strip() == "unavailable" for row in rows)
    assert "CuPy: **unavailable**" in md and "wrote" in stdout


def test_time_training_step_reports_a_median_over_the_repeats():
    t = timing.time_training_step("mlp", {"width": 32, "batch": 8}, "numpy", warmup=1, repeats=3)
    assert t.backend == "numpy" and len(t.times_ms) == 3 and min(t.times_ms) <= t.ms <= max(t.times_ms)
    with pytest.raises(ValueError, match="model must be"):
        timing.time_training_step("cnn", {}, "numpy")
