"""The collator: dynamic padding, with a floor for TextCNN's widest convolution."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase


@dataclass
class ClassificationCollator:
    """Pads each batch to its longest example (or a multiple of ``pad_to_multiple_of``), and to at least
    ``min_length`` tokens, which TextCNN needs: its widest convolution must fit."""

    tokenizer: PreTrainedTokenizerBase
    pad_to_multiple_of: int | None = None
    min_length: int = 0

    def __post_init__(self):
        self.pad = DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=self.pad_to_multiple_of)

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        batch = self.pad(features)
        shortfall = self.min_length - batch["input_ids"].shape[1]
        if shortfall > 0:
            fill = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0, "token_type_ids": 0}
            for name, value in fill.items():
                if name in batch:
                    batch[name] = torch.nn.functional.pad(batch[name], (0, shortfall), value=value)
        return batch
