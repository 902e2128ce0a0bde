"""Structural OpenAPI v3 schemas of CRDs: pruning, defaulting and validation.

The order matches kube-apiserver for custom resources: unknown fields are
pruned, then defaults are applied, then the object is validated. Error
messages follow the apiextensions validator, for example::

    spec.distillation.temperature: Invalid value: -1: spec.distillation.temperature in body should be greater than 0

Supported keywords: ``type``, ``properties``, ``additionalProperties``,
``items``, ``required``, ``enum``, ``minimum``/``maximum`` with
``exclusiveMinimum``/``exclusiveMaximum`` (OpenAPI v3.0 booleans),
``multipleOf``, ``minLength``/``maxLength``, ``pattern``,
``minItems``/``maxItems``, ``uniqueItems``, ``minProperties``/``maxProperties``,
``nullable``, ``default``, ``x-kubernetes-preserve-unknown-fields``,
``x-kubernetes-int-or-string`` and ``x-kubernetes-embedded-resource``.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

# NOTE: `allOf`/`anyOf`/`oneOf`/`not`, `format` and CEL rules
# (`x-kubernetes-validations`) are not evaluated; objects that only those
# rules would reject are accepted.

_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_INT_OR_STRING = "x-kubernetes-int-or-string"
_EMBEDDED = "x-kubernetes-embedded-resource"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def prune(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Remove fields the schema does not declare, in place; return the removed paths.

    At the root (``path == ""``) and in embedded resources, ``apiVersion``,
    ``kind`` and ``metadata`` are always kept.
    """
    removed: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        keep_unknown = bool(schema.get(_PRESERVE)) or additional is True
        always_kept = {"apiVersion", "kind", "metadata"} if (path == "" or schema.get(_EMBEDDED)) else set()
        for key in list(value):
            if key in always_kept:
                continue
            if properties is not None and key in properties:
                removed += prune(value[key], properties[key], _join(path, key))
            elif isinstance(additional, dict):
                removed += prune(value[key], additional, _join(path, key))
            elif not keep_unknown:
                del value[key]
                removed.append(_join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            removed += prune(item, schema["items"], f"{path}[{index}]")
    return removed


def apply_defaults(value: Any, schema: dict[str, Any]) -> None:
    """Fill missing fields with their schema defaults, in place.

    A field that is ``null`` in an object without ``nullable: true`` is dropped
    first and then defaulted, as kube-apiserver does.
    """
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for key, subschema in properties.items():
            if key in value and value[key] is None and not subschema.get("nullable"):
                del value[key]
            if key not in value and "default" in subschema:
                value[key] = copy.deepcopy(subschema["default"])
            if key in value:
                apply_defaults(value[key], subschema)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key in value:
                if key not in properties:
                    apply_defaults(value[key], additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


def format_value(value: Any) -> str:
    """Format a value as Go's field errors print it: strings quoted, numbers bare."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(value, separators=(",", ":"))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_matches(value: Any, schema: dict[str, Any]) -> bool:
    if schema.get(_INT_OR_STRING):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    expected = schema.get("type")
    actual = _json_type(value)
    if expected is None or expected == actual:
        return True
    if expected == "number" and actual == "integer":
        return True
    return expected == "integer" and actual == "number" and float(value).is_integer()


def _invalid(path: str, value: Any, detail: str) -> dict[str, str]:
    return {
        "reason": "FieldValueInvalid",
        "field": path,
        "message": f"{path}: Invalid value: {format_value(value)}: {path} in body {detail}",
    }


def validate(value: Any, schema: dict[str, Any], path: str = "") -> list[dict[str, str]]:
    """Return the field errors of ``value`` against ``schema`` as ``Status`` causes.

    Each cause has ``reason``, ``field`` and ``message``; an empty list means valid.
    """
    causes: list[dict[str, str]] = []

    if value is None:
        if schema.get("nullable") or (schema.get(_PRESERVE) and "type" not in schema):
            return causes
        expected = schema.get("type", "object")
        causes.append(_invalid(path, "null", f'must be of type {expected}: "null"'))
        return causes

    if not _type_matches(value, schema):
        expected = "integer-or-string" if schema.get(_INT_OR_STRING) else schema.get("type")
        actual = _json_type(value)
        causes.append(_invalid(path, actual, f'must be of type {expected}: "{actual}"'))
        return causes

    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(format_value(option) for option in schema["enum"])
        causes.append({
            "reason": "FieldValueNotSupported",
            "field": path,
            "message": f"{path}: Unsupported value: {format_value(value)}: supported values: {supported}",
        })

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        causes += _validate_number(value, schema, path)
    elif isinstance(value, str):
        causes += _validate_string(value, schema, path)
    elif isinstance(value, list):
        causes += _validate_array(value, schema, path)
    elif isinstance(value, dict):
        causes += _validate_object(value, schema, path)
    return causes


def _format_number(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _validate_number(value: float, schema: dict[str, Any], path: str) -> list[dict[str, str]]:
    causes = []
    if "minimum" in schema:
        minimum = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= minimum:
            causes.append(_invalid(path, value, f"should be greater than {_format_number(minimum)}"))
        elif value < minimum:
            causes.append(_invalid(path, value, f"should be greater than or equal to {_format_number(minimum)}"))
    if "maximum" in schema:
        maximum = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= maximum:
            causes.append(_invalid(path, value, f"should be less than {_format_number(maximum)}"))
        elif value > maximum:
            causes.append(_invalid(path, value, f"should be less than or equal to {_format_number(maximum)}"))
    multiple = schema.get("multipleOf")
    if multiple and not float(value / multiple).is_integer():
        causes.append(_invalid(path, value, f"should be a multiple of {_format_number(multiple)}"))
    return causes


def _validate_string(value: str, schema: dict[str, Any], path: str) -> list[dict[str, str]]:
    causes = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        causes.append(_invalid(path, value, f"should be at least {schema['minLength']} chars long"))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        causes.append(_invalid(path, value, f"should be at most {schema['maxLength']} chars long"))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        causes.append(_invalid(path, value, f"should match '{schema['pattern']}'"))
    return causes


def _validate_array(value: list[Any], schema: dict[str, Any], path: str) -> list[dict[str, str]]:
    causes = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        causes.append(_invalid(path, len(value), f"should have at least {schema['minItems']} items"))
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        causes.append(_invalid(path, len(value), f"should have at most {schema['maxItems']} items"))
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                causes.append({
                    "reason": "FieldValueDuplicate",
                    "field": f"{path}[{index}]",
                    "message": f"{path}[{index}]: Duplicate value: {format_value(item)}",
                })
            seen.append(item)
    items = schema.get("items")
    if isinstance(items, dict):
        for index, item in enumerate(value):
            causes += validate(item, items, f"{path}[{index}]")
    return causes


def _validate_object(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[dict[str, str]]:
    causes = []
    for key in schema.get("required") or []:
        if key not in value:
            field_path = _join(path, key)
            causes.append({"reason": "FieldValueRequired", "field": field_path, "message": f"{field_path}: Required value"})
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        causes.append(_invalid(path, len(value), f"should have at least {schema['minProperties']} properties"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        causes.append(_invalid(path, len(value), f"should have at most {schema['maxProperties']} properties"))
    properties = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if path == "" and key in ("apiVersion", "kind", "metadata"):
            continue
        if key in properties:
            causes += validate(item, properties[key], _join(path, key))
        elif isinstance(additional, dict):
            causes += validate(item, additional, _join(path, key))
    return causes


def check_structural(schema: Any) -> list[str]:
    """Return problems that make a CRD schema unusable here (empty when it is usable)."""
    if not isinstance(schema, dict):
        return ["openAPIV3Schema: Required value: schemas are required"]
    if schema.get("type") != "object":
        return [f'openAPIV3Schema.type: Unsupported value: {format_value(schema.get("type"))}: supported values: "object"']
    return []
