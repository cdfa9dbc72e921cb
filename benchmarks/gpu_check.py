"""The GPU check: run the GPU tests, then time NumPy against CuPy on the MLP and the Transformer.

Ready to run unchanged on a machine with one NVIDIA GPU (it takes under 5 minutes there):

    make gpu                                         # CuPy into .venv for this machine's CUDA
    .venv/bin/python benchmarks/gpu_check.py

It does three things and writes ``benchmarks/results/gpu_check.json`` and ``gpu_check.md``:

1. ``python -m pytest -m gpu tests`` with this interpreter: same weights ⇒ same outputs and
   gradients on CuPy as on NumPy, and a short LoRA fine-tune reaching the same accuracy;
2. one LoRA training step (forward, backward, Adam) of the MLP and of the Transformer at sizes
   where the GPU should win, timed on NumPy and on CuPy: warm-up first, the device synchronised
   before each clock reading, the median of several repeats (``lora_np.experiments.timing``);
3. a Markdown table: model, size, NumPy ms/step, CuPy ms/step, speed-up.

Without a usable GPU it says why, falls back to timing NumPy only (as ``--cpu-only`` does) and
marks CuPy as unavailable in both files. ``--quick`` uses tiny sizes (seconds, for the tests);
``--full-suite`` also runs the whole test suite on CuPy alone (``pytest --backends cupy``; it
takes longer, so it is not part of the 5 minutes).
NumPy uses the BLAS threads the environment allows (``make`` sets OPENBLAS_NUM_THREADS=1; run
this script directly to give NumPy every core, which is the fair comparison).
Exit status: 0 when every step ran and the GPU tests passed or were skipped, 1 otherwise.
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
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))                   # run from a checkout without installing, too

from lora_np import backend  # noqa: E402
from lora_np.experiments import timing  # noqa: E402


def probe_cupy(cpu_only: bool) -> dict:
    """{"available": bool, "reason": str, "version", "device"} — never raises."""
    try:
        cupy = backend._load_cupy()
    except RuntimeError as err:
        return {"available": False, "reason": str(err), "version": None, "device": None}
    if cpu_only:
        return {"available": False, "reason": "--cpu-only was given (CuPy and a GPU are there)",
                "version": cupy.__version__, "device": None}
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props.get("name", b"?")
    name = name.decode() if isinstance(name, bytes) else str(name)
    return {"available": True, "reason": "", "version": cupy.__version__, "device": name,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion()}


def run_gpu_tests(timeout_s: int, selection=("-m", "gpu")) -> dict:
    """``pytest -m gpu`` in a child process with this interpreter; its exit code and summary line."""
    cmd = [sys.executable, "-m", "pytest", *selection, "-q", "-rs", "-p", "no:cacheprovider",
           "tests"]                                                                       # in ROOT
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"ran": True, "command": "python " + " ".join(cmd[1:]), "returncode": None, "passed": False,
                "summary": f"timed out after {timeout_s} s", "seconds": timeout_s, "output_tail": ""}
    out = (proc.stdout + proc.stderr).strip().splitlines()
    summary = next((line.strip("= ") for line in reversed(out) if " in " in line and
                    any(w in line for w in ("passed", "failed", "skipped", "error", "deselected"))), "")
    return {"ran": True, "command": "python " + " ".join(cmd[1:]), "returncode": proc.returncode,
            "passed": proc.returncode == 0 and "failed" not in summary and "error" not in summary,
            "summary": summary, "seconds": round(time.perf_counter() - start, 1),
            "output_tail": "\n".join(out[-30:])}


MODEL_NAMES = {"mlp": "MLP", "transformer": "Transformer"}


def write_markdown(path: pathlib.Path, report: dict) -> None:
    cupy, tests = report["cupy"], report["gpu_tests"]
    lines = ["# GPU check", "",
             f"{report['created']} · Python {report['python']} · NumPy {report['numpy']} · "
             f"{report['cpu_count']} CPU cores · "
             f"OPENBLAS_NUM_THREADS={report['blas_threads'] or 'unset'}", ""]
    if cupy["available"]:
        lines.append(f"GPU: {cupy['device']} · CuPy {cupy['version']} · CUDA runtime "
                     f"{cupy.get('cuda_runtime')}")
    else:
        lines.append(f"CuPy: **unavailable** — {cupy['reason']}")
    lines.append("")
    if tests["ran"]:
        lines.append(f"GPU tests (`{tests['command']}`): {tests['summary'] or 'no summary'} "
                     f"(exit {tests['returncode']})")
    else:
        lines.append(f"GPU tests: not run ({tests['reason']})")
    suite = report["suite_on_cupy"]
    if suite["ran"]:
        lines += ["", f"Whole suite on CuPy (`{suite['command']}`): {suite['summary'] or 'no summary'} "
                      f"(exit {suite['returncode']})"]
    lines += ["", f"One LoRA training step (r = {timing.LORA_R}: forward, loss, backward, Adam), float32, "
              "median of the timed repeats after warm-up.", "",
              "| model | size | numpy ms/step | cupy ms/step | speed-up |", "| --- | --- | ---: | ---: | "
                                                                            "---: |"]
    for row in report["results"]:
        cupy_ms = f"{row['cupy_ms']:.2f}" if row.get("cupy_ms") is not None else "unavailable"
        speedup = f"{row['speedup']:.1f}x" if row.get("speedup") is not None else "–"
        lines.append(f"| {MODEL_NAMES[row['model']]} | {row['label']} | {row['numpy_ms']:.2f} | {cupy_ms} | "
                     f"{speedup} |")
    lines += ["", f"Total time: {report['seconds']:.0f} s.", ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cpu-only", action="store_true", help="time NumPy only; mark CuPy unavailable")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (seconds)")
    parser.add_argument("--skip-tests", action="store_true", help="do not run `pytest -m gpu`")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"),
                        help="folder for the two files")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per size (default 5; quick "
                                                                  "3)")
    parser.add_argument("--test-timeout", type=int, default=240, help="seconds allowed for the GPU tests")
    parser.add_argument("--full-suite", action="store_true",
                        help="also run the whole test suite on CuPy alone (--backends cupy; several minutes)")
    args = parser.parse_args(argv)
    start = time.perf_counter()

    cupy = probe_cupy(args.cpu_only)
    print("CuPy: " + ("available on " + cupy["device"] if cupy["available"]
                      else "unavailable — " + cupy["reason"]))
    if not cupy["available"] and not args.cpu_only:
        print("falling back to --cpu-only: timing NumPy only")

    if args.skip_tests:
        tests = {"ran": False, "reason": "--skip-tests was given", "passed": True}
    else:
        print("running the GPU tests: pytest -m gpu ...", flush=True)
        tests = run_gpu_tests(args.test_timeout)
        print(f"  {tests['summary']} (exit {tests['returncode']})")

    suite = {"ran": False, "reason": "--full-suite was not given", "passed": True}
    if args.full_suite and cupy["available"]:
        print("running the whole suite on CuPy: pytest --backends cupy ...", flush=True)
        suite = run_gpu_tests(3 * args.test_timeout, selection=("--backends", "cupy"))
        print(f"  {suite['summary']} (exit {suite['returncode']})")

    backends = ("numpy", "cupy") if cupy["available"] else ("numpy",)
    quick = args.quick
    repeats = args.repeats or (3 if quick else 5)
    print(f"timing one LoRA training step on {', '.join(backends)}:")
    results = timing.compare_backends(
        backends, timing.QUICK_MLP_SIZES if quick else timing.MLP_SIZES,
        timing.QUICK_TRANSFORMER_SIZES if quick else timing.TRANSFORMER_SIZES,
        warmup=1 if quick else 3, repeats=repeats, budget_s=2.0 if quick else 10.0,
        progress=lambda t: print(f"  {t.model:<11} {t.label:<34} {t.backend:<5} {t.ms:10.2f} ms/step",
                                 flush=True))

    report = {
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "python": platform.python_version(), "numpy": __import__("numpy").__version__,
        "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "quick": quick, "cpu_only": not cupy["available"], "repeats": repeats, "lora_r": timing.LORA_R,
        "cupy": cupy, "gpu_tests": tests, "suite_on_cupy": suite, "results": results,
        "seconds": round(time.perf_counter() - start, 1),
    }
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(out / "gpu_check.md", report)
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'} in {report['seconds']:.0f} s")
    return 0 if tests["passed"] and suite["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
