"""Forms generated from JSON schemas (pydantic parameter classes, plugin parameter schemas)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nicegui import ui


class SchemaForm:
    """Inputs for the properties of a JSON schema; :meth:`values` returns the entered values."""

    def __init__(self, schema: dict, fields: Iterable[str] | None = None) -> None:
        self.schema = schema
        props = schema.get("properties", {})
        self.inputs: dict[str, Any] = {}
        with ui.column().classes("w-full gap-0"):
            for name in fields or props:
                spec = props[name]
                self.inputs[name] = _input_for(name, _resolve(spec, schema))

    def values(self) -> dict[str, Any]:
        out = {}
        for name, element in self.inputs.items():
            value = element.value
            spec = _resolve(self.schema["properties"][name], self.schema)
            if spec.get("type") == "integer" and value is not None:
                value = int(value)
            out[name] = value
        return out


def _resolve(spec: dict, schema: dict) -> dict:
    if "$ref" in spec:
        return schema.get("$defs", {}).get(spec["$ref"].split("/")[-1], spec)
    if "anyOf" in spec:  # Optional[x]: take the non-null branch, keep the default
        branch = next((s for s in spec["anyOf"] if s.get("type") != "null"), {})
        return {**branch, **{k: v for k, v in spec.items() if k != "anyOf"}}
    return spec


def _input_for(name: str, spec: dict):
    label = spec.get("title") or name.replace("_", " ").capitalize()
    default = spec.get("default")
    kind = spec.get("type")
    element: Any
    if "enum" in spec:
        element = ui.select(list(spec["enum"]), value=default, label=label)
    elif kind == "boolean":
        element = ui.checkbox(label, value=bool(default))
    elif kind in ("integer", "number"):
        element = ui.number(label, value=default, min=spec.get("minimum", spec.get("exclusiveMinimum")),
                            max=spec.get("maximum", spec.get("exclusiveMaximum")),
                            step=1 if kind == "integer" else None)
    else:
        element = ui.input(label, value="" if default is None else str(default))
    element.props("dense").classes("w-full")
    if spec.get("description"):
        element.tooltip(spec["description"])
    return element


def schema_form(schema: dict, fields: Iterable[str] | None = None) -> SchemaForm:
    """Build a :class:`SchemaForm` in the current container."""
    return SchemaForm(schema, fields)
