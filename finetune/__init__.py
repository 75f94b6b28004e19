"""finetune: fine-tune TextCNN and BERT-family text classifiers with the Hugging Face Trainer.

Importing the package registers TextCNN with the transformers Auto classes, so
``AutoModelForSequenceClassification.from_pretrained`` and ``pipeline`` load a TextCNN run's best/ folder.
"""

__version__ = "0.1.0"

from finetune import models  # noqa: E402,F401  (registers TextCNN with the Auto classes)
