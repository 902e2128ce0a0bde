"""The subset of Kubernetes JSONPath used by ``additionalPrinterColumns``.

Supported: ``.field``, ``['field']``, ``[n]`` (negative too), ``[*]`` and
filters ``[?(@.path==value)]`` / ``[?(@.path!=value)]`` where value is a quoted
string or a number, optionally inside ``{...}``. For example
``.status.conditions[?(@.type=="Ready")].status``.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-/]+)"""
    r"""|\[\s*'(?P<quoted>[^']*)'\s*\]"""
    r"""|\[\s*"(?P<dquoted>[^"]*)"\s*\]"""
    r"""|\[\s*(?P<index>-?\d+)\s*\]"""
    r"""|\[\s*(?P<star>\*)\s*\]"""
    r"""|\[\?\(\s*@(?P<filter_path>(?:\.[A-Za-z0-9_\-/]+)+)\s*(?P<operator>==|!=)\s*(?P<value>"[^"]*"|'[^']*'|[-0-9.]+|true|false)\s*\)\]"""
)


class JsonPathError(ValueError):
    """A JSONPath expression outside the supported subset."""


def parse(expression: str) -> list[tuple[str, Any]]:
    """Parse an expression into steps; raise :class:`JsonPathError` naming the unparsed rest."""
    text = expression.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    steps: list[tuple[str, Any]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            raise JsonPathError(f"unsupported JSONPath {expression!r} at {text[position:]!r}: "
                                "use .field, [n], [*] or [?(@.field==\"value\")]")
        if match.group("field") is not None:
            steps.append(("field", match.group("field")))
        elif match.group("quoted") is not None or match.group("dquoted") is not None:
            steps.append(("field", match.group("quoted") if match.group("quoted") is not None else match.group("dquoted")))
        elif match.group("index") is not None:
            steps.append(("index", int(match.group("index"))))
        elif match.group("star") is not None:
            steps.append(("all", None))
        else:
            raw = match.group("value")
            value: Any = raw[1:-1] if raw[0] in "'\"" else (raw == "true" if raw in ("true", "false") else float(raw))
            path = match.group("filter_path")[1:].split(".")
            steps.append(("filter", (path, match.group("operator"), value)))
        position = match.end()
    return steps


def _lookup(value: Any, path: list[str]) -> Any:
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def evaluate(expression: str, obj: Any) -> list[Any]:
    """Return every value the expression selects in ``obj`` (empty when nothing matches)."""
    current = [obj]
    for kind, argument in parse(expression):
        selected: list[Any] = []
        for value in current:
            if kind == "field" and isinstance(value, dict) and argument in value:
                selected.append(value[argument])
            elif kind == "index" and isinstance(value, list) and -len(value) <= argument < len(value):
                selected.append(value[argument])
            elif kind == "all" and isinstance(value, list):
                selected.extend(value)
            elif kind == "all" and isinstance(value, dict):
                selected.extend(value.values())
            elif kind == "filter" and isinstance(value, list):
                path, operator, expected = argument
                for item in value:
                    actual = _lookup(item, path)
                    if isinstance(expected, float) and isinstance(actual, (int, float)):
                        equal = float(actual) == expected
                    else:
                        equal = actual == expected
                    if equal == (operator == "=="):
                        selected.append(item)
        current = selected
    return current
