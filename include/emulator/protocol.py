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


# deeper than any SageMaker request shape nests, and far below Python's recursion limit
MAX_JSON_DEPTH = 100


def parse_json_body(raw: bytes) -> dict:
    """The request's members; a body that is no JSON object is a SerializationException, as on AWS."""
    from .errors import SerializationException

    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except RecursionError as exc:  # the parser nests a C call per level: 100k brackets exhaust the stack
        raise SerializationException(f"Request body nests deeper than {MAX_JSON_DEPTH} levels.") from exc
    except ValueError as exc:  # UnicodeDecodeError included
        raise SerializationException(f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise SerializationException("Request body must be a JSON object.")
    if _depth(body) > MAX_JSON_DEPTH:
        raise SerializationException(f"Request body nests deeper than {MAX_JSON_DEPTH} levels.")
    return body


def _depth(value: Any) -> int:
    """How deep objects and arrays nest in ``value``, without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, depth)
        if depth > MAX_JSON_DEPTH:
            break
        pending.extend((child, depth + 1) for child in item)
    return deepest
