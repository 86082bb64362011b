"""Typed configs from YAML files plus ``--set key=value`` overrides, with located errors.

Every trainer and recipe takes a pydantic model; this module fills it from an optional YAML
file, then applies dotted overrides (``--set lora.r=8``; values are parsed as YAML, so numbers,
booleans and lists work), and reports a bad key or value with the file, line and field.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from rulewise.errors import RulewiseError
from rulewise.fileio import load_document, validation_error

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """``data["a"]["b"]["c"] = value`` for ``key = "a.b.c"``, creating sections as needed."""
    parts = key.strip().split(".")
    target = data
    for part in parts[:-1]:
        child = target.setdefault(part, {})
        if not isinstance(child, dict):
            raise RulewiseError(f"cannot set '{key}': '{part}' is not a section", field=key)
        target = child
    target[parts[-1]] = value


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` to nested dicts, in place."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise RulewiseError(f"override '{assignment}' must look like key=value", field="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    set_dotted(data, key, value)


def load_config(
    model: type[ModelT], path: str | Path | None = None, overrides: Sequence[str] = (), **defaults: Any
) -> ModelT:
    """``defaults`` < YAML file < ``overrides``; validated into ``model``."""
    data: dict[str, Any] = dict(defaults)
    doc = None
    if path is not None:
        doc = load_document(path)
        if doc.data is not None and not isinstance(doc.data, dict):
            raise RulewiseError("a config file must be a mapping of keys to values", path=path)
        data.update(doc.data or {})
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise validation_error(
            exc, path=path or "<command line>", line_of=doc.line_of if doc else None
        ) from None
