"""Models: TextCNN, registered with the Auto classes on import, and pretrained encoders (BERT family)."""

from transformers import AutoConfig, AutoModelForSequenceClassification

from finetune.models.textcnn import TextCNNConfig, TextCNNForSequenceClassification

AutoConfig.register(TextCNNConfig.model_type, TextCNNConfig, exist_ok=True)
AutoModelForSequenceClassification.register(TextCNNConfig, TextCNNForSequenceClassification, exist_ok=True)

__all__ = ["TextCNNConfig", "TextCNNForSequenceClassification"]
