"""The training group of ``finetune train``'s arguments: transformers' TrainingArguments with defaults that keep the
best checkpoint by eval loss, and finetune's own knobs (early stopping, GPUs, seeds, class weights, the baseline,
the data check), with the checks of each. finetune/config.py names it with the model and data groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments as HfTrainingArguments

from finetune.errors import UserError
from finetune.metrics import MULTI_LABEL_METRICS, PLAIN_LOSS, TRAINING_METRICS

# What evaluation reports; the Trainer adds the "eval_" prefix. Multi-label runs report the second group.
EVAL_METRICS = ("loss", *TRAINING_METRICS, PLAIN_LOSS)
MULTI_LABEL_EVAL_METRICS = ("loss", *MULTI_LABEL_METRICS, PLAIN_LOSS)


@dataclass
class TrainingArguments(HfTrainingArguments):
    """transformers.TrainingArguments with defaults for keeping the best checkpoint, plus a few extra knobs."""

    output_dir: str | None = field(
        default="outputs/run", metadata={"help": "Where checkpoints, best/ and the result files are written."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an output_dir that holds another run."}
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: no, steps or epoch."})
    save_strategy: str = field(
        default="epoch", metadata={"help": "When to save a checkpoint: no, steps, epoch, best."}
    )
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every N steps."})
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Load the checkpoint with the best metric_for_best_model at the end."}
    )
    metric_for_best_model: str | None = field(
        default="eval_loss",
        metadata={
            "help": "Metric that picks the best checkpoint: "
            + ", ".join(EVAL_METRICS)
            + "; multi-label: "
            + ", ".join(MULTI_LABEL_EVAL_METRICS)
            + " (log_loss: the loss without the run's label_smoothing_factor, which loss includes)"
        },
    )
    greater_is_better: bool | None = field(
        default=None,
        metadata={"help": "Whether a larger metric_for_best_model is better (default: false for a loss, else true)."},
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Keep at most this many checkpoints; the best one is always kept."}
    )
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "Experiment trackers to report to (none, tensorboard, wandb, ...)."}
    )
    disable_tqdm: bool | None = field(
        default=None,
        metadata={
            "help": "Turn the progress bars off: the Trainer's, and those of reading and tokenizing the data and of "
            "loading and writing weights (default: on, unless transformers' log level is above warning)."
        },
    )
    include_num_input_tokens_seen: Literal["non_padding", "all", "no"] = field(
        default="non_padding",
        metadata={
            "help": "Which input tokens the Trainer counts (num_input_tokens_seen; the logs' tokens_per_second and "
            "train_results.json's train_tokens come from it): non_padding, all (padding included) or no (no token "
            "figures, and one gather fewer per batch under several processes)."
        },
    )
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Stop after this many evaluations without improvement of the best metric."}
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "Smallest change of the best metric that counts as an improvement."}
    )
    length_group_batches: int = field(
        default=50,
        metadata={"help": "group_by_length: batches per length-sorted group (transformers: 50); fewer pad more."},
    )
    length_group_by_label: bool = field(
        default=True,
        metadata={
            "help": "group_by_length: give every batch its group's mix of labels, each label sorted by length on its "
            "own (plain length groups drift in label where length goes with it, and train worse per step)."
        },
    )
    class_weights: str | None = field(
        default=None,
        metadata={
            "help": "Weigh the training loss by class: balanced (inverse class frequency, as scikit-learn's "
            "compute_class_weight; multi-label: each label's negatives per positive, as BCE pos_weight) or a "
            "mapping {label: weight} (YAML, or JSON on the command line; unnamed labels weigh 1). Evaluation losses "
            "stay unweighted."
        },
    )
    threshold: str = field(
        default="0.5",
        metadata={
            "help": "Multi-label: a label is predicted when its probability is over this. tune picks the threshold "
            "that maximises micro-F1 on the validation split after training. Saved in the model's config for "
            "predict."
        },
    )
    baseline: Literal["tfidf", "none"] = field(
        default="tfidf",
        metadata={
            "help": "tfidf: after training, fit TF-IDF (character 1-3-grams for a character tokenizer, else word "
            "1-2-grams) + logistic regression on the same splits, C picked on validation, and report it beside the "
            "model (log, baseline_results.json, all_results.json, model card, finetune report). none: skip it."
        },
    )
    check: Literal["warn", "strict", "none"] = field(
        default="warn",
        metadata={
            "help": "Before training, look for duplicate texts within and across splits (after the tokenizer's "
            "normalisation), texts with conflicting labels and truncation. warn: log what is found and train; "
            "strict: stop with an error when anything is found; none: skip it. finetune check reports in full."
        },
    )
    baseline_max_train_samples: int = field(
        default=100_000,
        metadata={
            "help": "Fit the baseline on a seeded random subsample of this many training rows when the training "
            "split is larger (it holds their TF-IDF matrix in memory)."
        },
    )
    seeds: list[int] | None = field(
        default=None,
        metadata={
            "help": "Train once per seed, into output_dir/seed-N, and write the mean and standard deviation of "
            "the metrics to output_dir/seeds_results.json."
        },
    )
    gpus: str | None = field(
        default=None,
        metadata={
            "help": "GPUs to use, e.g. '0' or '0,1' (sets CUDA_VISIBLE_DEVICES). Under accelerate launch, use "
            "its --gpu_ids instead."
        },
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "Continue an interrupted run: 'auto' for the newest complete checkpoint in output_dir (or from "
            "the start when there is none), or a checkpoint-N folder."
        },
    )
    resume: bool = field(default=False, metadata={"help": "Same as --resume_from_checkpoint auto."})
    restore_callback_states_from_checkpoint: bool = field(
        default=True,
        metadata={
            "help": "On resuming, restore the callbacks' state saved in the checkpoint (early stopping's count of "
            "evaluations without improvement), so that a resumed run stops where an uninterrupted one would."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        self.check_class_weights()
        if self.baseline_max_train_samples < 1:
            raise UserError(f"baseline_max_train_samples must be at least 1, got {self.baseline_max_train_samples}.")
        if self.threshold != "tune":
            try:
                value = float(self.threshold)
            except ValueError:
                value = -1.0
            if not 0 < value < 1:
                raise UserError(f"threshold must be a number between 0 and 1, or tune; got {self.threshold!r}.")
        if self.resume:
            if self.resume_from_checkpoint not in (None, "auto"):
                raise UserError(
                    f"--resume and resume_from_checkpoint={self.resume_from_checkpoint!r} contradict each other; "
                    "drop one of them."
                )
            self.resume_from_checkpoint = "auto"

    def check_class_weights(self) -> None:
        """class_weights: balanced, or a mapping of label names to positive numbers (from YAML, or JSON text)."""
        weights = self.class_weights
        if weights is None or weights == "balanced":
            return
        if isinstance(weights, str):
            import yaml

            try:
                weights = yaml.safe_load(weights)
            except yaml.YAMLError:
                weights = None
        if not isinstance(weights, dict) or not weights:
            raise UserError(
                f"class_weights must be balanced or a mapping of labels to weights such as "
                f'{{"pos": 1, "neg": 5}}; got {self.class_weights!r}.'
            )
        for label, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                raise UserError(f"class_weights: the weight of {label!r} must be a positive number, got {weight!r}.")
        self.class_weights = {str(label): float(weight) for label, weight in weights.items()}
