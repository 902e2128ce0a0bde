"""``kubectl mangakd``: status, revision history and on-call rollback of StudentModels.

Installed as the ``kubectl-mangakd`` console script, so kubectl finds it on
``PATH`` as a plugin::

    kubectl mangakd status NAME [-n NAMESPACE]
    kubectl mangakd history NAME
    kubectl mangakd rollback NAME [--to-revision N] [--timeout SECONDS]

``--namespace/-n``, ``--kubeconfig`` and ``--context`` work as in kubectl
(kubectl passes a plugin's flags through unchanged). A rollback is a
request that the operator carries out: the plugin writes the annotation
``mangakd.io/rollback-request`` with a merge patch that carries the
``metadata.resourceVersion`` it read. The API server rejects that patch with
409 Conflict when the StudentModel changed in between (a promotion, say),
and the plugin reports the conflict so that the user can retry. The plugin waits for
``status.rollback`` to report the request's outcome and prints what serves.

Exit codes: 0 success, 1 failure (not found, rejected, conflict, timeout), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from mangakd.resources import ROLLBACK_ANNOTATION, RollbackRequest
from mangakd.spec import API_GROUP, API_VERSION

PLURAL = "studentmodels"
MERGE_PATCH = "application/merge-patch+json"
POLL_SECONDS = 1.0


class PluginError(RuntimeError):
    """A failure to report on stderr with exit code 1."""


class Models:
    """Reads and patches StudentModels in one namespace."""

    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str | None) -> None:
        configuration = client.Configuration()
        try:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        except (ConfigException, FileNotFoundError) as error:
            raise PluginError(f"cannot load the kubeconfig: {error}; pass --kubeconfig or set KUBECONFIG") from None
        if context is not None:
            contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            active = next((item for item in contexts if item["name"] == context), active)
        self.namespace = namespace or (active or {}).get("context", {}).get("namespace") or "default"
        self.api = client.CustomObjectsApi(client.ApiClient(configuration))

    def get(self, name: str) -> dict[str, Any]:
        """Return the StudentModel ``name``.

        Raises
        ------
        PluginError
            When it does not exist or the API call fails.
        """
        try:
            response: Any = self.api.get_namespaced_custom_object(
                API_GROUP, API_VERSION, self.namespace, PLURAL, name, _preload_content=False
            )
        except ApiException as error:
            if error.status == 404:
                raise PluginError(
                    f'StudentModel "{name}" not found in namespace "{self.namespace}"; '
                    "list them with: kubectl get studentmodels -A"
                ) from None
            raise PluginError(f"reading StudentModel {self.namespace}/{name} failed: HTTP {error.status}") from None
        model: dict[str, Any] = json.loads(response.data)
        return model

    def annotate(self, name: str, resource_version: str, value: str) -> None:
        """Write the rollback annotation, only if the StudentModel still has ``resource_version``."""
        patch = {"metadata": {"resourceVersion": resource_version, "annotations": {ROLLBACK_ANNOTATION: value}}}
        try:
            self.api.patch_namespaced_custom_object(
                API_GROUP, API_VERSION, self.namespace, PLURAL, name, patch, _content_type=MERGE_PATCH
            )
        except ApiException as error:
            if error.status == 409:
                raise PluginError(
                    f"StudentModel {self.namespace}/{name} changed after it was read (resourceVersion "
                    f"{resource_version}), for example by a promotion; nothing was changed. "
                    "Check `kubectl mangakd status` and run the rollback again."
                ) from None
            raise PluginError(f"writing the rollback request failed: HTTP {error.status}: {error.reason}") from None


# ---- output -------------------------------------------------------------------------


def _artifact(record: dict[str, Any] | None) -> str:
    artifact = (record or {}).get("artifact") or {}
    return f"{artifact['pvc']}:{artifact['path']}" if artifact else "(none)"


def _record(status: dict[str, Any], revision: int | None) -> dict[str, Any] | None:
    for record in status.get("history") or []:
        if record.get("revision") == revision:
            return dict(record)
    return None


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in status.get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def format_status(model: dict[str, Any]) -> str:
    """Return the ``status`` report of one StudentModel."""
    metadata, status = model["metadata"], model.get("status") or {}
    total = ((model.get("spec") or {}).get("serving") or {}).get("replicas", 2)
    ready = _condition(status, "Ready")
    stable = status.get("stableRevision")
    lines = [
        f"StudentModel {metadata['namespace']}/{metadata['name']}",
        f"Phase:          {status.get('phase', '(not reconciled yet)')}",
        f"Ready:          {ready.get('status', 'Unknown')} ({ready.get('reason', '-')}): {ready.get('message', '')}",
        f"Serving:        {serving_line(status, total)}",
    ]
    canary = status.get("canaryRevision")
    if canary is not None:
        steps = len((((model.get("spec") or {}).get("rollout") or {}).get("steps")) or [])
        lines.append(
            f"Canary:         revision {canary} ({_artifact(_record(status, canary))}), step "
            f"{int(status.get('currentStep') or 0) + 1} of {steps} at {status.get('canaryWeight')}% of the pods"
        )
    else:
        lines.append("Canary:         none")
    last_good = status.get("lastGoodRevision")
    lines.append(f"Last good:      {f'revision {last_good}' if last_good else 'none'}")
    analysis = status.get("lastAnalysis")
    if analysis:
        lines.append(
            f"Last analysis:  {analysis['target']} revision {analysis['revision']} at {analysis['time']}: "
            f"{analysis['verdict']} ({analysis.get('message', '')})"
        )
    rollback = status.get("rollback")
    if rollback:
        lines.append(
            f"Last rollback:  request {rollback['id']} to revision {rollback.get('toRevision')}: "
            f"{rollback['result']} ({rollback.get('message', '')})"
        )
    if stable is None:
        lines.append("No revision is stable yet.")
    return "\n".join(lines)


def serving_line(status: dict[str, Any], total: int) -> str:
    """Describe the stable revision: number, artifact and ready pods."""
    stable = status.get("stableRevision")
    if stable is None:
        return "nothing yet"
    ready = status.get("readyReplicas", 0)
    return f"revision {stable} ({_artifact(_record(status, stable))}), {ready}/{total} pods ready"


def format_history(model: dict[str, Any]) -> str:
    """Return the revision table of one StudentModel, newest last; ``*`` marks the stable revision."""
    status = model.get("status") or {}
    rows = [("REVISION", "STATE", "ARTIFACT", "CREATED", "PROMOTED", "ENDED", "REASON", "MESSAGE")]
    for record in status.get("history") or []:
        marker = "*" if record.get("revision") == status.get("stableRevision") else ""
        rows.append(
            (
                f"{record['revision']}{marker}",
                record.get("state", ""),
                _artifact(record),
                record.get("createdAt", "") or "-",
                record.get("promotedAt", "") or "-",
                record.get("endedAt", "") or "-",
                record.get("reason", "") or "-",
                (record.get("message", "") or "")[:100],
            )
        )
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]) - 1)]
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "   " + row[-1]
             for row in rows]
    rollback = status.get("rollback")
    if rollback:
        lines.append(
            f"\nLast rollback: request {rollback['id']} to revision {rollback.get('toRevision')} at "
            f"{rollback.get('handledAt')}: {rollback['result']}. {rollback.get('message', '')}"
        )
    return "\n".join(line.rstrip() for line in lines)


# ---- rollback -----------------------------------------------------------------------------


def rollback(models: Models, name: str, to_revision: int | None, timeout: float) -> str:
    """Request a rollback, wait for the operator's outcome and return the report.

    Raises
    ------
    PluginError
        For an unknown revision, a revision without artifact, a conflict, a rejection or a timeout.
    """
    model = models.get(name)
    status = model.get("status") or {}
    known = [int(record["revision"]) for record in status.get("history") or []]
    target = to_revision if to_revision is not None else status.get("lastGoodRevision")
    if target is None:
        raise PluginError(
            f"StudentModel {models.namespace}/{name} has no earlier good revision to roll back to; "
            f"pass --to-revision with one of: {', '.join(map(str, known)) or 'none'}"
        )
    record = _record(status, target)
    if record is None:
        raise PluginError(
            f"revision {target} of StudentModel {models.namespace}/{name} is unknown; "
            f"known revisions: {', '.join(map(str, known)) or 'none'} (see kubectl mangakd history {name})"
        )
    if not record.get("artifact"):
        raise PluginError(f"revision {target} has no artifact recorded, so it cannot be served again")

    request = RollbackRequest(
        id=uuid.uuid4().hex[:12],
        to_revision=target,
        requested_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        observed_resource_version=model["metadata"]["resourceVersion"],
    )
    models.annotate(name, model["metadata"]["resourceVersion"], request.to_annotation())
    print(f"Requested rollback {request.id} of StudentModel {models.namespace}/{name} to revision {target}; "
          "waiting for the operator.", file=sys.stderr)

    deadline = time.monotonic() + timeout
    handled: dict[str, Any] = {}
    while time.monotonic() < deadline:
        model = models.get(name)
        handled = (model.get("status") or {}).get("rollback") or {}
        if handled.get("id") == request.id and handled.get("result") in ("Succeeded", "Rejected"):
            break
        time.sleep(POLL_SECONDS)
    else:
        state = json.dumps(handled) if handled else "no answer yet"
        raise PluginError(
            f"timed out after {timeout:g} s waiting for the operator to finish rollback {request.id}: "
            f"status.rollback is {state}. Check that the operator runs, then `kubectl mangakd status {name}`."
        )
    if handled["result"] == "Rejected":
        raise PluginError(f"the operator rejected rollback {request.id}: {handled.get('message', '')}")
    status = model.get("status") or {}
    total = ((model.get("spec") or {}).get("serving") or {}).get("replicas", 2)
    return (
        f"Rolled back StudentModel {models.namespace}/{name} to revision {handled.get('toRevision')}.\n"
        f"{handled.get('message', '')}\nServing: {serving_line(status, total)}"
    )


# ---- command line -------------------------------------------------------------------------------


def _add_connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--namespace", "-n", default=default, help="namespace (default: the context's namespace)")
    parser.add_argument(
        "--kubeconfig", default=default, help="kubeconfig file (default: KUBECONFIG, else ~/.kube/config)"
    )
    parser.add_argument("--context", default=default, help="kubeconfig context (default: the current context)")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``kubectl mangakd``."""
    parser = argparse.ArgumentParser(prog="kubectl mangakd", description="Inspect StudentModels and roll them back.")
    _add_connection_options(parser, None)
    # The same options after the subcommand; SUPPRESS keeps a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_options(common, argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", parents=[common], help="show what serves and the rollout's state")
    status.add_argument("name", help="StudentModel name")
    history = commands.add_parser("history", parents=[common], help="list the revisions")
    history.add_argument("name", help="StudentModel name")
    back = commands.add_parser("rollback", parents=[common], help="make an earlier revision stable")
    back.add_argument("name", help="StudentModel name")
    back.add_argument(
        "--to-revision", type=int, default=None, metavar="N", help="revision to roll back to (default: the last good one)"
    )
    back.add_argument(
        "--timeout", type=float, default=300.0, metavar="SECONDS",
        help="how long to wait for the operator to finish (default 300)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``kubectl mangakd`` and return the exit code."""
    args = build_parser().parse_args(argv)
    if getattr(args, "to_revision", None) is not None and args.to_revision < 1:
        print(f"error: --to-revision {args.to_revision} is invalid; revisions start at 1", file=sys.stderr)
        return 2
    try:
        models = Models(args.kubeconfig, args.context, args.namespace)
        if args.command == "status":
            print(format_status(models.get(args.name)))
        elif args.command == "history":
            print(format_history(models.get(args.name)))
        else:
            print(rollback(models, args.name, args.to_revision, args.timeout))
    except PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
