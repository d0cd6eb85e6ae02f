"""The Hugging Face inference image's handler service: AWS's sagemaker-huggingface-inference-toolkit.

On huggingface-pytorch-inference images the model server runs the toolkit's own
``HuggingFaceHandlerService``, as the image's multi-model-server does: with no ``code/inference.py``
it builds a transformers pipeline (``HF_TASK``, else the task inferred from ``config.json``'s
architecture) and answers ``{"inputs": ..., "parameters": {...}}``; a user script in ``code/``
(``SAGEMAKER_PROGRAM``, default ``inference.py``) overrides ``model_fn``, ``input_fn``,
``predict_fn``, ``output_fn`` or ``transform_fn``, each optionally taking a trailing ``context``.
Any error in a request answers 400 with its message, as the toolkit's ``handle`` raises
``PredictionException(str(e), 400)``.

Where the toolkit lives: its declared dependency pyctcdecode (CTC decoding with a language model)
requires numpy<2, which the rest of this environment cannot have, so ``make setup`` installs the
toolkit's own code without its dependencies beside the venv (``pip install --no-deps --target
.venv/hf-inference-toolkit``), and this module puts that folder on ``sys.path``; what the toolkit
imports for its text and vision tasks (transformers, sagemaker-inference, multi-model-server's
``mms.service``, Pillow, huggingface_hub) is in the venv. ``EMULATOR_HF_INFERENCE_TOOLKIT``
names another folder. The toolkit (2.6.0) also imports ``transformers.file_utils.is_tf_available``,
which transformers 5 removed with TensorFlow: it is supplied as "no TensorFlow".
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .handlers import InferenceContext

TOOLKIT_ENV = "EMULATOR_HF_INFERENCE_TOOLKIT"
TOOLKIT_FOLDER = "hf-inference-toolkit"


class ToolkitMissing(ImportError):
    pass


def toolkit_dir() -> Path:
    return Path(os.environ.get(TOOLKIT_ENV) or Path(sys.prefix) / TOOLKIT_FOLDER)


def handler_service_class():
    """The toolkit's HuggingFaceHandlerService class, importable from the venv or toolkit_dir()."""
    folder = toolkit_dir()
    if folder.is_dir() and str(folder) not in sys.path:
        sys.path.append(str(folder))
    import transformers.file_utils as file_utils

    if not hasattr(file_utils, "is_tf_available"):  # transformers 5 has no TensorFlow
        file_utils.is_tf_available = lambda: False
    try:
        from sagemaker_huggingface_inference_toolkit.handler_service import HuggingFaceHandlerService
    except ModuleNotFoundError as exc:
        raise ToolkitMissing(
            f"The Hugging Face inference image's handler service cannot load ({exc}): "
            f"run `make setup`, which installs sagemaker-huggingface-inference-toolkit into {folder}"
        ) from exc
    return HuggingFaceHandlerService


class _Metrics:
    """The slice of multi-model-server's MetricsStore the handler service calls."""

    def __init__(self):
        self.times: dict[str, float] = {}

    def add_time(self, name, value, idx=None, unit="ms"):
        self.times[name] = value


class HuggingFaceContext(InferenceContext):
    """multi-model-server's Context as the toolkit uses it: system properties, request headers, metrics."""

    def __init__(self, model_dir: Path, request_headers: dict[str, str] | None = None):
        super().__init__(model_dir, request_headers)
        self.system_properties["gpu_id"] = 0  # the toolkit uses it only where torch sees a GPU
        self.metrics = _Metrics()
        self.response_content_type: str | None = None

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.response_content_type = value


class HuggingFaceHandlers:
    """One model directory served by the toolkit's handler service (InferenceHandlers' interface)."""

    def __init__(self, model_dir: Path, program: str | None = None, default_accept: str | None = None):
        self.model_dir = Path(model_dir)
        self.code_dir = self.model_dir / "code"
        # the toolkit reads SAGEMAKER_PROGRAM itself (sagemaker_inference.environment), default inference.py
        self.program = program or "inference.py"
        self.default_accept = default_accept
        self.service: Any = None

    def load(self) -> None:
        service = handler_service_class()()
        context = HuggingFaceContext(self.model_dir)
        service.initialize(context)
        self.service = service

    def invoke(self, body: bytes, content_type: str | None, accept: str | None,
               context: InferenceContext | None = None) -> tuple[bytes, str]:
        headers = dict(context.get_request_properties()) if context is not None else {}
        if content_type is not None:
            headers.setdefault("Content-Type", content_type)
        if (not accept or accept == "*/*") and self.default_accept:
            headers = {k: v for k, v in headers.items() if k.lower() != "accept"}
            headers["Accept"] = self.default_accept
        hf_context = HuggingFaceContext(self.model_dir, headers)
        [result] = self.service.handle([{"body": body}], hf_context)
        if context is not None:
            context.response_headers.update(hf_context.response_headers)
        if isinstance(result, str):
            result = result.encode("utf-8")
        elif not isinstance(result, (bytes, bytearray)):
            from .handlers import response_bytes

            result = response_bytes(result)
        return bytes(result), hf_context.response_content_type or "application/json"
