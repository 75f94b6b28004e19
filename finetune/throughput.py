"""Training throughput: samples/s, non-padding tokens/s, mean step time and peak memory.

Each training log line gets, for the steps since the previous one:

- ``samples_per_second``, ``tokens_per_second``: examples and non-padding tokens over the wall time spent
  training (data loading included, evaluation and checkpoint saving left out);
- ``step_seconds``: mean time of one optimizer step (forward, backward, optimizer), data loading left out;
  timed with CUDA events on a GPU, so the GPU's own time is measured, not the time Python took to queue it;
- ``peak_rss_mb``: peak resident memory of the process; on a GPU also ``peak_gpu_memory_mb``, the peak
  memory allocated by tensors.

Each evaluation log gets ``training_seconds``: the time spent training so far (evaluation and saving left out),
the x axis of accuracy-over-time curves.

The run's totals go into ``train_results.json``: ``train_throughput_samples_per_second``,
``train_throughput_tokens_per_second``, ``train_step_seconds``, ``train_peak_rss_mb`` (``train_peak_gpu_memory_mb``)
and ``train_tokens``, the non-padding tokens trained on. (The Trainer's own ``train_samples_per_second`` divides by
the whole run time, evaluation and saving included.) Under several processes samples and tokens are summed over
all of them; step time and memory are those of each process.

The tokens are the Trainer's count, ``state.num_input_tokens_seen``, which it keeps when
``include_num_input_tokens_seen`` is ``non_padding`` (finetune's default): the sum of each batch's attention_mask,
or of its input ids that are not the tokenizer's pad id when a batch has no mask, gathered over all processes at
every batch. With ``no`` the token figures are left out; with ``all`` they include padding.
"""

from __future__ import annotations

import resource
import sys
import time

import torch
from transformers import TrainerCallback

# What the Trainer adds to each training log when it counts tokens (see ThroughputCallback.on_log).
TRAINER_SPEED_LOGS = ("train_runtime", "train_tokens_per_second")


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (ru_maxrss counts kB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class StepTimer:
    """Sums the time of timed regions: perf_counter on a CPU, CUDA events on a GPU.

    CUDA events are only read at ``take()``, after one synchronize, so timing does not stall the GPU queue
    at every step.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.seconds = 0.0
        self.started: float | torch.cuda.Event | None = None

    def start(self) -> None:
        if self.cuda:
            self.started = torch.cuda.Event(enable_timing=True)
            self.started.record()
        else:
            self.started = time.perf_counter()

    def stop(self) -> None:
        if self.started is None:
            return
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.events.append((self.started, end))
        else:
            self.seconds += time.perf_counter() - self.started
        self.started = None

    def take(self) -> float:
        """The seconds timed since the last call."""
        if self.cuda:
            torch.cuda.synchronize()
            self.seconds += sum(start.elapsed_time(end) for start, end in self.events) / 1000
            self.events.clear()
        seconds, self.seconds = self.seconds, 0.0
        return seconds


class ThroughputCallback(TrainerCallback):
    """Adds throughput and memory to every training log and keeps the run's totals in ``totals``.

    The callback cannot see the batches: the Trainer counts their tokens (see the module docstring) and reports
    their examples through ``count_samples``.
    """

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.run = {"samples": 0, "tokens": 0, "steps": 0, "train_seconds": 0.0, "step_seconds": 0.0}
        self.counts_tokens = False
        self.tokens_seen = 0
        self.reset_window()

    def reset_window(self) -> None:
        self.window_samples, self.window_steps = 0, 0
        self.window_start = self.last_mark = time.perf_counter()
        self.excluded = 0.0

    def count_samples(self, count: int) -> None:
        """Counts the examples of a training batch of this process."""
        self.window_samples += count

    def on_train_begin(self, args, state, control, **kwargs):
        self.device = args.device
        self.timer = StepTimer(args.device)
        if self.timer.cuda:
            torch.cuda.reset_peak_memory_stats(args.device)
        self.run = {"samples": 0, "tokens": 0, "steps": 0, "train_seconds": 0.0, "step_seconds": 0.0}
        self.counts_tokens = args.include_num_input_tokens_seen != "no"
        self.tokens_seen = state.num_input_tokens_seen  # a resumed run's count starts at its checkpoint's
        self.reset_window()

    def on_step_begin(self, args, state, control, **kwargs):
        self.timer.start()

    def on_step_end(self, args, state, control, **kwargs):
        self.timer.stop()
        self.window_steps += 1
        self.last_mark = time.perf_counter()

    def on_evaluate(self, args, state, control, **kwargs):
        self.exclude_since_last_mark()

    def on_save(self, args, state, control, **kwargs):
        self.exclude_since_last_mark()

    def exclude_since_last_mark(self) -> None:
        """Evaluation and saving run between two steps; their time is not training time."""
        now = time.perf_counter()
        self.excluded += now - self.last_mark
        self.last_mark = now

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        replaced = ()
        if "eval_loss" in logs:  # logged by evaluate() before on_evaluate, so the evaluation is not excluded yet
            trained = self.run["train_seconds"] + self.last_mark - self.window_start - self.excluded
            metrics = {"training_seconds": round(trained, 3)}
        elif "loss" in logs:
            metrics = self.close_window(state)
            # Counting tokens, the Trainer adds its own train_runtime and train_tokens_per_second to each training
            # log, timed from the start of training with evaluation and saving included. transformers'
            # parse_log_history (the model card's results table) and `finetune report` take the first entry with a
            # train_runtime for the final summary, so they would stop at the first training log.
            replaced = TRAINER_SPEED_LOGS
        else:  # the final summary
            return
        # The Trainer appended a copy of logs to log_history before calling us; keep trainer_state.json in step.
        copies = [logs]
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            copies.append(state.log_history[-1])
        for entry in copies:
            entry.update(metrics)
            for name in replaced:
                entry.pop(name, None)

    def on_train_end(self, args, state, control, **kwargs):
        self.exclude_since_last_mark()  # the last evaluation, saving, loading the best model
        self.close_window(state)
        run = self.run
        seconds = max(run["train_seconds"], 1e-9)
        tokens = {
            "train_throughput_tokens_per_second": round(run["tokens"] / seconds, 3),
            "train_tokens": run["tokens"],
        }
        self.totals = {
            "train_throughput_samples_per_second": round(run["samples"] / seconds, 3),
            **(tokens if self.counts_tokens else {}),
            "train_step_seconds": round(run["step_seconds"] / max(run["steps"], 1), 6),
            **{f"train_{name}": value for name, value in self.memory().items()},
        }

    def close_window(self, state) -> dict[str, float]:
        """Metrics of the steps since the previous call; adds them to the run's totals."""
        step_seconds = self.timer.take()  # synchronizes a GPU, so the wall time below is complete
        now = time.perf_counter()
        train_seconds = max(now - self.window_start - self.excluded, 1e-9)
        samples = torch.tensor(self.window_samples, dtype=torch.float64, device=self.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(samples)
        samples = samples.item()
        # Already the sum over all processes: the Trainer gathers each batch's count.
        tokens, self.tokens_seen = state.num_input_tokens_seen - self.tokens_seen, state.num_input_tokens_seen
        steps = self.window_steps
        for name, value in (
            ("samples", samples),
            ("tokens", tokens),
            ("steps", steps),
            ("train_seconds", train_seconds),
            ("step_seconds", step_seconds),
        ):
            self.run[name] += value
        self.reset_window()
        metrics = {"samples_per_second": round(samples / train_seconds, 3)}
        if self.counts_tokens:
            metrics["tokens_per_second"] = round(tokens / train_seconds, 3)
        return {**metrics, "step_seconds": round(step_seconds / max(steps, 1), 6), **self.memory()}

    def memory(self) -> dict[str, float]:
        """Peak resident memory of the process and, on a GPU, peak memory allocated by tensors, in MB."""
        memory = {"peak_rss_mb": round(peak_rss_mb(), 1)}
        if self.timer.cuda:
            memory["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        return memory
