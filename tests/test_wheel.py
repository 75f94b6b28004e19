"""The package as a user installs it: a wheel in a fresh virtual environment, trained with
`accelerate launch -m finetune.train` from a folder outside the checkout."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO

# The smallest TextCNN run that still evaluates, saves a checkpoint and exports best/.
TINY_CONFIG = """\
model_type: textcnn
train_file: {train}
validation_file: {validation}
embedding_dim: 16
num_filters: 8
kernel_sizes: [1, 2]
num_train_epochs: 1
per_device_train_batch_size: 50
output_dir: run
cache_dir: cache
disable_tqdm: true
"""


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def build_wheel(directory: Path) -> Path:
    """A wheel of the package, built without the network from a copy of the sources, so the build folders that
    setuptools writes land in the copy and not in the checkout."""
    source = directory / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "finetune", source / "finetune", ignore=shutil.ignore_patterns("__pycache__"))
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", directory / "dist", source])  # fmt: skip
    [wheel] = (directory / "dist").glob("finetune-*.whl")
    return wheel


def fresh_environment(directory: Path, wheel: Path) -> Path:
    """A new virtual environment with the wheel installed; it sees this environment's libraries (torch,
    transformers, accelerate, pip) through a .pth file, so nothing is downloaded, but not the checkout."""
    run([sys.executable, "-m", "venv", "--without-pip", directory])
    python = directory / "bin" / "python"
    site_packages = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip())
    libraries = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site_packages / "libraries.pth").write_text("\n".join(libraries) + "\n", encoding="utf-8")
    run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel])
    return python


@pytest.mark.slow
def test_accelerate_launch_runs_the_installed_module_outside_the_checkout(tmp_path):
    python = fresh_environment(tmp_path / "venv", build_wheel(tmp_path / "wheel"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = elsewhere / "run.yaml"
    reviews = {split: FIXTURES / f"reviews_{split}.jsonl" for split in ("train", "validation")}
    config.write_text(TINY_CONFIG.format(**reviews), encoding="utf-8")
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    environment["OMP_NUM_THREADS"] = "1"

    where = run([python, "-c", "import importlib.util; print(importlib.util.find_spec('finetune').origin)"],
                cwd=elsewhere, env=environment)  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), "the installed package, not the checkout"
    # The launcher of the new environment (what its `accelerate` command runs), so that the process it starts
    # runs that environment's Python.
    launch = [python, "-m", "accelerate.commands.accelerate_cli", "launch", "--num_processes", "1", "--cpu"]
    run([*launch, "-m", "finetune.train", "--config", config], cwd=elsewhere, env=environment)

    best = json.loads((elsewhere / "run" / "best.json").read_text())
    assert (elsewhere / "run" / best["checkpoint"]).is_dir()
    assert (elsewhere / "run" / "best" / "model.safetensors").is_file()
