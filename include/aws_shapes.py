"""Validate a request against botocore's service model, as the AWS front end does.

botocore's client checks only required members and types; the service itself also enforces enum,
min/max and pattern. The emulator uses this to answer as SageMaker would, and the pipeline
builders use it (strict, unknown members refused) to catch a bad request before it is sent.
"""
from __future__ import annotations

import functools
from typing import Any

try:  # AWS patterns are Java regexes; `regex` understands \p{...} classes that `re` does not
    import regex as _re
except ImportError:  # pragma: no cover
    import re as _re


class RequestValidationError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        noun = "error" if len(problems) == 1 else "errors"
        super().__init__(f"{len(problems)} validation {noun} detected: " + "; ".join(problems))


@functools.lru_cache(maxsize=8)
def service_model(service: str):
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str):
    try:
        return _re.compile(pattern)
    except Exception:  # a pattern this engine cannot read is not enforced
        return None


def _wire_name(path: str, name: str) -> str:
    member = name[:1].lower() + name[1:]
    return f"{path}.{member}" if path else member


def _value_text(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _check(shape, value: Any, path: str, problems: list[str], strict: bool) -> None:
    kind = shape.type_name
    meta = shape.metadata

    def fail(constraint: str) -> None:
        problems.append(f"Value '{_value_text(value)}' at '{path}' failed to satisfy constraint: {constraint}")

    if kind == "structure":
        if not isinstance(value, dict):
            fail("Member must be a structure")
            return
        for name in shape.required_members:
            if value.get(name) is None:
                problems.append(f"Value null at '{_wire_name(path, name)}' failed to satisfy constraint: Member must not be null")
        for name, member_value in value.items():
            member_shape = shape.members.get(name)
            if member_shape is None:
                if strict:
                    problems.append(f"Unknown member '{_wire_name(path, name)}'; valid members: {', '.join(shape.members)}")
                continue
            if member_value is not None:
                _check(member_shape, member_value, _wire_name(path, name), problems, strict)
        return
    if kind == "list":
        if not isinstance(value, (list, tuple)):
            fail("Member must be a list")
            return
        _check_length(meta, len(value), fail)
        for index, item in enumerate(value, start=1):
            _check(shape.member, item, f"{path}.{index}.member", problems, strict)
        return
    if kind == "map":
        if not isinstance(value, dict):
            fail("Member must be a map")
            return
        _check_length(meta, len(value), fail)
        for key, item in value.items():
            _check(shape.key, key, f"{path}.{key}.key", problems, strict)
            _check(shape.value, item, f"{path}.{key}.value", problems, strict)
        return
    if kind == "string":
        if not isinstance(value, str):
            fail("Member must be a string")
            return
        _check_length(meta, len(value), fail)
        if shape.enum and value not in shape.enum:
            fail(f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        pattern = meta.get("pattern")
        if pattern:
            compiled = _compiled(pattern)
            if compiled is not None and compiled.fullmatch(value) is None:
                fail(f"Member must satisfy regular expression pattern: {pattern}")
        return
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            fail("Member must be an integer")
            return
        _check_range(meta, value, fail)
        return
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail("Member must be a number")
            return
        _check_range(meta, value, fail)
        return
    if kind == "boolean":
        if not isinstance(value, bool):
            fail("Member must be a boolean")
        return
    if kind == "blob":
        if not isinstance(value, (str, bytes, bytearray)):
            fail("Member must be a blob")
        return
    # timestamps and documents: accepted as sent


def _check_length(meta: dict, length: int, fail) -> None:
    if "min" in meta and length < meta["min"]:
        fail(f"Member must have length greater than or equal to {meta['min']}")
    if "max" in meta and length > meta["max"]:
        fail(f"Member must have length less than or equal to {meta['max']}")


def _check_range(meta: dict, number, fail) -> None:
    if "min" in meta and number < meta["min"]:
        fail(f"Member must have value greater than or equal to {meta['min']}")
    if "max" in meta and number > meta["max"]:
        fail(f"Member must have value less than or equal to {meta['max']}")


def request_problems(service: str, operation: str, params: dict, *, strict: bool = False) -> list[str]:
    """Every constraint of ``operation``'s input shape that ``params`` breaks, in AWS's words."""
    input_shape = service_model(service).operation_model(operation).input_shape
    problems: list[str] = []
    if input_shape is not None:
        _check(input_shape, params, "", problems, strict)
    return problems


def validate_request(service: str, operation: str, params: dict, *, strict: bool = False) -> None:
    problems = request_problems(service, operation, params, strict=strict)
    if problems:
        raise RequestValidationError(problems)
