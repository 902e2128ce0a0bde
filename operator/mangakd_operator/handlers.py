"""Thin kopf handlers: read the run and its children, call :func:`.reconcile.reconcile`, apply, write status.

One function, :func:`reconcile_run`, runs on create, resume, spec update
and on a timer, so the operator is level-triggered: whatever the trigger,
it compares the cluster with the spec and takes the next step. A restarted
operator therefore continues where the previous one stopped.

Handlers are synchronous because the official ``kubernetes`` client is, and
kopf runs them in its thread pool. A timer may fire while a change handler
of the same run is running, so a per-run lock in kopf's per-object memo
serialises them. Each reconcile reads the run afresh and writes its status
itself. It does not use kopf's patch, which kopf applies after the handler
returns and so after the lock is released.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import kopf

from mangakd.spec import API_GROUP, API_VERSION

from .config import OperatorConfig
from .kube import KubeApi, RejectedError, TransientApiError
from .metrics import OperatorMetrics
from .observe import Observed
from .reconcile import Decision, reconcile, reject, status_patch
from .results import ResultError, parse_result
from .studentmodel.handlers import register_student_models
from .studentmodel.kube import StudentModelApi
from .studentmodel.measure import Measurer

Logger = logging.Logger | logging.LoggerAdapter[Any]

PLURAL = "distillationruns"
PREFIX = API_GROUP
FINALIZER = f"{API_GROUP}/finalizer"


class RoutineSuccessFilter(logging.Filter):
    """Keep kopf's routine success lines out of Events; they still reach the log.

    With ``posting.loggers`` on, kopf would post "Timer 'reconcile-timer'
    succeeded." as an Event on every tick of every run. kopf skips posting a
    record whose ``k8s_skip`` attribute is true.
    """

    ROUTINE = re.compile(r"^(Timer|Handler) '[^']*' succeeded\.$|^\w+ is processed: ")

    def filter(self, record: logging.LogRecord) -> bool:
        if self.ROUTINE.match(record.getMessage()):
            record.k8s_skip = True
        return True


def configure_settings(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """Apply the operator's kopf settings.

    Progress and the diff base live in ``mangakd.io/`` annotations, because
    kopf's default also writes ``status.kopf``, which the CRD schema prunes.
    Log lines of the per-object logger at INFO and above become Events.
    """
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    settings.persistence.finalizer = FINALIZER
    settings.posting.enabled = True
    settings.posting.loggers = True
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = config.watch_timeout
    objects_logger = logging.getLogger("kopf.objects")
    if not any(isinstance(existing, RoutineSuccessFilter) for existing in objects_logger.filters):
        objects_logger.addFilter(RoutineSuccessFilter())


def reconcile_run(namespace: str, name: str, memo: Any, logger: Logger) -> None:
    """Reconcile one DistillationRun: observe, decide, apply the actions, write the status.

    Raises
    ------
    kopf.TemporaryError
        After a transient API error, so kopf calls the handler again after ``retry_delay`` seconds.
    """
    kube: KubeApi = memo.kube
    metrics: OperatorMetrics = memo.metrics
    config: OperatorConfig = memo.config
    lock: threading.Lock = memo.setdefault("reconcile_lock", threading.Lock())
    with lock:
        try:
            body = kube.get_run(namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                logger.debug("Skipped the reconcile: the DistillationRun is gone or being deleted.")
                return
            observed = kube.observe(namespace, name)
            decision = reconcile(body, observed, config)
            for note in decision.notes:
                if note.first:
                    logger.log(note.level, note.message)
            try:
                for action in decision.actions:
                    changed = kube.apply_action(namespace, action)
                    if changed:
                        logger.info(action.message)
                    else:
                        logger.debug("%s %s %s was already done.", action.verb, action.kind, action.name)
            except RejectedError as error:
                decision = reject(body, str(error))
            _write_status(kube, namespace, name, body.get("status") or {}, decision)
        except TransientApiError as error:
            metrics.count_error(error.reason)
            logger.warning(f"{error}; retrying in {config.retry_delay:g} s.")
            raise kopf.TemporaryError(str(error), delay=config.retry_delay) from error

    for note in decision.notes:
        if not note.first:
            logger.log(note.level, note.message)
    _record_metrics(metrics, body, observed, decision)


def _write_status(kube: KubeApi, namespace: str, name: str, old: dict[str, Any], decision: Decision) -> None:
    patch = status_patch(old, decision.status)
    if patch:
        kube.patch_run_status(namespace, name, patch)


def _record_metrics(
    metrics: OperatorMetrics, body: dict[str, Any], observed: Observed, decision: Decision
) -> None:
    metrics.set_phase(body["metadata"]["uid"], decision.status.get("phase"))
    if decision.gate_passed is not None:
        metrics.count_gate(decision.gate_passed)
    if decision.rejected:
        metrics.count_error("InvalidSpec")
    for job in observed.jobs.values():
        if job.state != "Succeeded":
            continue
        try:
            result = parse_result(job.message, f"Job {job.name}")
        except ResultError:
            continue
        metrics.observe_job(job.uid, result.stages)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Register the operator's handlers in ``registry``, with the timer interval from ``config``."""

    @kopf.on.login(id="login", registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of one's own lacks kopf's default login handlers; this is
        # the one kopf would pick (in-cluster ServiceAccount, else kubeconfig).
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(id="startup", registry=registry)
    def start(*, settings: kopf.OperatorSettings, memo: Any, logger: Logger, **_: Any) -> None:
        configure_settings(settings, config)
        memo.config = config
        memo.kube = KubeApi.connect()
        memo.models = StudentModelApi(memo.kube)
        memo.measurer = Measurer(config.scrape_timeout)
        memo.metrics = OperatorMetrics()
        memo.metrics.serve(config.metrics_port, config.metrics_address)
        where = f"on {config.metrics_address}:{config.metrics_port}" if config.metrics_port else "disabled"
        logger.info(
            f"Started the mangakd operator: reconcile every {config.reconcile_interval:g} s, "
            f"StudentModels every {config.rollout_interval:g} s, metrics {where}, "
            f"trainer image {config.trainer_image}, evaluator image {config.evaluator_image}, "
            f"server image {config.server_image}."
        )

    @kopf.on.cleanup(id="shutdown", registry=registry)
    def stop(*, memo: Any, logger: Logger, **_: Any) -> None:
        kube = memo.get("kube")
        if kube is not None:
            kube.close()
        logger.info("Stopped the mangakd operator.")

    @kopf.on.resume(API_GROUP, API_VERSION, PLURAL, id="reconcile", registry=registry)
    @kopf.on.create(API_GROUP, API_VERSION, PLURAL, id="reconcile", registry=registry)
    @kopf.on.update(API_GROUP, API_VERSION, PLURAL, id="reconcile", field="spec", registry=registry)
    def on_change(*, namespace: str | None, name: str, memo: Any, logger: Logger, **_: Any) -> None:
        reconcile_run(namespace or "default", name, memo, logger)

    @kopf.on.timer(
        API_GROUP, API_VERSION, PLURAL, id="reconcile-timer", interval=config.reconcile_interval, registry=registry
    )
    def on_timer(*, namespace: str | None, name: str, memo: Any, logger: Logger, **_: Any) -> None:
        reconcile_run(namespace or "default", name, memo, logger)

    @kopf.on.delete(API_GROUP, API_VERSION, PLURAL, id="cleanup", registry=registry)
    def on_delete(
        *,
        namespace: str | None,
        name: str,
        uid: str,
        spec: kopf.Spec,
        memo: Any,
        logger: Logger,
        **_: Any,
    ) -> None:
        kube: KubeApi = memo.kube
        try:
            deleted = kube.delete_children(namespace or "default", name)
        except TransientApiError as error:
            memo.metrics.count_error(error.reason)
            logger.warning(f"{error}; retrying the cleanup in {config.retry_delay:g} s.")
            raise kopf.TemporaryError(str(error), delay=config.retry_delay) from error
        memo.metrics.set_phase(uid, None)
        claim = (spec.get("storage") or {}).get("pvc")
        artifacts_note = f" The artifacts on PersistentVolumeClaim {claim} were kept." if claim else ""
        logger.info(f"Deleted {', '.join(deleted) if deleted else 'no children'}.{artifacts_note}")

    register_student_models(registry, config)
