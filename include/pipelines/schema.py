"""Build frozen dataclasses from parsed YAML, refusing anything the dataclass does not describe.

The type hints are the schema: str, int, float, bool, Literal[...], X | None, list[X], dict[str, X]
and nested dataclasses. `option(...)` adds bounds, a pattern, or the YAML key when it differs from
the field name. A dataclass may define `check(self)` for rules across fields; it raises
`FieldProblem(field, message)`. Every error names the file and the dotted path of the field.
Standard library only, so a DAG file may load its config at parse time.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from typing import Any, Literal, Union


class ConfigError(ValueError):
    """A workload file that cannot be used: names the file, the field path and the problem."""

    def __init__(self, source: str, path: str, problem: str):
        self.source, self.path, self.problem = source, path, problem
        super().__init__(f"{source}: {path}: {problem}" if path else f"{source}: {problem}")


class FieldProblem(Exception):
    """Raised by a dataclass's `check()`: `field` is relative to that dataclass ('' for itself)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


Scalar = Union[str, int, float, bool]

_MISSING = dataclasses.MISSING


def option(
    default: Any = _MISSING,
    *,
    default_factory: Any = _MISSING,
    minimum: float | None = None,
    maximum: float | None = None,
    pattern: str | None = None,
    pattern_hint: str | None = None,
    key: str | None = None,
    derived: bool = False,
) -> Any:
    """A dataclass field with the constraints the loader enforces."""
    metadata = {"minimum": minimum, "maximum": maximum, "pattern": pattern, "pattern_hint": pattern_hint, "key": key,
                "derived": derived}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


def join(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


class Loader:
    """Converts one parsed document; `source` and `origin_of` only shape the error messages."""

    def __init__(self, source: str, origin_of=lambda path: None):
        self.source = source
        self.origin_of = origin_of

    def error(self, path: str, problem: str) -> ConfigError:
        origin = self.origin_of(path)
        return ConfigError(self.source, path, f"{problem} (set in {origin})" if origin else problem)

    def build(self, cls: type, raw: Any, path: str = "", derived: dict | None = None) -> Any:
        """`derived` fills fields that do not come from the YAML (marked `option(derived=True)`)."""
        if not isinstance(raw, dict):
            raise self.error(path, f"must be a mapping of settings, got {describe(raw)}")
        hints = typing.get_type_hints(cls)
        fields = [f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("derived")]
        by_key = {(f.metadata.get("key") or f.name): f for f in fields}
        for key in raw:
            if key not in by_key:
                raise self.error(join(path, str(key)), _unknown_key(str(key), list(by_key)))
        values = dict(derived or {})
        for key, f in by_key.items():
            field_path = join(path, key)
            if key not in raw:
                if f.default is _MISSING and f.default_factory is _MISSING:
                    raise self.error(field_path, "is required")
                continue
            values[f.name] = self.convert(hints[f.name], raw[key], field_path, f.metadata)
        obj = cls(**values)
        check = getattr(obj, "check", None)
        if check is not None:
            try:
                check()
            except FieldProblem as problem:
                field_key = problem.field
                if field_key in {f.name for f in fields}:
                    field_key = next(k for k, f in by_key.items() if f.name == problem.field)
                raise self.error(join(path, field_key) if field_key else path, problem.message) from None
        return obj

    def convert(self, hint: Any, value: Any, path: str, meta: dict | None = None) -> Any:
        meta = meta or {}
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (Union, types.UnionType):
            if type(None) in args:
                if value is None:
                    return None
                rest = [a for a in args if a is not type(None)]
                hint = rest[0] if len(rest) == 1 else Union[tuple(rest)]
                return self.convert(hint, value, path, meta)
            if hint == Scalar:
                if isinstance(value, (str, int, float, bool)):
                    return value
                raise self.error(path, f"must be a string, number or boolean, got {describe(value)}")
        if hint is Any:
            return value
        if origin is Literal:
            if value not in args or isinstance(value, bool) != isinstance(args[0], bool):
                choices = ", ".join(repr(a) for a in args)
                hint = " (quote it: YAML reads On/Off/Yes/No as booleans)" if isinstance(value, bool) else ""
                raise self.error(path, f"must be one of {choices}, got {describe(value)}{hint}")
            return value
        if hint is bool:
            if not isinstance(value, bool):
                raise self.error(path, f"must be true or false, got {describe(value)}")
            return value
        if hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(path, f"must be an integer{_bounds(meta)}, got {describe(value)}")
            self._check_bounds(value, path, meta, "an integer")
            return value
        if hint is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise self.error(path, f"must be a number{_bounds(meta)}, got {describe(value)}")
            self._check_bounds(value, path, meta, "a number")
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                hint_text = " (quote it in the YAML)" if isinstance(value, (int, float)) else ""
                raise self.error(path, f"must be a string, got {describe(value)}{hint_text}")
            self._check_text(value, path, meta)
            return value
        if origin is list:
            if not isinstance(value, list):
                raise self.error(path, f"must be a list, got {describe(value)}")
            return [self.convert(args[0], item, join(path, i), meta) for i, item in enumerate(value)]
        if origin is dict:
            if not isinstance(value, dict):
                raise self.error(path, f"must be a mapping, got {describe(value)}")
            converted = {}
            for key, item in value.items():
                item_path = join(path, str(key))
                converted[self.convert(args[0], key, item_path, {})] = self.convert(args[1], item, item_path, {})
            return converted
        if dataclasses.is_dataclass(hint):
            return self.build(hint, value, path)
        raise TypeError(f"schema for {path} uses a type the loader does not know: {hint!r}")  # a bug here, not in the YAML

    def _check_bounds(self, value: float, path: str, meta: dict, noun: str) -> None:
        low, high = meta.get("minimum"), meta.get("maximum")
        if (low is not None and value < low) or (high is not None and value > high):
            raise self.error(path, f"must be {noun}{_bounds(meta)}, got {describe(value)}")

    def _check_text(self, value: str, path: str, meta: dict) -> None:
        pattern = meta.get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            wanted = meta.get("pattern_hint") or f"match {pattern}"
            raise self.error(path, f"must be {wanted}, got {describe(value)}")
        low, high = meta.get("minimum"), meta.get("maximum")
        if low is not None and len(value) < low:
            raise self.error(path, f"must have at least {low:g} characters, got {describe(value)}")
        if high is not None and len(value) > high:
            raise self.error(path, f"must have at most {high:g} characters, got {len(value)}")


def _bounds(meta: dict) -> str:
    low, high = meta.get("minimum"), meta.get("maximum")
    if low is not None and high is not None:
        return f" between {low:g} and {high:g}"
    if low is not None:
        return f" >= {low:g}"
    if high is not None:
        return f" <= {high:g}"
    return ""


def _unknown_key(key: str, allowed: list[str]) -> str:
    guess = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {guess[0]!r}?)" if guess else ""
    return f"unknown setting{hint}; allowed here: {', '.join(allowed)}"
