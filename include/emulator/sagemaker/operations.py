"""The operation table: ``@operation("CreateTrainingJob")`` binds a handler to its wire name.

A handler takes (ctx, params) and returns the response dict; it raises an ``AwsError`` to answer
with an error. Requests reach it already validated against botocore's service model.
"""
from __future__ import annotations

from typing import Callable

from include.aws_shapes import request_problems

from ..errors import UnknownOperation, ValidationException

Handler = Callable[["RequestContext", dict], dict]  # noqa: F821
OPERATIONS: dict[str, Handler] = {}


def operation(name: str):
    def register(handler: Handler) -> Handler:
        OPERATIONS[name] = handler
        return handler

    return register


def dispatch(ctx, operation_name: str, params: dict) -> dict:
    handler = OPERATIONS.get(operation_name)
    if handler is None:
        raise UnknownOperation(f"Operation {operation_name} is not supported by the local SageMaker.")
    problems = request_problems("sagemaker", operation_name, params)
    if problems:
        noun = "error" if len(problems) == 1 else "errors"
        raise ValidationException(f"{len(problems)} validation {noun} detected: " + "; ".join(problems))
    return handler(ctx, params)
