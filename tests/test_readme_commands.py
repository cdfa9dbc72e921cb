"""The README's commands work as written: the quick start (run from outside the repository, with the
.venv interpreter), make lab's own copy of the notebooks (as root and not), make reset-notebooks, and
no command that would use whatever Python or pip happens to be first on the PATH."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
pytestmark = pytest.mark.host_only


def code_blocks(language: str) -> list:
    return re.findall(rf"```{language}\n(.*?)```", README, re.S)


def test_the_quick_start_runs_as_written_outside_the_repository_and_prints_a_few_lines(tmp_path):
    (quick,) = [b for b in code_blocks("python") if "inject_lora" in b and "fit(" in b]
    script = tmp_path / "quickstart.py"
    script.write_text(quick)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env=dict(env, MPLBACKEND="Agg"))
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) <= 4, run.stdout                                   # readable lines, no dictionaries
    recall = {when: int(m) for when, m in re.findall(r"^(.*): accuracy \d+%, grape recall (\d+)%$",
                                                    run.stdout, re.M)}
    assert recall["pretrained"] < 20 and recall["with LoRA r=4"] > 70, run.stdout
    assert "trainable params: 3,152" in run.stdout


def test_no_command_uses_a_bare_python_or_pip():
    for block in code_blocks("bash"):
        for line in block.splitlines():
            bare = re.match(r"\s*(python3?|pip3?) (?!-m venv)", line)
            assert not bare, f"README runs {line!r} outside .venv"
    for inline in re.findall(r"`([^`\n]+)`", README):
        assert not re.match(r"(python3?|pip3?) (-m (?!venv)|-e |install |benchmarks)", inline), inline


def fake_checkout(tmp_path, notebooks=("a",)):
    """A folder with the Makefile, a .venv whose jupyter only prints its arguments, and notebooks."""
    work = tmp_path / "checkout"
    (work / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", work)
    shutil.copy(ROOT / "pyproject.toml", work)
    bin_dir = work / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    jupyter = bin_dir / "jupyter"
    jupyter.write_text('#!/bin/sh\necho "jupyter $*"\n')
    jupyter.chmod(0o755)
    (work / ".venv" / ".installed").touch()                              # newer than pyproject.toml
    for name in notebooks:
        (work / "notebooks" / f"{name}.ipynb").write_text(f"tracked {name}")
    return work


def make(work, *args) -> str:
    run = subprocess.run(["make", "--no-print-directory", *args], cwd=work, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_serves_a_copy_that_keeps_the_learners_edits(tmp_path):
    work = fake_checkout(tmp_path)
    out = make(work, "lab", "LAB_ARGS=--no-browser")
    launched = [line for line in out.splitlines() if line.startswith("jupyter ")][-1]
    assert launched.split()[-1] == "workspace" and "--no-browser" in launched
    assert ("--allow-root" in launched) == (os.geteuid() == 0)
    assert (work / "workspace" / "a.ipynb").read_text() == "tracked a"
    (work / "workspace" / "a.ipynb").write_text("my edits")
    (work / "notebooks" / "b.ipynb").write_text("tracked b")              # a new notebook after git pull
    make(work, "lab")
    assert (work / "workspace" / "a.ipynb").read_text() == "my edits"     # never overwritten
    assert (work / "workspace" / "b.ipynb").read_text() == "tracked b"    # the new one added
    assert (work / "notebooks" / "a.ipynb").read_text() == "tracked a"    # the tracked one untouched


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_reset_notebooks_keeps_the_old_copy_aside(tmp_path):
    work = fake_checkout(tmp_path)
    make(work, "reset-notebooks")
    (work / "workspace" / "a.ipynb").write_text("my edits")
    out = make(work, "reset-notebooks")
    (backup,) = [p for p in work.iterdir() if p.name.startswith("workspace-backup-")]
    assert backup.name in out
    assert (backup / "a.ipynb").read_text() == "my edits"
    assert (work / "workspace" / "a.ipynb").read_text() == "tracked a"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_gpu_picks_the_extra_from_nvidia_smi_or_says_what_to_choose(tmp_path):
    work = fake_checkout(tmp_path)
    pip_log = work / "pip.log"
    python = work / ".venv" / "bin" / "python"                         # records what would be installed
    python.write_text(f'#!/bin/sh\necho "$*" >> {pip_log}\n')
    python.chmod(0o755)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    env = dict(os.environ, PATH=f"{fake_bin}:/usr/bin:/bin")
    no_gpu = subprocess.run(["make", "gpu"], cwd=work, capture_output=True, text=True, env=env, timeout=60)
    if shutil.which("nvidia-smi", path=env["PATH"]) is None:
        assert no_gpu.returncode != 0 and "[gpu]" in no_gpu.stderr and "[gpu-cuda13]" in no_gpu.stderr
        assert not pip_log.exists()
    for cuda, extra in (("12.4", ".[gpu]"), ("13.0", ".[gpu-cuda13]")):
        smi = fake_bin / "nvidia-smi"
        banner = f"| NVIDIA-SMI 580.0   Driver Version: 580.0   CUDA Version: {cuda} |"
        smi.write_text(f'#!/bin/sh\necho "{banner}"\n')
        smi.chmod(0o755)
        run = subprocess.run(["make", "gpu"], cwd=work, capture_output=True, text=True, env=env, timeout=60)
        assert run.returncode == 0, run.stderr
        assert pip_log.read_text().splitlines()[-1] == f"-m pip install --quiet -e {extra}"
