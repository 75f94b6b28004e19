"""Models: TextCNN, registered with the Auto classes on import, and pretrained encoders (BERT family)."""

from transformers import AutoConfig, AutoModelForSequenceClassification

from finetune.models.textcnn import TextCNNConfig, TextCNNForSequenceClassification

AutoConfig.register(TextCNNConfig.model_type, TextCNNConfig, exist_ok=True)
AutoModelForSequenceClassification.register(TextCNNConfig, TextCNNForSequenceClassification, exist_ok=True)
# save_pretrained then writes textcnn.py beside the weights and an auto_map into config.json, so that a saved TextCNN
# loads without this package, once its reader has read textcnn.py and turned trust_remote_code on (docs/using.md).
TextCNNConfig.register_for_auto_class()
TextCNNForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = ["TextCNNConfig", "TextCNNForSequenceClassification"]
