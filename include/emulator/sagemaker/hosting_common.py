"""What the hosting resources (models, endpoint configs, endpoints) share: time, lists, messages."""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterable

from ..errors import ValidationException

DEFAULT_MAX_RESULTS = 10  # SageMaker's List* default page size


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_datetime(value: Any) -> dt.datetime:
    """A timestamp as it arrives on the wire (epoch seconds, or ISO 8601 text)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    try:
        return as_datetime(float(value))
    except (TypeError, ValueError):
        pass
    try:
        return as_datetime(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")))
    except ValueError as exc:
        raise ValidationException(f"Invalid timestamp '{value}'.") from exc


def could_not_find(kind: str, arn: str) -> ValidationException:
    return ValidationException(f'Could not find {kind} "{arn}".')


def already_exists(kind: str, arn: str) -> ValidationException:
    return ValidationException(f'Cannot create already existing {kind} "{arn}".')


def list_page(
    records: Iterable[Any],
    params: dict,
    *,
    name: Callable[[Any], str],
    sort_keys: dict[str, Callable[[Any], Any]],
    created: Callable[[Any], dt.datetime],
    keep: Callable[[Any], bool] = lambda record: True,
) -> tuple[list[Any], str | None]:
    """Filter (NameContains, CreationTimeBefore/After, ``keep``), sort and page as SageMaker's List* do."""
    selected = [record for record in records if keep(record)]
    if params.get("NameContains"):
        needle = params["NameContains"].lower()
        selected = [record for record in selected if needle in name(record).lower()]
    if params.get("CreationTimeBefore") is not None:
        before = as_datetime(params["CreationTimeBefore"])
        selected = [record for record in selected if created(record) < before]
    if params.get("CreationTimeAfter") is not None:
        after = as_datetime(params["CreationTimeAfter"])
        selected = [record for record in selected if created(record) > after]
    sort_by = params.get("SortBy") or "CreationTime"
    selected.sort(key=sort_keys[sort_by], reverse=(params.get("SortOrder") or "Descending") == "Descending")

    start = 0
    if params.get("NextToken"):
        try:
            start = int(params["NextToken"])
        except ValueError as exc:
            raise ValidationException("Invalid pagination token (NextToken).") from exc
    size = params.get("MaxResults") or DEFAULT_MAX_RESULTS
    page = selected[start:start + size]
    next_token = str(start + size) if start + size < len(selected) else None
    return page, next_token
