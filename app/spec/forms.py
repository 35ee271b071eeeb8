"""A wait's `form`: a small JSON Schema subset, checked when a workflow is registered,
and the data a person (or a signal) sends checked against it (docs/forms.md).

Our own validator rather than a JSON Schema library: the subset is small (an object of
string, number, integer, boolean, enum and arrays of those), every message must name the
field at fault for a 422, and a keyword we do not check must be refused at registration
rather than silently ignored (a `pattern` nobody enforces would be a false promise).
Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from typing import Any

SCALAR_TYPES = ("string", "number", "integer", "boolean")
FIELD_TYPES = (*SCALAR_TYPES, "array")
MAX_FIELDS = 100
MAX_FORM_BYTES = 64 * 1024  # a form is shown to people: a larger one is a mistake
MAX_ENUM = 1000
TEXT_LIMIT = 2000  # a title or description
_ANNOTATIONS = ("title", "description")
_FORM_KEYS = frozenset({"type", "properties", "required", "additionalProperties",
                        *_ANNOTATIONS})
_SCALAR_KEYS = frozenset({"type", "enum", "default", "minLength", "maxLength", "minimum",
                          "maximum", *_ANNOTATIONS})
_ARRAY_KEYS = frozenset({"type", "items", "default", "minItems", "maxItems", *_ANNOTATIONS})
_BOUNDS = {"string": ("minLength", "maxLength"), "number": ("minimum", "maximum"),
           "integer": ("minimum", "maximum"), "array": ("minItems", "maxItems")}


class FormError(ValueError):
    """A form, or data for it, that does not fit; `field` names where (None: the whole)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def check_form(form: Any) -> dict[str, Any]:
    """A form as a workflow may declare it, or FormError naming the field at fault."""
    if not isinstance(form, dict):
        raise FormError("a form is a JSON object (a JSON Schema with type 'object')")
    if len(json.dumps(form)) > MAX_FORM_BYTES:
        raise FormError(f"a form has at most {MAX_FORM_BYTES} bytes of JSON")
    _known_keys(form, _FORM_KEYS, "the form")
    if form.get("type", "object") != "object":
        raise FormError("a form's type is 'object'")
    _check_text(form, "the form")
    props = form.get("properties", {})
    if not isinstance(props, dict) or len(props) > MAX_FIELDS:
        raise FormError(f"a form's 'properties' is an object of at most {MAX_FIELDS} fields")
    for name, field in props.items():
        _check_field(name, field, array_ok=True)
    required = form.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise FormError("a form's 'required' is a list of field names")
    for name in required:
        if name not in props:
            raise FormError(f"'required' names {name!r}, which is not in 'properties'", name)
    if not isinstance(form.get("additionalProperties", True), bool):
        raise FormError("a form's 'additionalProperties' is true or false")
    return form


def _known_keys(schema: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(schema) - allowed)
    if unknown:
        raise FormError(f"{where}: unsupported keyword(s) {', '.join(map(repr, unknown))} "
                        f"(supported: {', '.join(sorted(allowed))})")


def _check_text(schema: dict[str, Any], where: str) -> None:
    for key in _ANNOTATIONS:
        value = schema.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > TEXT_LIMIT):
            raise FormError(f"{where}: {key!r} is a text of at most {TEXT_LIMIT} characters")


def _check_field(name: str, field: Any, *, array_ok: bool) -> None:
    where = f"field {name!r}" if array_ok else f"field {name!r} items"
    if not isinstance(field, dict):
        raise FormError(f"{where} is a JSON object (a schema)", name)
    kind = field.get("type")
    if kind is None and "enum" not in field:
        raise FormError(f"{where} needs a 'type' ({', '.join(FIELD_TYPES)}) or an 'enum'",
                        name)
    if kind is not None and kind not in (FIELD_TYPES if array_ok else SCALAR_TYPES):
        allowed = FIELD_TYPES if array_ok else SCALAR_TYPES
        raise FormError(f"{where}: type {kind!r} is not supported (one of "
                        f"{', '.join(allowed)})", name)
    _known_keys(field, _ARRAY_KEYS if kind == "array" else _SCALAR_KEYS, where)
    _check_text(field, where)
    for bound in _BOUNDS.get(kind or "", ()):
        value = field.get(bound)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value)):
            raise FormError(f"{where}: {bound!r} is a number", name)
    if kind == "array":
        if "items" not in field:
            raise FormError(f"{where}: an array needs 'items' (a scalar or enum schema)", name)
        _check_field(name, field["items"], array_ok=False)
    if "enum" in field:
        enum = field["enum"]
        if not isinstance(enum, list) or not 0 < len(enum) <= MAX_ENUM or not all(
                v is None or isinstance(v, str | int | float | bool) for v in enum):
            raise FormError(f"{where}: 'enum' is a list of 1 to {MAX_ENUM} scalars", name)
        for value in enum:
            if kind is not None:
                _check_value(name, field, value, enum_check=False)
    if "default" in field:
        _check_value(name, field, field["default"])


def validate_data(form: dict[str, Any], data: Any) -> dict[str, Any]:
    """`data` checked against `form` (already checked), with the defaults of the fields
    it leaves out filled in; FormError naming the first field at fault."""
    if not isinstance(data, dict):
        raise FormError("the data is a JSON object")
    props: dict[str, Any] = form.get("properties", {})
    if form.get("additionalProperties", True) is False:
        for name in data:
            if name not in props:
                raise FormError(f"field {name!r} is not in the form", name)
    filled = dict(data)
    for name, field in props.items():
        if name in data:
            _check_value(name, field, data[name])
        elif "default" in field:
            filled[name] = field["default"]
    for name in form.get("required", []):
        if name not in filled:
            raise FormError(f"field {name!r} is required", name)
    return filled


def _check_value(name: str, field: dict[str, Any], value: Any, *,
                 enum_check: bool = True) -> None:
    kind = field.get("type")
    if kind == "array":
        if not isinstance(value, list):
            raise FormError(f"field {name!r}: expected a list, got {_kind_of(value)}", name)
        for item in value:
            _check_value(name, field["items"], item)
        _check_bounds(name, field, len(value), "items")
        return
    if kind is not None and not _is(kind, value):
        raise FormError(f"field {name!r}: expected {_ARTICLE[kind]}, got {_kind_of(value)}",
                        name)
    if enum_check and "enum" in field and not any(
            value == option and type(value) is type(option) for option in field["enum"]):
        shown = ", ".join(json.dumps(v) for v in field["enum"][:10])
        raise FormError(f"field {name!r}: {json.dumps(value)[:80]} is not one of {shown}",
                        name)
    if kind == "string":
        _check_bounds(name, field, len(value), "characters")
    elif kind in ("number", "integer"):
        low, high = field.get("minimum"), field.get("maximum")
        if low is not None and value < low:
            raise FormError(f"field {name!r}: {value} is below the minimum {low}", name)
        if high is not None and value > high:
            raise FormError(f"field {name!r}: {value} is above the maximum {high}", name)


def _check_bounds(name: str, field: dict[str, Any], size: int, unit: str) -> None:
    low_key, high_key = ("minItems", "maxItems") if unit == "items" else \
        ("minLength", "maxLength")
    low, high = field.get(low_key), field.get(high_key)
    if low is not None and size < low:
        raise FormError(f"field {name!r}: at least {low} {unit}, got {size}", name)
    if high is not None and size > high:
        raise FormError(f"field {name!r}: at most {high} {unit}, got {size}", name)


_ARTICLE = {"string": "a string", "number": "a number", "integer": "an integer",
            "boolean": "true or false"}


def _is(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):  # JSON true is not the number 1
        return False
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return isinstance(value, int | float)


def _kind_of(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true or false",
            type(None): "null"}.get(type(value), "a number")
