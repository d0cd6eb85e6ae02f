"""The sagemaker-inference handler contract, as the PyTorch inference image runs a user's script.

Mirrors ``sagemaker_inference.transformer.Transformer``: the user module is
``code/<SAGEMAKER_PROGRAM or inference.py>`` inside the model directory, with ``code/`` on
``sys.path``; it may define ``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn`` or
``transform_fn`` instead of the last three (plus ``pre_model_fn`` and ``model_warmup_fn``), each
optionally taking a trailing ``context``. What it omits falls back to the PyTorch image's defaults
(TorchScript ``model.pt``, sagemaker_inference's decoder and encoder, ``model(tensor)`` under
``torch.no_grad``). torch is imported only when a default needs it.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import io
import json
import sys
from pathlib import Path
from typing import Any, Callable

from sagemaker_inference import content_types, encoder, errors, utils

DEFAULT_PROGRAM = "inference.py"
DEFAULT_MODEL_FILENAME = "model.pt"


class ModelLoadError(Exception):
    pass


class InferenceContext:
    """The slice of the model server's request context that handlers use (MMS/TorchServe style)."""

    def __init__(self, model_dir: Path, request_headers: dict[str, str] | None = None):
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None, "batch_size": 1}
        self._request_headers = dict(request_headers or {})
        self.response_headers: dict[str, str] = {}
        self.request_processor = [self]

    def get_request_properties(self) -> dict[str, str]:
        return dict(self._request_headers)

    def get_request_header(self, idx: int, key: str) -> str | None:
        wanted = key.lower()
        return next((v for k, v in self._request_headers.items() if k.lower() == wanted), None)

    @property
    def custom_attributes(self) -> str | None:
        return self.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes")

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.response_headers[key] = value

    def set_response_content_type(self, idx: int, value: str) -> None:
        pass  # as in the toolkit, the content type comes from accept or the handler's (body, type) tuple


# --- the PyTorch inference image's defaults ------------------------------------------------------

def default_model_fn(model_dir):
    """Load the one TorchScript file of the model directory, as the PyTorch image does."""
    import torch

    model_dir = Path(model_dir)
    model_path = model_dir / DEFAULT_MODEL_FILENAME
    if not model_path.exists():
        model_files = sorted(p.name for p in model_dir.iterdir() if p.is_file() and p.suffix in (".pt", ".pth"))
        if len(model_files) != 1:
            raise ValueError(f"Exactly one .pth or .pt file is required for PyTorch models: {model_files}")
        model_path = model_dir / model_files[0]
    try:
        return torch.jit.load(str(model_path), map_location=torch.device("cpu"))
    except RuntimeError as exc:
        raise ModelLoadError(f"Failed to load {model_path}. Please ensure model is saved using torchscript.") from exc


def decode_body(input_data, content_type):
    """A request body as a numpy array (JSON, CSV, NPY, NPZ), by sagemaker_inference's decoder."""
    from sagemaker_inference import decoder

    if content_type == content_types.NPY:
        import numpy as np

        # the toolkit loads .npy bodies with allow_pickle=True; a request body must never run code
        return np.load(io.BytesIO(input_data), allow_pickle=False)
    return decoder.decode(input_data, content_type)


def default_input_fn(input_data, content_type):
    import torch

    array = decode_body(input_data, content_type)
    if content_type in content_types.UTF8_TYPES:
        return torch.FloatTensor(array)
    return torch.as_tensor(array)


def default_predict_fn(data, model):
    import torch

    with torch.no_grad():
        if hasattr(model, "eval"):
            model.eval()
        return model(data if isinstance(data, torch.Tensor) else torch.as_tensor(data))


def default_output_fn(prediction, accept):
    if type(prediction).__module__.startswith("torch") and hasattr(prediction, "detach"):
        prediction = prediction.detach().cpu().numpy().tolist()
    for content_type in utils.parse_accept(accept):
        if content_type in encoder.SUPPORTED_CONTENT_TYPES:
            encoded = encoder.encode(prediction, content_type)
            if isinstance(encoded, str):
                encoded = encoded.encode("utf-8")
            return encoded, content_type
    raise errors.UnsupportedFormatError(accept)


# --- the contract --------------------------------------------------------------------------------

def call_handler(func: Callable, *args, context=None):
    """Call a handler with or without the trailing context, as the toolkit decides by arity."""
    count = len(inspect.signature(func).parameters)
    if count == len(args):
        return func(*args)
    if count == len(args) + 1:
        return func(*args, context)
    raise TypeError(f"{func.__name__} takes {count} arguments but {len(args)} were given.")


def response_bytes(result: Any) -> bytes:
    """A handler's return value as the response body (str as UTF-8, arrays and objects as JSON)."""
    if result is None:
        return b""
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result)
    if isinstance(result, str):
        return result.encode("utf-8")
    return json.dumps(result, default=lambda value: value.tolist() if hasattr(value, "tolist") else str(value)).encode()


class InferenceHandlers:
    """The user's handler functions for one model directory, loaded once, then called per request."""

    def __init__(self, model_dir: Path, program: str | None = None, default_accept: str | None = None):
        self.model_dir = Path(model_dir)
        self.code_dir = self.model_dir / "code"
        self.program = program or DEFAULT_PROGRAM
        self.default_accept = default_accept or content_types.JSON
        self.model: Any = None
        self.user_module = None
        self.model_fn: Callable = default_model_fn
        self.input_fn: Callable = default_input_fn
        self.predict_fn: Callable = default_predict_fn
        self.output_fn: Callable = default_output_fn
        self.transform_fn: Callable = self._default_transform_fn

    @property
    def module_name(self) -> str:
        return self.program[:-3] if self.program.endswith(".py") else self.program

    def _import_user_module(self):
        if str(self.code_dir) not in sys.path:
            sys.path.insert(0, str(self.code_dir))  # so the script's helper modules import
        name = self.module_name
        if not ((self.code_dir / f"{name}.py").is_file() or (self.code_dir / name / "__init__.py").is_file()):
            return None  # no user script: every handler is the image's default, as on SageMaker
        importlib.invalidate_caches()  # the script may have been written a moment ago
        sys.modules.pop(name, None)  # this model's script, not a same-named module loaded before
        return importlib.import_module(name)

    def load(self) -> None:
        """Import the user module, then run pre_model_fn, model_fn and model_warmup_fn."""
        module = self._import_user_module()
        self.user_module = module
        context = InferenceContext(self.model_dir)
        if module is not None:
            transform_fn = getattr(module, "transform_fn", None)
            input_fn = getattr(module, "input_fn", None)
            predict_fn = getattr(module, "predict_fn", None)
            output_fn = getattr(module, "output_fn", None)
            if transform_fn and (input_fn or predict_fn or output_fn):
                raise ValueError(
                    "Cannot use transform_fn implementation in conjunction with "
                    "input_fn, predict_fn, and/or output_fn implementation"
                )
            self.model_fn = getattr(module, "model_fn", default_model_fn)
            self.transform_fn = transform_fn or self._default_transform_fn
            self.input_fn = input_fn or default_input_fn
            self.predict_fn = predict_fn or default_predict_fn
            self.output_fn = output_fn or default_output_fn
            pre_model_fn = getattr(module, "pre_model_fn", None)
            if pre_model_fn is not None:
                call_handler(pre_model_fn, str(self.model_dir), context=context)
        self.model = call_handler(self.model_fn, str(self.model_dir), context=context)
        warmup = getattr(module, "model_warmup_fn", None) if module is not None else None
        if warmup is not None:
            call_handler(warmup, str(self.model_dir), self.model, context=context)

    def _default_transform_fn(self, model, input_data, content_type, accept, context=None):
        data = call_handler(self.input_fn, input_data, content_type, context=context)
        prediction = call_handler(self.predict_fn, data, model, context=context)
        return call_handler(self.output_fn, prediction, accept, context=context)

    def invoke(self, body: bytes, content_type: str | None, accept: str | None,
               context: InferenceContext | None = None) -> tuple[bytes, str]:
        """One request through transform_fn; returns (response body, response content type)."""
        context = context or InferenceContext(self.model_dir)
        if not accept or accept == content_types.ANY:
            accept = self.default_accept
        input_data: Any = body
        if content_type in content_types.UTF8_TYPES:
            input_data = body.decode("utf-8")
        result = call_handler(self.transform_fn, self.model, input_data, content_type, accept, context=context)
        response_type = accept
        if isinstance(result, tuple):  # (body, content type), as the toolkit accepts
            result, response_type = result[0], result[1]
        return response_bytes(result), response_type


def error_status(exc: BaseException) -> int:
    """The HTTP status a handler's exception answers with: its status_code if it has one, else 500."""
    code = getattr(exc, "status_code", None)
    if code is None:  # multi-model-server's PredictionException(message, error_code), as the HF toolkit raises
        code = getattr(exc, "error_code", None)
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    return 500


def error_message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    if isinstance(message, str) and message:
        return message
    return str(exc) or type(exc).__name__
