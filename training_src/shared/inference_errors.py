"""The errors an inference.py raises for a request it cannot answer, with the HTTP status to send.

sagemaker-inference answers a BaseInferenceToolkitError with its status_code and message instead of
a 500; outside the inference containers a stand-in keeps the same attributes. train.py ships this
module in model.tar.gz's code/ beside inference.py (see serving_code.py).
"""
from __future__ import annotations

try:  # present in SageMaker's inference containers
    from sagemaker_inference.errors import BaseInferenceToolkitError
except ImportError:  # pragma: no cover - only outside the containers
    class BaseInferenceToolkitError(Exception):
        def __init__(self, status_code, message, phrase):
            self.status_code, self.message, self.phrase = status_code, message, phrase
            super().__init__(status_code, message, phrase)

__all__ = ["BaseInferenceToolkitError", "InferenceRequestError", "UnsupportedAcceptError", "UnsupportedContentTypeError"]


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
