"""long_text: windows: every token of a long text in overlapping windows, trained on with the text's label, and
gathered back into one result per text by evaluation, evaluate, predict and serve."""

import json

import numpy as np
import pytest
import torch
from conftest import FIXTURES, QUICK_TEXTCNN, pretrained_run_flags, read_jsonl, sentence_pair_files
from test_multilabel import QUICK, run_flags, topics  # noqa: F401  (topics is a fixture)
from test_train import make_tiny_bert
from transformers import AutoTokenizer

from finetune.cli import main as cli_main
from finetune.data import windows
from finetune.data.tokenize import encode_windows
from finetune.data.windows import TextLogits, texts_of_windows
from finetune.predict import Classifier
from finetune.tokenizer import build_vocab_tokenizer
from finetune.train import main as train_main

TEXTS = [row["text"] for row in read_jsonl(FIXTURES / "reviews_train.jsonl")]
# group_by_length: the Trainer's evaluation would batch rows by length too; the windows must come back in order.
WINDOWS = [
    "--long_text",
    "windows",
    "--max_length",
    "6",
    "--window_stride",
    "2",
    "--train_sampling_strategy",
    "group_by_length",
]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert", TEXTS)


@pytest.mark.parametrize(("max_length", "stride"), [(6, 2), (8, 0), (5, 4)])
@pytest.mark.parametrize("kind", ["textcnn", "bert"])
def test_windows_hold_every_token_once_plus_the_overlap(kind, max_length, stride, tiny_bert):
    if kind == "bert":
        tokenizer, specials = AutoTokenizer.from_pretrained(tiny_bert), 2
        if stride >= max_length - specials:
            pytest.skip("a stride the windows cannot hold (tested in test_window_stride_errors)")
    else:
        tokenizer, specials = build_vocab_tokenizer(TEXTS, max_length=max_length), 0
    texts = TEXTS[:40] + ["", "很" * 40, "很好 不错，" * 12]  # words between spaces: pre-tokenized apart
    encoded, owners = encode_windows(tokenizer, texts, None, max_length, stride)
    assert list(owners) == sorted(owners) and set(owners) == set(range(len(texts)))
    whole = tokenizer(texts, add_special_tokens=False)["input_ids"]
    for index, tokens in enumerate(whole):
        windows = [encoded["input_ids"][row] for row in np.flatnonzero(owners == index)]
        assert all(len(window) <= max_length for window in windows)
        if specials:
            assert all(w[0] == tokenizer.cls_token_id and w[-1] == tokenizer.sep_token_id for w in windows)
            windows = [window[1:-1] for window in windows]
        joined = windows[0]
        for window in windows[1:]:
            assert window[:stride] == joined[len(joined) - stride :]  # consecutive windows share stride tokens
            joined = joined + window[stride:]
        assert joined == tokens
        if len(tokens) > max_length - specials:
            assert len(windows) > 1


@pytest.mark.parametrize("kind", ["textcnn", "bert"])
def test_pair_windows_read_the_second_text_each_with_the_first(kind, tiny_bert):
    max_length, stride = 12, 2
    if kind == "bert":
        tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    else:
        tokenizer = build_vocab_tokenizer(TEXTS, max_length=max_length)
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    cap = (max_length - specials) // 2
    firsts = ["不错", "很好 不错", "很" * 30, "", "好的"]  # the third is longer than a window can keep of it
    seconds = [TEXTS[0], "很好 不错，" * 6, TEXTS[1], TEXTS[2], "好"]
    encoded, owners = encode_windows(tokenizer, firsts, seconds, max_length, stride)
    assert list(owners) == sorted(owners) and set(owners) == set(range(len(firsts)))
    for index, (first, second) in enumerate(zip(firsts, seconds, strict=True)):
        first_ids = tokenizer(first, add_special_tokens=False)["input_ids"][:cap]
        second_ids = tokenizer(second, add_special_tokens=False)["input_ids"]
        rows = np.flatnonzero(owners == index)
        joined = []
        for row in rows:
            window = encoded["input_ids"][row]
            assert len(window) <= max_length
            if kind == "bert":  # [CLS] first [SEP] part of the second [SEP], with the pair's token type ids
                assert window[: len(first_ids) + 2] == [tokenizer.cls_token_id, *first_ids, tokenizer.sep_token_id]
                assert window[-1] == tokenizer.sep_token_id
                part = window[len(first_ids) + 2 : -1]
                types = encoded["token_type_ids"][row]
                assert types == [0] * (len(first_ids) + 2) + [1] * (len(part) + 1)
            else:
                assert window[: len(first_ids)] == first_ids
                part = window[len(first_ids) :]
            if joined:
                assert part[:stride] == joined[len(joined) - stride :]  # consecutive windows share stride tokens
                part = part[stride:]
            joined += part
        assert joined == second_ids
        assert len(rows) > 1 or len(first_ids) + len(second_ids) + specials <= max_length

    # truncation_side left keeps the end of a first text too long for the windows.
    first = "一二三四五六七八九十" * 3
    tokenizer.truncation_side = "left"
    encoded, _ = encode_windows(tokenizer, [first], [TEXTS[0]], max_length, stride)
    end = tokenizer(first, add_special_tokens=False)["input_ids"][-cap:]
    assert all(end == window[1 if kind == "bert" else 0 :][:cap] for window in encoded["input_ids"])


def test_text_logits_average_or_take_the_maximum():
    logits = np.array([[1.0, 4.0], [3.0, 0.0], [5.0, -1.0], [0.5, 0.5]])
    text_index = np.array([7, 7, 2, 7])
    labels = np.array([1, 1, 0, 1])
    mean, text_labels = texts_of_windows(logits, labels, text_index, "mean")
    np.testing.assert_allclose(mean, [[1.5, 1.5], [5.0, -1.0]])  # texts in the order of their first window
    assert text_labels.tolist() == [1, 0]
    maximum, _ = texts_of_windows(logits, None, text_index, "max")
    np.testing.assert_allclose(maximum, [[3.0, 4.0], [5.0, -1.0]])
    gathered = TextLogits(2, 2)
    gathered.add(np.array([1]), np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="1 text"):  # text 0 got no window
        gathered.result()


def window_logits(classifier: Classifier, text: str) -> torch.Tensor:
    """The logits of each of the text's windows, cut by the tokenizer's own overflow API, in float64."""
    encoded = classifier.tokenizer(
        text,
        truncation=True,
        max_length=classifier.max_length,
        stride=classifier.window_stride,
        return_overflowing_tokens=True,
    )
    logits = []
    with torch.inference_mode():
        for ids in encoded["input_ids"]:
            inputs = torch.tensor([ids], device=classifier.model.device)
            logits.append(classifier.model(input_ids=inputs, attention_mask=torch.ones_like(inputs)).logits[0])
    return torch.stack(logits).double().cpu()


def fixture_flags(directory) -> list[str]:
    return [
        *(f"--{split}_file={FIXTURES / f'reviews_{split}.jsonl'}" for split in ("train", "validation", "test")),
        f"--data_cache_dir={directory / 'cache'}",
        f"--output_dir={directory / 'run'}",
        "--disable_tqdm=true",
    ]


@pytest.fixture(scope="module")
def windows_run(tmp_path_factory):
    """A TextCNN trained on the fixture's texts in windows of 6 characters, consecutive ones sharing 2."""
    directory = tmp_path_factory.mktemp("windows")
    assert train_main([*fixture_flags(directory), *QUICK_TEXTCNN, *WINDOWS]) == 0
    return directory / "run"


def test_windows_train_evaluate_and_predict_agree(windows_run, tmp_path, capsys):
    run = windows_run
    results = json.loads((run / "all_results.json").read_text())
    assert results["train_samples"] == 200 and results["train_windows"] > 300  # texts of 10 characters on average
    assert results["test_samples"] == 50 and results["test_windows"] > 50
    assert results["test_accuracy"] >= 0.7
    assert json.loads((run / "best" / "finetune_args.json").read_text())["data"]["window_stride"] == 2

    # finetune evaluate reads the run's windows and agrees with the Trainer's per-text test results.
    output = tmp_path / "evaluation.json"
    test_file = str(FIXTURES / "reviews_test.jsonl")
    assert cli_main(["evaluate", "--model", str(run), "--test_file", test_file, "--output", str(output)]) == 0
    metrics = json.loads(output.read_text())["metrics"]
    assert metrics["accuracy"] == pytest.approx(results["test_accuracy"])
    assert metrics["loss"] == pytest.approx(results["test_loss"], abs=1e-5)
    truncated = tmp_path / "truncated.json"
    assert (
        cli_main(
            [
                "evaluate",
                "--model",
                str(run),
                "--test_file",
                test_file,
                "--output",
                str(truncated),
                "--long_text",
                "truncate",
            ]
        )
        == 0
    )
    assert json.loads(truncated.read_text())["metrics"]["loss"] != pytest.approx(metrics["loss"])

    # predict: one row per input row, in order, each the mean of its windows' logits.
    predictions = tmp_path / "predictions.jsonl"
    assert (
        cli_main(
            ["predict", "--model", str(run), "--input", test_file, "--output", str(predictions), "--top_k", "all"]
        )
        == 0
    )
    rows, inputs = read_jsonl(predictions), read_jsonl(FIXTURES / "reviews_test.jsonl")
    assert [row["text"] for row in rows] == [row["text"] for row in inputs]
    classifier = Classifier.load(run)
    assert classifier.window_stride == 2 and classifier.max_length == 6
    for row in rows:
        expected = torch.softmax(window_logits(classifier, row["text"]).mean(0), -1).numpy()
        got = [row["probabilities"][classifier.id2label[index]] for index in range(len(expected))]
        np.testing.assert_allclose(got, expected, atol=1e-6)

    # The windowed splits have their own cache entries, and a second run hits them.
    capsys.readouterr()
    again = [*fixture_flags(run.parent), f"--output_dir={tmp_path / 'again'}", *QUICK_TEXTCNN, *WINDOWS]
    assert train_main(again) == 0
    assert "train: cache hit" in capsys.readouterr().out


def test_the_export_check_reads_windows_as_evaluate_does(windows_run, tmp_path):
    from test_deploy import export

    # Each test text behind a neutral opening as long as a window: truncated, every text reads the same.
    check_file = tmp_path / "check.jsonl"
    rows = [{**row, "text": "这是一条评论的" + row["text"]} for row in read_jsonl(FIXTURES / "reviews_test.jsonl")]
    check_file.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    output = tmp_path / "evaluation.json"
    assert (
        cli_main(["evaluate", "--model", str(windows_run), "--test_file", str(check_file), "--output", str(output)])
        == 0
    )
    accuracy = json.loads(output.read_text())["metrics"]["accuracy"]
    assert accuracy > 0.7
    check = export(windows_run, tmp_path / "export", "--check_file", str(check_file))["checks"][str(check_file)]
    assert check["rows"] == 50 and check["same_labels"] == 50  # texts, not windows
    assert check["accuracy"] == {"pytorch": pytest.approx(accuracy), "onnxruntime": pytest.approx(accuracy)}


def test_serve_answers_as_predict_does(windows_run, tmp_path):
    from test_deploy import call, serving

    predictions = tmp_path / "predictions.jsonl"
    test_file = str(FIXTURES / "reviews_test.jsonl")
    assert cli_main(["predict", "--model", str(windows_run), "--input", test_file, "--output", str(predictions)]) == 0
    expected = read_jsonl(predictions)
    with serving(windows_run) as (url, _):
        status, body = call(f"{url}/predict", json.dumps({"texts": [row["text"] for row in expected]}).encode())
    assert status == 200
    for answer, row in zip(body["predictions"], expected, strict=True):
        assert answer["label"] == row["label"] and answer["score"] == pytest.approx(row["score"], abs=1e-9)


def test_multi_label_windows_take_each_labels_maximum(topics, tmp_path):  # noqa: F811
    assert train_main([*run_flags(topics, tmp_path), *QUICK, *WINDOWS, "--threshold", "tune"]) == 0
    run = tmp_path / "run"
    results = json.loads((run / "all_results.json").read_text())
    assert results["test_windows"] > results["test_samples"] == 60
    classifier = Classifier.load(run)
    texts = [row["text"] for row in read_jsonl(topics["test"])]
    probabilities = classifier.probabilities(texts)
    for text, row in zip(texts, probabilities, strict=True):
        np.testing.assert_allclose(row, torch.sigmoid(window_logits(classifier, text).amax(0)).numpy(), atol=1e-6)
    output = tmp_path / "evaluation.json"
    assert (
        cli_main(["evaluate", "--model", str(run), "--test_file", str(topics["test"]), "--output", str(output)]) == 0
    )
    metrics = json.loads(output.read_text())["metrics"]
    assert metrics["subset_accuracy"] == pytest.approx(results["test_subset_accuracy"])
    assert metrics["f1_micro"] == pytest.approx(results["test_f1_micro"])


def test_text_pairs_in_windows_train_evaluate_and_predict(reviews, tmp_path):
    pairs = sentence_pair_files(reviews, tmp_path)  # the label is in the second text, a review
    flags = [f"--{split}_file={path}" for split, path in pairs.items()]
    flags += ["--text_column", "first", "--text_pair_column", "second", "--cache_dir", str(tmp_path / "cache")]
    flags += ["--long_text", "windows", "--max_length", "16", "--window_stride", "2"]
    assert train_main([*flags, "--output_dir", str(tmp_path / "run"), "--disable_tqdm", "true", *QUICK_TEXTCNN]) == 0
    run = tmp_path / "run"
    results = json.loads((run / "all_results.json").read_text())
    assert results["test_windows"] > results["test_samples"] == 50 and results["test_accuracy"] >= 0.8
    output = tmp_path / "evaluation.json"
    assert cli_main(["evaluate", "--model", str(run), "--test_file", str(pairs["test"]), "--output", str(output)]) == 0
    assert json.loads(output.read_text())["metrics"]["accuracy"] == pytest.approx(results["test_accuracy"])

    # predict: each pair the mean of its windows' logits, the windows cut by the tokenizer's own overflow API (the
    # first texts, at most 6 characters, fit in the half of a window kept for them).
    predictions = tmp_path / "predictions.jsonl"
    command = ["predict", "--model", str(run), "--input", str(pairs["test"]), "--output", str(predictions)]
    assert cli_main([*command, "--top_k", "all"]) == 0
    classifier = Classifier.load(run)
    for row in read_jsonl(predictions):
        encoded = classifier.tokenizer(
            row["first"],
            row["second"],
            truncation="only_second",
            max_length=16,
            stride=2,
            return_overflowing_tokens=True,
        )
        with torch.inference_mode():
            logits = torch.stack(
                [
                    classifier.model(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids))).logits[0]
                    for ids in encoded["input_ids"]
                ]
            ).double()
        expected = torch.softmax(logits.mean(0), -1).numpy()
        got = [row["probabilities"][classifier.id2label[index]] for index in range(len(expected))]
        np.testing.assert_allclose(got, expected, atol=1e-6)

    # serve answers the pairs as predict does.
    from test_deploy import call, serving

    rows = read_jsonl(predictions)
    with serving(run) as (url, _):
        body = {"texts": [row["first"] for row in rows], "text_pairs": [row["second"] for row in rows]}
        status, answer = call(f"{url}/predict", json.dumps(body).encode())
    assert status == 200
    for served, row in zip(answer["predictions"], rows, strict=True):
        assert served["label"] == row["label"] and served["score"] == pytest.approx(row["score"], abs=1e-9)


def test_windows_with_a_pretrained_model(tiny_bert, tmp_path):
    flags = pretrained_run_flags(tiny_bert, tmp_path, "2e-3", 2)
    assert train_main([*flags, "--long_text", "windows", "--max_length", "8", "--window_stride", "2"]) == 0
    results = json.loads((tmp_path / "run" / "all_results.json").read_text())
    assert results["test_windows"] > results["test_samples"] == 50
    output = tmp_path / "evaluation.json"
    test_file = str(FIXTURES / "reviews_test.jsonl")
    assert (
        cli_main(["evaluate", "--model", str(tmp_path / "run"), "--test_file", test_file, "--output", str(output)])
        == 0
    )
    assert json.loads(output.read_text())["metrics"]["accuracy"] == pytest.approx(results["test_accuracy"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--long_text", "windows", "--max_length", "6", "--window_stride", "6"], "window_stride 6 must be"),
        (["--long_text", "windows", "--max_length", "6", "--window_stride", "-1"], "window_stride -1 must be"),
        (["--max_length", "6", "--window_stride", "2"], "window_stride is for long_text: windows"),
        (["--long_text", "windows", "--padding", "max_length"], "padding: longest"),
    ],
)
def test_window_stride_errors(flags, message, data_args, capsys):
    assert cli_main(["train", *data_args, *QUICK_TEXTCNN, *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_pair_window_stride_must_leave_room_beside_the_first_text(reviews, tmp_path, capsys):
    pairs = sentence_pair_files(reviews, tmp_path)
    flags = [f"--{split}_file={path}" for split, path in pairs.items()]
    flags += ["--text_column", "first", "--text_pair_column", "second", "--output_dir", str(tmp_path / "run")]
    flags += ["--long_text", "windows", "--max_length", "8", "--window_stride", "4"]
    assert cli_main(["train", *flags, "--cache_dir", str(tmp_path / "cache"), *QUICK_TEXTCNN]) == 2
    error = capsys.readouterr().err
    assert "smaller than the text tokens a window holds: 4 (max_length 8, half of the rest kept for the first" in error
    assert not (tmp_path / "run").exists()


def test_the_data_check_counts_the_first_texts_of_pairs_cut_to_half_a_window(reviews, tmp_path, capsys):
    files = {}
    for split, path in sentence_pair_files(reviews, tmp_path).items():
        rows = read_jsonl(path)
        for index, row in enumerate(rows):  # every fourth first text 12 characters long, the others at most 6
            row["first"] = "长" * 12 if index % 4 == 0 else f"第{index}条"
        files[split] = tmp_path / f"long_first_{split}.jsonl"
        files[split].write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    expected = {split: len(read_jsonl(path)[::4]) for split, path in files.items()}
    flags = [f"--{split}_file={path}" for split, path in files.items()]
    flags += ["--text_column", "first", "--text_pair_column", "second", "--cache_dir", str(tmp_path / "cache")]
    flags += ["--max_length", "16"]
    truncated, flags = (
        list(flags),
        [*flags, "--long_text", "windows", "--window_stride", "2"],
    )  # no special tokens: 8 kept

    report_file = tmp_path / "check.json"
    assert cli_main(["check", "--config", "configs/textcnn.yaml", *flags, "--output", str(report_file)]) == 0
    lengths = json.loads(report_file.read_text())["lengths"]
    assert lengths["first_text_cap"] == 8
    assert {split: values["first_text_cut_rows"] for split, values in lengths["splits"].items()} == expected
    shown = capsys.readouterr().err
    assert f"; the first text cut to 8 tokens in {expected['train']} rows" in shown

    assert train_main([*flags, "--output_dir", str(tmp_path / "run"), *QUICK_TEXTCNN, "--max_steps", "1"]) == 0
    printed = capsys.readouterr()
    summary = next(line for line in (printed.out + printed.err).splitlines() if "check: " in line)
    assert f"(read in windows; the first text cut to 8 tokens in {expected['train']} training rows)" in summary

    # Truncated pairs are not read in windows: no first text is said to be cut.
    assert cli_main(["check", "--config", "configs/textcnn.yaml", *truncated]) == 0
    assert "first text cut" not in capsys.readouterr().err


def test_windows_refuse_a_tokenizers_release_that_drops_them(data_args, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(windows, "overflow_works", lambda: False)  # as with tokenizers 0.23.1 and 0.23.2
    assert cli_main(["train", *data_args, *QUICK_TEXTCNN, *WINDOWS]) == 2
    error = capsys.readouterr().err
    assert "huggingface/tokenizers#2091" in error and "pip install 'tokenizers>=0.23.3'" in error
    assert not (tmp_path / "run").exists()


def test_window_stride_must_leave_room_for_special_tokens(tiny_bert, tmp_path, capsys):
    flags = pretrained_run_flags(tiny_bert, tmp_path, "2e-3", 1)
    assert cli_main(["train", *flags, "--long_text", "windows", "--max_length", "8", "--window_stride", "6"]) == 2
    assert "max_length 8 less 2 special token(s)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_predict_window_stride_errors(data_args, tmp_path, capsys):
    assert train_main([*data_args, *QUICK_TEXTCNN, "--max_length", "6", "--num_train_epochs", "1"]) == 0
    model, text = str(tmp_path / "run"), str(FIXTURES / "reviews_test.jsonl")
    assert cli_main(["predict", "--model", model, "--input", text, "--window_stride", "2"]) == 2
    assert "add --long_text windows" in capsys.readouterr().err
    assert (
        cli_main(["predict", "--model", model, "--input", text, "--long_text", "windows", "--window_stride", "9"]) == 2
    )
    assert "--window_stride 9 must be" in capsys.readouterr().err
    output = tmp_path / "windows.jsonl"  # a model trained on truncated texts can still read them in windows
    assert (
        cli_main(["predict", "--model", model, "--input", text, "--long_text", "windows", "--output", str(output)])
        == 0
    )
    assert len(read_jsonl(output)) == 50
