"""SageMaker's times: every record's clock, and the one reader of a timestamp as a request sends it."""
from __future__ import annotations

import datetime as dt
from typing import Any

from ..errors import ValidationException


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def parse_timestamp(value: Any) -> dt.datetime:
    """A timestamp as it arrives on the wire: awsJson1_1 sends epoch seconds; ISO 8601 text is
    accepted too, as the service does (botocore's model leaves timestamps unchecked, so this is the check)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    try:
        return parse_timestamp(float(value))
    except (TypeError, ValueError):
        pass
    try:
        return parse_timestamp(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError as exc:
        raise ValidationException(f"Invalid timestamp '{value}'.") from exc
