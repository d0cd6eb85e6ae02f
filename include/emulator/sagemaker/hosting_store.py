"""The store every hosting resource (models, endpoint configs, endpoints) keeps its records in.

Records are keyed by region and name, as given: unlike jobs, hosting names are case-sensitive here,
and the messages are SageMaker's ``Could not find model "<arn>".`` and ``Cannot create already
existing model "<arn>".`` A record has ``name``, ``arn``, ``region`` and ``creation_time``.
"""
from __future__ import annotations

import threading
from typing import Any

from ..errors import already_exists, could_not_find
from .listing import list_page
from .tags import TagStore


class HostingStore:
    kind = "resource"  # in messages, e.g. "endpoint configuration"
    resource_type = "resource"  # the ARN's resource type, e.g. "endpoint-config"

    def __init__(self, emulator):
        self.emulator = emulator
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], Any] = {}

    def add(self, record, tags: list[dict] | None = None) -> None:
        with self._lock:
            if (record.region, record.name) in self._records:
                raise already_exists(self.kind, record.arn)
            self._records[(record.region, record.name)] = record
        self.emulator.store(TagStore).add(record.arn, tags)

    def find(self, region: str, name: str):
        with self._lock:
            return self._records.get((region, name))

    def get(self, ctx, name: str):
        record = self.find(ctx.region, name)
        if record is None:
            raise could_not_find(self.kind, ctx.arn(self.resource_type, name))
        return record

    def delete(self, ctx, name: str) -> None:
        """The record and its tags go; what was built from it (an endpoint from its config) keeps running."""
        with self._lock:
            record = self._records.pop((ctx.region, name), None)
        if record is None:
            raise could_not_find(self.kind, ctx.arn(self.resource_type, name))
        self.emulator.store(TagStore).delete(record.arn)

    def in_region(self, region: str) -> list:
        with self._lock:
            return [record for (record_region, _), record in self._records.items() if record_region == region]

    def list(self, region: str, params: dict, **filters) -> tuple[list, str | None]:
        """One page of List*: by NameContains and the creation time, sorted by Name or CreationTime;
        ``filters`` add what a resource's List* has more (``list_page``'s accessors and sort keys)."""
        sort_keys = {"Name": lambda record: record.name, "CreationTime": lambda record: record.creation_time,
                     **filters.pop("sort_keys", {})}
        return list_page(self.in_region(region), params, name=lambda record: record.name,
                         created=lambda record: record.creation_time, sort_keys=sort_keys, **filters)
