"""Export a trained model to ONNX, for ONNX Runtime and for ``finetune predict`` / ``evaluate`` / ``serve``.

    finetune export --model outputs/textcnn --output exported/textcnn
    finetune export --model outputs/bert --output exported/bert-int8 --quantize int8 \\
        --check_file data/chinese_sentiment/test.jsonl

The directory holds ``model.onnx`` (inputs input_ids, attention_mask and token_type_ids where the model takes them,
dynamic batch and sequence axes; output logits), the tokenizer files, ``config.json`` with the label maps (and a
multi-label model's threshold), the run's ``finetune_args.json`` (max_length, text columns) and the manifest
``export.json``. TextCNN and BERT-family encoders go through the same exporter, ``torch.onnx.export`` (torch.export
and onnxscript); optimum's ONNX exporter would cover the encoders, but its releases require transformers 4.

Every export is checked before it is kept: the PyTorch model and ONNX Runtime score the same batches (random token
ids of many lengths, and the texts of ``--check_file`` when given) and an fp32 graph whose logits differ by more
than ``--tolerance`` is not written. ``--quantize int8`` applies ONNX Runtime's dynamic quantization to the MatMul
weights (activations quantized per batch) and reports how far its logits, labels and accuracy move from PyTorch's.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from finetune.checkpoints import ARGS_FILE, run_arguments
from finetune.cli import check_interrupt
from finetune.data.windows import reduction, texts_of_windows
from finetune.errors import UserError
from finetune.files import file_sha256, write_json_atomically
from finetune.metrics import DEFAULT_THRESHOLD
from finetune.onnx_model import MANIFEST_FILE, ONNX_FILE, OnnxClassifier
from finetune.predict import Classifier
from finetune.rows import chunks, read_texts

OPSET = 18
TOLERANCE = 1e-4
RANDOM_CHECK_ROWS = 32
# Largest graph kept in one protobuf file (its limit is 2 GB); a larger model keeps its weights in model.onnx.data.
SINGLE_FILE_BYTES = 1_500_000_000


class LogitsOnly(torch.nn.Module):
    """The classifier with positional tensor inputs and the logits as its one output, as the exporter wants it."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.model, self.input_names = model, input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs, strict=True))).logits


def export_graph(classifier: Classifier, path: Path, opset: int = OPSET) -> list[str]:
    """Writes the classifier's graph to ``path`` with dynamic batch and sequence axes; returns its input names."""
    # Two texts of different lengths: the exporter treats a dimension of size 1 as a constant.
    sample = classifier.pad(
        classifier.encode(["示例文本 sample text", "这是另一条更长一些的示例文本 another sample text"])
    )
    input_names = list(sample)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    model = classifier.model.float().eval()
    large = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters()) > SINGLE_FILE_BYTES
    # The exporter reports its steps on stdout, warns about axis names it merges (batch and sequence are shared
    # by all inputs, as intended), and torch.export about its own use of a deprecated pytree class.
    with contextlib.redirect_stdout(sys.stderr), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        torch.onnx.export(
            LogitsOnly(model, input_names),
            tuple(sample[name] for name in input_names),
            str(path),
            input_names=input_names,
            output_names=["logits"],
            dynamic_shapes=(tuple({0: batch, 1: sequence} for _ in input_names),),
            opset_version=opset,
            dynamo=True,
            external_data=large,
        )
    return input_names


def quantize_int8(source: Path, target: Path) -> None:
    """ONNX Runtime's dynamic quantization of the MatMul weights (int8, one scale per output channel); activations
    are quantized per batch. Embeddings (Gather) and convolutions stay fp32: on the CPUs measured, quantized they
    were slower (dequantized on every call, or a slower integer convolution) and moved more labels."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it advises its pre-processing on every call; that pass made no difference here
    try:
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True
        )
    finally:
        root.setLevel(level)


@dataclass
class Agreement:
    """How the ONNX model's outputs compare with PyTorch's over the rows checked."""

    rows: int = 0
    max_abs_logit_difference: float = 0.0
    same_labels: int = 0
    labelled: int = 0
    correct: dict[str, int] = field(default_factory=lambda: {"pytorch": 0, "onnxruntime": 0})

    def add(self, reference: np.ndarray, exported: np.ndarray, threshold: float | None, labels=None) -> None:
        self.rows += len(reference)
        self.max_abs_logit_difference = max(self.max_abs_logit_difference, float(np.abs(reference - exported).max()))
        if threshold is None:
            predicted = {"pytorch": reference.argmax(-1), "onnxruntime": exported.argmax(-1)}
            self.same_labels += int((predicted["pytorch"] == predicted["onnxruntime"]).sum())
            if labels is not None:
                self.labelled += len(labels)
                for name, values in predicted.items():
                    self.correct[name] += int((values == labels).sum())
        else:  # multi-label: a row agrees when the same set of labels is over the threshold
            threshold = min(max(threshold, 1e-12), 1 - 1e-12)
            logit = float(np.log(threshold / (1 - threshold)))
            self.same_labels += int(((reference > logit) == (exported > logit)).all(-1).sum())

    def summary(self) -> dict:
        result = {
            "rows": self.rows,
            "max_abs_logit_difference": self.max_abs_logit_difference,
            "same_labels": self.same_labels,
        }
        if self.labelled:
            result["accuracy"] = {name: count / self.labelled for name, count in self.correct.items()}
        return result


def random_batches(classifier: Classifier, rows: int = RANDOM_CHECK_ROWS, seed: int = 0):
    """Batches of random token ids, one row per length from 2 to max_length, right-padded as predict pads."""
    generator = np.random.default_rng(seed)
    vocabulary = len(classifier.tokenizer)
    lengths = np.linspace(2, classifier.max_length, num=rows).astype(int)
    for start in range(0, rows, 8):
        ids = [generator.integers(0, vocabulary, size=length).tolist() for length in lengths[start : start + 8]]
        columns = {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]}
        if "token_type_ids" in classifier.tokenizer.model_input_names:
            columns["token_type_ids"] = [[0] * len(row) for row in ids]
        yield classifier.pad(columns), None, None


def file_batches(classifier: Classifier, path: str, batch_size: int):
    """The texts of a file in predict's batches, with their label ids when the file has a known label column; a
    model that reads long texts in windows gets every window, and each window's text in the batch."""
    label2id = classifier.label2id
    text_column, pair_column = classifier.text_column, classifier.text_pair_column
    records = read_texts(path, [text_column, pair_column] if pair_column else [text_column])
    for chunk in chunks(records, batch_size):
        labels = [str(record.get(classifier.label_column, "")).strip() for record in chunk]
        known = not classifier.multi_label and all(label in label2id for label in labels)
        encoded, owners = classifier.encode_as_read(
            [record[text_column] for record in chunk],
            [record[pair_column] for record in chunk] if pair_column else None,
        )
        yield classifier.pad(encoded), np.array([label2id[label] for label in labels]) if known else None, owners


def compare(classifier: Classifier, exported: OnnxClassifier, batches) -> Agreement:
    """The logits of both models on the batches, a text's windows averaged as predict averages them."""
    agreement = Agreement()
    with torch.inference_mode():
        for batch, labels, owners in batches:
            check_interrupt()  # a Ctrl-C that Python dropped (finetune.cli.remembered_interrupts)
            reference = classifier.model(**batch).logits.double().numpy()
            logits = exported(**batch).logits.double().numpy()
            if owners is not None:
                reference, logits = (
                    texts_of_windows(values, None, owners, reduction(classifier.multi_label))[0]
                    for values in (reference, logits)
                )
            agreement.add(reference, logits, classifier.threshold, labels)
    return agreement


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="finetune export",
        description="Export a trained model to ONNX (model.onnx with the tokenizer and label maps) and check it "
        "against PyTorch; predict, evaluate and serve take the directory as --model.",
        epilog="Example: finetune export --model outputs/textcnn --output exported/textcnn --quantize int8",
    )
    parser.add_argument("--model", required=True, help="a run's output_dir, best/, checkpoint-N or model directory")
    parser.add_argument("--output", required=True, help="the export directory to write")
    parser.add_argument(
        "--quantize", choices=["int8"], help="int8: ONNX Runtime dynamic quantization (default: fp32 weights)"
    )
    parser.add_argument(
        "--check_file",
        help="also compare PyTorch and ONNX Runtime on this file's texts (and accuracy, where it has labels)",
    )
    parser.add_argument("--batch_size", type=int, default=64, help="texts per batch in the check (default: 64)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        help=f"largest logit difference an fp32 export may show against PyTorch (default: {TOLERANCE})",
    )
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset version (default: {OPSET})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    output = Path(args.output)
    if output.exists() and not (output.is_dir() and not any(output.iterdir())) and not args.overwrite:
        raise UserError(f"--output {output} exists; pass --overwrite to replace it, or name another directory.")
    if args.check_file and not Path(args.check_file).is_file():
        raise UserError(f"--check_file {args.check_file} does not exist.")
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise UserError(f"finetune export needs {error.name} (pip install 'finetune[deploy]').") from None
    classifier = Classifier.load(args.model, device="cpu")
    if classifier.backend != "pytorch":
        raise UserError(f"--model {args.model} is already an ONNX export; pass the run or checkpoint it came from.")

    staging = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        checks = write_export(classifier, staging, args)
        replace_directory(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = sum(path.stat().st_size for path in output.glob(f"{ONNX_FILE}*")) / 1e6
    print(f"exported {classifier.model_dir} to {output}/{ONNX_FILE} ({size:.1f} MB, {args.quantize or 'fp32'})")
    for name, check in checks.items():
        line = (
            f"  {name}: {check['rows']} rows, max |logit difference| {check['max_abs_logit_difference']:.2e}, "
            f"same labels {check['same_labels']}/{check['rows']}"
        )
        if "accuracy" in check:
            line += (
                f", accuracy PyTorch {check['accuracy']['pytorch']:.4f}, ONNX {check['accuracy']['onnxruntime']:.4f}"
            )
        print(line)
    return 0


def write_export(classifier: Classifier, directory: Path, args) -> dict:
    """Writes the export into ``directory`` and returns the checks against PyTorch (fails on an fp32 mismatch)."""
    fp32 = directory / (f"fp32-{ONNX_FILE}" if args.quantize else ONNX_FILE)
    input_names = export_graph(classifier, fp32, args.opset)
    check_interrupt()  # one dropped while the graph was traced
    if args.quantize:
        quantize_int8(fp32, directory / ONNX_FILE)
        for path in directory.glob(f"{fp32.name}*"):
            path.unlink()
    classifier.tokenizer.save_pretrained(directory)
    classifier.model.config.save_pretrained(directory)
    arguments = run_arguments(classifier.model_dir)
    arguments.setdefault("data", {})["max_length"] = classifier.max_length
    write_json_atomically(directory / ARGS_FILE, arguments)
    manifest = {
        "format": "onnx",
        "model_file": ONNX_FILE,
        "source": str(classifier.model_dir),
        "quantize": args.quantize,
        "opset": args.opset,
        "inputs": input_names,
        "outputs": ["logits"],
        "dynamic_axes": {"batch": 0, "sequence": 1},
        "labels": [classifier.id2label[index] for index in range(len(classifier.id2label))],
        "problem_type": classifier.model.config.problem_type,
        "max_length": classifier.max_length,
        "model_sha256": file_sha256(directory / ONNX_FILE),
        "versions": library_versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if classifier.multi_label:
        manifest["threshold"] = getattr(classifier.model.config, "threshold", DEFAULT_THRESHOLD)
    write_json_atomically(directory / MANIFEST_FILE, manifest)

    exported = OnnxClassifier(directory, torch.device("cpu"))
    checks = {"random token ids": compare(classifier, exported, random_batches(classifier)).summary()}
    if args.check_file:
        checks[args.check_file] = compare(
            classifier, exported, file_batches(classifier, args.check_file, args.batch_size)
        ).summary()
    worst = max(check["max_abs_logit_difference"] for check in checks.values())
    if not args.quantize and worst > args.tolerance:
        raise UserError(
            f"The ONNX graph's logits differ from PyTorch's by up to {worst:.2e} (--tolerance {args.tolerance}); "
            "the export was not written. Try another --opset, or report the model's config."
        )
    manifest["checks"] = checks
    write_json_atomically(directory / MANIFEST_FILE, manifest)
    return checks


def replace_directory(new: Path, target: Path) -> None:
    """Moves ``new`` to ``target``; an existing target is moved aside first and removed only once ``new`` is in."""
    aside = target.with_name(f".{target.name}.{os.getpid()}.old")
    if target.exists():
        target.rename(aside)
    new.rename(target)
    shutil.rmtree(aside, ignore_errors=True)


def library_versions() -> dict:
    import onnx
    import onnxruntime
    import transformers

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


if __name__ == "__main__":
    from finetune.cli import run_command

    sys.exit(run_command(main, sys.argv[1:]))
