"""TextCNN (Kim, 2014) as a transformers model.

Embedding -> one Conv1d per kernel size -> ReLU -> max over time -> concatenate -> Dropout -> Linear.
Being a ``PreTrainedModel`` gives it ``save_pretrained``/``from_pretrained`` in safetensors, the Trainer,
the Auto classes (registered in ``finetune.models``) and ``pipeline("text-classification")``.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput


class TextCNNConfig(PretrainedConfig):
    """Sizes of a TextCNN.

    Args:
        vocab_size: Number of token ids, ``[PAD]`` and ``[UNK]`` included.
        embedding_dim: Size of each token embedding.
        kernel_sizes: Convolution widths in tokens; inputs are padded to at least the largest.
        num_filters: Output channels of each convolution.
        dropout: Dropout on the pooled features, before the classifier.
        pad_token_id: Id whose embedding stays zero.
        ngram_buckets: When above 0, each token's embedding gets added to it the embeddings of the n-grams
            that start on it (for each n of ``ngram_sizes``), hashed into this many shared buckets, as
            fastText does. Bucket 0 is for padding.
        ngram_sizes: The n-gram lengths that get embeddings, e.g. ``[2]`` for bigrams.
        wide_ngram_buckets: When above 0, a linear bag-of-n-grams classifier runs beside the CNN and its logits
            are added to the CNN's (a "wide and deep" model): one weight per class for each n-gram of
            ``wide_ngram_sizes``, hashed into this many buckets, summed over the text and divided by the square
            root of its length, as an L2-normalised bag of n-grams would be. Its weights start at zero.
        wide_ngram_sizes: The n-gram lengths of the wide part, e.g. ``[1, 2, 3]``.
    """

    model_type = "textcnn"

    def __init__(
        self,
        vocab_size: int = 30000,
        embedding_dim: int = 128,
        kernel_sizes: list[int] | tuple[int, ...] = (2, 3, 4),
        num_filters: int = 128,
        dropout: float = 0.5,
        pad_token_id: int = 0,
        ngram_buckets: int = 0,
        ngram_sizes: list[int] | tuple[int, ...] = (2,),
        wide_ngram_buckets: int = 0,
        wide_ngram_sizes: list[int] | tuple[int, ...] = (1, 2, 3),
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.kernel_sizes = list(kernel_sizes)
        self.num_filters = num_filters
        self.dropout = dropout
        self.ngram_buckets = ngram_buckets
        self.ngram_sizes = list(ngram_sizes)
        self.wide_ngram_buckets = wide_ngram_buckets
        self.wide_ngram_sizes = list(wide_ngram_sizes)
        super().__init__(pad_token_id=pad_token_id, **kwargs)


class NgramWeights(nn.Embedding):
    """The per-class weights of hashed n-grams: the wide part of a TextCNN (``wide_ngram_buckets``)."""


class TextCNNPreTrainedModel(PreTrainedModel):
    config_class = TextCNNConfig
    base_model_prefix = "textcnn"
    main_input_name = "input_ids"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, NgramWeights):
            init.zeros_(module.weight)  # the wide part starts silent; the CNN's logits alone at first
        elif isinstance(module, nn.Embedding):
            # Not N(0, 1), torch's default: with it the pooled features start large and training stalls
            # above log(2) loss for epochs on the demo corpus; std 0.1 trains at once.
            init.normal_(module.weight, mean=0.0, std=0.1)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.Conv1d):
            init.kaiming_normal_(module.weight, nonlinearity="relu")
            init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            # Small, so the first logits are near zero and the first loss near log(num_labels).
            init.normal_(module.weight, mean=0.0, std=0.01)
            init.zeros_(module.bias)


class TextCNNForSequenceClassification(TextCNNPreTrainedModel):
    def __init__(self, config: TextCNNConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.ngram_embeddings = (
            nn.Embedding(config.ngram_buckets, config.embedding_dim, padding_idx=0) if config.ngram_buckets else None
        )
        self.wide = (
            NgramWeights(config.wide_ngram_buckets, config.num_labels, padding_idx=0)
            if config.wide_ngram_buckets
            else None
        )
        self.convs = nn.ModuleList(
            nn.Conv1d(config.embedding_dim, config.num_filters, kernel_size) for kernel_size in config.kernel_sizes
        )
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.num_filters * len(config.kernel_sizes), config.num_labels)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def ngram_ids(self, input_ids: torch.LongTensor, sizes: list[int], buckets: int | None = None) -> torch.LongTensor:
        """``(len(sizes), batch, length)``: for each n-gram size, the bucket of the n-gram starting on each token,
        1..buckets-1 (by default ngram_buckets), and 0 on padding.

        N-grams at the end of a text run into padding, which is the same whatever the amount of padding. All sizes
        are hashed together, a few tensor operations in all: a TextCNN forward on a few texts (what a server runs)
        is otherwise mostly the overhead of many small operations.
        """
        pad = self.config.pad_token_id
        padded = nn.functional.pad(input_ids, (0, max(sizes) - 1), value=pad)
        size = torch.tensor(sizes, device=input_ids.device).view(-1, 1, 1)
        hashed = size.expand(-1, *input_ids.shape)  # n-grams of different sizes hash apart
        for offset in range(max(sizes)):
            step = (hashed * 1_000_003 + padded[:, offset : offset + input_ids.shape[1]]) % 2**40
            hashed = torch.where(size > offset, step, hashed)
        buckets = buckets or self.config.ngram_buckets
        return (hashed % (buckets - 1) + 1).masked_fill(input_ids == pad, 0)

    def wide_logits(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """The wide part's logits: n-gram weights summed over each text, over the square root of its length."""
        ids = self.ngram_ids(input_ids, self.config.wide_ngram_sizes, self.config.wide_ngram_buckets)
        total = self.wide(ids).sum(dim=(0, 2))
        lengths = (input_ids != self.config.pad_token_id).sum(dim=1, keepdim=True).clamp(min=1)
        return total / lengths.to(total.dtype).sqrt()

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
    ) -> SequenceClassifierOutput:
        """Classifies a batch of token ids.

        Args:
            input_ids: ``(batch, length)`` token ids.
            attention_mask: ``(batch, length)``, 1 for real tokens and 0 for padding.
            labels: ``(batch,)`` class ids, or for a multi-label model (``problem_type`` multi_label_classification)
                ``(batch, num_labels)`` multi-hot rows; when given, the output carries the cross-entropy loss
                (binary cross-entropy over labels for multi-label).
        """
        # Pad so that a window starts on every real token, the last ones running into padding. Then the
        # windows a text gets never depend on how much padding its batch has, and short texts still fit.
        widest = max(self.config.kernel_sizes)
        extra = max(widest - 1, widest - input_ids.shape[1])
        input_ids = nn.functional.pad(input_ids, (0, extra), value=self.config.pad_token_id)
        if attention_mask is not None:
            attention_mask = nn.functional.pad(attention_mask, (0, extra), value=0)
        embedded = self.embeddings(input_ids)
        if self.ngram_embeddings is not None:
            embedded = embedded + self.ngram_embeddings(self.ngram_ids(input_ids, self.config.ngram_sizes)).sum(0)
        embedded = embedded.transpose(1, 2)  # (batch, embedding_dim, length)
        pooled = []
        for conv in self.convs:
            features = torch.relu(conv(embedded))  # (batch, num_filters, length - kernel + 1)
            if attention_mask is not None:
                # Windows that start on padding are zeroed (ReLU output is >= 0, so a zero never beats a real
                # window in the max): together with the padding above, padding cannot change the result.
                window_starts_on_text = attention_mask[:, : features.shape[-1]].unsqueeze(1)
                features = features * window_starts_on_text.to(features.dtype)
            pooled.append(features.amax(dim=-1))
        logits = self.classifier(self.dropout(torch.cat(pooled, dim=-1)))
        if self.wide is not None:
            logits = logits + self.wide_logits(input_ids)

        loss = None
        if labels is not None and self.config.problem_type == "multi_label_classification":
            loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        elif labels is not None:
            loss = nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits)
