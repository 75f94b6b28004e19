"""finetune report (curves.png and the summary) and the model card, on one real TextCNN run."""

import hashlib
import json
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES, QUICK_TEXTCNN
from matplotlib import image as mpimg
from PIL import Image

from finetune.cli import main as cli_main
from finetune.report import main as report_main
from finetune.report import read_history
from finetune.train import main as train_main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A quick TextCNN run where "higher eval loss is better", so the best step is the first evaluation, not the
    last one, and not the one a plot would pick by the lowest loss."""
    directory = tmp_path_factory.mktemp("report")
    flags = [
        "--train_file", str(FIXTURES / "reviews_train.jsonl"),
        "--validation_file", str(FIXTURES / "reviews_validation.jsonl"),
        "--test_file", str(FIXTURES / "reviews_test.jsonl"),
        "--cache_dir", str(directory / "cache"),
        "--output_dir", str(directory / "run"),
        "--disable_tqdm", "true",
        "--greater_is_better", "true",
    ]  # fmt: skip
    assert train_main(flags + QUICK_TEXTCNN) == 0
    return directory / "run"


def assert_real_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 20_000, "a plot with curves, axes and legends is tens of kilobytes"
    pixels = mpimg.imread(path)
    height, width = pixels.shape[:2]
    assert width > 800 and height > 300
    assert pixels[..., :3].std() > 0.05, "not a blank image"


def test_training_writes_the_curves(run):
    assert_real_png(run / "curves.png")


def test_report_marks_the_best_step_of_best_json(run, tmp_path, capsys):
    best = json.loads((run / "best.json").read_text())
    state = json.loads((run / "trainer_state.json").read_text())
    evaluations = [entry["step"] for entry in state["log_history"] if "eval_loss" in entry]
    assert best["step"] == evaluations[0] != evaluations[-1]

    output = tmp_path / "curves.png"
    assert report_main([str(run), "--output", str(output)]) == 0
    assert_real_png(output)
    assert Image.open(output).text["Description"] == f"best step {best['step']}"
    assert read_history(run).best_step == best["step"]

    summary = capsys.readouterr().out
    assert f"{best['checkpoint']} at step {best['step']}: eval_loss {best['value']:.4f}" in summary
    best_rows = [line for line in summary.splitlines() if line.endswith("<- best")]
    assert len(best_rows) == 1 and best_rows[0].split()[0] == str(best["step"])
    totals = next(entry for entry in state["log_history"] if "train_runtime" in entry)
    assert f"{totals['train_samples_per_second']:.1f} samples/s" in summary
    assert "test       accuracy" in summary
    assert len(summary.splitlines()) <= 25, "one screen"


def test_report_on_a_checkpoint_names_the_metric_and_writes_beside_the_run(run, capsys):
    last = max(run.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    state = json.loads((last / "trainer_state.json").read_text())
    run_curves = (run / "curves.png").read_bytes()

    assert report_main([str(last)]) == 0
    summary = capsys.readouterr().out
    best = f"checkpoint-{state['best_global_step']} at step {state['best_global_step']}"
    assert f"{best}: eval_loss {state['best_metric']:.4f}" in summary
    assert f"curves     {run / f'curves-{last.name}.png'}" in summary
    assert_real_png(run / f"curves-{last.name}.png")
    assert not (last / "curves.png").exists(), "a checkpoint holds what resuming needs, and is deleted in rotation"
    assert (run / "curves.png").read_bytes() == run_curves, "the whole run's curves stay"


def test_report_errors(tmp_path, capsys):
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "has no trainer_state.json" in capsys.readouterr().err
    (tmp_path / "seed-1").mkdir()
    (tmp_path / "seed-2").mkdir()
    assert cli_main(["report", str(tmp_path)]) == 2
    assert "It holds the runs seed-1, seed-2" in capsys.readouterr().err


def test_a_search_report_ranks_pruned_trials_by_their_last_value(tmp_path, capsys):
    """A search whose trials were pruned: ranked after the finished ones, by the last value they reported, with how
    far they trained. (The search itself is reported in tests/test_search.py; this document is written here to have
    pruned trials of known values.)"""

    def trial(number, state, value, reported):
        return {"number": number, "state": state, "params": {"learning_rate": 0.00123456}, "value": value,
                "seconds": 61.0, "intermediate_values": reported}  # fmt: skip

    selection = {"trial": 2, "params": {"learning_rate": 0.002}, "values": {"42": 0.3, "43": 0.32}, "mean": 0.31,
                 "std": 0.0141, "shipped": False}  # fmt: skip
    document = {
        "study": "s", "objective": "eval_loss", "direction": "minimize", "n_trials": 4, "test": {},
        "trials": [trial(0, "pruned", 0.8, {"25%": 0.9, "50%": 0.8}), trial(1, "pruned", 0.7, {"25%": 0.7}),
                   trial(2, "complete", 0.3, {"100%": 0.3}), trial(3, "fail", None, {})],
        "selection": [selection], "winner": {**selection, "config": "best.yaml"}, "baseline": None, "plots": {},
    }  # fmt: skip
    (tmp_path / "search.json").write_text(json.dumps(document))
    assert cli_main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "trials     4: 2 pruned, 1 complete, 1 fail; 0:04:04 of training in finished trials" in out
    rows = out.split("trials (complete first, by eval_loss; all)")[1].splitlines()[2:]
    assert [row.split()[:4] for row in rows] == [
        ["2", "complete", "0.3000", "100%"],
        ["1", "pruned", "0.7000", "25%"],
        ["0", "pruned", "0.8000", "50%"],
        ["3", "fail", "-", "-"],
    ]
    assert rows[0].endswith("learning_rate 0.00123")
    assert "winner     trial 2: eval_loss 0.3100 ± 0.0141 over 2 seed(s) -> best.yaml" in out


def test_a_search_still_running_is_reported_from_its_study(tmp_path, capsys):
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(study_name="finetune-search", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert cli_main(["report", str(tmp_path)]) == 0
    assert "trials     0 yet" in capsys.readouterr().out  # the search has just begun
    study.set_user_attr("metric", "eval_loss")
    distributions = {"learning_rate": FloatDistribution(1e-4, 1e-1, log=True)}
    for value, state, reported in [
        (0.42, TrialState.COMPLETE, {500: 0.5, 1000: 0.42}),
        (0.35, TrialState.COMPLETE, {500: 0.4, 1000: 0.35}),
        (0.9, TrialState.PRUNED, {250: 0.9}),  # Optuna keeps a pruned trial's last value as its value
    ]:
        trial = create_trial(
            params={"learning_rate": 0.01}, distributions=distributions, value=value, state=state,
            intermediate_values=reported,
        )  # fmt: skip
        study.add_trial(trial)
    running = study.ask(distributions)
    running.report(0.38, 333)

    assert cli_main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(study finetune-search): eval_loss, lower is better; not finished" in out
    assert "trials     4: 2 complete, 1 pruned, 1 running" in out
    assert "best yet   trial 1: eval_loss 0.3500, one seed" in out
    rows = out.split("trials (complete first, by eval_loss; all)")[1].splitlines()[2:]
    assert [row.split()[:4] for row in rows] == [
        ["1", "complete", "0.3500", "100%"],
        ["0", "complete", "0.4200", "100%"],
        ["3", "running", "0.3800", "33.3%"],
        ["2", "pruned", "0.9000", "25%"],
    ]


def test_report_output_names(run, tmp_path, capsys):
    assert cli_main(["report", str(run), "--output", str(tmp_path / "curves.xyz")]) == 2
    assert "matplotlib cannot write '.xyz' files" in capsys.readouterr().err
    assert cli_main(["report", str(run), "--output", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    # No extension: matplotlib writes a PNG and adds .png; the path printed is the one written.
    assert cli_main(["report", str(run), "--output", str(tmp_path / "new" / "curves")]) == 0
    assert f"curves     {tmp_path / 'new' / 'curves.png'}" in capsys.readouterr().out
    assert_real_png(tmp_path / "new" / "curves.png")
    for suffix in (".jpg", ".tiff", ".webp", ".pdf", ".svg"):  # formats that take no PNG metadata
        assert cli_main(["report", str(run), "--output", str(tmp_path / f"curves{suffix}")]) == 0
        assert (tmp_path / f"curves{suffix}").stat().st_size > 1000
    assert cli_main(["report", str(run), "--output", str(tmp_path / "curves.pgf")]) == 2


def test_model_card(run):
    card = (run / "best" / "README.md").read_text(encoding="utf-8")
    _, front_matter, body = card.split("---\n", 2)
    metadata = yaml.safe_load(front_matter)
    assert metadata["library_name"] == "transformers" and metadata["pipeline_tag"] == "text-classification"
    assert "textcnn" in metadata["tags"]
    for section in ("## Model description", "## Training and evaluation data", "### Training hyperparameters"):
        assert section in body
    assert "0 `negative`, 1 `positive`" in body
    for split in ("train", "validation", "test"):
        path = FIXTURES / f"reviews_{split}.jsonl"
        assert f"`{hashlib.sha256(path.read_bytes()).hexdigest()}`" in body
    results = json.loads((run / "all_results.json").read_text())
    assert f"- Accuracy: {results['test_accuracy']:.4f}" in body.split("on the test set")[1]
    assert f"- Loss: {results['eval_loss']:.4f}" in body
    assert "- learning_rate: 0.005" in body
    assert "- min_frequency: 1\n" in body and "extend_vocabulary" not in body, "a TextCNN's vocabulary is its own"
    assert "import finetune" in body


def test_model_card_results_table_keeps_its_columns_after_a_resume():
    from finetune.model_card import training_results_table

    # Entries read back from trainer_state.json on a resume come with sorted keys; later ones in logging order.
    reloaded = [
        {"epoch": 1.0, "learning_rate": 0.001, "loss": 0.7, "step": 10},
        {"epoch": 1.0, "eval_accuracy": 0.6, "eval_f1": 0.5, "eval_loss": 0.65, "step": 10},
    ]
    after_resume = [
        {"loss": 0.5, "learning_rate": 0.0005, "epoch": 2.0, "step": 20},
        {"eval_loss": 0.45, "eval_accuracy": 0.8, "eval_f1": 0.75, "epoch": 2.0, "step": 20},
    ]
    totals = {"train_runtime": 3.0, "train_loss": 0.6, "epoch": 2.0, "step": 20}
    table = training_results_table(reloaded + after_resume + [totals])
    header, _, first, second = [line.strip("|").split("|") for line in table.splitlines()]
    for row, expected in ((first, {"Validation Loss": "0.65", "Accuracy": "0.6", "F1": "0.5"}),
                          (second, {"Validation Loss": "0.45", "Accuracy": "0.8", "F1": "0.75"})):  # fmt: skip
        cells = dict(zip([name.strip() for name in header], [cell.strip() for cell in row], strict=True))
        assert {name: cells[name] for name in expected} == expected
