"""What a run starts from: the tokenizer (a vocabulary learned from the training texts, or a pretrained model's)
and the model (a new TextCNN, or a checkpoint with a head for the run's labels, LoRA adapters if asked for)."""

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from finetune.config import DataArguments, ModelArguments
from finetune.data import RawData, iter_texts
from finetune.data.prepared import PreparedData
from finetune.embeddings import vectors_vocabulary
from finetune.errors import UserError
from finetune.models import TextCNNConfig, TextCNNForSequenceClassification
from finetune.models.bert import (
    ensure_pad_token,
    extend_vocabulary,
    load_pretrained_tokenizer,
    resolve_model_path,
    with_lora,
)
from finetune.models.heads import load_classifier
from finetune.tokenizer import build_vocab_tokenizer


def build_tokenizer(model_args: ModelArguments, data_args: DataArguments, raw: RawData) -> PreTrainedTokenizerBase:
    """TextCNN: a vocabulary learned from the training texts. BERT: the pretrained model's fast tokenizer."""
    columns = [data_args.text_column] + ([data_args.text_pair_column] if data_args.text_pair_column else [])
    batches = iter_texts(raw.splits["train"], columns)  # read batch by batch, never all at once
    if model_args.model_name_or_path:  # an encoder, or a classifier (a TextCNN's best/) to go on from
        name = model_args.tokenizer_name or model_args.model_name_or_path
        tokenizer = load_pretrained_tokenizer(name, model_args.cache_dir, model_args.trust_remote_code)
        ensure_pad_token(tokenizer)
        if model_args.extend_vocabulary:
            texts = (text for batch in batches for text in batch)
            extend_vocabulary(tokenizer, texts, model_args.extend_vocabulary, model_args.min_frequency)
        return tokenizer
    return build_vocab_tokenizer(
        batches,
        level=model_args.tokenizer_level,
        min_frequency=model_args.min_frequency,
        max_vocab_size=model_args.max_vocab_size,
        lowercase=model_args.lowercase,
        max_length=data_args.max_length,
        extra_tokens=vectors_vocabulary(model_args),
    )


def build_model(model_args: ModelArguments, tokenizer: PreTrainedTokenizerBase, raw: RawData) -> PreTrainedModel:
    """A new TextCNN sized for the vocabulary and labels, or the model at model_name_or_path (an encoder, or a
    classifier whose head is kept when it was trained on the same labels; see finetune/models/heads.py)."""
    if model_args.model_name_or_path:
        model = load_classifier(
            resolve_model_path(model_args.model_name_or_path),
            raw.label_list,
            new_head=model_args.new_head,
            cache_dir=model_args.cache_dir,
            trust_remote_code=model_args.trust_remote_code,
            textcnn=model_args.model_type == "textcnn",
            problem_type=problem_type(raw),
            dropout=model_args.encoder_dropout,
        )
        known = model.get_input_embeddings().num_embeddings
        if len(tokenizer) > known:  # extend_vocabulary or [PAD] added tokens
            try:
                model.resize_token_embeddings(len(tokenizer))
            except (NotImplementedError, ValueError, AttributeError) as error:
                raise UserError(
                    f"{model_args.model_name_or_path}: {len(tokenizer) - known} token(s) were added (extend_vocabulary, "
                    f"or a pad token for a tokenizer without pad and eos tokens), but the model's embeddings cannot "
                    f"grow: {error}. Give its tokenizer a pad token, or set extend_vocabulary 0."
                ) from None
        if model.config.model_type != "textcnn":
            # A decoder finds each row's last real token by this id; its config often has none.
            model.config.pad_token_id = tokenizer.pad_token_id
        if model_args.lora_r:
            model = with_lora(
                model,
                model_args.lora_r,
                model_args.lora_alpha,
                model_args.lora_dropout,
                model_args.lora_target_modules,
                added_tokens=list(range(known, len(tokenizer))),
            )
        return model
    config = TextCNNConfig(
        vocab_size=len(tokenizer),
        embedding_dim=model_args.embedding_dim,
        kernel_sizes=model_args.kernel_sizes,
        num_filters=model_args.num_filters,
        dropout=model_args.dropout,
        ngram_buckets=model_args.ngram_buckets,
        ngram_sizes=model_args.ngram_sizes,
        wide_ngram_buckets=model_args.wide_ngram_buckets,
        wide_ngram_sizes=model_args.wide_ngram_sizes,
        pad_token_id=tokenizer.pad_token_id,
        num_labels=len(raw.label_list),
        id2label=raw.id2label,
        label2id=raw.label2id,
        problem_type=problem_type(raw),
    )
    return TextCNNForSequenceClassification(config)


def problem_type(data: RawData | PreparedData) -> str:
    return "multi_label_classification" if data.multi_label else "single_label_classification"


def check_kernel_fits(max_length: int, kernel_sizes: list[int]) -> None:
    if max_length < max(kernel_sizes):
        raise UserError(f"max_length {max_length} is shorter than the widest kernel ({max(kernel_sizes)}).")
