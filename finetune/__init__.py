"""finetune: fine-tune TextCNN and BERT-family text classifiers with the Hugging Face Trainer.

Importing the package makes TextCNN known to the transformers Auto classes, so that
``AutoModelForSequenceClassification.from_pretrained`` and ``pipeline`` load a TextCNN run. The registration waits
until transformers is imported (at once when it already is): importing torch and transformers takes seconds, which
``finetune --help`` and ``finetune cache`` need not pay.
"""

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"


def register_auto_classes() -> None:
    """Registers TextCNN with AutoConfig and AutoModelForSequenceClassification (idempotent)."""
    from finetune import models  # noqa: F401  (registers on import)


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """An import hook that registers TextCNN right after transformers is imported, by whoever imports it."""

    def find_spec(self, name, path=None, target=None):
        if name != "transformers":
            return None
        sys.meta_path.remove(self)  # once; the search below goes on through the other finders
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            register_auto_classes()

        spec.loader.exec_module = exec_then_register
        return spec


if "transformers" in sys.modules:
    register_auto_classes()
elif not any(isinstance(finder, _RegisterAfterTransformers) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTransformers())
