import json
import logging
import os
from pathlib import Path

import pytest
import torch

# Tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
# How far apart the probabilities of one text may be when computed in differently shaped batches (or on the CPU
# and the GPU): float32 on the CPU agrees to 1e-5; on an H100, cuDNN picks convolution algorithms by batch shape
# and the same text's probabilities differed by 1.4e-5.
SAME_TEXT_TOLERANCE = 1e-4 if torch.cuda.is_available() else 1e-5
FIXTURES = REPO / "tests" / "fixtures"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture
def reviews() -> dict[str, Path]:
    """The easy Chinese sentiment fixture: train 200, validation 50, test 50 rows."""
    return {split: FIXTURES / f"reviews_{split}.jsonl" for split in ("train", "validation", "test")}


def sentence_pair_files(reviews: dict[str, Path], directory: Path) -> dict[str, Path]:
    """The reviews as sentence pairs: a neutral title ("first") and the review ("second"), whose label the pair
    keeps; a model that ignores the second text fails."""
    files = {}
    for split, path in reviews.items():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        pairs = [
            {"first": f"第{index}条评论", "second": row["text"], "label": row["label"]}
            for index, row in enumerate(rows)
        ]
        files[split] = directory / f"pairs_{split}.jsonl"
        files[split].write_text(
            "".join(json.dumps(pair, ensure_ascii=False) + "\n" for pair in pairs), encoding="utf-8"
        )
    return files


@pytest.fixture
def data_args(reviews, tmp_path) -> list[str]:
    """Command-line flags for a quick TextCNN run on the fixture, writing only under tmp_path."""
    return [
        "--train_file", str(reviews["train"]),
        "--validation_file", str(reviews["validation"]),
        "--test_file", str(reviews["test"]),
        "--cache_dir", str(tmp_path / "cache"),
        "--output_dir", str(tmp_path / "run"),
        "--disable_tqdm", "true",
    ]  # fmt: skip


# Small TextCNN that learns the fixture in seconds.
QUICK_TEXTCNN = [
    "--embedding_dim", "32",
    "--num_filters", "16",
    "--kernel_sizes", "1", "2", "3",
    "--per_device_train_batch_size", "16",
    "--learning_rate", "5e-3",
    "--num_train_epochs", "4",
    "--logging_steps", "5",
]  # fmt: skip


@pytest.fixture
def finetune_log() -> list[str]:
    """The messages of the finetune loggers, which may not propagate to pytest's handler."""
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    package_logger = logging.getLogger("finetune")
    level = package_logger.level
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    yield records
    package_logger.removeHandler(handler)
    package_logger.setLevel(level)


def pretrained_run_flags(model_dir: Path, tmp_path: Path, learning_rate: str, epochs: int) -> list[str]:
    """Flags for a run of a tiny pretrained model (built by a test) on the fixture, writing only under tmp_path."""
    return [
        "--model_name_or_path", str(model_dir),
        "--train_file", str(FIXTURES / "reviews_train.jsonl"),
        "--validation_file", str(FIXTURES / "reviews_validation.jsonl"),
        "--test_file", str(FIXTURES / "reviews_test.jsonl"),
        "--data_cache_dir", str(tmp_path / "cache"),
        "--output_dir", str(tmp_path / "run"),
        "--max_length", "32",
        "--per_device_train_batch_size", "16",
        "--learning_rate", learning_rate,
        "--num_train_epochs", str(epochs),
        "--disable_tqdm", "true",
        "--baseline", "none",
    ]  # fmt: skip
