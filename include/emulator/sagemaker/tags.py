"""Tags on any SageMaker resource, keyed by ARN."""
from __future__ import annotations

import threading

from .operations import operation


class TagStore:
    def __init__(self, emulator):
        self._lock = threading.Lock()
        self._tags: dict[str, dict[str, str]] = {}

    def add(self, arn: str, tags: list[dict] | None) -> None:
        with self._lock:
            current = self._tags.setdefault(arn, {})
            for tag in tags or []:
                current[tag["Key"]] = tag.get("Value", "")

    def get(self, arn: str) -> dict[str, str]:
        with self._lock:
            return dict(self._tags.get(arn, {}))

    def as_list(self, arn: str) -> list[dict]:
        return [{"Key": k, "Value": v} for k, v in self.get(arn).items()]

    def delete(self, arn: str, keys: list[str] | None = None) -> None:
        with self._lock:
            if keys is None:
                self._tags.pop(arn, None)
            else:
                for key in keys:
                    self._tags.get(arn, {}).pop(key, None)


@operation("AddTags")
def add_tags(ctx, params):
    store = ctx.emulator.store(TagStore)
    store.add(params["ResourceArn"], params["Tags"])
    return {"Tags": store.as_list(params["ResourceArn"])}


@operation("ListTags")
def list_tags(ctx, params):
    return {"Tags": ctx.emulator.store(TagStore).as_list(params["ResourceArn"])}


@operation("DeleteTags")
def delete_tags(ctx, params):
    ctx.emulator.store(TagStore).delete(params["ResourceArn"], params["TagKeys"])
    return {}
