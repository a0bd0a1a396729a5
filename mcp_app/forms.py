"""Forms generated from JSON schemas (pydantic parameter classes, plugin parameter schemas).

A field added to a parameter class appears in its form with no edit here: its ``title`` labels
the input, its ``description`` is the tooltip, and its ``group`` (``basic``, ``advanced`` or
``hidden``; see :data:`mcp_core.params.Group`) decides where it goes in a grouped form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nicegui import ui

from mcp_core.params import PYTHON_TYPES, schema_fields

from .channel_picker import ChannelPicker


class SchemaForm:
    """Inputs for the properties of a JSON schema; :meth:`values` returns the entered values.

    Parameters
    ----------
    schema
        A JSON schema (``mcp_core.params.json_schema(cls)`` or a plugin's parameter schema).
    fields
        The properties to show, in order; all but the ``hidden`` group when not given.
    values
        Starting values instead of the schema's defaults.
    choices
        ``{field: {value: label}}``: a select with these options instead of a text input.
    grouped
        Put the ``advanced`` fields in a folded "Advanced" section below the ``basic`` ones.
    channel_names
        The open image's channel names: a field named ``channels`` is then a
        :class:`~mcp_app.channel_picker.ChannelPicker` instead of a text input (its ``refresh()`` asks again,
        e.g. from ``Workspace.on_open``).
    """

    def __init__(self, schema: dict, fields: Iterable[str] | None = None, *, values: Mapping[str, Any] | None = None,
                 choices: Mapping[str, Mapping[Any, str]] | None = None, grouped: bool = False,
                 channel_names: Callable[[], Sequence[str]] | None = None) -> None:
        self.specs = schema_fields(schema)
        names = list(fields) if fields is not None else [n for n, s in self.specs.items() if s.get("group") != "hidden"]
        values, choices = values or {}, choices or {}
        self.inputs: dict[str, Any] = {}

        def add(group: list[str]) -> None:
            for name in group:
                spec = self.specs[name]
                start = values.get(name, spec.get("default"))
                if name == "channels" and channel_names is not None:  # the channel picker hook
                    self.inputs[name] = ChannelPicker(channel_names(), start, spec.get("title") or "Channels",
                                                      spec.get("description", ""), channel_names).mark(f"field-{name}")
                    continue
                self.inputs[name] = _input_for(name, spec, start, choices.get(name))

        basic = [n for n in names if not grouped or self.specs[n].get("group") == "basic"]
        with ui.column().classes("w-full gap-0"):
            add(basic)
            if len(basic) < len(names):
                with ui.expansion("Advanced").classes("w-full").props("dense").mark("advanced-options"):
                    add([n for n in names if n not in basic])

    def set(self, name: str, value: Any) -> None:
        """Show *value* in the input of field *name*."""
        element = self.inputs[name]
        element.value = value if isinstance(element, ChannelPicker) else _shown(self.specs[name], value)

    def values(self) -> dict[str, Any]:
        """``{field: value}`` typed as the schema says; an empty optional input gives ``None``."""
        return {name: element.value if isinstance(element, ChannelPicker) else _parsed(self.specs[name], element.value)
                for name, element in self.inputs.items()}


def _shown(spec: dict, value: Any) -> Any:
    """*value* as its input holds it (arrays as comma-separated text)."""
    if spec.get("type") == "array":
        return ", ".join(map(str, value or ()))
    if spec.get("type") in ("string", None) and "enum" not in spec:
        return "" if value is None else str(value)
    return value


def _parsed(spec: dict, value: Any) -> Any:
    kind = spec.get("type")
    if value is None or (isinstance(value, str) and not value.strip() and kind != "string"):
        return None if spec.get("nullable") or kind == "array" else value
    if kind == "string" and value == "" and spec.get("nullable"):
        return None
    if kind == "array":
        item = (spec.get("prefixItems") or [spec.get("items", {})])[0].get("type")
        cast = PYTHON_TYPES.get(item, str)
        return [cast(v.strip()) for v in str(value).split(",") if v.strip()]
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    return value


def _input_for(name: str, spec: dict, value: Any, choices: Mapping[Any, str] | None):
    label = spec.get("title") or name.replace("_", " ").capitalize()
    kind = spec.get("type")
    element: Any
    if choices is not None or "enum" in spec:
        element = ui.select(dict(choices) if choices is not None else list(spec["enum"]), value=value, label=label)
    elif kind == "boolean":
        element = ui.checkbox(label, value=bool(value))
    elif kind in ("integer", "number"):
        element = ui.number(label, value=value, min=spec.get("minimum", spec.get("exclusiveMinimum")),
                            max=spec.get("maximum", spec.get("exclusiveMaximum")),
                            step=1 if kind == "integer" else None)
    else:
        element = ui.input(label, value=_shown(spec, value))
    element.props("dense").classes("w-full").mark(f"field-{name}")
    if spec.get("description"):
        element.tooltip(spec["description"])
    return element


def schema_form(schema: dict, fields: Iterable[str] | None = None, **options: Any) -> SchemaForm:
    """Build a :class:`SchemaForm` in the current container (keyword options as :class:`SchemaForm`)."""
    return SchemaForm(schema, fields, **options)
