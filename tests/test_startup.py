"""Start-up: the light commands import neither torch nor transformers (counted in a fresh process, not timed), and
importing finetune still makes TextCNN loadable through the Auto classes once transformers is imported."""

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

HEAVY = ("torch", "transformers", "sklearn", "optuna", "matplotlib", "evaluate")
LIGHT_COMMANDS = [
    ["--help"],
    ["cache", "--help"],
    ["cache", "list"],
    ["cache", "list", "--json"],
    ["cache", "clean", "--all", "--dry_run"],
    ["check", "--help"],
    ["search", "--help"],
    ["report", "--help"],
]
COUNT_IMPORTS = """
import json, sys
from finetune.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit_:
    status = exit_.code
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def fresh_python(code: str, *argv: str, cache: str) -> dict:
    environment = {**os.environ, "HF_DATASETS_CACHE": cache, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO, env=environment, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", LIGHT_COMMANDS, ids=" ".join)
def test_light_commands_import_no_heavy_library(argv, tmp_path):
    result = fresh_python(COUNT_IMPORTS, *argv, cache=str(tmp_path))
    assert result["status"] in (0, None)
    loaded = {name.split(".")[0] for name in result["modules"]}
    assert not loaded & set(HEAVY), f"finetune {' '.join(argv)} imported {sorted(loaded & set(HEAVY))}"


def test_import_finetune_registers_textcnn_when_transformers_comes(tmp_path):
    code = """
import json, sys
import finetune
before = "transformers" in sys.modules
from transformers import AutoConfig, AutoModelForSequenceClassification
config = AutoConfig.for_model("textcnn", vocab_size=10, num_labels=2)
model = AutoModelForSequenceClassification.from_config(config)
print(json.dumps({"status": 0, "modules": [], "before": before, "model": type(model).__name__}))
"""
    result = fresh_python(code, cache=str(tmp_path))
    assert result["before"] is False  # import finetune alone left transformers out
    assert result["model"] == "TextCNNForSequenceClassification"


def test_import_finetune_after_transformers_registers_at_once(tmp_path):
    code = """
import json
from transformers import AutoConfig
import finetune
print(json.dumps({"status": 0, "modules": [], "model_type": AutoConfig.for_model("textcnn").model_type}))
"""
    assert fresh_python(code, cache=str(tmp_path))["model_type"] == "textcnn"
