"""Revision records in ``status.history`` and the queries the rollout runs on them (pure code).

Records are plain dicts in the ``RevisionRecord`` form of
:mod:`mangakd.status` (camelCase keys), newest last. A revision is *good*
when it was promoted (became stable) and was never reverted by an
analysis; a revision that an on-call rollback left stays good, so a second
rollback can return to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from .manifests import RevisionTemplate


def rfc3339(moment: datetime) -> str:
    """Format a time as Kubernetes does, in UTC to the second."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    """Parse an RFC 3339 time from ``status``; None for None or an unreadable value."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def new_record(revision: int, template: RevisionTemplate, state: str, now: str) -> dict[str, Any]:
    """Return the record of a revision created now."""
    return {
        "revision": revision,
        "artifact": template.artifact.model_dump(by_alias=True),
        "serving": template.serving_snapshot(),
        "shadowing": template.shadowing,
        "specHash": template.spec_hash(),
        "state": state,
        "createdAt": now,
    }


def find(history: Iterable[Mapping[str, Any]], revision: int | None) -> dict[str, Any] | None:
    """Return the record of ``revision`` (the list's own dict, for updating), or None."""
    if revision is None:
        return None
    for record in history:
        if record.get("revision") == revision:
            return record  # type: ignore[return-value]
    return None


def is_good(record: Mapping[str, Any]) -> bool:
    """Return whether the revision was promoted and never reverted by an analysis."""
    return bool(record.get("promotedAt")) and record.get("state") != "Reverted"


def last_good(history: Iterable[Mapping[str, Any]], stable: int | None) -> int | None:
    """Return the newest good revision other than ``stable`` that still has an artifact, or None."""
    candidates = [
        int(record["revision"])
        for record in history
        if record.get("revision") != stable and is_good(record) and record.get("artifact")
    ]
    return max(candidates, default=None)


def trim(history: list[dict[str, Any]], limit: int, keep: set[int]) -> list[dict[str, Any]]:
    """Return the newest ``limit`` records, plus any older record in ``keep`` (stable, canary, last good)."""
    ordered = sorted(history, key=lambda record: int(record["revision"]))
    newest = ordered[-limit:]
    kept = [record for record in ordered[:-limit] if record["revision"] in keep] if len(ordered) > limit else []
    return kept + newest
