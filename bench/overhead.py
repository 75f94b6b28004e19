"""Trainer overhead: the demo TextCNN trained through finetune's Trainer and through a plain PyTorch loop.

Both paths train the same model class from the same initial weights on the same tokenized data
(configs/textcnn.yaml), with the same batch size and batch order (ShuffledLengthGroupedSampler, seeded alike;
checked before timing), the same loss (with the config's label smoothing), the same optimizer (AdamW, the
Trainer's settings), the same learning-rate schedule and gradient clipping. The Trainer path is finetune's
Trainer with the config's arguments, minus what the plain loop does not do (evaluation and checkpoints).
Repeats alternate between the two paths in one process, so both see the same machine load. Prints JSON:
samples/s of each repeat, the medians, and finetune / plain.

    python bench/overhead.py                      # 200 steps, 3 repeats of each path
    python bench/overhead.py --steps 100 --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import (
    Prepared,
    add_output_argument,
    add_threads_argument,
    fixed_steps,
    median,
    prepare,
    set_threads,
    write_result,
)
from torch import nn
from torch.utils.data import DataLoader
from transformers import get_scheduler, set_seed

from finetune.data import ClassificationCollator, ShuffledLengthGroupedSampler, token_lengths
from finetune.data.sampler import column_array
from finetune.trainer import ClassifierTrainer as Trainer

MODEL_COLUMNS = ["input_ids", "attention_mask", "labels"]


def collator(prepared: Prepared) -> ClassificationCollator:
    """The collator finetune train builds for this config (pad_to_multiple_of, the widest kernel)."""
    return ClassificationCollator(
        prepared.tokenizer,
        pad_to_multiple_of=prepared.data_args.pad_to_multiple_of,
        min_length=max(prepared.model_args.kernel_sizes),
    )


class RecordingTrainer(Trainer):
    """Keeps a fingerprint of every batch, to check that both paths see the same batches in the same order."""

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.batches.append(batch_fingerprint(inputs))
        return super().training_step(model, inputs, num_items_in_batch)


def batch_fingerprint(batch: dict[str, torch.Tensor]) -> tuple:
    return tuple(batch["input_ids"].shape), int(batch["input_ids"].sum()), tuple(batch["labels"].tolist())


class Clock:
    """Wall time and this process's CPU time. With one torch thread the CPU time barely moves when other work
    shares the machine, while the wall time does: the ratio of CPU times is the steadier measure of overhead."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict[str, float]:
        return {"wall": time.perf_counter() - self.wall, "cpu": time.process_time() - self.cpu}


def train_finetune(prepared: Prepared, steps: int, trainer_class: type[Trainer] = Trainer) -> tuple[dict, Trainer]:
    """Wall and CPU seconds for ``steps`` optimizer steps through finetune's Trainer (construction included)."""
    args = prepared.training_args
    model = prepared.new_model()
    clock = Clock()
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=prepared.tokenized["train"],
        processing_class=prepared.tokenizer,
        data_collator=collator(prepared),
    )
    trainer.batches = []
    set_seed(args.seed)
    with contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its logs; stdout is for the JSON
        trainer.train()
    assert trainer.state.global_step == steps
    return clock.read(), trainer


def train_plain(prepared: Prepared, steps: int, record: list | None = None) -> dict[str, float]:
    """Wall and CPU seconds for ``steps`` optimizer steps of the loop one writes by hand (DataLoader included)."""
    args = prepared.training_args
    model = prepared.new_model()
    clock = Clock()
    dataset = prepared.tokenized["train"].select_columns(MODEL_COLUMNS)
    batches = collator(prepared)
    sampler = ShuffledLengthGroupedSampler(  # as the Trainer builds it (ClassifierTrainer._get_train_sampler)
        args.per_device_train_batch_size,
        lengths=token_lengths(dataset),
        seed=args.seed,
        group_batches=args.length_group_batches,
        bucket=batches.pad_to_multiple_of or 1,
        labels=column_array(dataset, "labels") if args.length_group_by_label else None,
    )
    loader = DataLoader(dataset, args.per_device_train_batch_size, sampler=sampler, collate_fn=batches)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
        fused=args.optim == "adamw_torch_fused",
    )
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, args.get_warmup_steps(steps), steps)
    set_seed(args.seed)
    model.train()
    batches = itertools.chain.from_iterable(loader for _ in itertools.count())  # epochs, reshuffled each time
    for batch in itertools.islice(batches, steps):
        if record is not None:
            record.append(batch_fingerprint(batch))
        labels = batch.pop("labels")
        # The config's label smoothing, as the Trainer applies it.
        loss = nn.functional.cross_entropy(model(**batch).logits, labels, label_smoothing=args.label_smoothing_factor)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return clock.read()


def check_same_batches(prepared: Prepared, steps: int) -> int:
    """Both paths see identical batches in the same order; returns how many were compared."""
    _, trainer = train_finetune(prepared, steps, RecordingTrainer)
    plain_batches: list = []
    train_plain(prepared, steps, plain_batches)
    if trainer.batches != plain_batches:
        raise SystemExit("The Trainer and the plain loop saw different batches; the comparison would be unfair.")
    return len(plain_batches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per run (default: 200)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path, alternating (default: 3)")
    parser.add_argument("--check_steps", type=int, default=30, help="steps compared batch by batch before timing")
    add_threads_argument(parser)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    set_threads(args.threads)

    with tempfile.TemporaryDirectory() as output_dir:
        prepared = prepare("textcnn", Path(output_dir), fixed_steps(args.steps))
        prepared.training_args.max_steps = args.check_steps
        compared = check_same_batches(prepared, args.check_steps)
        prepared.training_args.max_steps = args.steps

        batch_size = prepared.training_args.per_device_train_batch_size
        seconds: dict[str, list[dict]] = {"finetune": [], "plain": []}
        for repeat in range(args.repeats):
            order = ("finetune", "plain") if repeat % 2 == 0 else ("plain", "finetune")
            for path in order:
                if path == "finetune":
                    seconds[path].append(train_finetune(prepared, args.steps)[0])
                else:
                    seconds[path].append(train_plain(prepared, args.steps))

    samples = args.steps * batch_size
    result = {
        "benchmark": "overhead",
        "model": "textcnn (configs/textcnn.yaml)",
        "steps": args.steps,
        "batch_size": batch_size,
        "batches_compared_identical": compared,
        "target": 0.95,
    }
    for clock in ("wall", "cpu"):
        per_second = {path: [round(samples / run[clock], 1) for run in runs] for path, runs in seconds.items()}
        pairs = zip(per_second["finetune"], per_second["plain"], strict=True)
        result[clock] = {
            "samples_per_second": per_second,
            "median_samples_per_second": {path: median(values) for path, values in per_second.items()},
            "ratio_finetune_over_plain": round(median(per_second["finetune"]) / median(per_second["plain"]), 3),
            "ratio_per_repeat": [round(finetune / plain, 3) for finetune, plain in pairs],
        }
    write_result(result, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
