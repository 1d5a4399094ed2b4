"""Strict YAML loading: pydantic models that reject unknown keys, errors that name file and key.

Every YAML file flashsim reads (device profiles, sweeps, run configs) goes through
`load_yaml_model`, so a typo in any of them fails the same way: one line, the file, the
key path (`points.3.chunk_bytes`), what was expected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from .errors import InputError
from .units import parse_size


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _size_validator(value: Any) -> int:
    try:
        return parse_size(value)
    except InputError as exc:  # pydantic collects ValueErrors only
        raise ValueError(exc.problem + (f" (expected {exc.expected})" if exc.expected else "")) \
            from None


SizeBytes = Annotated[int, BeforeValidator(_size_validator)]
"""A byte count that also accepts `4k`, `32KiB`, `1m` in YAML."""

M = TypeVar("M", bound=BaseModel)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping with a key given twice (PyYAML keeps the last)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: str | os.PathLike) -> Any:
    """Parse a YAML file; a missing file or bad syntax is an InputError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError("file does not exist", file=p, expected="an existing YAML file")
    try:
        return yaml.load(p.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputError(f"malformed YAML at {where}: {problem}", file=p) from None
    except UnicodeDecodeError:
        raise InputError("not a text file", file=p, expected="UTF-8 YAML") from None


def validate_model(data: Any, model: type[M], *, file: str | os.PathLike | None = None) -> M:
    """Validate `data` against `model`; the first problem becomes a one-line InputError."""
    if not isinstance(data, dict):
        raise InputError(f"top level is {type(data).__name__}", file=file, expected="a mapping")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_to_input_error(exc, model, file=file) from None


def load_yaml_model(path: str | os.PathLike, model: type[M]) -> M:
    """Read and validate one YAML file into `model`."""
    return validate_model(read_yaml(path), model, file=path)


def validation_to_input_error(exc: ValidationError, model: type[BaseModel], *,
                              file: str | os.PathLike | None = None) -> InputError:
    """The first pydantic error as an InputError with a dotted key path."""
    # a misspelled key also shows up as a missing one: report the misspelling
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    err = errors[0]
    loc = [str(p) for p in err["loc"]]
    key = ".".join(loc) if loc else None
    if err["type"] == "value_error":  # our validators' own wording, without pydantic's prefix
        return InputError(str((err.get("ctx") or {}).get("error", err["msg"])), file=file, key=key)
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        return InputError(f"unknown key {loc[-1]!r}", file=file, key=key,
                          expected="one of " + ", ".join(allowed) if allowed else None)
    if err["type"] == "missing":
        return InputError("required key is missing", file=file, key=key)
    return InputError(f"{err['msg']} (got {err.get('input')!r})", file=file, key=key)


def _allowed_keys(model: type[BaseModel], path: list[str]) -> list[str]:
    """Field names of the (nested) model at `path`, to list in an unknown-key error."""
    current: Any = model
    for part in path:
        if part.isdigit():
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _innermost_model(field.annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def _innermost_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _innermost_model(arg)
        if found is not None:
            return found
    return None
