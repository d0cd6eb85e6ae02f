"""The one pager of every List* operation: filter, sort and page as SageMaker does.

A record type passes an accessor for each filter its List* request has (``name`` for NameContains,
``created`` for CreationTimeBefore/After, ``modified`` for LastModifiedTimeBefore/After, ``status``
for StatusEquals); a filter without its accessor does not apply, so a member that an operation's
shape lacks filters nothing there. NextToken is the offset of the next page.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterable

from ..errors import ValidationException
from .times import parse_timestamp

DEFAULT_MAX_RESULTS = 10  # SageMaker's List* default page size

Accessor = Callable[[Any], Any]


def list_page(
    records: Iterable[Any],
    params: dict,
    *,
    sort_keys: dict[str, Accessor],
    name: Callable[[Any], str] | None = None,
    created: Callable[[Any], dt.datetime] | None = None,
    modified: Callable[[Any], dt.datetime] | None = None,
    status: Callable[[Any], str] | None = None,
    keep: Callable[[Any], bool] = lambda record: True,
    default_sort: tuple[str, str] = ("CreationTime", "Descending"),
) -> tuple[list[Any], str | None]:
    """One page of ``records`` (and the NextToken of the next one, or None)."""
    selected = [record for record in records if keep(record)]
    if status is not None and params.get("StatusEquals"):
        selected = [record for record in selected if status(record) == params["StatusEquals"]]
    if name is not None and params.get("NameContains"):
        needle = params["NameContains"].lower()
        selected = [record for record in selected if needle in name(record).lower()]
    for prefix, when in (("CreationTime", created), ("LastModifiedTime", modified)):
        if when is None:
            continue
        if params.get(f"{prefix}Before") is not None:
            before = parse_timestamp(params[f"{prefix}Before"])
            selected = [record for record in selected if when(record) < before]
        if params.get(f"{prefix}After") is not None:
            after = parse_timestamp(params[f"{prefix}After"])
            selected = [record for record in selected if when(record) > after]
    sort_by = params.get("SortBy") or default_sort[0]
    descending = (params.get("SortOrder") or default_sort[1]) == "Descending"
    selected.sort(key=sort_keys[sort_by], reverse=descending)

    start = _offset(params.get("NextToken"))
    size = params.get("MaxResults") or DEFAULT_MAX_RESULTS
    page = selected[start:start + size]
    next_token = str(start + size) if start + size < len(selected) else None
    return page, next_token


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = int(token)
    except ValueError:
        offset = -1
    if offset < 0:
        raise ValidationException("Invalid pagination token (NextToken).")
    return offset
