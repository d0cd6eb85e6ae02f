"""Describe a SageMaker resource that may not exist."""
from __future__ import annotations

from typing import Callable

# SageMaker answers a describe of an unknown name with ValidationException ("Could not find ...")
# or, for some resources, ResourceNotFound
_ABSENT = ("ValidationException", "ResourceNotFound")


def describe_or_none(describe: Callable[[str], dict], name: str) -> dict | None:
    """describe(name), or None when there is nothing of that name; other errors propagate."""
    from botocore.exceptions import ClientError

    try:
        return describe(name)
    except ClientError as error:
        if error.response["Error"]["Code"] in _ABSENT:
            return None
        raise
