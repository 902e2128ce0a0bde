"""Object metadata helpers: timestamps, names, generated names and name validation."""

from __future__ import annotations

import datetime
import random
import re
from typing import Any

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# The alphabet of kube-apiserver's generated name suffixes: no vowels (no words)
# and no look-alike characters.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def format_time(moment: datetime.datetime | None = None) -> str:
    """Format as RFC 3339 with seconds, as ``metav1.Time`` is serialized."""
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(moment: datetime.datetime | None = None) -> str:
    """Format as RFC 3339 with microseconds, as ``metav1.MicroTime`` is serialized."""
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime.datetime | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def generate_name(prefix: str) -> str:
    return prefix + "".join(random.choice(_SUFFIX_ALPHABET) for _ in range(5))


def name_causes(name: str, dns_label: bool) -> list[dict[str, str]]:
    """Return ``Status`` causes for an invalid object name (empty when valid)."""
    if dns_label:
        if len(name) <= 63 and _LABEL.match(name):
            return []
        detail = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                  "and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', "
                  "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
    else:
        if len(name) <= 253 and _SUBDOMAIN.match(name):
            return []
        detail = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                  "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                  "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    return [{"reason": "FieldValueInvalid", "field": "metadata.name",
             "message": f'metadata.name: Invalid value: "{name}": {detail}'}]


def metadata(obj: dict[str, Any]) -> dict[str, Any]:
    """Return ``obj["metadata"]``, creating it when missing."""
    value = obj.get("metadata")
    if not isinstance(value, dict):
        value = {}
        obj["metadata"] = value
    return value


def owner_uids(obj: dict[str, Any]) -> list[str]:
    return [ref.get("uid", "") for ref in (obj.get("metadata") or {}).get("ownerReferences") or []]


def owner_reference(owner: dict[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """Build an owner reference to ``owner`` as controllers set it on their children."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }
