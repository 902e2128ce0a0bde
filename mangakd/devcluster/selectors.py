"""Label and field selectors, parsed from the ``labelSelector`` and ``fieldSelector`` query parameters.

Label selector syntax (as in ``kubectl get -l``): ``a=b``, ``a==b``, ``a!=b``,
``a in (x,y)``, ``a notin (x)``, ``a`` (exists) and ``!a`` (does not exist),
joined by commas. Field selectors accept ``path=value``, ``path==value`` and
``path!=value`` where the path is a dotted field path such as ``metadata.name``
or ``involvedObject.kind``. Unlike kube-apiserver, which allows only a fixed
set of field paths per resource, any dotted path is accepted here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector."""

    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!exists":
            return self.key not in labels
        if self.operator in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        # "!=" and "notin" match objects without the label too, as in Kubernetes.
        return labels.get(self.key) not in self.values


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def _check_key(key: str, selector: str) -> str:
    if not _LABEL_KEY.match(key):
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in selector {selector!r}")
    return key


def parse_label_selector(selector: str | None) -> list[Requirement]:
    """Parse a label selector string into requirements; an empty selector matches everything.

    Raises
    ------
    ApiError
        400 ``BadRequest`` naming the clause that does not parse.
    """
    if not selector:
        return []
    requirements = []
    for clause in _split_top_level(selector):
        set_match = re.match(r"^(\S+)\s+(in|notin)\s*\((.*)\)$", clause)
        if set_match:
            key, operator, raw_values = set_match.groups()
            values = frozenset(value.strip() for value in raw_values.split(",") if value.strip())
            requirements.append(Requirement(_check_key(key, selector), operator, values))
            continue
        if clause.startswith("!"):
            requirements.append(Requirement(_check_key(clause[1:].strip(), selector), "!exists"))
            continue
        equality = re.match(r"^([^=!\s]+)\s*(==|=|!=)\s*(\S*)$", clause)
        if equality:
            key, operator, value = equality.groups()
            operator = "=" if operator == "==" else operator
            requirements.append(Requirement(_check_key(key, selector), operator, frozenset([value])))
            continue
        requirements.append(Requirement(_check_key(clause, selector), "exists"))
    return requirements


def match_labels(requirements: list[Requirement], obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(requirement.matches(labels) for requirement in requirements)


def selector_from_label_selector_object(selector: Mapping[str, Any] | None) -> list[Requirement]:
    """Convert a ``LabelSelector`` object (``matchLabels``, ``matchExpressions``) to requirements."""
    if not selector:
        return []
    requirements = [
        Requirement(key, "=", frozenset([str(value)]))
        for key, value in (selector.get("matchLabels") or {}).items()
    ]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expression in selector.get("matchExpressions") or []:
        operator = operators.get(expression.get("operator", ""))
        if operator is None:
            raise bad_request(f"invalid label selector operator {expression.get('operator')!r}: use In, NotIn, Exists or DoesNotExist")
        requirements.append(Requirement(expression["key"], operator, frozenset(expression.get("values") or [])))
    return requirements


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """Render a ``LabelSelector`` object in the string syntax, as kubectl shows it."""
    parts = [f"{key}={value}" for key, value in ((selector or {}).get("matchLabels") or {}).items()]
    for expression in (selector or {}).get("matchExpressions") or []:
        values = ",".join(expression.get("values") or [])
        operator = expression.get("operator")
        if operator == "Exists":
            parts.append(expression["key"])
        elif operator == "DoesNotExist":
            parts.append("!" + expression["key"])
        else:
            parts.append(f"{expression['key']} {operator.lower()} ({values})")
    return ",".join(parts)


@dataclass(frozen=True)
class FieldRequirement:
    """One clause of a field selector: a dotted path compared with ``=`` or ``!=``."""

    path: tuple[str, ...]
    equal: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        current: Any = obj
        for part in self.path:
            current = current.get(part) if isinstance(current, Mapping) else None
        if current is None:
            actual = ""
        elif isinstance(current, bool):
            actual = "true" if current else "false"
        else:
            actual = str(current)
        return (actual == self.value) == self.equal


def parse_field_selector(selector: str | None) -> list[FieldRequirement]:
    """Parse ``a.b=c,d!=e``; raise a 400 error naming a clause without an operator."""
    if not selector:
        return []
    requirements = []
    for clause in _split_top_level(selector):
        match = re.match(r"^([^=!]+)(==|=|!=)(.*)$", clause)
        if not match:
            raise bad_request(f"invalid field selector clause {clause!r}: expected path=value or path!=value")
        path, operator, value = match.groups()
        requirements.append(FieldRequirement(tuple(path.strip().split(".")), operator != "!=", value.strip()))
    return requirements


def match_fields(requirements: list[FieldRequirement], obj: Mapping[str, Any]) -> bool:
    return all(requirement.matches(obj) for requirement in requirements)


def build_matcher(label_selector: str | None, field_selector: str | None) -> Callable[[Mapping[str, Any]], bool]:
    """Return a predicate that applies both selectors to an object."""
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector)

    def matches(obj: Mapping[str, Any]) -> bool:
        return match_labels(labels, obj) and match_fields(fields, obj)

    return matches
