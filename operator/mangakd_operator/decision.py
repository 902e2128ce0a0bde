"""Decisions of a reconcile: the actions to apply, the new status and the log lines.

These plain records are the interface between the pure logic in
:mod:`.reconcile` and :mod:`.phases` and the kopf handlers, which apply them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Action:
    """One change to make in the cluster.

    ``verb`` is ``create`` (an existing object of that name counts as done),
    ``apply`` (create, or update the spec of an existing object) or
    ``delete`` (a missing object counts as done). ``message`` is logged,
    and so posted as an Event, once the action has changed the cluster.
    """

    verb: Literal["create", "apply", "delete"]
    kind: Literal["ConfigMap", "Job", "StudentModel"]
    name: str
    message: str
    manifest: dict[str, Any] | None = None


@dataclass(frozen=True)
class Note:
    """A log line for the run's per-object logger; INFO and above become Events.

    A note with ``first`` set is logged before the actions' messages, the others after them.
    """

    level: int
    message: str
    first: bool = False


@dataclass
class Decision:
    """Result of :func:`reconcile`.

    Attributes
    ----------
    status : dict
        The complete new ``status`` (camelCase keys).
    actions : list of Action
        Changes to apply, in order, before the status is written.
    notes : list of Note
        Log lines describing the changes and phase transitions.
    gate_passed : bool or None
        The gate verdict when this decision records it for the first time.
    rejected : bool
        True when this decision records an invalid spec for the first time.
    """

    status: dict[str, Any]
    actions: list[Action] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    gate_passed: bool | None = None
    rejected: bool = False


def status_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Return the JSON merge patch (RFC 7386) that turns ``old`` into ``new``.

    Removed keys become ``None``; lists and scalars are replaced whole.
    """
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        previous = old.get(key)
        if isinstance(value, Mapping) and isinstance(previous, Mapping):
            nested = status_patch(previous, value)
            if nested:
                patch[key] = nested
        elif previous != value or key not in old:
            patch[key] = value
    return patch
