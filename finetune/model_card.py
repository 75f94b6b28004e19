"""The model card of a run's best checkpoint, best/README.md, in the Hugging Face layout: YAML metadata, then
the model, its uses, the data (files and their sha256), the hyperparameters, the training results and the
eval / test metrics. Training writes it at the end of every run, once the test metrics are known.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from transformers.modelcard import extract_hyperparameters_from_trainer, make_markdown_table, parse_log_history

from finetune.baseline import BASELINE_FILE, SPLIT_NAMES, comparison
from finetune.config import EVAL_METRICS, DataArguments, ModelArguments, TrainingArguments
from finetune.files import file_sha256

CARD_FILE = "README.md"


def metric_lines(metrics: dict, prefix: str) -> list[str]:
    """``- Accuracy: 0.9200`` lines for the quality metrics with the given prefix (eval or test)."""
    lines = []
    for name in EVAL_METRICS:
        value = metrics.get(f"{prefix}_{name}")
        if value is not None:
            lines.append(f"- {name.replace('_', ' ').capitalize()}: {value:.4f}")
    return lines


def base_model_id(model_args: ModelArguments) -> str | None:
    """The hub id of the pretrained model, for the metadata; None for TextCNN, local directories and packages."""
    name = model_args.model_name_or_path
    if model_args.model_type != "pretrained" or not name or name.startswith("package:") or Path(name).exists():
        return None
    return name


def data_table(data_args: DataArguments, metrics: dict) -> str:
    if data_args.dataset_name:
        config = f" (configuration {data_args.dataset_config_name})" if data_args.dataset_config_name else ""
        return f"The dataset `{data_args.dataset_name}`{config}, from `datasets.load_dataset`.\n"
    rows = ["| split | file | examples | sha256 |", "|:--|:--|--:|:--|"]
    files = (
        ("train", data_args.train_file, "train_samples"),
        ("validation", data_args.validation_file, "eval_samples"),
        ("test", data_args.test_file, "test_samples"),
    )
    for split, path, count in files:
        if path:
            rows.append(f"| {split} | `{path}` | {metrics.get(count, '')} | `{file_sha256(path)}` |")
    if not data_args.validation_file:
        rows.append(
            f"| validation | {data_args.validation_split_percentage}% of the training file, held out (seeded) | "
            f"{metrics.get('eval_samples', '')} | |"
        )
    return "\n".join(rows) + "\n"


def vocabulary_origin(model_args: ModelArguments) -> str:
    if model_args.model_name_or_path:
        return f"kept from `{model_args.model_name_or_path}`"
    origin = "built from the training texts"
    if model_args.pretrained_embeddings:
        origin += f", embeddings initialised from the vectors in `{model_args.pretrained_embeddings}`"
        origin += " and kept frozen" if model_args.freeze_embeddings else ""
    return origin


def without_package_lines(best_dir: Path) -> list[str]:
    """How to load a TextCNN where this package is not installed: its code is saved beside the weights."""
    return [
        "Without the finetune package (transformers and torch only), the model's code comes from `textcnn.py` "
        "beside the weights. transformers runs it only when you allow it with `trust_remote_code`, which is off "
        "by default: read the file first, and allow it only for a folder you trust.",
        "",
        "```python",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline",
        "",
        "allow_code = False  # True once you have read textcnn.py in the folder",
        f'model = AutoModelForSequenceClassification.from_pretrained("{best_dir}", trust_remote_code=allow_code)',
        f'tokenizer = AutoTokenizer.from_pretrained("{best_dir}", trust_remote_code=allow_code)',
        'classifier = pipeline("text-classification", model=model, tokenizer=tokenizer)',
        "```",
        "",
    ]


def model_description(trainer, model_args: ModelArguments, data_args: DataArguments) -> str:
    config = trainer.model.config
    labels = ", ".join(f"{index} `{label}`" for index, label in sorted(config.id2label.items()))
    if model_args.model_type == "textcnn":
        architecture = (
            f"A TextCNN (`TextCNNForSequenceClassification` of the finetune package): {config.embedding_dim}-dimensional "
            f"embeddings of a {model_args.tokenizer_level}-level vocabulary of {config.vocab_size} tokens "
            + vocabulary_origin(model_args)
            + (
                f" plus hashed embeddings of its {config.ngram_sizes}-grams ({config.ngram_buckets} buckets)"
                if config.ngram_buckets
                else ""
            )
            + f", {config.num_filters} filters for each kernel size {config.kernel_sizes}, max over "
            f"time, dropout {config.dropout}, and a linear classifier"
            + (
                f"; beside it a linear classifier of the text's hashed {config.wide_ngram_sizes}-grams "
                f"({config.wide_ngram_buckets} buckets), whose logits are added."
                if config.wide_ngram_buckets
                else "."
            )
        )
    else:
        architecture = (
            f"`{type(trainer.model).__name__}`: the pretrained encoder `{model_args.model_name_or_path}` with "
            + (
                "its classification head kept"
                if getattr(trainer.model, "head_kept", False)
                else "a new classification head"
            )
            + ", fine-tuned as a whole."
        )
    return (
        f"{architecture}\n\n"
        f"- Labels (id and name): {labels}\n"
        f"- Parameters: {trainer.model.num_parameters():,}\n"
        f"- Input: the `{data_args.text_column}` column"
        + (f" with `{data_args.text_pair_column}` as the second text" if data_args.text_pair_column else "")
        + f", at most {data_args.max_length} tokens (truncated on the {data_args.truncation_side})\n"
    )


def build_model_card(
    trainer,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    best: dict,
    metrics: dict,
    baseline: dict | None = None,
) -> str:
    """The card's text.

    Args:
        trainer: The Trainer after training, for the model, the hyperparameters and the log history.
        best: The run's best.json.
        metrics: The run's results, as written to all_results.json (train_, eval_ and test_ keys).
        baseline: The run's baseline_results.json, when the run fitted the baseline.
    """
    output_dir = Path(training_args.output_dir)
    name = output_dir.name
    base_model = base_model_id(model_args)
    metadata = {
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["finetune", model_args.model_type, "text-classification", "generated_from_trainer"],
    }
    if base_model:
        metadata["base_model"] = base_model
    metadata["metrics"] = [name for name in EVAL_METRICS if not name.endswith("loss")]

    if model_args.model_type == "textcnn" and model_args.model_name_or_path:
        origin = f"a TextCNN trained further from `{model_args.model_name_or_path}`"
    elif model_args.model_type == "textcnn":
        origin = "a TextCNN trained from scratch" + (
            f" with embeddings from `{model_args.pretrained_embeddings}`" if model_args.pretrained_embeddings else ""
        )
    else:
        origin = f"a fine-tuned version of `{model_args.model_name_or_path}`"
    data = f"`{data_args.train_file}`" if data_args.train_file else f"the `{data_args.dataset_name}` dataset"
    card = ["---", yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True).strip(), "---", "", f"# {name}", ""]
    card.append(f"This model is {origin} on {data}.")
    checkpoint = f", {best['checkpoint']}" if best.get("checkpoint") else ""
    card += ["", f"It achieves the following results on the evaluation set (the best checkpoint{checkpoint}):"]
    card += metric_lines(metrics, "eval")
    if any(key.startswith("test_") for key in metrics):
        card += ["", f"and on the test set (`{data_args.test_file or 'test'}`):", *metric_lines(metrics, "test")]
    if baseline:
        compared = [f"{name}: {text}" for split, name in SPLIT_NAMES if (text := comparison(metrics, baseline, split))]
        card += [
            "",
            f"Beside it, {baseline['model']} (C {baseline['C']:g}) fitted on the same training rows scores "
            f"{'; '.join(compared)} (accuracy; `{BASELINE_FILE}` in the run's folder has the rest).",
        ]

    import_line = (
        "import finetune  # registers TextCNN with the Auto classes\n" if model_args.model_type == "textcnn" else ""
    )
    card += [
        "",
        "## Model description",
        "",
        model_description(trainer, model_args, data_args),
        "## Intended uses & limitations",
        "",
        "Classifying texts like the training data into the labels above. It has been evaluated only on the data "
        "below. In Python:",
        "",
        "```python",
        f"{import_line}from transformers import pipeline",
        "",
        f'classifier = pipeline("text-classification", model="{output_dir}")  # the run\'s best model',
        "```",
        "",
        *(without_package_lines(output_dir / best.get("best_dir", "best")) if import_line else []),
        "or from the command line:",
        "",
        "```bash",
        f"finetune predict --model {output_dir} --input texts.txt --output predictions.jsonl",
        f"finetune evaluate --model {output_dir} --test_file test.jsonl",
        "```",
        "",
        "## Training and evaluation data",
        "",
        data_table(data_args, metrics),
        "## Training procedure",
        "",
        "### Training hyperparameters",
        "",
        "The following hyperparameters were used during training:",
    ]
    hyperparameters = extract_hyperparameters_from_trainer(trainer)
    hyperparameters["max_length"] = data_args.max_length
    hyperparameters["metric_for_best_model"] = training_args.metric_for_best_model
    if (
        model_args.model_type == "pretrained"
    ):  # at most this many unknown words of the training texts become new tokens
        hyperparameters["extend_vocabulary"] = model_args.extend_vocabulary
        if model_args.encoder_dropout is not None:
            hyperparameters["encoder_dropout"] = model_args.encoder_dropout
    hyperparameters["min_frequency"] = model_args.min_frequency  # of a TextCNN vocabulary, or of the words added
    if training_args.early_stopping_patience is not None:
        hyperparameters["early_stopping_patience"] = training_args.early_stopping_patience
    if training_args.class_weights is not None:  # on the training loss only
        hyperparameters["class_weights"] = training_args.class_weights
    if trainer.model.config.problem_type == "multi_label_classification":
        hyperparameters["problem_type"] = "multi_label_classification"
        hyperparameters["threshold"] = f"{trainer.model.config.threshold:.4g} ({training_args.threshold})"
    card += [f"- {key}: {value}" for key, value in hyperparameters.items()]
    table = training_results_table(trainer.state.log_history)
    if table:
        card += ["", "### Training results", "", table]
    card += ["", "### Framework versions", "", *framework_versions(), ""]
    return "\n".join(card)


def training_results_table(log_history: list[dict]) -> str:
    """The evaluations of the log history as a markdown table (transformers' layout), or "" without any.

    transformers takes the header from the first row and each row's cells in its own key order; after a resume
    the entries read back from trainer_state.json have their keys sorted and the new ones do not, so every row
    is put in the header's order first.
    """
    _, lines, _ = parse_log_history(log_history)
    if not lines:
        return ""
    columns = list(lines[0])
    return make_markdown_table([{column: line.get(column, "") for column in columns} for line in lines]).rstrip()


def framework_versions() -> list[str]:
    import datasets
    import tokenizers
    import torch
    import transformers

    from finetune import __version__

    return [
        f"- finetune {__version__}",
        f"- Transformers {transformers.__version__}",
        f"- Pytorch {torch.__version__}",
        f"- Datasets {datasets.__version__}",
        f"- Tokenizers {tokenizers.__version__}",
    ]


def write_model_card(
    best_dir: str | Path,
    trainer,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    best: dict,
    metrics: dict,
    baseline: dict | None = None,
) -> Path:
    """Writes best/README.md; see ``build_model_card``."""
    path = Path(best_dir) / CARD_FILE
    card = build_model_card(trainer, model_args, data_args, training_args, best, metrics, baseline)
    path.write_text(card, encoding="utf-8")
    return path
