"""Command-line options generated from a parameter class, so every surface shares one schema.

A field added to :class:`~mcp_core.params.TrainParams` or :class:`~mcp_core.params.SegmentParams`
becomes an option (``snake_case`` -> ``--kebab-case``) with its type, choices, help text and default,
with no other edit.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from .errors import ParameterError
from .params import PYTHON_TYPES, json_schema, schema_fields


def add_options(parser: argparse.ArgumentParser, cls: type, skip: Iterable[str] = (),
                groups: Mapping[str, Any] | None = None, default_text: Mapping[str, str] | None = None) -> list[str]:
    """Add one option per field of the parameter class *cls*; returns the fields added.

    Parameters
    ----------
    parser
        The parser (or argument group) to add to.
    cls
        A pydantic dataclass.
    skip
        Fields the command declares itself (or never takes).
    groups
        ``{field: group}``: add that field's option to this (e.g. mutually exclusive) group instead.
    default_text
        ``{field: text}``: what to show as the default where the field's own is ``None`` because
        it is decided later (e.g. by the base model).

    Every option defaults to ``None`` (not given), so :func:`given` passes on only what the user
    typed and the class's own defaults apply to the rest.
    """
    groups, default_text = groups or {}, default_text or {}
    added = []
    for name, spec in schema_fields(json_schema(cls)).items():
        if name in skip:
            continue
        kwargs: dict[str, Any] = {"dest": name, "default": None}
        kind = spec.get("type")
        if kind == "boolean":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind == "array" and "prefixItems" in spec:  # a fixed-length tuple
            items = spec["prefixItems"]
            kwargs.update(type=PYTHON_TYPES[items[0].get("type", "string")], nargs=len(items))
        elif kind == "array":
            kwargs.update(type=PYTHON_TYPES[spec.get("items", {}).get("type", "string")], nargs="+")
        elif "enum" in spec:
            kwargs.update(choices=spec["enum"])
        else:
            kwargs["type"] = PYTHON_TYPES.get(kind, str)
        default = spec.get("default")
        shown = default_text.get(name) or ("none" if default is None else _show(default))
        text = spec.get("description") or spec.get("title") or ""
        kwargs["help"] = f"{text} (default: {shown})".strip().replace("%", "%%")
        (groups.get(name) or parser).add_argument("--" + name.replace("_", "-"), **kwargs)
        added.append(name)
    return added


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(map(str, value)) or "none"
    return str(value)


def given(args: argparse.Namespace, fields: Iterable[str]) -> dict[str, Any]:
    """``{field: value}`` for the options among *fields* that the user gave."""
    return {f: getattr(args, f) for f in fields if getattr(args, f, None) is not None}


def build(cls: type, fields: Mapping[str, Any]):
    """``cls(**fields)``, with a validation failure reported as one line naming the options.

    Raises
    ------
    ParameterError
        Naming each bad option (``--epochs: Input should be greater than or equal to 1``).
    """
    try:
        return cls(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        raise ParameterError(f"Invalid option(s): {problems}.") from exc
