"""GPU training speed: a BERT-base-sized classifier fine-tuned through finetune's Trainer at bf16, without and
with torch.compile; samples/s, step time from CUDA events, peak GPU memory and model FLOPs utilisation (MFU).

The model is BertForSequenceClassification from a default BertConfig (12 layers, hidden 768, 12 heads,
110M parameters) with random weights; the data are random token ids, every sequence --seq_len tokens long (no
padding, so every token is real work). Training goes through finetune.train.Trainer, so the step time and the
memory are those its throughput callback reports (CUDA events, torch.cuda.max_memory_allocated). The first
--warmup_steps (compilation, allocator warm-up) are left out of every figure.

MFU = achieved model FLOPs per second / the GPU's peak dense bf16 FLOPs (PEAK_BF16_FLOPS, by device name, or
--peak_flops). Model FLOPs per trained token, as in the PaLM paper (appendix B):
    6 * N + 12 * L * T * H
N: parameters outside the embeddings (each does a multiply and an add forward, twice that backward);
L * T * H: layers * sequence length * hidden size, for the attention scores and their use on the values.

    bash bench/gpu.sh                  # on a GPU: bf16, eager and compiled
    python bench/gpu_mfu.py --tiny     # a tiny model on the CPU, fp32, a few steps: checks that it runs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from common import add_output_argument, write_result  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification, default_data_collator, set_seed  # noqa: E402

from finetune.config import TrainingArguments  # noqa: E402
from finetune.trainer import ClassifierTrainer as Trainer  # noqa: E402

# Peak dense (no sparsity) bf16 tensor-core FLOP/s from the vendors' data sheets; first match in the name wins.
PEAK_BF16_FLOPS = {
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H100": 989e12,  # SXM5 ("NVIDIA H100 80GB HBM3")
    "H200": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "A800": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10G": 70e12,
    "A10": 125e12,
}

TINY_CONFIG = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}


def peak_flops(device_name: str) -> float | None:
    for name, flops in PEAK_BF16_FLOPS.items():
        if name in device_name:
            return flops
    return None


def synthetic_dataset(rows: int, seq_len: int, vocab_size: int, seed: int) -> Dataset:
    """Random token ids between the special tokens and the end of the vocabulary, with random binary labels."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000 if vocab_size > 2000 else 5, vocab_size, (rows, seq_len), generator=generator)
    input_ids[:, 0] = 101 if vocab_size > 101 else 1  # [CLS]
    return Dataset.from_dict(
        {
            "input_ids": input_ids.tolist(),
            "attention_mask": torch.ones(rows, seq_len, dtype=torch.long).tolist(),
            "labels": torch.randint(0, 2, (rows,), generator=generator).tolist(),
        }
    ).with_format("torch")


def flops_per_token(model: BertForSequenceClassification, seq_len: int) -> float:
    """6 N + 12 L T H (see the module docstring)."""
    embedding_parameters = sum(p.numel() for p in model.bert.embeddings.parameters())
    non_embedding = model.num_parameters() - embedding_parameters
    config = model.config
    return 6 * non_embedding + 12 * config.num_hidden_layers * seq_len * config.hidden_size


def run(mode: str, args: argparse.Namespace, config: BertConfig, output_dir: Path) -> dict:
    """Trains --warmup_steps + --steps steps in one mode ("eager" or "compiled"); figures of the timed steps."""
    set_seed(0)
    model = BertForSequenceClassification(config)
    total_steps = args.warmup_steps + args.steps
    dataset = synthetic_dataset(total_steps * args.batch_size, args.seq_len, config.vocab_size, seed=0)
    on_gpu = torch.cuda.is_available() and not args.tiny
    training_args = TrainingArguments(
        output_dir=str(output_dir / mode),
        per_device_train_batch_size=args.batch_size,
        max_steps=total_steps,
        logging_steps=args.warmup_steps,  # the first log closes the warm-up window; later ones are timed
        learning_rate=2e-5,
        warmup_steps=0.1,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        report_to="none",
        disable_tqdm=True,
        bf16=args.precision == "bf16",
        tf32=True if on_gpu else None,
        torch_compile=mode == "compiled",
        dataloader_num_workers=2 if on_gpu else 0,
        dataloader_pin_memory=on_gpu,
        use_cpu=not on_gpu,
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=dataset, data_collator=default_data_collator)
    with contextlib.redirect_stdout(sys.stderr):
        trainer.train()
    timed = [entry for entry in trainer.state.log_history if "step_seconds" in entry][1:]
    if not timed:
        raise SystemExit("No timed window: --steps must be at least --warmup_steps.")
    # Windows of equal step counts: the mean step time is the plain mean, the overall rate the harmonic mean.
    step_seconds = sum(entry["step_seconds"] for entry in timed) / len(timed)
    samples_per_second = len(timed) / sum(1 / entry["samples_per_second"] for entry in timed)
    tokens_per_second = samples_per_second * args.seq_len
    achieved = flops_per_token(model, args.seq_len) * tokens_per_second
    device_name = torch.cuda.get_device_name() if on_gpu else "cpu"
    peak = args.peak_flops or (peak_flops(device_name) if on_gpu else None)
    memory = trainer.throughput.totals
    return {
        "samples_per_second": round(samples_per_second, 2),
        "tokens_per_second": round(tokens_per_second, 1),
        "step_seconds": round(step_seconds, 5),
        "step_seconds_source": "cuda events" if on_gpu else "perf_counter",
        "timed_steps": len(timed) * args.warmup_steps,
        "peak_gpu_memory_mb": memory.get("train_peak_gpu_memory_mb"),
        "peak_rss_mb": memory["train_peak_rss_mb"],
        "achieved_tflops": round(achieved / 1e12, 3),
        "achieved_flops_per_second": float(f"{achieved:.4g}"),
        "mfu": round(achieved / peak, 4) if peak else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU, fp32, eager: a smoke test")
    parser.add_argument("--modes", nargs="+", choices=["eager", "compiled"], help="default: both (tiny: eager)")
    parser.add_argument("--batch_size", type=int, help="default: 64 (tiny: 4)")
    parser.add_argument("--seq_len", type=int, help="tokens per sequence (default: 256; tiny: 32)")
    parser.add_argument("--steps", type=int, help="timed steps (default: 150; tiny: 4)")
    parser.add_argument("--warmup_steps", type=int, help="untimed steps first, also the logging window (default: 30)")
    parser.add_argument("--precision", choices=["bf16", "fp32"], help="default: bf16 (tiny: fp32)")
    parser.add_argument("--peak_flops", type=float, help="the device's peak FLOP/s, when its name is not in the table")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    defaults = (
        {"modes": ["eager"], "batch_size": 4, "seq_len": 32, "steps": 4, "warmup_steps": 2, "precision": "fp32"}
        if args.tiny
        else {"modes": ["eager", "compiled"], "batch_size": 64, "seq_len": 256, "steps": 150, "warmup_steps": 30,
              "precision": "bf16"}
    )  # fmt: skip
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU here; use --tiny for the CPU smoke test.")

    config = BertConfig(num_labels=2, **(TINY_CONFIG if args.tiny else {}))
    model_size = BertForSequenceClassification(config).num_parameters()
    result = {
        "benchmark": "gpu_mfu",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() and not args.tiny else "cpu",
        "model": f"BertForSequenceClassification, {model_size:,} parameters (random weights)",
        "precision": args.precision,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "flops_per_token": "6 * non-embedding parameters + 12 * layers * seq_len * hidden",
        "torch": torch.__version__,
    }
    with tempfile.TemporaryDirectory() as output_dir:
        for mode in args.modes:
            result[mode] = run(mode, args, config, Path(output_dir))
            print(json.dumps({mode: result[mode]}), file=sys.stderr)
    write_result(result, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
