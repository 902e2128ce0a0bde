"""The reconcile decision for one DistillationRun: pure logic, no kopf and no API calls.

:func:`reconcile` takes the run as the API server returned it and what the
operator observed of its children. It returns a :class:`Decision` with the
objects to create or delete, the complete new ``status`` and the log lines
(mirrored as Events) that describe the changes. The same function runs on
every trigger (create, resume, spec update, timer), so its result depends
only on its inputs, never on which trigger called it.

Phases of one generation::

    Pending -> Training -> Evaluating -> Succeeded
       |          |            |
       +----------+------------+------> Failed (InvalidSpec, JobFailed, ResultUnreadable, GateFailed)

Succeeded and Failed are final for a generation. A new generation (a spec
change) starts again at Pending with Jobs named for it, and the Jobs and
ConfigMaps of older generations are deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from mangakd.spec import DistillationRun, SpecError, parse_run
from mangakd.status import Reason, get_condition, now_rfc3339, set_condition

from .config import OperatorConfig
from .decision import Action, Decision, Note, status_patch
from .names import config_map_name, evaluation_job_name, training_job_name
from .observe import Observed
from .phases import PhaseMachine

__all__ = [
    "Action",
    "Decision",
    "Note",
    "reconcile",
    "reject",
    "stale_children",
    "status_patch",
    "validate_run",
]

TERMINAL_PHASES = ("Succeeded", "Failed")


def validate_run(body: Mapping[str, Any]) -> DistillationRun:
    """Parse the run and check what the operator needs beyond the CRD schema.

    Raises
    ------
    SpecError
        With one ``field.path: message`` line per problem, headed by ``DistillationRun NS/NAME``.
    """
    metadata = body.get("metadata") or {}
    source = f"DistillationRun {metadata.get('namespace')}/{metadata.get('name')}"
    run = parse_run(dict(body), source=source)
    storage = run.spec.storage
    if storage is None:
        raise SpecError(
            f"{source} is invalid:\nspec.storage: required by the operator; set spec.storage.pvc to the "
            "PersistentVolumeClaim that holds the run's artifacts"
        )
    if storage.sub_path is not None:
        path = PurePosixPath(storage.sub_path)
        if path.is_absolute() or ".." in path.parts or not storage.sub_path.strip("/"):
            raise SpecError(
                f"{source} is invalid:\nspec.storage.subPath: {storage.sub_path!r} must be a relative folder "
                "inside the claim, without '..', e.g. runs/clinc150"
            )
    return run


def stale_children(observed: Observed, run_name: str, generation: int) -> list[Action]:
    """Return deletions of the Jobs and ConfigMaps that belong to other generations."""
    current_jobs = {training_job_name(run_name, generation), evaluation_job_name(run_name, generation)}
    current_map = config_map_name(run_name, generation)
    actions = [
        Action("delete", "Job", name, f"Deleted Job {name} of an earlier generation.")
        for name in sorted(observed.jobs)
        if name not in current_jobs
    ]
    actions += [
        Action("delete", "ConfigMap", name, f"Deleted ConfigMap {name} of an earlier generation.")
        for name in sorted(observed.config_maps)
        if name != current_map
    ]
    return actions


def reconcile(body: Mapping[str, Any], observed: Observed, config: OperatorConfig) -> Decision:
    """Decide the actions and the new status of one DistillationRun.

    Parameters
    ----------
    body : mapping
        The DistillationRun as read from the API server (metadata with uid and generation, spec, status).
    observed : Observed
        The run's Jobs, ConfigMaps and StudentModel as read from the API server.
    config : OperatorConfig
        Images and other operator settings used in the Job manifests.
    """
    metadata = body["metadata"]
    name = metadata["name"]
    generation = int(metadata.get("generation") or 1)
    old = dict(body.get("status") or {})
    actions = stale_children(observed, name, generation)
    notes: list[Note] = []

    # A final phase of this generation is kept; only leftovers of older generations are removed.
    if old.get("observedGeneration") == generation and old.get("phase") in TERMINAL_PHASES:
        return Decision(status=old, actions=actions, notes=notes)

    try:
        run = validate_run(body)
    except SpecError as error:
        return _rejected(old, generation, str(error), actions, notes)

    return PhaseMachine(body, run, observed, config, generation, old, actions, notes).decide()


def reject(body: Mapping[str, Any], message: str) -> Decision:
    """Decide the status of a run whose child the API server rejected as invalid (HTTP 400 or 422).

    Such a rejection comes from the run's spec (say, a malformed toleration),
    so retrying cannot help: the run fails with reason InvalidSpec.
    """
    generation = int(body["metadata"].get("generation") or 1)
    return _rejected(dict(body.get("status") or {}), generation, message, [], [])


def _rejected(
    old: dict[str, Any], generation: int, message: str, actions: list[Action], notes: list[Note]
) -> Decision:
    ready = get_condition(old.get("conditions"), "Ready") or {}
    if (
        old.get("observedGeneration") == generation
        and ready.get("reason") == Reason.INVALID_SPEC.value
        and ready.get("message") == message
    ):
        return Decision(status=old, actions=actions, notes=notes)
    ready_only = [condition for condition in old.get("conditions") or [] if condition.get("type") == "Ready"]
    status = {
        "phase": "Failed",
        "observedGeneration": generation,
        "conditions": set_condition(ready_only, "Ready", "False", Reason.INVALID_SPEC, message, generation),
        "completionTime": now_rfc3339(),
    }
    notes.append(Note(logging.WARNING, f"Rejected the spec of generation {generation}: {message}"))
    return Decision(status=status, actions=actions, notes=notes, rejected=True)
