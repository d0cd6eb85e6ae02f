"""Wire formats: awsJson1_1 for the SageMaker control plane, rest-json errors for the runtime."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .errors import AwsError

JSON_CONTENT_TYPE = "application/x-amz-json-1.1"


def _to_wire(value: Any) -> Any:
    # awsJson1_1 sends timestamps as epoch seconds
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_to_wire(v) for v in value]
    return value


def json_response(body: dict) -> tuple[int, dict, bytes]:
    return 200, {"Content-Type": JSON_CONTENT_TYPE}, json.dumps(_to_wire(body)).encode()


def json_error(error: AwsError) -> tuple[int, dict, bytes]:
    body = {"__type": error.code, "message": error.message, **error.extra}
    headers = {"Content-Type": JSON_CONTENT_TYPE, "x-amzn-ErrorType": error.code}
    return error.status, headers, json.dumps(_to_wire(body)).encode()


def rest_json_error(error: AwsError) -> tuple[int, dict, bytes]:
    body = {"message": error.message, **error.extra}
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error.code}
    return error.status, headers, json.dumps(_to_wire(body)).encode()


def parse_json_body(raw: bytes) -> dict:
    from .errors import ValidationException

    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ValidationException(f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValidationException("Request body must be a JSON object.")
    return body
