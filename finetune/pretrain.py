"""Continued masked-language-model pretraining of a BERT-family encoder on your own texts.

    finetune pretrain --config configs/pretrain.yaml
    python finetune/pretrain.py --config configs/pretrain.yaml --num_train_epochs 1
    accelerate launch --multi_gpu --num_processes 2 finetune/pretrain.py --config configs/pretrain.yaml

Keeps training the encoder with its masked-language-model loss on unlabelled text of the domain before it is
fine-tuned (domain- and task-adaptive pretraining): new tokens that ``extend_vocabulary`` adds start untrained and
learn here from every text instead of from a few thousand labelled ones. Any file format ``finetune train`` reads
works (labels are ignored; a ``.txt`` file is one text a line, or ``text<TAB>label``). Each row is one example,
truncated to ``max_length``. Masking is DataCollatorForLanguageModeling's: ``mlm_probability`` of the tokens, of
which 80% become [MASK], 10% a random token and 10% stay. BERT-family tokenizers make each CJK character a token
of its own, so for Chinese this is whole-character masking; whole-word masking would need a word segmenter.

The outputs are those of ``finetune train``: checkpoint-N/, best/ (by eval loss on the validation file or a
held-out share of the training texts), best.json, the result files (with the perplexity), curves.png, and
``--resume``. ``best/`` holds the encoder with its masked-language-model head and the (extended) tokenizer:
give it as ``model_name_or_path`` to ``finetune train`` (with ``extend_vocabulary: 0``; the tokens are in it).
"""

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # as in train.py: `import finetune` from a checkout

import json
import logging
import math
from dataclasses import asdict, dataclass, field

import torch
from datasets import Dataset, Features, Value
from transformers import AutoModel, AutoModelForMaskedLM, DataCollatorForLanguageModeling, set_seed

from finetune import cache
from finetune.checkpoints import (
    BEST_DIR,
    BEST_FILE,
    resolve_resume,
    stop_when_disk_full,
)
from finetune.cli import progress_bars, run_command
from finetune.config import TrainingArguments
from finetune.data.keys import content_hash, tokenizer_identity
from finetune.errors import UserError
from finetune.files import file_sha256, write_json_atomically
from finetune.models.bert import extend_vocabulary, load_pretrained_tokenizer, resolve_model_path
from finetune.parsing import make_parser, parse_args
from finetune.report import plot_curves, read_history
from finetune.rows import read_texts
from finetune.train import INTERRUPTED_HINT as INTERRUPTED_HINT  # Ctrl-C: cli.run_command says how to go on
from finetune.train import clear_previous_run, make_trainer, save_best, setup_logging
from finetune.trainer import ClassifierTrainer

logger = logging.getLogger("finetune")

TEXT = "text"
BATCH_ROWS = 10_000  # rows per generator batch and per tokenizing call


@dataclass
class PretrainArguments:
    """The encoder, its vocabulary, the texts and the masking."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A BERT-family model directory, hub id (online) or package:NAME, as for finetune train."},
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "A tokenizer other than the model's."})
    cache_dir: str | None = field(
        default=None,
        metadata={
            "help": "Where downloaded models are stored; the texts and tokens too unless data_cache_dir is set."
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Run modeling code shipped with a hub model."})
    extend_vocabulary: int = field(
        default=0,
        metadata={"help": "Add up to N of the training texts' most frequent [UNK] words (Chinese: characters) first."},
    )
    min_frequency: int = field(default=2, metadata={"help": "extend_vocabulary: times a word must be seen."})
    train_file: str | None = field(default=None, metadata={"help": "The texts (csv, tsv, json, jsonl, parquet, txt)."})
    validation_file: str | None = field(default=None, metadata={"help": "Texts for the eval loss (else held out)."})
    validation_split_percentage: int = field(
        default=5, metadata={"help": "Share of the training texts held out (seeded) without a validation_file."}
    )
    text_column: str = field(default=TEXT, metadata={"help": "Column that holds the text."})
    max_length: int = field(default=128, metadata={"help": "Tokens kept per text; longer texts are truncated."})
    mlm_probability: float = field(default=0.15, metadata={"help": "Share of the tokens masked for the loss."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training texts."})
    data_cache_dir: str | None = field(
        default=None, metadata={"help": "Where the texts and tokens are cached (default: cache_dir, else datasets')."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenizing."})

    def __post_init__(self):
        if not self.model_name_or_path or not self.train_file:
            raise UserError("finetune pretrain needs model_name_or_path (the encoder) and train_file (the texts).")
        if not 0 < self.mlm_probability < 1:
            raise UserError(f"mlm_probability must be between 0 and 1, got {self.mlm_probability}.")
        if not self.validation_file and not 0 < self.validation_split_percentage < 100:
            raise UserError("validation_split_percentage must be between 1 and 99 without a validation_file.")


def text_rows(path: str, column: str, sha256: str, limit: int | None):
    """The texts of a file as generator rows (``sha256`` only keys the datasets cache to the file's content)."""
    for count, (_, record) in enumerate(read_texts(path, [column])):
        if limit is not None and count >= limit:
            return
        yield {TEXT: record[column]}


def read_text_file(path: str, args: PretrainArguments, limit: int | None = None) -> Dataset:
    """A file's texts as an Arrow dataset in the cache, written in batches as they are read."""
    if not Path(path).is_file():
        raise UserError(f"{path} does not exist.")
    arguments = {"path": str(Path(path).resolve()), "column": args.text_column, "sha256": file_sha256(path)}
    return Dataset.from_generator(
        text_rows,
        gen_kwargs={**arguments, "limit": limit},
        features=Features({TEXT: Value("string")}),
        cache_dir=str(cache.cache_directory(args.data_cache_dir) / "pretrain"),
        writer_batch_size=BATCH_ROWS,
    )


def tokenize(dataset: Dataset, tokenizer, args: PretrainArguments, split: str) -> Dataset:
    def encode(batch):
        return tokenizer(batch[TEXT], truncation=True, max_length=args.max_length, return_special_tokens_mask=True)

    fingerprint = content_hash(dataset._fingerprint, tokenizer_identity(tokenizer), args.max_length, "mlm")
    return dataset.map(
        encode,
        batched=True,
        batch_size=BATCH_ROWS,
        remove_columns=[TEXT],
        num_proc=args.preprocessing_num_workers,
        new_fingerprint=fingerprint,
        desc=f"Tokenizing {split}",
    )


def keep_encoder_parts(model, name: str, args: PretrainArguments) -> None:
    """Puts back the parts of the encoder that a masked-language model leaves out (BERT's pooler, which the
    classification head reads), frozen: best/ then holds the whole encoder for ``finetune train``."""
    base = model.base_model
    # A module left out is an attribute set to None (nn.Module keeps None apart from its submodules).
    missing = [part for part, value in vars(base).items() if value is None and not part.startswith("_")]
    if not missing:
        return
    source = AutoModel.from_pretrained(name, cache_dir=args.cache_dir, trust_remote_code=args.trust_remote_code)
    for part in missing:
        module = getattr(source, part, None)
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False)  # the masked-language-model loss never reaches it
            setattr(base, part, module)
            logger.info("kept the encoder's %s from %s (unchanged by pretraining)", part, args.model_name_or_path)


def prediction_head(model) -> torch.nn.Module | None:
    """The masked-language-model head that maps the encoder's hidden states to the vocabulary: the model's one
    part besides its encoder (BERT's ``cls``, RoBERTa's ``lm_head``, ALBERT's ``predictions``), else None."""
    parts = [module for module in model.children() if module is not model.base_model]
    output_embeddings = model.get_output_embeddings()
    if len(parts) != 1 or not any(module is output_embeddings for module in parts[0].modules()):
        return None
    return parts[0]


class MaskedLMTrainer(ClassifierTrainer):
    """Computes the masked-language-model loss on the masked positions only: the head, a hidden x vocabulary
    matrix (384 x 33,522 for MiniLM with 3,000 added characters, more work per token than its six layers), runs
    on the 15% of the tokens that are masked instead of on all of them. The encoder still reads every token. The
    loss is the mean over the masked tokens, as the model's own; models whose head is not one module of their own
    (DistilBERT) keep the model's loss."""

    loss_is_scaled_for_ga = False  # a mean per batch, as the model's own loss: the Trainer divides it

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.selected = None  # the masked positions of the batch being computed
        head = prediction_head(self.model)
        self.head_hook = head.register_forward_pre_hook(self.keep_selected) if head is not None else None

    def keep_selected(self, head, args):
        if self.selected is None:
            return None
        return (args[0][self.selected], *args[1:])

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.head_hook is None or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        self.selected = selected = labels != -100
        try:
            outputs = model(**inputs)
        finally:
            self.selected = None
        targets = labels[selected]
        loss = (
            torch.nn.functional.cross_entropy(outputs.logits.float(), targets)
            if len(targets)
            else outputs.logits.sum()
        )
        return (loss, outputs) if return_outputs else loss


def pretrain(args: PretrainArguments, training_args: TrainingArguments) -> dict:
    set_seed(training_args.seed)
    output_dir = Path(training_args.output_dir)
    resume = resolve_resume(training_args.resume_from_checkpoint, output_dir)
    name = resolve_model_path(args.model_name_or_path)
    tokenizer = load_pretrained_tokenizer(args.tokenizer_name or name, args.cache_dir, args.trust_remote_code)
    if tokenizer.mask_token is None:
        raise UserError(f"The tokenizer of {args.model_name_or_path} has no mask token: it cannot be pretrained here.")

    with training_args.main_process_first(desc="read and tokenize the texts"):
        texts = read_text_file(args.train_file, args, args.max_train_samples)
        if args.validation_file:
            splits = {"train": texts, "validation": read_text_file(args.validation_file, args)}
        else:
            held_out = texts.train_test_split(
                test_size=args.validation_split_percentage / 100, seed=training_args.seed, shuffle=True
            )
            splits = {"train": held_out["train"], "validation": held_out["test"]}
        if args.extend_vocabulary:
            batches = splits["train"].iter(batch_size=BATCH_ROWS)
            extend_vocabulary(
                tokenizer,
                (text for batch in batches for text in batch[TEXT]),
                args.extend_vocabulary,
                args.min_frequency,
            )
        tokenized = {split: tokenize(dataset, tokenizer, args, split) for split, dataset in splits.items()}
    logger.info("texts: train %d, validation %d", len(tokenized["train"]), len(tokenized["validation"]))

    try:
        model = AutoModelForMaskedLM.from_pretrained(
            name, cache_dir=args.cache_dir, trust_remote_code=args.trust_remote_code
        )
    except (OSError, ValueError) as error:
        raise UserError(f"Could not load {args.model_name_or_path} as a masked language model: {error}") from None
    keep_encoder_parts(model, name, args)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    logger.info("model: %s, %s parameters", type(model).__name__, f"{model.num_parameters():,}")

    with training_args.main_process_first(local=False, desc="clear the previous run"):
        if training_args.overwrite_output_dir and training_args.should_save and output_dir.is_dir():
            clear_previous_run(output_dir)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=args.mlm_probability)
    trainer = make_trainer(model, training_args, tokenized, tokenizer, collator, trainer_class=MaskedLMTrainer)
    train_metrics = dict(trainer.train(resume_from_checkpoint=resume).metrics, **trainer.throughput.totals)
    set_seed(training_args.seed)  # the same masks for the final evaluation, whatever training drew
    eval_metrics = trainer.evaluate()
    eval_metrics["eval_perplexity"] = math.exp(min(eval_metrics["eval_loss"], 50))
    with stop_when_disk_full(f"writing the results and {BEST_DIR}/ in {output_dir}", "of the run"):
        trainer.save_metrics("train", dict(train_metrics, train_samples=len(tokenized["train"])))
        trainer.save_metrics("eval", dict(eval_metrics, eval_samples=len(tokenized["validation"])))
        trainer.save_state()
        if trainer.is_world_process_zero():
            arguments = {"pretrain": asdict(args), "training": json.loads(training_args.to_json_string())}
            best = save_best(trainer, tokenizer, json.dumps(arguments, indent=2, ensure_ascii=False))
            logger.info(
                "eval loss %.4f, perplexity %.2f -> %s",
                eval_metrics["eval_loss"],
                eval_metrics["eval_perplexity"],
                BEST_DIR,
            )
            logger.info("curves: %s", plot_curves(read_history(output_dir)))
            write_json_atomically(output_dir / BEST_FILE, best)  # last: a run without best.json can be resumed
    return {**train_metrics, **eval_metrics}


def pretrain_parser():
    return make_parser(
        (PretrainArguments, TrainingArguments),
        prog="finetune pretrain",
        description="Continue masked-language-model pretraining of an encoder on your texts; keep the best by eval loss.",
    )


def main(argv: list[str] | None = None) -> int:
    args, training_args = parse_args(argv, pretrain_parser())
    setup_logging(training_args)
    with progress_bars(show=not training_args.disable_tqdm):
        pretrain(args, training_args)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
