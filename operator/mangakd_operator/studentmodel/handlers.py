"""Thin kopf handlers of StudentModels: observe, decide, measure when asked, apply, write status.

:func:`reconcile_model` runs on create, resume, spec change and every
``MANGAKD_ROLLOUT_INTERVAL`` seconds, under the same per-object lock scheme
as the DistillationRun handler. It never writes ``spec``; a rollback
request arrives as an annotation and its outcome is reported in ``status.rollback``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import kopf

from mangakd.resources import (
    ROLLBACK_ANNOTATION,
    RollbackRequest,
    StudentModel,
    parse_rollback_request,
    parse_student_model,
)
from mangakd.spec import API_GROUP, API_VERSION, SpecError
from mangakd.status import Reason, get_condition, now_rfc3339, set_condition

from ..config import OperatorConfig
from ..decision import status_patch
from ..kube import RejectedError, TransientApiError
from ..metrics import OperatorMetrics
from .kube import StudentModelApi
from .manifests import check_artifact_path
from .measure import Measurer
from .rollout import RolloutDecision, RolloutInput, decide

PLURAL = "studentmodels"

Logger = logging.Logger | logging.LoggerAdapter[Any]


def validate_model(body: Mapping[str, Any]) -> StudentModel:
    """Parse the StudentModel and check its artifact paths.

    Raises
    ------
    SpecError
        Headed by ``StudentModel NS/NAME``, with one line per problem.
    """
    metadata = body.get("metadata") or {}
    source = f"StudentModel {metadata.get('namespace')}/{metadata.get('name')}"
    model = parse_student_model(dict(body), source=source)
    check_artifact_path("spec.artifact", model.spec.artifact, source)
    if model.spec.teacher is not None:
        check_artifact_path("spec.teacher.artifact", model.spec.teacher.artifact, source)
    return model


def prune(value: Any) -> Any:
    """Drop None values from dicts, recursively, so that status writes compare equal to what was read."""
    if isinstance(value, dict):
        return {key: prune(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [prune(item) for item in value]
    return value


def reconcile_model(namespace: str, name: str, memo: Any, logger: Logger) -> None:
    """Reconcile one StudentModel.

    Raises
    ------
    kopf.TemporaryError
        After a transient API error, so kopf calls the handler again after ``retry_delay`` seconds.
    """
    api: StudentModelApi = memo.models
    measurer: Measurer = memo.measurer
    metrics: OperatorMetrics = memo.metrics
    config: OperatorConfig = memo.config
    lock: threading.Lock = memo.setdefault("model_lock", threading.Lock())
    with lock:
        try:
            body = api.get(namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return
            old = body.get("status") or {}
            try:
                model = validate_model(body)
            except SpecError as error:
                _write_rejected(api, namespace, name, body, str(error), logger, metrics)
                return
            decision = _decide(api, measurer, body, model, config, logger)
            for action in decision.actions:
                try:
                    changed = api.apply(namespace, action)
                except RejectedError as error:
                    _write_rejected(api, namespace, name, body, str(error), logger, metrics)
                    return
                if changed:
                    logger.info(action.message)
            patch = status_patch(prune(old), prune(decision.status))
            if patch:
                api.patch_status(namespace, name, patch)
        except TransientApiError as error:
            metrics.count_error(error.reason)
            logger.warning(f"{error}; retrying in {config.retry_delay:g} s.")
            raise kopf.TemporaryError(str(error), delay=config.retry_delay) from error

        observed = api.observe(namespace, name) if decision.baselines else None
        for request in decision.baselines:
            assert observed is not None
            measurer.baseline(body["metadata"]["uid"], request, observed, model.spec.serving.port)

    for item in decision.notes:
        logger.log(item.level, item.message)
    if decision.analysis is not None:
        metrics.count_analysis(*decision.analysis)
    if decision.promoted:
        metrics.count_rollout(True)
    if decision.reverted:
        metrics.count_rollout(False)
    if decision.guard_reverted:
        metrics.count_guard_revert()
    metrics.set_stable_revision(namespace, name, decision.status.get("stableRevision"))


def _decide(
    api: StudentModelApi,
    measurer: Measurer,
    body: dict[str, Any],
    model: StudentModel,
    config: OperatorConfig,
    logger: Logger,
) -> RolloutDecision:
    metadata = body["metadata"]
    observed = api.observe(metadata["namespace"], metadata["name"])
    inputs = RolloutInput(
        body=body,
        spec=model.spec,
        observed=observed,
        now=datetime.now(timezone.utc),
        config=config,
        rollback=_rollback_request(body, logger),
    )
    decision = decide(inputs)
    if decision.measure is None:
        return decision
    analysis = model.spec.rollout.analysis
    measurement = measurer.measure(
        metadata["uid"],
        decision.measure,
        observed,
        model.spec.serving.port,
        metadata["namespace"],
        metadata["name"],
        analysis.prometheus_url,
        time.time(),
    )
    return decide(replace(inputs, measurement=measurement))


def _rollback_request(body: Mapping[str, Any], logger: Logger) -> RollbackRequest | None:
    value = (body["metadata"].get("annotations") or {}).get(ROLLBACK_ANNOTATION)
    if not value:
        return None
    try:
        return parse_rollback_request(value)
    except SpecError as error:
        # Warn once per bad value, not on every timer tick.
        if value not in _REPORTED_BAD_REQUESTS:
            if len(_REPORTED_BAD_REQUESTS) > 1000:
                _REPORTED_BAD_REQUESTS.clear()
            _REPORTED_BAD_REQUESTS.add(value)
            logger.warning(f"Ignored the rollback request: {error}")
        return None


_REPORTED_BAD_REQUESTS: set[str] = set()


def _write_rejected(
    api: StudentModelApi,
    namespace: str,
    name: str,
    body: Mapping[str, Any],
    message: str,
    logger: Logger,
    metrics: OperatorMetrics,
) -> None:
    old = dict(body.get("status") or {})
    generation = int(body["metadata"].get("generation") or 1)
    ready = get_condition(old.get("conditions"), "Ready") or {}
    if old.get("observedGeneration") == generation and ready.get("message") == message:
        return
    conditions = set_condition(
        list(old.get("conditions") or []), "Ready", "False", Reason.INVALID_SPEC, message, generation
    )
    api.patch_status(
        namespace, name, {"phase": "Failed", "observedGeneration": generation, "conditions": conditions}
    )
    metrics.count_error("InvalidSpec")
    logger.warning(f"Rejected the spec of generation {generation} at {now_rfc3339()}: {message}")


def register_student_models(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Register the StudentModel handlers in ``registry``."""

    @kopf.on.resume(API_GROUP, API_VERSION, PLURAL, id="reconcile-model", registry=registry)
    @kopf.on.create(API_GROUP, API_VERSION, PLURAL, id="reconcile-model", registry=registry)
    @kopf.on.update(API_GROUP, API_VERSION, PLURAL, id="reconcile-model", field="spec", registry=registry)
    def on_model_change(*, namespace: str | None, name: str, memo: Any, logger: Logger, **_: Any) -> None:
        reconcile_model(namespace or "default", name, memo, logger)

    @kopf.on.timer(
        API_GROUP, API_VERSION, PLURAL, id="rollout-timer", interval=config.rollout_interval, registry=registry
    )
    def on_model_timer(*, namespace: str | None, name: str, memo: Any, logger: Logger, **_: Any) -> None:
        reconcile_model(namespace or "default", name, memo, logger)

    # Optional: no finalizer, so deleting a StudentModel never waits for the operator.
    @kopf.on.delete(API_GROUP, API_VERSION, PLURAL, id="forget-model", optional=True, registry=registry)
    def on_model_delete(*, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
        memo.metrics.set_stable_revision(namespace or "default", name, None)
