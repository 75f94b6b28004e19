"""Classify texts with a trained model: one output row per input row, in input order.

    finetune predict --model outputs/textcnn --input reviews.txt                     # jsonl on stdout
    finetune predict --model outputs/textcnn --input data/chinese_sentiment/test.jsonl --output predictions.csv
    echo "房间很干净，服务也好" | finetune predict --model outputs/textcnn --input -
    finetune predict --model outputs/textcnn/best --input reviews.csv --output out.jsonl --top_k all

``--model`` takes a run's output_dir (its best checkpoint), best/, checkpoint-N, any ``save_pretrained``
directory, or a ``finetune export`` directory (run by ONNX Runtime). The output holds the input's columns plus
``label`` (the predicted label's name) and ``score`` (its probability); ``--top_k N`` adds the N most likely labels
as ``top_k``, ``--top_k all`` every label's probability as ``probabilities``. A multi-label model gives ``labels`` (every label whose probability, a sigmoid, is over the
model's threshold; possibly none) and ``scores`` instead of label and score. Input columns that share these names
are kept as ``input_<name>``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

import finetune  # noqa: F401  (registers TextCNN with the Auto classes)
from finetune.checkpoints import resolve_model_dir, run_arguments
from finetune.cli import check_interrupt, progress_bars
from finetune.data import FORMATS, encode
from finetune.data.tokenize import encode_windows
from finetune.data.windows import TextLogits, check_window_stride, default_window_stride, reduction
from finetune.errors import UserError, stop_when_out_of_memory
from finetune.files import writable_file
from finetune.metrics import DEFAULT_THRESHOLD
from finetune.models.bert import check_max_length
from finetune.onnx_model import OnnxClassifier, is_export_dir
from finetune.rows import RowWriter, chunks, merge_rows, output_format, parse_top_k, prediction_columns, read_texts
from finetune.shards import Shards

# Texts are sorted by character length, then tokenized in groups of this many batches, each group sorted by
# token length: batches of similar lengths, little padding, while a background thread tokenizes the next group.
BATCHES_PER_GROUP = 4
LONGEST_DEFAULT_MAX_LENGTH = 512
# Padding a batch may add this many positions before it is split for padding alone (padding_bounded_batches).
PADDING_SLACK = 64


def resolve_device(name: str | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; by default the first GPU when there is one, else the CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use cpu, cuda or cuda:N.") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: only cpu, cuda and cuda:N are supported.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA device(s).")
    return device


@dataclass
class Classifier:
    """A trained model with its tokenizer, and the text settings of the run that trained it."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    model_dir: Path
    device: torch.device
    max_length: int
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    label_separator: str | None = None  # multi-label runs trained on labels split on it
    pad_to_multiple_of: int | None = None  # as in training: few distinct tensor shapes keep the heap from fragmenting
    # long_text windows: every window of a text, consecutive ones sharing this many tokens; None: truncate
    window_stride: int | None = None

    @classmethod
    def load(
        cls,
        model: str | Path,
        device: str | None = None,
        max_length: int | None = None,
        long_text: str | None = None,
        window_stride: int | None = None,
    ) -> Classifier:
        """Loads the model ``--model`` names (see ``resolve_model_dir``) onto ``device``.

        Args:
            model: A run's output_dir, best/, checkpoint-N or a ``save_pretrained`` directory.
            device: cpu, cuda or cuda:N; by default a GPU when there is one.
            max_length: Tokens per text (per window with windows); by default the run's max_length, else the
                tokenizer's (at most 512, and at most the model's position embeddings).
            long_text: truncate, or windows (see finetune/data/windows.py); by default the run's.
            window_stride: Tokens consecutive windows share; by default the run's, else a quarter of max_length.
        """
        model_dir = resolve_model_dir(model)
        torch_device = resolve_device(device)
        try:
            with progress_bars(show=False):  # "Loading weights" on every call is noise here
                tokenizer = AutoTokenizer.from_pretrained(model_dir)
                # finetune export: ONNX Runtime on the device's provider, fed from the CPU
                if is_export_dir(model_dir):
                    network, torch_device = OnnxClassifier(model_dir, torch_device), torch.device("cpu")
                else:
                    network = AutoModelForSequenceClassification.from_pretrained(model_dir)
        except (OSError, ValueError) as error:
            raise UserError(f"Could not load a classifier from {model_dir}: {error}") from None
        data = run_arguments(model_dir).get("data", {})
        tokenizer.truncation_side = data.get("truncation_side", tokenizer.truncation_side)
        set_pad_token(tokenizer, network, model_dir)
        if max_length is None:
            positions = getattr(network.config, "max_position_embeddings", None) or LONGEST_DEFAULT_MAX_LENGTH
            max_length = data.get("max_length") or min(
                tokenizer.model_max_length, LONGEST_DEFAULT_MAX_LENGTH, positions
            )
        check_max_length(max_length, tokenizer, network, data.get("text_pair_column") is not None, "--max_length")
        long_text = long_text or data.get("long_text", "truncate")
        if window_stride is not None and long_text != "windows":
            raise UserError("--window_stride is for long texts read in windows; add --long_text windows.")
        if long_text == "windows":
            if window_stride is None:
                same_length = max_length == data.get("max_length")
                window_stride = data.get("window_stride") if same_length else None
                window_stride = default_window_stride(max_length) if window_stride is None else window_stride
            check_window_stride(
                tokenizer, max_length, window_stride, "--window_stride", bool(data.get("text_pair_column"))
            )
        return cls(
            model=network.to(torch_device).eval(),
            tokenizer=tokenizer,
            model_dir=model_dir,
            device=torch_device,
            max_length=max_length,
            text_column=data.get("text_column", "text"),
            text_pair_column=data.get("text_pair_column"),
            label_column=data.get("label_column", "label"),
            label_separator=data.get("label_separator"),
            pad_to_multiple_of=data.get("pad_to_multiple_of"),
            window_stride=window_stride if long_text == "windows" else None,
        )

    @property
    def backend(self) -> str:
        """What runs the model: ``onnxruntime`` for an export directory, else ``pytorch``."""
        return "onnxruntime" if isinstance(self.model, OnnxClassifier) else "pytorch"

    @property
    def multi_label(self) -> bool:
        return self.model.config.problem_type == "multi_label_classification"

    @property
    def threshold(self) -> float | None:
        """Multi-label: the probability over which a label is predicted (saved by training); else None."""
        return float(getattr(self.model.config, "threshold", DEFAULT_THRESHOLD)) if self.multi_label else None

    @property
    def id2label(self) -> dict[int, str]:
        return {int(index): str(label) for index, label in self.model.config.id2label.items()}

    @property
    def label2id(self) -> dict[str, int]:
        return {label: index for index, label in self.id2label.items()}

    def probabilities(
        self, texts: list[str], pairs: list[str] | None = None, batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Class probabilities, ``(len(texts), num_labels)``, row i for texts[i]: a softmax over the labels, or
        for a multi-label model each label's sigmoid. With windows (long_text), of the text's windows' logits
        averaged (multi-label: their maximum).

        The batcher sorts texts by length so each batch is padded little; the rows come back in input order.
        A background thread tokenizes and pads the next group of batches while the model runs on the current
        one (the Rust tokenizer and torch release the GIL), which hides tokenizing for a model as fast as TextCNN.
        """
        logits = TextLogits(len(texts), self.model.config.num_labels, reduction(self.multi_label))
        characters = [len(text) + (len(pairs[row]) if pairs is not None else 0) for row, text in enumerate(texts)]
        order = np.argsort(characters, kind="stable")
        group_size = batch_size * BATCHES_PER_GROUP
        groups = [order[start : start + group_size] for start in range(0, len(order), group_size)]
        settings = f"batch_size {batch_size}, max_length {self.max_length}"
        with (
            tqdm(total=len(texts), unit="text", disable=not progress, file=sys.stderr) as bar,
            torch.inference_mode(),
            stop_when_out_of_memory(self.device, settings, "Lower --batch_size (or --max_length)."),
        ):
            for group, batches in zip(groups, self.tokenized_groups(texts, pairs, groups, batch_size), strict=True):
                for rows, batch in batches:
                    check_interrupt()  # a Ctrl-C that Python dropped (finetune.cli.remembered_interrupts)
                    output = self.model(**{name: tensor.to(self.device) for name, tensor in batch.items()}).logits
                    logits.add(rows, output.double().cpu().numpy())
                bar.update(len(group))
        scores = torch.from_numpy(logits.result())
        return (torch.sigmoid(scores) if self.multi_label else torch.softmax(scores, -1)).numpy()

    def tokenized_groups(self, texts: list[str], pairs: list[str] | None, groups: list[np.ndarray], batch_size: int):
        """Each group's batches, the next group tokenized in a background thread while the caller runs this one.
        A single group (the few texts a server gathers) is tokenized here, without a thread to start and join."""
        if len(groups) <= 1:
            yield from (self.batches(texts, pairs, group, batch_size) for group in groups)
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="finetune-tokenize") as tokenizing:
            upcoming = tokenizing.submit(self.batches, texts, pairs, groups[0], batch_size)
            for index in range(len(groups)):
                batches = upcoming.result()
                if index + 1 < len(groups):
                    upcoming = tokenizing.submit(self.batches, texts, pairs, groups[index + 1], batch_size)
                yield batches

    def batches(
        self, texts: list[str], pairs: list[str] | None, rows: np.ndarray, batch_size: int
    ) -> list[tuple[np.ndarray, dict[str, torch.Tensor]]]:
        """The given rows of texts tokenized (each text's windows with long_text windows), sorted by token length
        and padded: (the text row of each window, model inputs) per batch."""
        group_pairs = [pairs[row] for row in rows] if pairs is not None else None
        encoded, windows = self.encode_as_read([texts[row] for row in rows], group_pairs)
        owners = rows if windows is None else rows[windows]
        lengths = np.array([len(ids) for ids in encoded["input_ids"]])
        order = np.argsort(lengths, kind="stable")
        batches = []
        for members in padding_bounded_batches(lengths[order], batch_size):
            members = order[members]
            batch = self.pad({name: [column[member] for member in members] for name, column in encoded.items()})
            batches.append((owners[members], batch))
        return batches

    def encode_as_read(
        self, texts: list[str], pairs: list[str] | None = None
    ) -> tuple[dict[str, list[list[int]]], np.ndarray | None]:
        """The model inputs as the model reads the texts, not padded: each one truncated (and None), or with
        long_text windows every window of each (and the index of each window's text)."""
        if self.window_stride is None:
            return self.encode(texts, pairs), None
        return encode_windows(self.tokenizer, texts, pairs, self.max_length, self.window_stride)

    def encode(self, texts: list[str], pairs: list[str] | None = None) -> dict[str, list[list[int]]]:
        """The model inputs of each text, truncated to max_length, not padded (see finetune.data.encode)."""
        return encode(self.tokenizer, texts, pairs, self.max_length)

    def pad(self, columns: dict[str, list[list[int]]]) -> dict[str, torch.Tensor]:
        """Pads each column (input_ids, attention_mask, ...) of a batch to its longest row, on the tokenizer's
        padding side. One masked assignment per column: many times faster than ``tokenizer.pad``, which shows in
        the prediction time of a model as cheap as TextCNN."""
        lengths = np.array([len(row) for row in columns["input_ids"]])
        length = int(lengths.max())
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        positions = np.arange(length)
        if self.tokenizer.padding_side == "left":
            filled = positions >= (length - lengths)[:, None]
        else:
            filled = positions < lengths[:, None]
        batch = {}
        for name, rows in columns.items():
            array = np.full((len(rows), length), self.tokenizer.pad_token_id if name == "input_ids" else 0)
            array[filled] = np.fromiter(
                itertools.chain.from_iterable(rows), dtype=array.dtype, count=int(lengths.sum())
            )
            batch[name] = torch.from_numpy(array)
        return batch


def set_pad_token(tokenizer: PreTrainedTokenizerBase, network, model_dir: Path) -> None:
    """A batch of texts needs a pad token, and a decoder its id in the config to find each row's last real token.
    A model trained here has both; another one (a decoder's classifier from elsewhere) pads with its eos token."""
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.pad_token_id is None:
        raise UserError(
            f"{model_dir}: the tokenizer has neither a pad token nor an eos token to pad with, so texts of different "
            "lengths cannot share a batch. Set pad_token in tokenizer_config.json (and pad_token_id in config.json), "
            "or train the model with finetune train, which adds one."
        )
    config = network.config
    if getattr(config, "model_type", None) != "textcnn" and getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id


def padding_bounded_batches(sorted_lengths: np.ndarray, batch_size: int) -> list[slice]:
    """Consecutive runs of texts sorted by length, each at most ``batch_size`` long and cut early where padding
    to the run's longest text would more than double the positions computed (``PADDING_SLACK`` tokens spared).

    Among thousands of texts sorted together the cut seldom happens; among the few texts a server gathers (short
    and long reviews mixed) it spares most of the padding, which costs as much as text in a TextCNN or BERT forward.
    """
    runs, start, real = [], 0, 0
    for index, length in enumerate(sorted_lengths.tolist()):
        rows = index - start + 1
        if rows > batch_size or rows * length > 2 * (real + length) + PADDING_SLACK:
            runs.append(slice(start, index))
            start, real = index, 0
        real += length
    if start < len(sorted_lengths):
        runs.append(slice(start, len(sorted_lengths)))
    return runs


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options predict and evaluate share: which model, where it runs, how texts are cut."""
    parser.add_argument(
        "--model",
        required=True,
        help="a run's output_dir (its best checkpoint, named in best.json), a best/ or checkpoint-N folder, "
        "any save_pretrained directory, or a finetune export directory (run by ONNX Runtime)",
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available, else cpu)")
    parser.add_argument("--batch_size", type=int, default=64, help="texts per forward pass (default: 64)")
    parser.add_argument(
        "--max_length",
        type=int,
        help="tokens kept per text (default: the run's max_length, else the tokenizer's, at most 512)",
    )
    parser.add_argument(
        "--long_text",
        choices=("truncate", "windows"),
        help="a text longer than max_length: truncate it, or read it whole in overlapping windows whose logits "
        "are averaged (multi-label: their maximum). Default: the run's long_text",
    )
    parser.add_argument(
        "--window_stride", type=int, help="windows: tokens consecutive windows share (default: the run's)"
    )
    parser.add_argument("--text_column", help="column holding the text (default: the run's, else 'text')")
    parser.add_argument("--text_pair_column", help="second text column of a sentence-pair model (default: the run's)")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune predict",
        description="Classify the texts of a file (or stdin) with a trained model; output rows follow input order.",
        epilog="Example: finetune predict --model outputs/textcnn --input reviews.txt --output predictions.csv",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--input",
        required=True,
        help="csv, tsv, json, jsonl, parquet, or txt (one text a line); '-' reads standard input (txt by default)",
    )
    parser.add_argument(
        "--input_format", choices=sorted(set(FORMATS.values())), help="format of --input (default: its extension)"
    )
    parser.add_argument("--output", help="a .jsonl, .csv or .tsv file (default: jsonl on standard output)")
    parser.add_argument(
        "--top_k",
        type=parse_top_k,
        default=1,
        help="also list the N most likely labels with their scores (top_k), or 'all' (or 0) for every label's "
        "probability (probabilities). Default: 1, the predicted label and its score only",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    output_format(args.output)  # an unsupported extension or an unwritable path fails before the model is loaded
    if args.output and args.output != "-":
        writable_file(args.output)
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be positive, got {args.batch_size}.")
    shards = Shards(args.device)  # under accelerate launch: this process's share of the chunks (finetune/shards.py)
    shards.check_input(args.input)
    classifier = Classifier.load(
        args.model, args.device or shards.device, args.max_length, args.long_text, args.window_stride
    )
    text_column = args.text_column or classifier.text_column
    pair_column = args.text_pair_column or classifier.text_pair_column
    text_columns = [text_column, pair_column] if pair_column else [text_column]
    started, count = time.monotonic(), 0
    writer = RowWriter(args.output) if shards.is_main else None
    complete = False
    try:
        with tqdm(unit="text", disable=args.input == "-" or not shards.is_main, file=sys.stderr) as bar:
            for group, records in shards.rounds(chunks(read_texts(args.input, text_columns, args.input_format))):
                probabilities = None
                if records:
                    texts = [record[text_column] for record in records]
                    pairs = [record[pair_column] for record in records] if pair_column else None
                    probabilities = classifier.probabilities(texts, pairs, args.batch_size)
                gathered = shards.gather(probabilities)
                if writer is not None:
                    for chunk, chunk_probabilities in zip(group, gathered, strict=False):
                        added, predictions = prediction_columns(
                            chunk_probabilities, classifier.id2label, args.top_k, classifier.threshold
                        )
                        writer.write(merge_rows(chunk, predictions, added))
                        bar.update(len(chunk))
                count += sum(map(len, group))
        if not count:
            raise UserError(f"{args.input} holds no texts.")
        complete = True
    finally:
        if writer is not None:
            writer.close(complete)
    shards.close()
    if shards.is_main:
        seconds = time.monotonic() - started
        where = f" to {args.output}" if args.output and args.output != "-" else ""
        processes = f" by {shards.size} processes" if shards.size > 1 else ""
        print(
            f"predicted {count} rows{where}{processes} in {seconds:.1f} s ({count / seconds:.0f} rows/s)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    from finetune.cli import run_command

    sys.exit(run_command(main, sys.argv[1:]))
