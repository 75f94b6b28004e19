"""An exported model (``finetune export``) run by ONNX Runtime behind the interface ``Classifier`` uses of a
PyTorch model: ``config``, ``model(**batch).logits``, ``.to()`` and ``.eval()``. So ``finetune predict``,
``finetune evaluate`` and ``finetune serve`` take an export directory as they take a checkpoint, with the same
batching, truncation and output.

An export directory holds ``model.onnx``, the tokenizer files, ``config.json`` (label names, threshold,
problem_type), the run's ``finetune_args.json`` and the manifest ``export.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoConfig, PretrainedConfig
from transformers.modeling_outputs import SequenceClassifierOutput

import finetune  # noqa: F401  (registers TextCNN's config with AutoConfig)
from finetune.errors import UserError

ONNX_FILE = "model.onnx"
MANIFEST_FILE = "export.json"


def is_export_dir(directory: Path) -> bool:
    return (directory / MANIFEST_FILE).is_file() and (directory / ONNX_FILE).is_file()


def session_options(threads: int | None = None):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # Threads that busy-wait for the next call take the CPU from the rest of the process (a server's event loop, a
    # tokenizer thread); predict's batches follow each other closely enough not to need it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    return options


def providers_for(device: torch.device) -> list[str]:
    """ONNX Runtime's execution providers for ``device``: the CPU, or CUDA where onnxruntime-gpu provides it."""
    import onnxruntime

    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise UserError(
            f"--device {device}: this ONNX Runtime has no CUDA provider (install onnxruntime-gpu), or use --device cpu."
        )
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


class OnnxClassifier:
    """``model.onnx`` of an export directory in an ONNX Runtime session, called like a transformers classifier."""

    def __init__(self, directory: Path, device: torch.device, threads: int | None = None):
        try:
            import onnxruntime
        except ImportError:
            raise UserError(
                f"{directory} is an ONNX export; running it needs onnxruntime (pip install 'finetune[deploy]')."
            ) from None
        self.directory = directory
        self.manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
        self.config: PretrainedConfig = AutoConfig.from_pretrained(directory)
        try:
            self.session = onnxruntime.InferenceSession(
                str(directory / ONNX_FILE), session_options(threads), providers=providers_for(device)
            )
        except Exception as error:  # onnxruntime raises its own exception types for damaged or foreign files
            raise UserError(f"ONNX Runtime cannot load {directory / ONNX_FILE}: {error}") from None
        self.input_names = [node.name for node in self.session.get_inputs()]

    def __call__(self, **inputs: torch.Tensor) -> SequenceClassifierOutput:
        missing = [name for name in self.input_names if name not in inputs]
        if missing:
            raise ValueError(f"the ONNX model needs the inputs {missing}")
        feeds = {name: inputs[name].cpu().numpy() for name in self.input_names}
        (logits,) = self.session.run(["logits"], feeds)
        return SequenceClassifierOutput(logits=torch.from_numpy(logits))

    def to(self, device: torch.device) -> OnnxClassifier:  # the session's provider already decides the device
        return self

    def eval(self) -> OnnxClassifier:
        return self
