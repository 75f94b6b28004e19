"""The Trainer of finetune's runs: transformers.Trainer with what a run of finetune needs on top."""

import contextlib
import logging
import time
from pathlib import Path

import datasets
import numpy as np
import torch
import transformers
from torch.utils.data import SequentialSampler
from transformers import DefaultFlowCallback, EarlyStoppingCallback
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, EvalLoopOutput, EvalPrediction

from finetune.checkpoints import COMPLETE_FILE, TRAINING_ARGS_FILE, mark_complete, stop_when_disk_full
from finetune.cli import check_interrupt
from finetune.data import LABELS, ShuffledLengthGroupedSampler, token_lengths
from finetune.data.sampler import column_array
from finetune.data.windows import TEXT_INDEX, reduction, texts_of_windows
from finetune.errors import stop_when_out_of_memory as out_of_memory_stops
from finetune.labels import classification_loss
from finetune.throughput import ThroughputCallback

logger = logging.getLogger("finetune")


class ClassifierTrainer(transformers.Trainer):
    """The Trainer, writing the run's arguments as JSON where it would write a pickle (training_args.bin),
    serving length-grouped batches in random order (see ShuffledLengthGroupedSampler), marking each
    checkpoint complete once all of its files are written (see finetune.checkpoints), measuring
    throughput (see ThroughputCallback, which it adds; ``self.throughput.totals`` after training), and
    computing the loss itself with class weights or for multi-label data (see finetune.labels)."""

    def __init__(
        self,
        *args,
        callbacks: list | None = None,
        started: float | None = None,
        class_weights: np.ndarray | None = None,
        **kwargs,
    ):
        self.started = started  # time.monotonic() when the command began; the first training step logs the time since
        super().__init__(*args, callbacks=callbacks, **kwargs)
        # First after the Trainer's flow callback: before the trackers (report_to) and the progress callback, so that
        # what TensorBoard writes and the console prints has the throughput figures.
        self.throughput = ThroughputCallback()
        handler = self.callback_handler.callbacks
        flow = next((index for index, callback in enumerate(handler) if isinstance(callback, DefaultFlowCallback)), -1)
        handler.insert(flow + 1, self.throughput)
        self.class_weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.multi_label = self.model.config.problem_type == "multi_label_classification"
        if self.class_weights is not None or self.multi_label:
            self.loss_is_scaled_for_ga = False  # classification_loss is a per-batch mean

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if (self.class_weights is None and not self.multi_label) or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        weight = (
            self.class_weights.to(outputs.logits.device) if model.training and self.class_weights is not None else None
        )
        loss = classification_loss(outputs.logits, labels, weight, self.args.label_smoothing_factor)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        check_interrupt()  # a Ctrl-C that Python dropped (finetune.cli.remembered_interrupts)
        if self.started is not None:
            logger.info("first training step, %.1f s after the arguments were read", time.monotonic() - self.started)
            self.started = None
        self.throughput.count_samples(len(inputs["input_ids"]))  # the Trainer counts the tokens itself
        return super().training_step(model, inputs, num_items_in_batch)

    def _run_epoch(self, *args, **kwargs):
        # Resumed from the checkpoint at which the run ended (max_steps reached, or early stopping had fired):
        # transformers' loop checks both only after a step, so it would train one step more.
        if self.run_has_ended():
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)

    def run_has_ended(self) -> bool:
        if 0 < self.state.max_steps <= self.state.global_step:
            return True
        return any(
            isinstance(callback, EarlyStoppingCallback)
            and callback.early_stopping_patience_counter >= callback.early_stopping_patience
            for callback in self.callback_handler.callbacks
        )

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        with self.windows_of(eval_dataset if eval_dataset is not None else self.eval_dataset):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test"):
        with self.windows_of(test_dataset):
            return super().predict(test_dataset, ignore_keys, metric_key_prefix)

    @contextlib.contextmanager
    def windows_of(self, dataset):
        """While evaluating ``dataset``: the text of each of its rows when they are windows of texts (long_text:
        windows), for evaluation_loop; else None. The Trainer drops the column before batching."""
        windowed = isinstance(dataset, datasets.Dataset) and TEXT_INDEX in dataset.column_names
        self.text_index = column_array(dataset, TEXT_INDEX) if windowed else None
        try:
            yield
        finally:
            self.text_index = None

    def _get_eval_sampler(self, eval_dataset):
        # Windows: the logits must come back in the dataset's order, where text_index names each row's text (the
        # Trainer's eval sampler groups rows by length under train_sampling_strategy group_by_length).
        if getattr(self, "text_index", None) is not None:
            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None
        return super()._get_eval_sampler(eval_dataset)

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """The Trainer's loop; for windows of texts, its logits gathered into one row per text (see
        finetune/data/windows.py), and the metrics and loss (``{prefix}_loss``) computed per text from them. The
        loss over the windows, as training sees them, is kept as ``{prefix}_window_loss``."""
        text_index = getattr(self, "text_index", None)
        if text_index is None:
            return super().evaluation_loop(
                dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix
            )
        compute_metrics, self.compute_metrics = self.compute_metrics, None
        try:
            output = super().evaluation_loop(dataloader, description, False, ignore_keys, metric_key_prefix)
        finally:
            self.compute_metrics = compute_metrics
        logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
        logits, labels = texts_of_windows(logits, output.label_ids, text_index, reduction(self.multi_label))
        metrics = dict(output.metrics)
        metrics[f"{metric_key_prefix}_window_loss"] = metrics.pop(f"{metric_key_prefix}_loss")
        loss = classification_loss(
            torch.from_numpy(logits), torch.from_numpy(labels), smoothing=self.args.label_smoothing_factor
        )
        metrics[f"{metric_key_prefix}_loss"] = loss.item()
        if compute_metrics is not None:
            scores = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
            metrics.update({f"{metric_key_prefix}_{name}": value for name, value in scores.items()})
        return EvalLoopOutput(predictions=logits, label_ids=labels, metrics=metrics, num_samples=len(labels))

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy != "group_by_length" or not isinstance(dataset, datasets.Dataset):
            return super()._get_train_sampler(train_dataset)
        return ShuffledLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            lengths=token_lengths(dataset),
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            group_batches=self.args.length_group_batches,
            bucket=getattr(self.data_collator, "pad_to_multiple_of", None) or 1,
            labels=column_array(dataset, LABELS) if self.args.length_group_by_label and not self.multi_label else None,
        )

    def _save_checkpoint(self, model, trial) -> None:
        """Saves the checkpoint, then marks it complete: a checkpoint cut short has no marker and is not resumed."""
        checkpoint_dir = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        if self.args.should_save:
            (checkpoint_dir / COMPLETE_FILE).unlink(missing_ok=True)  # saved again: incomplete until done
        with stop_when_disk_full(f"saving {checkpoint_dir.name} in {checkpoint_dir.parent}", "before it"):
            super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()  # every process has written its files (rng_state_N.pth)
        if self.args.should_save:
            mark_complete(checkpoint_dir, self.state.global_step)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        super()._save(output_dir, state_dict)
        if self.args.should_save:
            output_dir = Path(output_dir or self.args.output_dir)
            (output_dir / TRAINING_ARGS_NAME).unlink(missing_ok=True)
            (output_dir / TRAINING_ARGS_FILE).write_text(self.args.to_json_string(), encoding="utf-8")


def stop_when_out_of_memory(args: transformers.TrainingArguments, max_length: int):
    """A run out of device memory stops with the settings to lower (finetune.errors.stop_when_out_of_memory)."""
    return out_of_memory_stops(
        args.device,
        f"per_device_train_batch_size {args.per_device_train_batch_size}, per_device_eval_batch_size "
        f"{args.per_device_eval_batch_size}, max_length {max_length}",
        "Lower them (gradient_accumulation_steps keeps the batch of each optimizer step), or set bf16: true, or "
        "gradient_checkpointing: true for a pretrained model. Checkpoints saved before it are intact.",
    )
