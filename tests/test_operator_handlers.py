"""The kopf handler's glue, with the project's API layer replaced by an in-memory fake.

The fake replaces only :class:`mangakd_operator.kube.KubeApi`; the
reconcile logic, the metrics and kopf's error types are the real ones.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from mangakd_operator.config import OperatorConfig
from mangakd_operator.decision import Action
from mangakd_operator.handlers import RoutineSuccessFilter, reconcile_run
from mangakd_operator.kube import RejectedError, TransientApiError
from mangakd_operator.metrics import OperatorMetrics
from mangakd_operator.observe import Observed
from mangakd_operator.results import StageResult

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "distillationrun-ci.yaml"


class FakeKube:
    """Records actions and status patches; raises ``error`` from apply_action when set."""

    def __init__(self, body: dict[str, Any] | None, error: Exception | None = None) -> None:
        self.body = body
        self.error = error
        self.applied: list[Action] = []
        self.patches: list[dict[str, Any]] = []

    def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.body)

    def observe(self, namespace: str, run_name: str) -> Observed:
        return Observed(jobs={})

    def apply_action(self, namespace: str, action: Action) -> bool:
        if self.error is not None:
            raise self.error
        self.applied.append(action)
        return True

    def patch_run_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.patches.append(patch)


def run_body() -> dict[str, Any]:
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace="ml", uid="uid-1", generation=1)
    return body


def memo_with(kube: FakeKube) -> kopf.Memo:
    return kopf.Memo(kube=kube, metrics=OperatorMetrics(), config=OperatorConfig(retry_delay=7))


def sample(memo: kopf.Memo, name: str, labels: dict[str, str]) -> float | None:
    return memo.metrics.registry.get_sample_value(name, labels)


def test_new_run_applies_actions_and_writes_status(caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube(run_body())
    memo = memo_with(kube)
    with caplog.at_level(logging.INFO):
        reconcile_run("ml", "clinc-mini", memo, logging.getLogger("test"))
    assert [action.name for action in kube.applied] == ["clinc-mini-spec-g1", "clinc-mini-train-g1"]
    assert kube.patches[0]["phase"] == "Pending"
    assert "Created training Job clinc-mini-train-g1." in caplog.messages
    assert sample(memo, "mangakd_operator_distillation_runs", {"phase": "Pending"}) == 1


def test_transient_error_raises_temporary_error(caplog: pytest.LogCaptureFixture) -> None:
    kube = FakeKube(
        run_body(), error=TransientApiError("Create Job ml/x failed: HTTP 409: conflict", "Conflict")
    )
    memo = memo_with(kube)
    with caplog.at_level(logging.WARNING), pytest.raises(kopf.TemporaryError) as raised:
        reconcile_run("ml", "clinc-mini", memo, logging.getLogger("test"))
    assert raised.value.delay == 7
    assert kube.patches == []
    assert any("retrying in 7 s" in message for message in caplog.messages)
    assert sample(memo, "mangakd_operator_reconcile_errors_total", {"reason": "Conflict"}) == 1


def test_rejected_child_fails_run_as_invalid_spec() -> None:
    kube = FakeKube(run_body(), error=RejectedError("Create Job ml/x failed: HTTP 422: invalid toleration"))
    memo = memo_with(kube)
    reconcile_run("ml", "clinc-mini", memo, logging.getLogger("test"))
    (patch,) = kube.patches
    assert patch["phase"] == "Failed"
    assert patch["conditions"][0]["reason"] == "InvalidSpec"
    assert "HTTP 422" in patch["conditions"][0]["message"]
    assert sample(memo, "mangakd_operator_reconcile_errors_total", {"reason": "InvalidSpec"}) == 1


def test_deleted_run_is_skipped() -> None:
    kube = FakeKube(None)
    reconcile_run("ml", "gone", memo_with(kube), logging.getLogger("test"))
    assert kube.applied == []
    assert kube.patches == []


def test_stage_durations_observed_once_per_job() -> None:
    metrics = OperatorMetrics()
    stages = {"finetune": StageResult(12.0, False), "distill": StageResult(0.1, True)}
    assert metrics.observe_job("job-uid", stages) is True
    assert metrics.observe_job("job-uid", stages) is False
    registry = metrics.registry
    assert (
        registry.get_sample_value("mangakd_operator_stage_duration_seconds_count", {"stage": "finetune"}) == 1
    )
    assert (
        registry.get_sample_value("mangakd_operator_stage_duration_seconds_count", {"stage": "distill"})
        is None
    )


def test_routine_success_lines_are_not_posted() -> None:
    routine = logging.LogRecord(
        "kopf.objects", logging.INFO, __file__, 1, "Timer 'reconcile-timer' succeeded.", None, None
    )
    action = logging.LogRecord(
        "kopf.objects", logging.INFO, __file__, 1, "Created training Job x-train-g1.", None, None
    )
    routine_filter = RoutineSuccessFilter()
    assert routine_filter.filter(routine) is True
    assert routine_filter.filter(action) is True
    assert getattr(routine, "k8s_skip", False) is True
    assert getattr(action, "k8s_skip", False) is False
