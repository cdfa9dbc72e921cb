"""``make bench``: lora_np's training step against PyTorch's on the same models, and where the time goes.

    .venv/bin/python benchmarks/bench.py              # S, M, L at 1 and 2 threads (about 9 min, 2 cores)
    .venv/bin/python benchmarks/bench.py --quick      # tiny sizes, seconds: checks that it all runs

For each model (MLP, character-LM Transformer), size (S, M, L) and mode (full fine-tuning, LoRA
r = 8 on q and v, LoRA r = 8 on every Linear) it measures, at each thread count:

* **step time**: forward, loss, backward and Adam, float32, the median of several steps; with torch
  installed, the same step in PyTorch CPU eager on the same architecture and weights
  (``torch_mirror.py``), lora_np and torch steps *interleaved* so both see the same machine state;
* **the profile**: the share of the step inside matrix products and their GFLOP/s against this
  machine's peak (``gemm_profile.py``);
* **memory** (once): the optimizer state's bytes and the peak bytes NumPy allocates during a step,
  activations included (``tracemalloc``, which NumPy reports its allocations to);
* **batch-1 inference latency** (once): the base model, LoRA unmerged, LoRA merged.

Thread counts are set the only reliable way: each runs in a fresh interpreter with
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / MKL_NUM_THREADS set before NumPy loads, and
``torch.set_num_threads``. Results: a table on stdout, ``benchmarks/results/bench.json``,
``docs/img/bench.png`` and ``docs/benchmarks.md`` (the docs' results page, with the date and machine).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# --------------------------------------------------------------------------- one thread count (a subprocess)

def run_worker(threads: int, quick: bool, out: str) -> None:
    """Measure every model, size and mode at ``threads`` BLAS threads and write the rows to ``out``."""
    import copy
    import statistics
    import time
    import tracemalloc
    import warnings

    import bench_models as bm
    import gemm_profile as gp

    from lora_np import backend
    from lora_np.experiments import inference_latency
    from lora_np.lora import merge_lora
    try:
        import torch
        import torch_mirror as tm
        torch.set_num_threads(threads)
        torch_version = torch.__version__
    except ImportError:
        torch, tm, torch_version = None, None, None
    warnings.filterwarnings("ignore", module="lora_np")
    backend.set_default_dtype("float32")
    sizes = bm.QUICK_SIZES if quick else bm.SIZES
    budget_s = 0.3 if quick else 2.0
    rows, latency, memory = [], [], []

    def clock(step) -> float:
        start = time.perf_counter()
        step()
        return 1000.0 * (time.perf_counter() - start)

    for model, by_size in sizes.items():
        for size_name, size in by_size.items():
            for mode in bm.MODES[model]:
                net, x, y = bm.build(model, size, mode)
                steps = {"lora_np": bm.make_step(copy.deepcopy(net), x, y)}
                if tm is not None:
                    heads = bm.n_heads(size.get("d_model", 64))
                    steps["torch"] = tm.make_step(tm.mirror(net, model, size, heads), x, y)
                first = {lib: [clock(step) for _ in range(2)][-1] for lib, step in steps.items()}   # warm-up
                repeats = max(3, min(25, int(budget_s * 1000.0 / max(first.values()))))
                times = {lib: [] for lib in steps}
                for _ in range(repeats):                                 # interleaved: same machine state
                    for lib, step in steps.items():
                        times[lib].append(clock(step))
                ms = {lib: statistics.median(t) for lib, t in times.items()}
                log = gp.record_matmuls(net, x, y, bm.make_step)
                gemm_s = gp.replay_seconds(log)
                rows.append({"model": model, "size": size_name, "mode": mode, "threads": threads,
                             "describe": bm.describe(model, size), "repeats": repeats,
                             "lora_np_ms": ms["lora_np"], "torch_ms": ms.get("torch"),
                             "matmul_share": min(1.0, 1000.0 * gemm_s / ms["lora_np"]),
                             "matmul_gflops": gp.flops(log) / gemm_s / 1e9 if gemm_s else None,
                             "n_matmuls": len(log)})
                if threads == 1:
                    step = bm.make_step(net, x, y)
                    step()                                               # the optimizer state exists now
                    tracemalloc.start()
                    step()
                    peak = tracemalloc.get_traced_memory()[1]
                    tracemalloc.stop()
                    memory.append({"model": model, "size": size_name, "mode": mode,
                                   "optimizer_bytes": step.optimizer.state_bytes(), "peak_step_bytes": peak})
                    if mode != "full":
                        one = x[:1]
                        base, _, _ = bm.build(model, size, "full")
                        lat = {"base": inference_latency(base, one, repeats=50 if quick else 300)}
                        lat["lora_unmerged"] = inference_latency(net, one, repeats=50 if quick else 300)
                        merge_lora(net)
                        lat["lora_merged"] = inference_latency(net, one, repeats=50 if quick else 300)
                        latency.append({"model": model, "size": size_name, "mode": mode,
                                        **{k: 1e3 * v for k, v in lat.items()}})
                print(f"  {threads} thread(s) {model:11s} {size_name} {mode:8s} "
                      f"lora_np {ms['lora_np']:9.2f} ms"
                      + (f"  torch {ms['torch']:9.2f} ms" if "torch" in ms else ""), flush=True)
    result = {"threads": threads, "peak_gflops": gp.peak_gflops(512 if quick else 2048), "rows": rows,
              "memory": memory, "latency": latency, "torch": torch_version}
    pathlib.Path(out).write_text(json.dumps(result))


# --------------------------------------------------------------------------- the report

def machine() -> dict:
    import numpy as np
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        blas = np.__config__.CONFIG["Build Dependencies"]["blas"]["name"]
    except (AttributeError, KeyError, TypeError):
        blas = "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "blas": blas, "system": platform.system()}


def fmt(value, spec: str, missing: str = "not installed") -> str:
    return missing if value is None else format(value, spec)


def step_table(runs: list) -> str:
    lines = ["| model | size | mode | threads | lora_np ms | torch ms | lora_np ÷ torch | LoRA ÷ full "
             "| in matmuls | matmul GFLOP/s (peak) |", "|" + "---|" * 10]
    for run in runs:
        full = {(r["model"], r["size"]): r["lora_np_ms"] for r in run["rows"] if r["mode"] == "full"}
        for r in run["rows"]:
            ratio = r["lora_np_ms"] / r["torch_ms"] if r["torch_ms"] else None
            vs_full = r["lora_np_ms"] / full[(r["model"], r["size"])] if r["mode"] != "full" else None
            lines.append(f"| {r['model']} | {r['size']} | {r['mode']} | {r['threads']} "
                         f"| {r['lora_np_ms']:.2f} | {fmt(r['torch_ms'], '.2f')} | {fmt(ratio, '.2f', '–')} "
                         f"| {fmt(vs_full, '.2f', '–')} "
                         f"| {r['matmul_share']:.0%} | {fmt(r['matmul_gflops'], '.1f', '–')} "
                         f"({run['peak_gflops']:.0f}) |")
    return "\n".join(lines)


def memory_table(run: dict) -> str:
    lines = ["| model | size | mode | optimizer state | peak during a step |", "|---|---|---|---|---|"]
    for m in run["memory"]:
        lines.append(f"| {m['model']} | {m['size']} | {m['mode']} | {m['optimizer_bytes'] / 2**20:.2f} MiB "
                     f"| {m['peak_step_bytes'] / 2**20:.1f} MiB |")
    return "\n".join(lines)


def latency_table(run: dict) -> str:
    lines = ["| model | size | mode | base ms | LoRA unmerged ms | LoRA merged ms |",
             "|---|---|---|---|---|---|"]
    for m in run["latency"]:
        lines.append(f"| {m['model']} | {m['size']} | {m['mode']} | {m['base']:.3f} "
                     f"| {m['lora_unmerged']:.3f} "
                     f"| {m['lora_merged']:.3f} |")
    return "\n".join(lines)


def sizes_list(quick: bool) -> str:
    import bench_models as bm
    sizes = bm.QUICK_SIZES if quick else bm.SIZES
    return "\n".join(f"- **{model} {name}**: {bm.describe(model, size)}"
                     for model, by_size in sizes.items() for name, size in by_size.items())


def figure(runs: list, path: pathlib.Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4.2), squeeze=False, sharey=True)
    for ax, run in zip(axes[0], runs, strict=True):
        rows = run["rows"]
        labels = [f"{r['model'][:3]} {r['size']}\n{r['mode']}" for r in rows]
        have_torch = all(r["torch_ms"] for r in rows)
        values = [r["lora_np_ms"] / r["torch_ms"] if have_torch else r["lora_np_ms"] for r in rows]
        colors = ["tab:blue" if r["mode"] == "full" else "tab:orange" for r in rows]
        ax.bar(range(len(rows)), values, color=colors)
        ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=7)
        if have_torch:
            ax.axhline(1.0, color="k", lw=1, ls="--")
            ax.set_ylabel("lora_np step time ÷ torch step time")
        else:
            ax.set_yscale("log")
            ax.set_ylabel("lora_np ms per step (torch not installed)")
        ax.set_title(f"{run['threads']} thread(s): blue full fine-tuning, orange LoRA")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(runs: list, meta: dict, quick: bool) -> str:
    box = meta["machine"]
    torch_line = (f"PyTorch {meta['torch']} CPU eager" if meta["torch"] else
                  "PyTorch is not installed, so its columns say so (install torch in `.venv` to compare)")
    return f"""# Benchmark results

The latest `make bench` run{" (--quick: tiny sizes, a smoke run, not a measurement)" if quick else ""}:
**{meta['date']}** on **{box['cpu']}** ({box['cores']} cores, {box['system']}),
Python {box['python']}, NumPy {box['numpy']} ({box['blas']}); {torch_line}.

How it is measured: `benchmarks/bench.py` (its docstring says exactly what). A step is forward, loss,
backward and one Adam update in float32; each number is the median of several steps, lora_np's and
torch's steps interleaved. LoRA is r = 8, on q and v (`lora-qv`) or on every Linear except the head
(`lora-all`). "in matmuls" is the time the step's matrix products take when replayed alone, as a
share of the step; their GFLOP/s are shown against the best rate of one 2048×2048 float32 product
on this machine (in brackets).

The sizes:

{sizes_list(quick)}

## Step time

{step_table(runs)}

![lora_np against torch per size and mode](img/bench.png)

## Memory (one thread)

{memory_table(runs[0])}

## Batch-1 inference latency (one thread)

{latency_table(runs[0])}
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="where benchmarks.md and img/bench.png go")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.quick, args.out)
        return 0
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.threads:
            out = os.path.join(tmp, f"{n}.json")
            env = dict(os.environ, **{v: str(n) for v in THREAD_VARS})
            cmd = [sys.executable, __file__, "--worker", str(n), "--out", out]
            cmd += ["--quick"] if args.quick else []
            print(f"{n} thread(s):", flush=True)
            subprocess.run(cmd, env=env, check=True)
            runs.append(json.loads(pathlib.Path(out).read_text()))
    meta = {"date": datetime.date.today().isoformat(), "machine": machine(), "torch": runs[0]["torch"],
            "quick": args.quick}
    results, docs = pathlib.Path(args.results), pathlib.Path(args.docs)
    results.mkdir(parents=True, exist_ok=True)
    (results / "bench.json").write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))
    figure(runs, docs / "img" / "bench.png")
    text = report(runs, meta, args.quick)
    (docs / "benchmarks.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
