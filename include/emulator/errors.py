"""Errors are data: each carries the exact code, HTTP status and message SageMaker sends."""
from __future__ import annotations


class AwsError(Exception):
    code = "InternalFailure"
    status = 500

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.message = message
        self.extra = extra  # further members of the error body, e.g. OriginalStatusCode


class ValidationException(AwsError):
    code = "ValidationException"
    status = 400


class ResourceNotFound(AwsError):
    code = "ResourceNotFound"
    status = 400


class ResourceInUse(AwsError):
    code = "ResourceInUse"
    status = 400


class ResourceLimitExceeded(AwsError):
    code = "ResourceLimitExceeded"
    status = 400


class UnknownOperation(AwsError):
    code = "UnknownOperationException"
    status = 400


class SerializationException(AwsError):
    """The body is no JSON object that the awsJson protocol can read (AWS's JSON services say this)."""

    code = "SerializationException"
    status = 400


class AccessDenied(AwsError):
    code = "AccessDeniedException"
    status = 403


# sagemaker-runtime
class RuntimeValidationError(AwsError):
    code = "ValidationError"
    status = 400


class ModelError(AwsError):
    """The container answered with an error; SageMaker wraps it as 424 with the original status."""

    code = "ModelError"
    status = 424


class ModelNotReadyException(AwsError):
    code = "ModelNotReadyException"
    status = 429


class ServiceUnavailable(AwsError):
    """No healthy instance can take the request (the botocore model's 503 for InvokeEndpoint)."""

    code = "ServiceUnavailable"
    status = 503


def not_found() -> ValidationException:
    return ValidationException("Requested resource not found.")


# the hosting resources' (models, endpoint configs, endpoints) messages
def could_not_find(kind: str, arn: str) -> ValidationException:
    return ValidationException(f'Could not find {kind} "{arn}".')


def already_exists(kind: str, arn: str) -> ValidationException:
    return ValidationException(f'Cannot create already existing {kind} "{arn}".')
