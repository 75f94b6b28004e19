"""The collator: dynamic padding, with a floor for TextCNN's widest convolution, and multi-hot labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from finetune.data.windows import TEXT_INDEX


@dataclass
class ClassificationCollator:
    """Pads each batch to its longest example (or a multiple of ``pad_to_multiple_of``), and to at least
    ``min_length`` tokens, which TextCNN needs: its widest convolution must fit. With ``num_labels`` (multi-label
    data, whose rows hold lists of label ids), labels become float multi-hot rows of that width."""

    tokenizer: PreTrainedTokenizerBase
    pad_to_multiple_of: int | None = None
    min_length: int = 0
    num_labels: int | None = None

    def __post_init__(self):
        self.pad = DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=self.pad_to_multiple_of)

    def __call__(self, features: Sequence[dict]) -> dict[str, torch.Tensor]:
        if features and TEXT_INDEX in features[0]:  # a window's text (long_text: windows) is not a model input
            features = [{name: value for name, value in feature.items() if name != TEXT_INDEX} for feature in features]
        multi_hot = None
        if self.num_labels and features and isinstance(features[0].get("labels"), list):
            multi_hot = torch.zeros(len(features), self.num_labels)
            for row, feature in enumerate(features):
                multi_hot[row, feature["labels"]] = 1.0
            features = [{name: value for name, value in feature.items() if name != "labels"} for feature in features]
        batch = self.pad(features)
        if multi_hot is not None:
            batch["labels"] = multi_hot
        shortfall = self.min_length - batch["input_ids"].shape[1]
        if shortfall > 0:
            fill = {"input_ids": self.tokenizer.pad_token_id, "attention_mask": 0, "token_type_ids": 0}
            for name, value in fill.items():
                if name in batch:
                    batch[name] = torch.nn.functional.pad(batch[name], (0, shortfall), value=value)
        return batch
