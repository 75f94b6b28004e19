"""Train a text classifier with the Hugging Face Trainer and keep the best checkpoint by eval loss.

    finetune train --config configs/textcnn.yaml
    python finetune/train.py --config configs/textcnn.yaml --num_train_epochs 1
    accelerate launch --multi_gpu --num_processes 2 finetune/train.py --config configs/textcnn.yaml --use_cpu true

Writes into output_dir: checkpoint-N/, best/ (save_pretrained form), best.json, train_results.json,
eval_results.json, test_results.json (with a test_file), all_results.json and trainer_state.json.
"""

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a file (accelerate launch finetune/train.py): Python put finetune/ first on sys.path, where
    # our module names would shadow others; the folder above it makes `import finetune` work instead.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import copy
import json
import logging
import shutil
import statistics
import time
import warnings
from collections.abc import Collection
from dataclasses import asdict
from functools import partial

import datasets
from transformers import EarlyStoppingCallback, PreTrainedTokenizerBase, PrinterCallback, TrainerCallback, set_seed

from finetune.baseline import BASELINE_FILE, SPLIT_NAMES, comparison, fit_baseline, log_baseline, prefixed
from finetune.build import build_model, build_tokenizer, check_kernel_fits
from finetune.check import quick_check
from finetune.checkpoints import (
    ARGS_FILE,
    BEST_DIR,
    BEST_FILE,
    EVALUATION_DIR,
    TRAINER_STATE_FILE,
    link_best_to_output_dir,
    push_best,
    resolve_resume,
    stop_when_disk_full,
    unlink_best_from_output_dir,
)
from finetune.cli import progress_bars, run_command
from finetune.config import DataArguments, ModelArguments, TrainingArguments
from finetune.data import (
    BAD_ROWS_FILE,
    ClassificationCollator,
    load_raw_splits,
    write_bad_rows,
)
from finetune.data.prepared import prepare_data
from finetune.data.splits import ReleaseMappedPages
from finetune.data.windows import sample_counts
from finetune.embeddings import load_pretrained_embeddings, log_unknown_tokens
from finetune.files import write_json_atomically
from finetune.labels import initial_threshold, settle_threshold, training_class_weights
from finetune.metrics import compute_metrics
from finetune.model_card import write_model_card
from finetune.models.bert import (
    check_max_length,
    is_lora,
    save_lora_model,
)
from finetune.parsing import parse_args
from finetune.report import CURVES_FILE, plot_curves, read_history
from finetune.trainer import ClassifierTrainer, stop_when_out_of_memory

logger = logging.getLogger("finetune")

SEEDS_FILE = "seeds_results.json"
INTERRUPTED_HINT = (
    "; run it again with --resume (and --overwrite_output_dir false where it is set) to go on from the newest "
    "complete checkpoint"
)
RESULT_FILES = ("train_results.json", "eval_results.json", "test_results.json", "all_results.json", BASELINE_FILE)
ALL_RESULTS_FILE = "all_results.json"


def make_trainer(
    model,
    training_args,
    splits: dict,
    tokenizer,
    collator,
    compute_metrics=None,
    started=None,
    class_weights=None,
    trainer_class: type[ClassifierTrainer] = ClassifierTrainer,
    callbacks: Collection[TrainerCallback] = (),
) -> ClassifierTrainer:
    """The Trainer of a run on its train and validation splits, with the callbacks every run has and ``callbacks``
    (one with ``replaces_printer`` writes the log lines that the Trainer would print)."""
    trainer = trainer_class(
        model=model,
        args=training_args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=compute_metrics,
        callbacks=[*run_callbacks(training_args, splits.values()), *callbacks],
        started=started,
        class_weights=class_weights,
    )
    if any(getattr(callback, "replaces_printer", False) for callback in callbacks):
        trainer.remove_callback(PrinterCallback)
    return trainer


def run_callbacks(training_args: TrainingArguments, splits: Collection[datasets.Dataset]) -> list[TrainerCallback]:
    """Releasing the pages of the memory-mapped splits, and early stopping when it is asked for."""
    folders = {Path(item["filename"]).parent for dataset in splits for item in dataset.cache_files}
    callbacks = [ReleaseMappedPages(folders)]
    if training_args.early_stopping_patience is not None:
        callbacks.append(
            EarlyStoppingCallback(training_args.early_stopping_patience, training_args.early_stopping_threshold)
        )
    return callbacks


def clear_previous_run(output_dir: Path, keep: Collection[str] = ()) -> None:
    """Removes what an earlier run left in output_dir (only asked for with overwrite_output_dir), except the
    seed-N runs named in ``keep``."""
    for checkpoint in output_dir.glob("checkpoint-*"):
        shutil.rmtree(checkpoint)
    unlink_best_from_output_dir(output_dir)
    for directory in (BEST_DIR, EVALUATION_DIR):
        if (output_dir / directory).is_dir():
            shutil.rmtree(output_dir / directory)
    for seed_run in output_dir.glob("seed-*"):
        if seed_run.name not in keep:
            shutil.rmtree(seed_run)
    for name in (BEST_FILE, SEEDS_FILE, BAD_ROWS_FILE, TRAINER_STATE_FILE, CURVES_FILE, *RESULT_FILES):
        (output_dir / name).unlink(missing_ok=True)


def arguments_as_json(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> str:
    """The run's three argument groups, as one JSON document."""
    return json.dumps(
        {
            "model": asdict(model_args),
            "data": asdict(data_args),
            "training": json.loads(training_args.to_json_string()),
        },
        indent=2,
        ensure_ascii=False,
    )


def save_best(trainer: ClassifierTrainer, tokenizer: PreTrainedTokenizerBase, arguments: str) -> dict:
    """Writes best/ (the model the Trainer loaded at the end, its tokenizer, the run's ``arguments`` as JSON);
    returns best.json's content, which names its checkpoint. best.json itself is written last, when the run is
    complete (see ``train``)."""
    training_args = trainer.args
    best_dir = Path(training_args.output_dir) / BEST_DIR
    if is_lora(trainer.model):
        save_lora_model(trainer.model, best_dir)
    else:
        trainer.model.save_pretrained(best_dir)
    tokenizer.save_pretrained(best_dir)
    (best_dir / ARGS_FILE).write_text(arguments, encoding="utf-8")

    state = trainer.state
    checkpoint = Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None
    return {
        "checkpoint": checkpoint,
        "step": state.best_global_step if checkpoint else state.global_step,
        "metric": training_args.metric_for_best_model if checkpoint else None,
        "value": state.best_metric if checkpoint else None,
        "greater_is_better": training_args.greater_is_better,
        "best_dir": BEST_DIR,
    }


def run_baseline(
    model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments
) -> dict | None:
    """The TF-IDF baseline on the run's splits (see finetune/baseline.py), fitted by the main process only."""
    if training_args.baseline == "none" or training_args.process_index != 0:
        return None
    raw = load_raw_splits(data_args, seed=training_args.seed)  # the texts: the tokenized splits hold token ids
    try:
        results = fit_baseline(
            raw,
            [data_args.text_column] + ([data_args.text_pair_column] if data_args.text_pair_column else []),
            None if model_args.model_name_or_path else model_args.tokenizer_level,
            model_args.lowercase,
            training_args.seed,
            training_args.baseline_max_train_samples,
            threshold=initial_threshold(training_args.threshold),
        )
    except Exception as error:  # a comparison beside the model: its failure must not cost the end of the run
        logger.warning(
            "baseline: failed, the run goes on without it (%s: %s); baseline: none skips it",
            type(error).__name__,
            error,
        )
        results = None
    finally:
        raw.close()
    if results:
        log_baseline(results)
    return results


def add_to_all_results(output_dir: Path, values: dict) -> None:
    """Adds ``values`` to all_results.json, which the Trainer's save_metrics keeps for the other splits."""
    path = output_dir / ALL_RESULTS_FILE
    results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    write_json_atomically(path, {**results, **values})


def setup_logging(training_args: TrainingArguments) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[finetune] %(message)s"))
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO if training_args.should_log else logging.WARNING)


def train(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    callbacks: Collection[TrainerCallback] = (),
) -> dict:
    """One training run: data, tokenizer, model, Trainer, best checkpoint, result files. ``callbacks`` join the
    Trainer's (finetune search reports each evaluation to its trial through one).

    Returns:
        The run's train, eval and (with a test file) test metrics, as written to all_results.json.
    """
    # disable_tqdm turns off the bars of reading, tokenizing and writing weights too, not only the Trainer's.
    with (
        progress_bars(show=not training_args.disable_tqdm),
        stop_when_out_of_memory(training_args, data_args.max_length),
    ):
        return train_run(model_args, data_args, training_args, callbacks)


def train_run(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: TrainingArguments,
    callbacks: Collection[TrainerCallback],
) -> dict:
    started = time.monotonic()
    # dataloader_pin_memory is on by default for GPUs; on a CPU-only machine torch warns every epoch (here, not in
    # main: finetune search calls train for each trial).
    warnings.filterwarnings("ignore", message=".*'pin_memory' argument is set as true but no accelerator.*")
    set_seed(training_args.seed)
    output_dir = Path(training_args.output_dir)

    resume = resolve_resume(training_args.resume_from_checkpoint, output_dir)  # before reading data: fail early

    if model_args.model_type == "textcnn" and not model_args.model_name_or_path:
        check_kernel_fits(data_args.max_length, model_args.kernel_sizes)
    # Read, build the tokenizer and tokenize, or load all three when the cache holds them for these files.
    with training_args.main_process_first(desc="prepare the data"):
        prepared = prepare_data(
            model_args, data_args, training_args.seed, partial(build_tokenizer, model_args, data_args)
        )
    tokenizer, tokenized = prepared.tokenizer, prepared.splits
    # Leaks, duplicates and conflicting labels, in a few lines; check: strict stops here, on every process.
    if training_args.check == "strict" or (training_args.check == "warn" and training_args.process_index == 0):
        quick_check(model_args, data_args, training_args, tokenizer)
    logger.info(
        "data: %s; labels: %s",
        ", ".join(f"{split} {len(dataset)}" for split, dataset in tokenized.items()),
        ", ".join(map(str, prepared.label_list)),
    )

    model = build_model(model_args, tokenizer, prepared)
    if model.config.model_type == "textcnn" and model_args.model_name_or_path:
        check_kernel_fits(data_args.max_length, model.config.kernel_sizes)
    if training_args.process_index == 0:
        log_unknown_tokens(tokenized, tokenizer, model_args)
    if model_args.pretrained_embeddings:
        load_pretrained_embeddings(
            model, tokenizer, model_args.pretrained_embeddings, tokenized["train"], model_args.freeze_embeddings
        )
    elif model_args.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    check_max_length(data_args.max_length, tokenizer, model, pairs=data_args.text_pair_column is not None)
    logger.info("model: %s, %s parameters", type(model).__name__, f"{model.num_parameters():,}")
    # Only now, with the data read and the model built, does an earlier run give way: a typo in a file name or a
    # bad row must not cost the run it was meant to replace.
    with training_args.main_process_first(local=False, desc="clear the previous run"):
        if training_args.overwrite_output_dir and training_args.should_save and output_dir.is_dir():
            clear_previous_run(output_dir)
    if prepared.bad_rows and training_args.should_save:
        write_bad_rows(prepared.bad_rows, output_dir)
    multi_label, labels = prepared.multi_label, prepared.label_list
    weights = training_class_weights(training_args, tokenized["train"], labels, multi_label)
    collator = ClassificationCollator(
        tokenizer,
        pad_to_multiple_of=data_args.pad_to_multiple_of,
        min_length=max(model.config.kernel_sizes) if model.config.model_type == "textcnn" else 0,
        num_labels=len(labels) if multi_label else None,
    )
    metrics = partial(compute_metrics, threshold=initial_threshold(training_args.threshold))
    trainer_args = copy.copy(training_args)
    trainer_args.push_to_hub = False  # the run pushes best/ at its end (push_best), not every checkpoint
    trainer = make_trainer(
        model, trainer_args, tokenized, tokenizer, collator, metrics, started, weights, callbacks=callbacks
    )

    train_result = trainer.train(resume_from_checkpoint=resume)
    train_metrics = dict(
        train_result.metrics, **sample_counts(tokenized["train"], "train"), **trainer.throughput.totals
    )
    if multi_label:  # before best/ is saved: the model's config keeps the threshold
        settle_threshold(trainer, tokenized["validation"], training_args.threshold)
    with stop_when_disk_full(f"writing the results and {BEST_DIR}/ in {output_dir}", "of the run"):
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        if trainer.is_world_process_zero():
            best = save_best(trainer, tokenizer, arguments_as_json(model_args, data_args, training_args))
    if trainer.is_world_process_zero():
        logger.info("best checkpoint: %s (%s = %s) -> %s", best["checkpoint"], best["metric"], best["value"], BEST_DIR)

    eval_metrics = dict(trainer.evaluate(), **sample_counts(tokenized["validation"], "eval"))
    trainer.save_metrics("eval", eval_metrics)
    test_metrics = {}
    if "test" in tokenized:
        test_metrics = trainer.predict(tokenized["test"], metric_key_prefix="test").metrics
        test_metrics.update(sample_counts(tokenized["test"], "test"))
        trainer.save_metrics("test", test_metrics)
        first = "subset_accuracy" if multi_label else "accuracy"
        logger.info(
            "test: %s %.4f, macro-F1 %.4f, loss %.4f",
            first.replace("_", " "),
            test_metrics[f"test_{first}"],
            test_metrics["test_f1"],
            test_metrics["test_loss"],
        )
    results = {**train_metrics, **eval_metrics, **test_metrics}
    # After training, so that it delays neither the first step nor a run that fails: seconds on the demo, about a
    # minute for a training split subsampled to 100,000 rows.
    baseline = run_baseline(model_args, data_args, training_args)
    if baseline:
        results.update(prefixed(baseline))
        if trainer.is_world_process_zero():
            write_json_atomically(output_dir / BASELINE_FILE, baseline)
            add_to_all_results(output_dir, prefixed(baseline))
        compared = [f"{name}: {text}" for split, name in SPLIT_NAMES if (text := comparison(results, baseline, split))]
        logger.info("against the baseline: %s", "; ".join(compared))
    if trainer.is_world_process_zero():
        with stop_when_disk_full(f"writing the model card, the curves and {BEST_FILE} in {output_dir}", "of the run"):
            write_model_card(
                output_dir / BEST_DIR, trainer, model_args, data_args, training_args, best, results, baseline
            )
            logger.info("curves: %s", plot_curves(read_history(output_dir)))
            # The best model at the top of output_dir too, as the Trainer leaves it: from_pretrained(output_dir).
            link_best_to_output_dir(output_dir)
            # Last, through a rename: a run cut short before this point has no best.json and can be resumed.
            write_json_atomically(output_dir / BEST_FILE, best)
        if training_args.push_to_hub:
            logger.info("pushed %s to the Hub: %s", BEST_DIR, push_best(output_dir, training_args))
    return results


def train_seeds(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict:
    """Trains once per seed into output_dir/seed-N and writes the mean and spread to seeds_results.json."""
    output_dir = Path(training_args.output_dir)
    runs = {}
    for seed in training_args.seeds:
        seed_args = copy.copy(training_args)
        seed_args.seed, seed_args.seeds = seed, None
        seed_args.output_dir = str(output_dir / f"seed-{seed}")
        finished = Path(seed_args.output_dir) / BEST_FILE
        if training_args.resume_from_checkpoint and finished.is_file():  # resuming: a finished seed stays as it is
            logger.info("seed %d: finished in %s", seed, seed_args.output_dir)
            runs[seed] = json.loads((Path(seed_args.output_dir) / "all_results.json").read_text(encoding="utf-8"))
            continue
        logger.info("seed %d -> %s", seed, seed_args.output_dir)
        runs[seed] = train(model_args, data_args, seed_args)
    if training_args.overwrite_output_dir and training_args.should_save:
        # The earlier run in output_dir itself (a single run, or other seeds) gives way once every seed is trained.
        clear_previous_run(output_dir, keep={f"seed-{seed}" for seed in training_args.seeds})

    names = [name for name in runs[training_args.seeds[0]] if all(name in run for run in runs.values())]
    summary = {
        "seeds": training_args.seeds,
        "mean": {name: statistics.fmean(run[name] for run in runs.values()) for name in names},
        "std": {
            name: statistics.stdev(run[name] for run in runs.values()) if len(runs) > 1 else 0.0 for name in names
        },
        "runs": {str(seed): run for seed, run in runs.items()},
    }
    if training_args.should_save:
        write_json_atomically(output_dir / SEEDS_FILE, summary)
    for name in ("eval_accuracy", "eval_f1", "test_accuracy", "test_f1"):
        if name in summary["mean"]:
            logger.info("%s over %d seeds: %.4f ± %.4f", name, len(runs), summary["mean"][name], summary["std"][name])
    return summary


def main(argv: list[str] | None = None) -> int:
    """Parses the arguments, checks them, and trains (once, or once per seed of `seeds`)."""
    model_args, data_args, training_args = parse_args(argv)
    setup_logging(training_args)
    if training_args.seeds:
        train_seeds(model_args, data_args, training_args)
    else:
        train(model_args, data_args, training_args)
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main, sys.argv[1:]))
