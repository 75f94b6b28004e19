"""finetune predict and finetune evaluate on a real TextCNN run (and a tiny BERT run for pipeline), plus --model."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, QUICK_TEXTCNN, SAME_TEXT_TOLERANCE, read_jsonl
from sklearn import metrics as sklearn_metrics
from test_train import make_tiny_bert
from transformers import pipeline

import finetune  # noqa: F401  (registers TextCNN with the Auto classes)
from finetune.checkpoints import resolve_model_dir
from finetune.cli import main as cli_main
from finetune.errors import UserError
from finetune.evaluation import main as evaluate_main
from finetune.fonts import font_characters
from finetune.predict import PADDING_SLACK, Classifier, padding_bounded_batches
from finetune.predict import main as predict_main
from finetune.train import main as train_main

TEST_FILE = FIXTURES / "reviews_test.jsonl"


def train_run(directory: Path, extra: list[str]) -> Path:
    flags = [
        "--train_file", str(FIXTURES / "reviews_train.jsonl"),
        "--validation_file", str(FIXTURES / "reviews_validation.jsonl"),
        "--test_file", str(TEST_FILE),
        "--cache_dir", str(directory / "cache"),
        "--output_dir", str(directory / "run"),
        "--disable_tqdm", "true",
    ]  # fmt: skip
    assert train_main(flags + extra) == 0
    return directory / "run"


@pytest.fixture(scope="module")
def textcnn_run(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("textcnn"), QUICK_TEXTCNN)


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("bert")
    model_dir = make_tiny_bert(
        directory / "tiny-bert", [row["text"] for row in read_jsonl(FIXTURES / "reviews_train.jsonl")]
    )
    extra = [
        "--model_type", "bert",
        "--model_name_or_path", str(model_dir),
        "--max_length", "32",
        "--per_device_train_batch_size", "16",
        "--learning_rate", "2e-3",
        "--num_train_epochs", "2",
    ]  # fmt: skip
    return train_run(directory, extra)


def predict(argv: list[str], output: Path) -> list[dict]:
    """Runs predict in-process into ``output`` (.jsonl or .csv) and reads the rows back."""
    assert predict_main(argv + ["--output", str(output)]) == 0
    if output.suffix == ".csv":
        with output.open(encoding="utf-8", newline="") as file:
            return list(csv.DictReader(file))
    return read_jsonl(output)


def test_every_input_format_gives_the_same_labels_in_input_order(textcnn_run, tmp_path):
    rows = read_jsonl(TEST_FILE)
    texts = [row["text"] for row in rows]
    with (tmp_path / "test.csv").open("w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["id", "text", "label"])
        writer.writeheader()
        writer.writerows({"id": index, **row} for index, row in enumerate(rows))
    (tmp_path / "test.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")

    model = ["--model", str(textcnn_run)]
    from_jsonl = predict(model + ["--input", str(TEST_FILE)], tmp_path / "jsonl.jsonl")
    from_csv = predict(model + ["--input", str(tmp_path / "test.csv")], tmp_path / "csv.csv")
    from_txt = predict(model + ["--input", str(tmp_path / "test.txt")], tmp_path / "txt.jsonl")
    stdin = subprocess.run(
        [sys.executable, "-m", "finetune", "predict", *model, "--input", "-"],
        input="\n".join(texts) + "\n",
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
    )
    from_stdin = [json.loads(line) for line in stdin.stdout.splitlines()]

    labels = [row["label"] for row in from_jsonl]
    assert set(labels) == {"negative", "positive"}
    for predicted in (from_csv, from_txt, from_stdin):
        assert [row["text"] for row in predicted] == texts  # output order is input order
        assert [row["label"] for row in predicted] == labels
    # Input columns are kept; the input's own label column does not collide with the predicted one.
    assert [row["id"] for row in from_csv] == [str(index) for index in range(len(rows))]
    assert [row["input_label"] for row in from_jsonl] == [row["label"] for row in rows]
    assert sum(row["label"] == row["input_label"] for row in from_jsonl) / len(rows) >= 0.85
    assert [float(row["score"]) for row in from_csv] == pytest.approx([row["score"] for row in from_jsonl], abs=1e-6)


def zigzag_texts() -> list[str]:
    """The test texts with lengths that zigzag, so that sorting inside the batcher reorders everything."""
    return [row["text"] * (1 + index % 4) for index, row in enumerate(read_jsonl(TEST_FILE))]


def test_length_sorted_batches_come_back_in_input_order(textcnn_run, tmp_path):
    texts = zigzag_texts()  # with --batch_size 3, over several groups tokenized in the background
    (tmp_path / "texts.txt").write_text("\n".join(texts), encoding="utf-8")
    model = ["--model", str(textcnn_run), "--input", str(tmp_path / "texts.txt")]
    batched = predict(model + ["--batch_size", "3", "--top_k", "all"], tmp_path / "batched.jsonl")
    one_by_one = predict(model + ["--batch_size", "1", "--top_k", "all"], tmp_path / "single.jsonl")
    assert [row["text"] for row in batched] == texts
    for row, alone in zip(batched, one_by_one, strict=True):
        assert row["label"] == alone["label"]
        assert row["probabilities"] == pytest.approx(alone["probabilities"], abs=SAME_TEXT_TOLERANCE)


def test_batches_are_padded_little_and_hold_every_text_once(textcnn_run):
    classifier = Classifier.load(textcnn_run, device="cpu")
    texts = zigzag_texts()
    shapes = []
    forward = classifier.model.forward
    classifier.model.forward = lambda **inputs: (shapes.append(inputs["input_ids"].shape), forward(**inputs))[1]
    classifier.probabilities(texts, batch_size=4)
    assert sum(rows for rows, _ in shapes) == len(texts)
    # Sorted by character length, then by token length inside each group: close to sorting by token length.
    lengths = sorted(len(ids) for ids in classifier.encode(texts)["input_ids"])
    least = sum(max(lengths[start : start + 4]) * len(lengths[start : start + 4]) for start in range(0, 50, 4))
    assert least <= sum(rows * width for rows, width in shapes) <= 1.02 * least


def test_batches_are_cut_where_padding_would_double_the_positions():
    lengths = np.array([3, 4, 5, 6, 60, 62, 64, 250])
    runs = padding_bounded_batches(lengths, batch_size=4)
    assert [index for run in runs for index in range(len(lengths))[run]] == list(range(len(lengths)))
    assert all(run.stop - run.start <= 4 for run in runs)
    assert [list(lengths[run]) for run in runs] == [[3, 4, 5, 6], [60, 62, 64], [250]]
    for run in runs:  # none pads to more than twice its real tokens, slack aside
        assert len(lengths[run]) * lengths[run].max() <= 2 * lengths[run].sum() + PADDING_SLACK
    sorted_texts = np.full(10_000, 40)  # many texts of one length: only the batch size cuts
    assert {run.stop - run.start for run in padding_bounded_batches(sorted_texts, 64)} == {64, 10_000 % 64}


def test_an_error_while_tokenizing_in_the_background_reaches_the_caller(textcnn_run, monkeypatch):
    classifier = Classifier.load(textcnn_run, device="cpu")
    encode = classifier.encode
    calls = []

    def failing_second_time(texts, pairs=None):
        calls.append(len(texts))
        if len(calls) == 2:
            raise RuntimeError("tokenizer broke")
        return encode(texts, pairs)

    monkeypatch.setattr(classifier, "encode", failing_second_time)
    with pytest.raises(RuntimeError, match="tokenizer broke"):
        classifier.probabilities(zigzag_texts(), batch_size=4)
    assert calls == [16, 16]  # groups of 4 batches; the second one ran in the background thread


def test_a_ctrl_c_that_python_dropped_stops_predictions_at_the_next_batch(textcnn_run, tmp_path, capsys):
    from finetune.cli import PRESSED, run_command

    classifier = Classifier.load(textcnn_run, device="cpu")
    batches = []
    forward = classifier.model.forward

    def forward_and_press_ctrl_c(**inputs):
        batches.append(len(inputs["input_ids"]))
        PRESSED.append(2)  # pressed during the first batch, its KeyboardInterrupt dropped
        return forward(**inputs)

    classifier.model.forward = forward_and_press_ctrl_c

    def command(argv):
        classifier.probabilities(zigzag_texts(), batch_size=4)
        return 0

    assert run_command(command, []) == 130 and batches == [4]
    assert "stopped (Ctrl-C)" in capsys.readouterr().err and PRESSED == []


def test_out_of_device_memory_exits_2_naming_the_batch_size(textcnn_run, capsys):
    from finetune.cli import run_command

    classifier = Classifier.load(textcnn_run, device="cpu", max_length=40)

    def forward_out_of_memory(**inputs):  # as a device too small for the batch would
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB. GPU 0 has 0.50 GiB free.")

    classifier.model.forward = forward_out_of_memory

    def command(argv):
        classifier.probabilities(zigzag_texts(), batch_size=32)
        return 0

    assert run_command(command, []) == 2
    error = capsys.readouterr().err
    assert (
        "error: CUDA out of memory. Tried to allocate 3.00 GiB (on cpu; batch_size 32, max_length 40). Lower " in error
    )
    assert "Traceback" not in error


def test_top_k(textcnn_run, tmp_path, capsys):
    model = ["--model", str(textcnn_run), "--input", str(TEST_FILE)]
    assert predict_main(model + ["--top_k", "all"]) == 0  # jsonl on stdout
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 50
    for row in rows:
        probabilities = row["probabilities"]
        assert set(probabilities) == {"negative", "positive"}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert row["label"] == max(probabilities, key=probabilities.get)
        assert row["score"] == probabilities[row["label"]]

    two = predict(model + ["--top_k", "2"], tmp_path / "top2.csv")
    for row in two:
        ranked = json.loads(row["top_k"])  # csv cells hold lists as JSON
        assert [entry["label"] for entry in ranked][0] == row["label"]
        assert ranked[0]["score"] >= ranked[1]["score"]
        assert sum(entry["score"] for entry in ranked) == pytest.approx(1.0)


def test_model_resolution(textcnn_run, tmp_path):
    best = json.loads((textcnn_run / "best.json").read_text())
    assert resolve_model_dir(textcnn_run) == textcnn_run / "best"
    assert resolve_model_dir(textcnn_run / "best") == textcnn_run / "best"
    assert resolve_model_dir(textcnn_run / best["checkpoint"]) == textcnn_run / best["checkpoint"]

    # The run, its best/ and the best checkpoint are the same model.
    outputs = [
        predict(["--model", str(model), "--input", str(TEST_FILE)], tmp_path / f"{index}.jsonl")
        for index, model in enumerate([textcnn_run, textcnn_run / "best", textcnn_run / best["checkpoint"]])
    ]
    assert outputs[0] == outputs[1] == outputs[2]

    with pytest.raises(UserError, match="does not exist"):
        resolve_model_dir(tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"has no best\.json and no config\.json.*checkpoint-"):
        (tmp_path / "interrupted" / "checkpoint-5").mkdir(parents=True)
        resolve_model_dir(tmp_path / "interrupted")
    incomplete = tmp_path / "incomplete"
    shutil.copytree(textcnn_run / "best", incomplete)
    (incomplete / "model.safetensors").unlink()
    with pytest.raises(UserError, match=r"incomplete: no model weights"):
        resolve_model_dir(incomplete)
    no_best_dir = tmp_path / "moved"
    no_best_dir.mkdir()
    shutil.copy(textcnn_run / "best.json", no_best_dir)
    with pytest.raises(
        UserError, match=rf"which does not exist, and neither does its checkpoint {best['checkpoint']}"
    ):
        resolve_model_dir(no_best_dir)


def test_user_errors_exit_2(textcnn_run, tmp_path, capsys):
    model = ["--model", str(textcnn_run)]
    assert cli_main(["predict", "--model", str(tmp_path), "--input", str(TEST_FILE)]) == 2
    assert "has no best.json and no config.json" in capsys.readouterr().err
    assert cli_main(["predict", *model, "--input", str(TEST_FILE), "--output", "out.xlsx"]) == 2
    assert "unsupported extension '.xlsx'" in capsys.readouterr().err
    assert cli_main(["predict", *model, "--input", str(TEST_FILE), "--text_column", "review"]) == 2
    assert "line 1: no 'review'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli_main(["predict", *model, "--input", str(TEST_FILE), "--device", "cuda:1"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_bad_outputs_devices_and_inputs_exit_2_before_any_work(textcnn_run, tmp_path, capsys):
    model = ["--model", str(textcnn_run)]
    folder = tmp_path / "out.jsonl"
    folder.mkdir()
    for command in (
        ["predict", *model, "--input", str(TEST_FILE), "--output", str(folder)],
        ["evaluate", *model, "--test_file", str(TEST_FILE), "--output", str(folder)],
    ):
        assert cli_main(command) == 2
        assert f"--output {folder} is a directory" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [folder] and not list(folder.iterdir())  # nothing written
    assert cli_main(["predict", *model, "--input", str(TEST_FILE), "--device", "meta"]) == 2
    assert "only cpu, cuda and cuda:N" in capsys.readouterr().err
    for content, message in (('{"text": "好"}\n{"text": null}\n', "line 2: 'text' is empty (null)"),
                             ('{"text": "好"}\n{"text": \n', "line 2: not valid JSON")):  # fmt: skip
        (tmp_path / "broken.jsonl").write_text(content, encoding="utf-8")
        assert cli_main(["predict", *model, "--input", str(tmp_path / "broken.jsonl")]) == 2
        err = capsys.readouterr().err
        assert message in err and "bad_rows" not in err  # training's option, not predict's
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    assert cli_main(["predict", *model, "--input", str(tmp_path / "broken.parquet")]) == 2
    assert "not a readable parquet file" in capsys.readouterr().err
    # A folder to be created for the output; an input column named like one predict adds, twice over.
    clash = tmp_path / "clash.jsonl"
    clash.write_text('{"text": "好看", "label": "L", "input_label": "IL"}\n', encoding="utf-8")
    (row,) = predict([*model, "--input", str(clash)], tmp_path / "new" / "folder" / "out.jsonl")
    assert row["input_label"] == "IL" and row["input_input_label"] == "L" and row["label"] in ("positive", "negative")


def test_damaged_run_files_exit_2(textcnn_run, tmp_path, capsys):
    best = tmp_path / "best"
    shutil.copytree(textcnn_run / "best", best)
    (best / "finetune_args.json").write_text('{"data": ', encoding="utf-8")
    assert cli_main(["predict", "--model", str(best), "--input", str(TEST_FILE)]) == 2
    assert "finetune_args.json is damaged" in capsys.readouterr().err
    (best / "finetune_args.json").unlink()
    (best / "tokenizer.json").unlink()  # tokenizer_config.json alone cannot build the tokenizer
    assert cli_main(["predict", "--model", str(best), "--input", str(TEST_FILE)]) == 2
    assert "no tokenizer (tokenizer.json, or a vocabulary such as vocab.txt)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("run", "max_length", "message"),
    [
        ("textcnn_run", "0", "--max_length 0 leaves no room for text"),
        ("textcnn_run", "-1", "use at least 1"),
        ("bert_run", "2", "the tokenizer adds 2 special token(s) to each text; use at least 3"),
        ("bert_run", "65", "--max_length 65 is longer than the model can take (64 tokens)"),  # its positions
    ],
)
def test_max_length_that_cannot_work_exits_2(run, max_length, message, request, capsys):
    model = ["--model", str(request.getfixturevalue(run)), "--max_length", max_length]
    for command in (
        ["predict", *model, "--input", str(TEST_FILE)],
        ["evaluate", *model, "--test_file", str(TEST_FILE)],
    ):
        assert cli_main(command) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert predict_main([*model[:2], "--max_length", "64", "--input", str(TEST_FILE), "--output", "-"]) == 0


def han_font(path: Path, characters: str) -> Path:
    """A TrueType font whose only glyphs are filled squares for ``characters``, named "Test Han"."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    names = [".notdef"] + [f"uni{ord(char):04X}" for char in characters]
    glyphs = {}
    for name in names:
        pen = TTGlyphPen(None)
        if name != ".notdef":
            pen.moveTo((100, 0)), pen.lineTo((100, 800)), pen.lineTo((900, 800)), pen.lineTo((900, 0))
            pen.closePath()
        glyphs[name] = pen.glyph()
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder(names)
    builder.setupCharacterMap({ord(char): name for char, name in zip(characters, names[1:], strict=True)})
    builder.setupGlyf(glyphs)
    builder.setupHorizontalMetrics({name: (1000, 0) for name in names})
    builder.setupHorizontalHeader(ascent=880, descent=-120)
    builder.setupNameTable({"familyName": "Test Han", "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=880, usWinAscent=880, usWinDescent=120)
    builder.setupPost()
    builder.save(path)
    return path


@pytest.mark.parametrize("font", ["known to matplotlib", "installed since", "none"])
def test_confusion_matrix_draws_chinese_labels_in_a_font_that_has_them_or_shows_ids(font, tmp_path, monkeypatch):
    import warnings

    from matplotlib import font_manager

    from finetune.evaluation import confusion_matrix_figure

    labels = ["书籍", "平板", "negative"]
    # The fonts matplotlib knows and those on disk: this machine's, less any with Han characters (so that the test
    # means the same everywhere), plus a font of the labels' characters, in matplotlib's list or on disk only.
    fonts = [font for font in font_manager.fontManager.ttflist if ord("书") not in font_characters(font.fname)]
    on_disk = [font.fname for font in fonts]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", fonts)
    monkeypatch.setattr(font_manager, "findSystemFonts", lambda *args, **kwargs: on_disk)
    han = han_font(tmp_path / "han.ttf", "书籍平板测试")
    if font == "known to matplotlib":
        font_manager.fontManager.addfont(han)
    elif font == "installed since":
        on_disk.append(str(han))
    png = tmp_path / "matrix.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = confusion_matrix_figure([[3, 1, 0], [0, 2, 0], [1, 0, 4]], labels, "测试 (11)", png)
        figure.savefig(png)
    assert not [warning for warning in caught if "missing from font" in str(warning.message)]
    ticks = [tick.get_text() for tick in figure.axes[0].get_xticklabels()]
    title = figure.axes[0].get_title()
    if font == "none":
        assert ticks == ["0", "1", "2"] and title == "confusion matrix"
    else:
        assert ticks == labels and title == "测试 (11)"
        assert "Test Han" in figure.axes[0].get_xticklabels()[0].get_fontfamily()


def test_evaluate_matches_scikit_learn(textcnn_run, tmp_path, capsys):
    assert evaluate_main(["--model", str(textcnn_run), "--test_file", str(TEST_FILE)]) == 0
    printed = capsys.readouterr().out
    results_path = textcnn_run / "evaluation" / "reviews_test.json"
    results = json.loads(results_path.read_text())
    assert Path(results["confusion_matrix_png"]).read_bytes().startswith(b"\x89PNG")
    assert "confusion matrix" in printed and "weighted avg" in printed

    # The same predictions, from predict.
    rows = predict(["--model", str(textcnn_run), "--input", str(TEST_FILE)], tmp_path / "predictions.jsonl")
    y_true, y_pred = [row["input_label"] for row in rows], [row["label"] for row in rows]
    labels = results["confusion_matrix"]["labels"]
    assert labels == ["negative", "positive"]
    scores = results["metrics"]
    assert results["samples"] == 50
    assert scores["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(y_true, y_pred))
    for average, suffix in (("macro", ""), ("weighted", "_weighted")):
        assert scores["f1" + suffix] == pytest.approx(sklearn_metrics.f1_score(y_true, y_pred, average=average))
        assert scores["precision" + suffix] == pytest.approx(
            sklearn_metrics.precision_score(y_true, y_pred, average=average, zero_division=0)
        )
        assert scores["recall" + suffix] == pytest.approx(
            sklearn_metrics.recall_score(y_true, y_pred, average=average)
        )
    precision, recall, f1, support = sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    for index, label in enumerate(labels):
        per_class = results["per_class"][label]
        assert per_class["precision"] == pytest.approx(precision[index])
        assert per_class["recall"] == pytest.approx(recall[index])
        assert per_class["f1"] == pytest.approx(f1[index])
        assert per_class["support"] == support[index]
    assert (
        results["confusion_matrix"]["matrix"]
        == sklearn_metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    )

    # And the same numbers as the test evaluation at the end of training.
    test_results = json.loads((textcnn_run / "test_results.json").read_text())
    assert scores["accuracy"] == pytest.approx(test_results["test_accuracy"])
    assert scores["loss"] == pytest.approx(test_results["test_loss"], abs=1e-4)


def test_evaluate_takes_the_first_n_examples_and_skips_bad_rows_when_asked(textcnn_run, tmp_path, capsys):
    rows = read_jsonl(TEST_FILE)
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    lines.insert(2, json.dumps({"text": "", "label": rows[0]["label"]}))  # line 3: no text
    test_file = tmp_path / "with_a_bad_row.jsonl"
    test_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = ["--model", str(textcnn_run), "--test_file", str(test_file)]
    assert cli_main(["evaluate", *command]) == 2
    error = capsys.readouterr().err
    assert f"{test_file}, line 3:" in error and "(--bad_rows skip leaves such rows out)" in error

    def scores(*argv: str) -> dict:
        output = tmp_path / "results.json"
        assert evaluate_main(["--model", str(textcnn_run), *argv, "--output", str(output)]) == 0
        return json.loads(output.read_text())

    whole = scores("--test_file", str(test_file), "--bad_rows", "skip")
    assert "skipped 1 bad row(s)" in capsys.readouterr().err
    assert whole["samples"] == 50 and whole["skipped_rows"] == 1 and whole["skipped_first"][0]["line"] == 3
    assert whole["metrics"] == scores("--test_file", str(TEST_FILE))["metrics"]  # as the file without it
    # The first 20 good rows: the same scores as a file of just those rows.
    first = scores("--test_file", str(test_file), "--bad_rows", "skip", "--max_samples", "20")
    just_those = tmp_path / "first_20.jsonl"
    just_those.write_text("".join(line + "\n" for line in lines[:21] if '"text": ""' not in line), encoding="utf-8")
    expected = scores("--test_file", str(just_those))
    assert first["samples"] == expected["samples"] == 20
    assert first["confusion_matrix"] == expected["confusion_matrix"] and first["metrics"] == expected["metrics"]
    assert cli_main(["evaluate", *command, "--max_samples", "0"]) == 2


def test_evaluate_refuses_labels_the_model_does_not_know(textcnn_run, tmp_path, capsys):
    test_file = tmp_path / "other.csv"
    test_file.write_text("text,label\n很好,positive\n一般,neutral\n太差,bad\n", encoding="utf-8")
    output = tmp_path / "out.json"
    assert (
        cli_main(["evaluate", "--model", str(textcnn_run), "--test_file", str(test_file), "--output", str(output)])
        == 2
    )
    error = capsys.readouterr().err
    assert "label(s) the model does not know: 'bad', 'neutral'" in error
    assert "'negative', 'positive'" in error
    assert not output.exists()


def test_pipeline_loads_a_textcnn_run(textcnn_run, tmp_path):
    texts = [row["text"] for row in read_jsonl(TEST_FILE)]
    classifier = pipeline("text-classification", model=str(textcnn_run / "best"), device="cpu")
    from_pipeline = classifier(texts, top_k=None)
    rows = predict(["--model", str(textcnn_run), "--input", str(TEST_FILE), "--top_k", "all"], tmp_path / "p.jsonl")
    for scores, row in zip(from_pipeline, rows, strict=True):
        assert scores[0]["label"] == row["label"]
        assert {entry["label"]: entry["score"] for entry in scores} == pytest.approx(
            row["probabilities"], abs=SAME_TEXT_TOLERANCE
        )


def test_pipeline_and_predict_on_a_bert_run(bert_run, tmp_path):
    texts = [row["text"] for row in read_jsonl(TEST_FILE)]
    classifier = pipeline("text-classification", model=str(bert_run / "best"), device="cpu")
    from_pipeline = classifier(texts)
    rows = predict(["--model", str(bert_run), "--input", str(TEST_FILE), "--batch_size", "8"], tmp_path / "p.jsonl")
    assert [scores["label"] for scores in from_pipeline] == [row["label"] for row in rows]
    assert [scores["score"] for scores in from_pipeline] == pytest.approx([row["score"] for row in rows], abs=1e-5)
    card = (bert_run / "best" / "README.md").read_text(encoding="utf-8")
    assert "fine-tuned version of" in card and "tiny-bert" in card


@pytest.mark.parametrize("run", ["textcnn_run", "bert_run"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_encode_and_pad_give_what_the_tokenizer_gives(run, padding_side, request):
    classifier = Classifier.load(request.getfixturevalue(run), device="cpu", max_length=12)
    classifier.tokenizer.padding_side = padding_side
    texts = [row["text"] for row in read_jsonl(TEST_FILE)][:20] + ["", "  "]
    pairs = list(reversed(texts))
    for second in (None, pairs):
        expected = classifier.tokenizer(texts, second, truncation=True, max_length=12)
        encoded = classifier.encode(texts, second)
        assert set(encoded) == set(classifier.tokenizer.model_input_names) <= set(expected)
        assert encoded == {name: expected[name] for name in encoded}
        assert max(len(ids) for ids in encoded["input_ids"]) == 12  # truncated
        padded = classifier.pad(encoded)
        reference = classifier.tokenizer.pad(dict(encoded), return_tensors="pt")
        assert padded.keys() == reference.keys()
        for name in padded:
            assert torch.equal(padded[name], reference[name]), name


@pytest.mark.parametrize("run", ["textcnn_run", "bert_run"])
def test_output_dir_loads_like_a_trainer_output(run, request, tmp_path):
    from transformers import AutoModelForSequenceClassification

    output_dir = request.getfixturevalue(run)
    best = output_dir / "best"
    for path in best.iterdir():  # every file of best/ at the top too, the weights stored once
        assert (output_dir / path.name).stat().st_ino == path.stat().st_ino
    texts = [row["text"] for row in read_jsonl(TEST_FILE)]
    from_output_dir = pipeline("text-classification", model=str(output_dir), device="cpu")(texts)
    from_best = pipeline("text-classification", model=str(best), device="cpu")(texts)
    assert from_output_dir == from_best
    model = AutoModelForSequenceClassification.from_pretrained(output_dir)
    best_model = AutoModelForSequenceClassification.from_pretrained(best)
    for (name, value), (_, best_value) in zip(
        model.state_dict().items(), best_model.state_dict().items(), strict=True
    ):
        assert torch.equal(value, best_value), name


def test_textcnn_loads_without_this_package(textcnn_run, tmp_path):
    """best/ carries textcnn.py and an auto_map: a process that cannot import finetune loads it with
    trust_remote_code, and its logits equal the package's."""
    best = textcnn_run / "best"
    config = json.loads((best / "config.json").read_text(encoding="utf-8"))
    assert config["auto_map"] == {
        "AutoConfig": "textcnn.TextCNNConfig",
        "AutoModelForSequenceClassification": "textcnn.TextCNNForSequenceClassification",
    }
    assert (best / "textcnn.py").is_file()
    texts = [row["text"] for row in read_jsonl(TEST_FILE)][:8]
    code = f"""
import importlib.abc, json, sys

class HideFinetune(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "finetune" or name.startswith("finetune."):
            raise ImportError("finetune is hidden")

sys.meta_path.insert(0, HideFinetune())
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained({str(best)!r}, trust_remote_code=True)
model = AutoModelForSequenceClassification.from_pretrained({str(best)!r}, trust_remote_code=True).eval()
inputs = tokenizer({texts!r}, padding=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**inputs).logits
print(json.dumps({{"module": type(model).__module__, "logits": logits.tolist(), "finetune": "finetune" in sys.modules}}))
"""
    environment = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        check=True,
        stdin=subprocess.DEVNULL,  # a question about custom code would fail the test, not wait
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["module"].startswith("transformers_modules") and not result["finetune"]
    classifier = Classifier.load(textcnn_run, device="cpu")
    inputs = classifier.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = classifier.model(**inputs).logits
    assert torch.tensor(result["logits"]) == pytest.approx(expected, abs=1e-5)


def test_runs_of_the_old_layout_still_load(textcnn_run, tmp_path):
    """A run written before best/'s files were linked at the top (best/ and best.json only) works with --model."""
    old = tmp_path / "old-run"
    shutil.copytree(textcnn_run, old)
    for path in (textcnn_run / "best").iterdir():
        (old / path.name).unlink()
    assert not (old / "config.json").exists()
    rows = predict(["--model", str(old), "--input", str(TEST_FILE)], tmp_path / "old.jsonl")
    expected = predict(["--model", str(textcnn_run), "--input", str(TEST_FILE)], tmp_path / "new.jsonl")
    assert rows == expected
