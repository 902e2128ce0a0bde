"""Prometheus metrics of the operator, served by prometheus-client on their own port.

Metrics (all prefixed ``mangakd_operator_``):

- ``distillation_runs{phase}``: gauge of the runs this process watches, by phase;
- ``stage_duration_seconds{stage}``: histogram of stage durations read from
  the termination messages of finished Jobs, observed once per Job and
  operator process (stages skipped as complete are not observed);
- ``gate_results_total{result}``: counter of gate verdicts, ``passed`` or ``failed``;
- ``reconcile_errors_total{reason}``: counter of failed reconciles, by reason
  (``InvalidSpec``, ``Conflict``, ``ServerError``, ``Connection``, ...);
- ``rollouts_total{result}``: counter of finished canary rollouts, ``promoted`` or ``reverted``;
- ``guard_reverts_total``: counter of reverts started by the guard after promotion;
- ``analysis_results_total{target,result}``: counter of analyses, target ``canary`` or
  ``stable`` (guard), result ``Passed``, ``Failed`` or ``Inconclusive``;
- ``stable_revision{namespace,studentmodel}``: gauge of each StudentModel's stable revision.

Each :class:`OperatorMetrics` owns its registry, so tests can create
several without clashing in prometheus-client's global registry.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .names import ALL_STAGES
from .results import StageResult

PHASES = ("Pending", "Training", "Evaluating", "Succeeded", "Failed")
# Stages last from milliseconds (gate) to hours (distill on the full data set).
DURATION_BUCKETS = (0.1, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)


class OperatorMetrics:
    """The operator's metrics and the bookkeeping that keeps them counted once."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.runs = Gauge(
            "mangakd_operator_distillation_runs",
            "DistillationRuns watched by this operator, by phase.",
            ["phase"],
            registry=self.registry,
        )
        self.stage_duration = Histogram(
            "mangakd_operator_stage_duration_seconds",
            "Duration of pipeline stages run by the operator's Jobs.",
            ["stage"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.gate_results = Counter(
            "mangakd_operator_gate_results",
            "Gate verdicts of DistillationRuns.",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "mangakd_operator_reconcile_errors",
            "Reconciles that failed or rejected a spec, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.rollouts = Counter(
            "mangakd_operator_rollouts",
            "Finished canary rollouts of StudentModels, by result.",
            ["result"],
            registry=self.registry,
        )
        self.guard_reverts = Counter(
            "mangakd_operator_guard_reverts",
            "Reverts of a stable StudentModel revision started by the guard.",
            registry=self.registry,
        )
        self.analysis_results = Counter(
            "mangakd_operator_analysis_results",
            "Analyses of StudentModel revisions, by target (canary, stable) and result.",
            ["target", "result"],
            registry=self.registry,
        )
        self.stable_revision = Gauge(
            "mangakd_operator_stable_revision",
            "The stable revision of each StudentModel.",
            ["namespace", "studentmodel"],
            registry=self.registry,
        )
        for result in ("promoted", "reverted"):
            self.rollouts.labels(result=result)
        for phase in PHASES:
            self.runs.labels(phase=phase).set(0)
        for result in ("passed", "failed"):
            self.gate_results.labels(result=result)
        self._lock = threading.Lock()
        self._phases: dict[str, str] = {}
        self._observed_jobs: set[str] = set()

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve ``/metrics`` on ``port`` in a background thread; port 0 does nothing."""
        if port:
            start_http_server(port, addr=address, registry=self.registry)

    def set_phase(self, uid: str, phase: str | None) -> None:
        """Record the phase of the run ``uid``; None removes the run, which was deleted."""
        with self._lock:
            if phase is None:
                self._phases.pop(uid, None)
            else:
                self._phases[uid] = phase
            counts = {name: 0 for name in PHASES}
            for value in self._phases.values():
                counts[value] = counts.get(value, 0) + 1
            for name, count in counts.items():
                self.runs.labels(phase=name).set(count)

    def observe_job(self, job_uid: str, stages: Mapping[str, StageResult]) -> bool:
        """Observe the stage durations of a finished Job once; return False when already observed."""
        with self._lock:
            if job_uid in self._observed_jobs:
                return False
            self._observed_jobs.add(job_uid)
        for name, outcome in stages.items():
            if not outcome.skipped and name in ALL_STAGES:
                self.stage_duration.labels(stage=name).observe(outcome.duration_s)
        return True

    def count_gate(self, passed: bool) -> None:
        """Count one gate verdict."""
        self.gate_results.labels(result="passed" if passed else "failed").inc()

    def count_error(self, reason: str) -> None:
        """Count one failed or rejected reconcile."""
        self.reconcile_errors.labels(reason=reason).inc()

    def count_rollout(self, promoted: bool) -> None:
        """Count one finished canary rollout."""
        self.rollouts.labels(result="promoted" if promoted else "reverted").inc()

    def count_guard_revert(self) -> None:
        """Count one revert started by the guard."""
        self.guard_reverts.inc()

    def count_analysis(self, target: str, result: str) -> None:
        """Count one analysis of a canary or stable revision."""
        self.analysis_results.labels(target=target, result=result).inc()

    def set_stable_revision(self, namespace: str, name: str, revision: int | None) -> None:
        """Record a StudentModel's stable revision; None removes the series (the model was deleted)."""
        if revision is None:
            try:
                self.stable_revision.remove(namespace, name)
            except KeyError:
                pass
        else:
            self.stable_revision.labels(namespace=namespace, studentmodel=name).set(revision)
