"""API errors of the development cluster, rendered as Kubernetes ``Status`` objects.

Clients branch on ``reason`` and ``code`` (kopf on 404/409/410, kubectl on
``reason`` when it prints ``Error from server (NotFound): ...``), so every error
the server returns carries the same reason and code as kube-apiserver would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ApiError(Exception):
    """An error that the HTTP layer returns as a ``Status`` object.

    Attributes
    ----------
    code : int
        HTTP status code.
    reason : str
        Kubernetes ``StatusReason`` (``NotFound``, ``Invalid``, ...).
    message : str
        Human-readable message that kubectl prints after ``Error from server``.
    details : dict
        ``Status.details``: name, group, kind and, for ``Invalid``, ``causes``.
    """

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def to_status(self) -> dict[str, Any]:
        """Return the ``Status`` object for this error."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def qualified_resource(plural: str, group: str) -> str:
    """Return ``plural.group`` as Kubernetes names a resource in messages (``pods`` for core)."""
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{qualified_resource(plural, group)} "{name}" not found',
        {"name": name, "group": group, "kind": plural},
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{qualified_resource(plural, group)} "{name}" already exists',
        {"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {qualified_resource(plural, group)} "{name}": '
        "the object has been modified; please apply your changes to the latest version "
        "and try again",
        {"name": name, "group": group, "kind": plural},
    )


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    """Build the 422 ``Invalid`` error from field causes.

    Each cause has ``reason`` (``FieldValueInvalid``, ``FieldValueRequired``, ...),
    ``field`` and ``message``, where ``message`` already starts with the field
    path, as in ``spec.x: Invalid value: -1: ...``.
    """
    qualified_kind = f"{kind}.{group}" if group else kind
    messages = [cause["message"] for cause in causes]
    joined = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    # In Status.details the cause message omits the field, which has its own key;
    # kubectl joins them again as "FIELD: MESSAGE".
    detail_causes = [
        {**cause, "message": cause["message"].removeprefix(f"{cause['field']}: ")} for cause in causes
    ]
    return ApiError(
        422, "Invalid", f'{qualified_kind} "{name}" is invalid: {joined}',
        {"name": name, "group": group, "kind": kind, "causes": detail_causes},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; the request used {content_type!r}")


def forbidden(message: str, details: dict[str, Any] | None = None) -> ApiError:
    return ApiError(403, "Forbidden", message, details or {})


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def path_not_found(path: str) -> ApiError:
    return ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
