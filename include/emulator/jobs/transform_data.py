"""Batch transform's data handling: split a file into records, pack mini-batches, filter and join, assemble.

Pure functions over bytes, so they are tested without a model server. SplitType None (the whole
object is one record) and Line; BatchStrategy SingleRecord and MultiRecord (as many records as fit
in MaxPayloadInMB, joined by newlines); AssembleWith None (responses concatenated) and Line (a
newline after every response that does not end with one). DataProcessing's InputFilter, JoinSource
and OutputFilter understand the JSONPath forms SageMaker documents: ``$``, ``$[1:]``, ``$[0,5:]``,
``$.features``, ``$['id','SageMakerOutput']``, on CSV rows (as JSON arrays) and JSON records.
"""
from __future__ import annotations

import csv
import io
import json
import re
from typing import Any, Callable

CSV_TYPES = ("text/csv",)
JSON_TYPES = ("application/json", "application/jsonlines", "application/x-jsonlines")


class RecordError(ValueError):
    """A record cannot be split, filtered or joined; the message names what and why."""


# --- splitting and batching ---------------------------------------------------------------------------

def split_records(data: bytes, split_type: str) -> list[bytes]:
    """The records of one input object: all of it (None) or its non-empty lines (Line)."""
    if split_type == "None":
        return [data]
    if split_type == "Line":
        return [line.rstrip(b"\r") for line in data.split(b"\n") if line.rstrip(b"\r")]
    raise RecordError(f"SplitType {split_type} is not supported by the local SageMaker; use None or Line.")


def mini_batches(records: list[bytes], strategy: str, max_payload_bytes: int | None) -> list[list[bytes]]:
    """Records grouped per request. ``max_payload_bytes`` None means no limit (MaxPayloadInMB 0)."""
    for record in records:
        if max_payload_bytes is not None and len(record) > max_payload_bytes:
            raise RecordError(f"a record of {len(record)} bytes is larger than MaxPayloadInMB "
                              f"({max_payload_bytes // (1024 * 1024)} MB)")
    if strategy == "SingleRecord":
        return [[record] for record in records]
    batches: list[list[bytes]] = []
    size = 0
    for record in records:
        added = len(record) + (1 if batches and batches[-1] else 0)  # the newline that joins it
        if batches and (max_payload_bytes is None or size + added <= max_payload_bytes):
            batches[-1].append(record)
            size += added
        else:
            batches.append([record])
            size = len(record)
    return batches


def payload(batch: list[bytes]) -> bytes:
    return b"\n".join(batch)


def response_lines(response: bytes) -> list[bytes]:
    return [line.rstrip(b"\r") for line in response.split(b"\n") if line.rstrip(b"\r")]


def assemble(outputs: list[bytes], assemble_with: str) -> bytes:
    if assemble_with == "Line":
        return b"".join(output if output.endswith(b"\n") else output + b"\n" for output in outputs)
    return b"".join(outputs)


# --- JSONPath filters ---------------------------------------------------------------------------------

_INDEX_LIST = re.compile(r"^\$\[(?P<items>\s*-?\d*\s*(?::\s*-?\d*\s*)?(?:,\s*-?\d*\s*(?::\s*-?\d*\s*)?)*)\]$")
_KEY_LIST = re.compile(r"^\$\[(?P<keys>\s*'[^']*'\s*(?:,\s*'[^']*'\s*)*)\]$")
_DOTTED = re.compile(r"^\$(?P<path>(?:\.[A-Za-z_][\w-]*)+)$")


def compile_filter(expression: str, member: str) -> Callable[[Any], Any]:
    """A JSONPath filter of the documented forms, as a function on a parsed record."""
    expression = (expression or "$").strip()
    if expression == "$":
        return lambda value: value
    match = _INDEX_LIST.match(expression)
    if match:
        selectors = [_index_selector(item.strip(), expression, member) for item in match["items"].split(",")]

        def select(value: Any) -> list:
            if not isinstance(value, list):
                raise RecordError(f"{member} {expression} selects array elements, but the record is not an array")
            picked: list = []
            for selector in selectors:
                picked.extend(selector(value))
            return picked

        return select
    match = _KEY_LIST.match(expression)
    if match:
        keys = re.findall(r"'([^']*)'", match["keys"])

        def pick(value: Any) -> dict:
            if not isinstance(value, dict):
                raise RecordError(f"{member} {expression} selects keys, but the record is not a JSON object")
            return {key: value[key] for key in keys if key in value}

        return pick
    match = _DOTTED.match(expression)
    if match:
        path = match["path"].split(".")[1:]

        def walk(value: Any) -> Any:
            for key in path:
                if not isinstance(value, dict) or key not in value:
                    raise RecordError(f"{member} {expression}: the record has no '{key}'")
                value = value[key]
            return value

        return walk
    raise RecordError(f"{member} '{expression}' is not a JSONPath the local SageMaker understands; "
                      "use $, $[1:], $[0,5:], $.key or $['a','b'].")


def _index_selector(item: str, expression: str, member: str) -> Callable[[list], list]:
    if ":" in item:
        start_text, stop_text = (part.strip() for part in item.split(":", 1))
        start = int(start_text) if start_text else None
        stop = int(stop_text) if stop_text else None
        return lambda values: values[start:stop]
    if not item:
        raise RecordError(f"{member} '{expression}' has an empty index")
    index = int(item)

    def one(values: list) -> list:
        if not -len(values) <= index < len(values):
            raise RecordError(f"{member} {expression}: index {index} is outside a record of {len(values)} elements")
        return [values[index]]

    return one


# --- records as data ----------------------------------------------------------------------------------

def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def parse_record(record: bytes, content_type: str | None, member: str) -> Any:
    media = _media_type(content_type)
    text = record.decode("utf-8")
    if media in CSV_TYPES:
        rows = list(csv.reader(io.StringIO(text)))
        return rows[0] if rows else []
    if media in JSON_TYPES:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise RecordError(f"{member} needs JSON records, but a record is not JSON: {exc}") from None
    raise RecordError(f"{member} works on CSV (text/csv) or JSON (application/json, application/jsonlines) records, "
                      f"not {content_type or 'records without a content type'}")


def format_record(value: Any, content_type: str | None) -> bytes:
    if _media_type(content_type) in CSV_TYPES and isinstance(value, list):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(value)
        return buffer.getvalue().encode("utf-8")
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


class DataProcessing:
    """InputFilter, JoinSource and OutputFilter of one transform job."""

    def __init__(self, config: dict | None, content_type: str | None, accept: str | None):
        config = config or {}
        self.input_expression = config.get("InputFilter") or "$"
        self.output_expression = config.get("OutputFilter") or "$"
        self.join_input = (config.get("JoinSource") or "None") == "Input"
        self.content_type = content_type
        self.accept = accept or content_type
        self._input = compile_filter(self.input_expression, "InputFilter")
        self._output = compile_filter(self.output_expression, "OutputFilter")

    @property
    def filters_input(self) -> bool:
        return self.input_expression != "$"

    @property
    def per_record_output(self) -> bool:
        """Whether responses must be split into one output per record (to join or filter them)."""
        return self.join_input or self.output_expression != "$"

    def filter_input(self, record: bytes) -> bytes:
        if not self.filters_input:
            return record
        return format_record(self._input(parse_record(record, self.content_type, "InputFilter")), self.content_type)

    def finish_output(self, source: bytes, output: bytes) -> bytes:
        """One record's output, joined with its input record (JoinSource Input) and filtered (OutputFilter)."""
        if not self.per_record_output:
            return output
        result = parse_record(output, self.accept, "OutputFilter" if not self.join_input else "JoinSource")
        if self.join_input:
            original = parse_record(source, self.content_type, "JoinSource")
            if isinstance(original, list):  # CSV rows, JSON arrays: the output's columns follow the input's
                result = original + (result if isinstance(result, list) else [result])
            elif isinstance(original, dict):
                result = {**original, "SageMakerOutput": result}
            else:
                result = {"SageMakerInput": original, "SageMakerOutput": result}
        result = self._output(result)
        return format_record(result, self.content_type if self.join_input else self.accept)
