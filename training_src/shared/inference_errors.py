"""The errors an inference.py raises for a request it cannot answer, with the HTTP status to send.

sagemaker-inference answers a BaseInferenceToolkitError with its status_code and message instead of
a 500; outside the inference containers a stand-in keeps the same attributes. train.py ships this
module in model.tar.gz's code/ beside inference.py (see serving_code.py).
"""
from __future__ import annotations

import json

try:  # present in SageMaker's inference containers
    from sagemaker_inference.errors import BaseInferenceToolkitError
except ImportError:  # pragma: no cover - only outside the containers
    class BaseInferenceToolkitError(Exception):
        def __init__(self, status_code, message, phrase):
            self.status_code, self.message, self.phrase = status_code, message, phrase
            super().__init__(status_code, message, phrase)

__all__ = ["BaseInferenceToolkitError", "InferenceRequestError", "UnsupportedAcceptError", "UnsupportedContentTypeError",
           "MAX_JSON_DEPTH", "parse_json_body"]

MAX_JSON_DEPTH = 32  # arrays and objects inside each other; the deepest request (a batch of HxWx3 images) needs 5


class InferenceRequestError(BaseInferenceToolkitError):
    """A request this model cannot answer; the model server sends status_code and the message back."""

    status_code = 400

    def __init__(self, message: str):
        super().__init__(self.status_code, message, message)

    def __str__(self) -> str:
        return self.message


class UnsupportedContentTypeError(InferenceRequestError):
    status_code = 415


class UnsupportedAcceptError(InferenceRequestError):
    status_code = 406


def _json_depth(value) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (iterative: a deep value must not recurse)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_json_body(body, error: type[InferenceRequestError] = InferenceRequestError, max_depth: int = MAX_JSON_DEPTH):
    """A request body (bytes or str) as JSON; a body that is not UTF-8 JSON, or that nests arrays and objects
    deeper than ``max_depth`` (``[[[[...`` a hundred thousand deep makes json.loads raise RecursionError),
    raises ``error``, a 400 with the reason, instead of reaching the model server as a 500."""
    too_deep = f"The JSON body nests arrays or objects more than {max_depth} levels deep; send at most {max_depth}."
    try:
        payload = json.loads(bytes(body).decode("utf-8") if isinstance(body, (bytes, bytearray, memoryview)) else body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"The body is not valid UTF-8 JSON ({exc}).") from None
    except RecursionError:
        raise error(too_deep) from None
    if _json_depth(payload) > max_depth:
        raise error(too_deep)
    return payload
