"""The operator's reconcile decision, phase by phase, without a cluster.

The inputs are what the API server would return: a DistillationRun body and
summaries of its Jobs (``ObservedJob``) with real termination messages in
the form ``mangakd run --termination-log`` writes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml
from mangakd_operator.config import OperatorConfig
from mangakd_operator.decision import Decision
from mangakd_operator.observe import Observed, ObservedJob, observe_job
from mangakd_operator.reconcile import reconcile, reject, status_patch

from mangakd.status import DistillationRunStatus, get_condition

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "distillationrun-ci.yaml"
CONFIG = OperatorConfig()

TRAINING_RESULT = json.dumps(
    {
        "stages": {
            "prepare": {"duration_s": 0.03, "skipped": False},
            "finetune": {"duration_s": 65.2, "skipped": False},
            "distill": {"duration_s": 29.8, "skipped": True},
        }
    }
)


def evaluation_result(passed: bool) -> str:
    rate = {"value": 0.8, "ci_low": 0.7, "ci_high": 0.9}
    checks = [
        {"name": "accuracy", "passed": True, "reason": "Student accuracy 0.8 meets the minimum 0.3."},
        {
            "name": "p95LatencyMs",
            "passed": passed,
            "reason": "Student P95 latency 1.3 ms exceeds the maximum 0.001 ms.",
        },
    ]
    stages = {
        name: {"duration_s": 1.0, "skipped": False} for name in ("calibrate", "export", "evaluate", "gate")
    }
    metrics = {
        name: rate for name in ("teacherAccuracy", "studentAccuracy", "agreement", "accuracyGap", "ece")
    }
    return json.dumps({"stages": stages, "metrics": metrics, "gate": {"passed": passed, "checks": checks}})


def run_body(generation: int = 1, status: dict[str, Any] | None = None) -> dict[str, Any]:
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace="ml", uid="uid-1", generation=generation)
    body["status"] = status or {}
    return body


def job(name: str, state: str, message: str = "", failed_pods: int = 0, failure: str = "") -> ObservedJob:
    component = "training" if "-train-" in name else "evaluation"
    generation = int(name.rsplit("-g", 1)[1])
    return ObservedJob(
        name=name,
        uid=f"uid-{name}",
        component=component,
        generation=generation,
        state=state,  # type: ignore[arg-type]
        failed_pods=failed_pods,
        started_at="2026-01-01T00:00:00Z",
        finished_at="2026-01-01T00:05:00Z" if state in ("Succeeded", "Failed") else None,
        message=message,
        failure=failure,
    )


def observed(*jobs: ObservedJob, config_maps: tuple[str, ...] = ("clinc-mini-spec-g1",)) -> Observed:
    return Observed(jobs={item.name: item for item in jobs}, config_maps=frozenset(config_maps))


def step(body: dict[str, Any], seen: Observed) -> Decision:
    """Reconcile once and feed the new status back into ``body``, as the handler's patch would."""
    decision = reconcile(body, seen, CONFIG)
    body["status"] = decision.status
    return decision


def condition(decision: Decision, kind: str) -> dict[str, Any]:
    found = get_condition(decision.status["conditions"], kind)
    assert found is not None, f"no {kind} condition in {decision.status['conditions']}"
    return found


def stage(decision: Decision, name: str) -> dict[str, Any]:
    return next(entry for entry in decision.status["stages"] if entry["name"] == name)


def messages(decision: Decision) -> list[str]:
    return [note.message for note in decision.notes]


def test_new_run_creates_config_map_and_training_job() -> None:
    decision = reconcile(run_body(), Observed(jobs={}), CONFIG)
    assert [(a.verb, a.kind, a.name) for a in decision.actions] == [
        ("create", "ConfigMap", "clinc-mini-spec-g1"),
        ("create", "Job", "clinc-mini-train-g1"),
    ]
    assert decision.status["phase"] == "Pending"
    assert condition(decision, "Ready")["status"] == "False"
    assert decision.status["trainingJob"] == "clinc-mini-train-g1"


def test_every_status_validates_against_the_model() -> None:
    body = run_body()
    decisions = [
        step(body, Observed(jobs={})),
        step(body, observed(job("clinc-mini-train-g1", "Running"))),
        step(body, observed(job("clinc-mini-train-g1", "Succeeded", TRAINING_RESULT))),
        step(
            body,
            observed(
                job("clinc-mini-train-g1", "Succeeded", TRAINING_RESULT),
                job("clinc-mini-eval-g1", "Succeeded", evaluation_result(True)),
            ),
        ),
    ]
    for decision in decisions:
        DistillationRunStatus.model_validate(decision.status)


def test_running_training_job_means_training() -> None:
    decision = reconcile(run_body(), observed(job("clinc-mini-train-g1", "Running")), CONFIG)
    assert decision.actions == []
    assert decision.status["phase"] == "Training"
    assert condition(decision, "Trained")["reason"] == "JobRunning"
    assert stage(decision, "finetune")["state"] == "Running"
    assert stage(decision, "calibrate")["state"] == "Pending"


def test_phase_change_is_noted_once() -> None:
    body = run_body()
    step(body, Observed(jobs={}))
    first = step(body, observed(job("clinc-mini-train-g1", "Running")))
    second = step(body, observed(job("clinc-mini-train-g1", "Running")))
    assert any(message.startswith("Changed phase from Pending to Training") for message in messages(first))
    assert messages(second) == []


def test_failed_attempt_reports_retrying() -> None:
    decision = reconcile(run_body(), observed(job("clinc-mini-train-g1", "Running", failed_pods=1)), CONFIG)
    assert decision.status["phase"] == "Training"
    assert condition(decision, "Trained")["reason"] == "JobRetrying"
    assert decision.status["jobFailures"] == 1


def test_suspended_job_waits_for_kueue() -> None:
    body = run_body()
    body["spec"]["resources"]["queueName"] = "team-a"
    decision = reconcile(body, observed(job("clinc-mini-train-g1", "Suspended")), CONFIG)
    assert decision.status["phase"] == "Pending"
    assert "Kueue" in condition(decision, "Ready")["message"]
    assert "team-a" in condition(decision, "Ready")["message"]


def test_finished_training_creates_evaluation_job() -> None:
    decision = reconcile(
        run_body(), observed(job("clinc-mini-train-g1", "Succeeded", TRAINING_RESULT)), CONFIG
    )
    assert [(a.verb, a.kind, a.name) for a in decision.actions] == [("create", "Job", "clinc-mini-eval-g1")]
    assert decision.status["phase"] == "Evaluating"
    assert condition(decision, "Trained")["status"] == "True"
    assert decision.status["evaluationJob"] == "clinc-mini-eval-g1"


def test_training_stages_read_from_termination_message() -> None:
    decision = reconcile(
        run_body(), observed(job("clinc-mini-train-g1", "Succeeded", TRAINING_RESULT)), CONFIG
    )
    assert stage(decision, "finetune") == {"name": "finetune", "state": "Succeeded", "durationSeconds": 65.2}
    assert stage(decision, "distill")["state"] == "Skipped"


def test_running_evaluation_means_evaluating() -> None:
    seen = observed(
        job("clinc-mini-train-g1", "Succeeded", TRAINING_RESULT), job("clinc-mini-eval-g1", "Running")
    )
    decision = reconcile(run_body(), seen, CONFIG)
    assert decision.actions == []
    assert decision.status["phase"] == "Evaluating"
    assert condition(decision, "Evaluated")["reason"] == "JobRunning"


def test_passing_gate_succeeds_with_student_model() -> None:
    seen = observed(
        job("clinc-mini-train-g1", "Succeeded", TRAINING_RESULT),
        job("clinc-mini-eval-g1", "Succeeded", evaluation_result(True)),
    )
    decision = reconcile(run_body(), seen, CONFIG)
    ((verb, kind, name, manifest),) = [(a.verb, a.kind, a.name, a.manifest) for a in decision.actions]
    assert (verb, kind, name) == ("apply", "StudentModel", "clinc-mini")
    assert manifest is not None
    assert manifest["spec"]["artifact"] == {"pvc": "mangakd-artifacts", "path": "clinc-mini/export/student"}
    assert decision.status["phase"] == "Succeeded"
    assert condition(decision, "Ready") | {"lastTransitionTime": None} == {
        "type": "Ready",
        "status": "True",
        "reason": "GatePassed",
        "lastTransitionTime": None,
        "message": "The student passed every gate check; StudentModel clinc-mini serves it.",
        "observedGeneration": 1,
    }
    assert decision.gate_passed is True


def test_passing_gate_records_results() -> None:
    seen = observed(
        job("clinc-mini-train-g1", "Succeeded", TRAINING_RESULT),
        job("clinc-mini-eval-g1", "Succeeded", evaluation_result(True)),
    )
    status = reconcile(run_body(), seen, CONFIG).status
    assert status["metrics"]["studentAccuracy"] == {"value": 0.8, "ciLow": 0.7, "ciHigh": 0.9}
    assert status["gate"]["passed"] is True
    assert status["artifact"] == {"pvc": "mangakd-artifacts", "path": "clinc-mini/export/student"}
    assert status["studentModel"] == "clinc-mini"
    assert status["completionTime"] == "2026-01-01T00:05:00Z"
    assert [entry["state"] for entry in status["stages"]] == ["Succeeded", "Succeeded", "Skipped"] + [
        "Succeeded"
    ] * 4


def test_failing_gate_fails_with_reasons() -> None:
    seen = observed(
        job("clinc-mini-train-g1", "Succeeded", TRAINING_RESULT),
        job("clinc-mini-eval-g1", "Succeeded", evaluation_result(False)),
    )
    decision = reconcile(run_body(), seen, CONFIG)
    assert decision.actions == []
    assert decision.status["phase"] == "Failed"
    assert condition(decision, "Ready")["reason"] == "GateFailed"
    assert "P95 latency 1.3 ms exceeds the maximum 0.001 ms" in condition(decision, "Ready")["message"]
    assert "meets the minimum" not in condition(decision, "Gated")["message"]
    assert decision.status["gate"]["passed"] is False
    assert "studentModel" not in decision.status
    assert decision.gate_passed is False


def test_failed_training_job_fails_run() -> None:
    log_tail = (
        "INFO stage prepare: started\nerror: stage prepare failed: inputs/missing.jsonl: file not found\n"
    )
    failed = job(
        "clinc-mini-train-g1", "Failed", log_tail, failed_pods=2, failure="BackoffLimitExceeded: limit"
    )
    decision = reconcile(run_body(), observed(failed), CONFIG)
    ready = condition(decision, "Ready")
    assert decision.status["phase"] == "Failed"
    assert ready["reason"] == "JobFailed"
    assert "inputs/missing.jsonl: file not found" in ready["message"]
    assert "BackoffLimitExceeded" in ready["message"]
    assert stage(decision, "prepare")["state"] == "Failed"
    assert stage(decision, "finetune")["state"] == "Pending"
    assert decision.actions == []


def test_failed_evaluation_job_fails_run() -> None:
    seen = observed(
        job("clinc-mini-train-g1", "Succeeded", TRAINING_RESULT),
        job(
            "clinc-mini-eval-g1", "Failed", "error: stage export failed: opset 23 unsupported", failed_pods=2
        ),
    )
    decision = reconcile(run_body(), seen, CONFIG)
    assert decision.status["phase"] == "Failed"
    assert condition(decision, "Evaluated")["reason"] == "JobFailed"
    assert stage(decision, "calibrate")["state"] == "Succeeded"
    assert stage(decision, "export")["state"] == "Failed"


def test_unreadable_result_fails_run() -> None:
    seen = observed(
        job("clinc-mini-train-g1", "Succeeded", TRAINING_RESULT),
        job("clinc-mini-eval-g1", "Succeeded", "not json"),
    )
    decision = reconcile(run_body(), seen, CONFIG)
    assert decision.status["phase"] == "Failed"
    assert condition(decision, "Ready")["reason"] == "ResultUnreadable"


def test_semantic_error_is_invalid_spec() -> None:
    body = run_body()
    body["spec"]["student"]["path"] = "/models/other"
    decision = reconcile(body, Observed(jobs={}), CONFIG)
    ready = condition(decision, "Ready")
    assert decision.status["phase"] == "Failed"
    assert ready["reason"] == "InvalidSpec"
    assert "spec.student: set exactly one of" in ready["message"]
    assert decision.actions == []
    assert decision.rejected is True
    assert decision.notes[0].level == logging.WARNING


def test_invalid_spec_is_not_reported_twice() -> None:
    body = run_body()
    body["spec"]["student"]["path"] = "/models/other"
    first = step(body, Observed(jobs={})).status
    again = step(body, Observed(jobs={}))
    assert again.notes == []
    assert again.rejected is False
    assert again.status == first


def test_missing_storage_is_invalid_spec() -> None:
    body = run_body()
    del body["spec"]["storage"]
    decision = reconcile(body, Observed(jobs={}), CONFIG)
    assert condition(decision, "Ready")["reason"] == "InvalidSpec"
    assert "spec.storage: required by the operator" in condition(decision, "Ready")["message"]


def test_escaping_sub_path_is_invalid_spec() -> None:
    body = run_body()
    body["spec"]["storage"]["subPath"] = "../other-team"
    decision = reconcile(body, Observed(jobs={}), CONFIG)
    assert condition(decision, "Ready")["reason"] == "InvalidSpec"
    assert "spec.storage.subPath" in condition(decision, "Ready")["message"]


def test_final_phase_of_same_generation_is_kept() -> None:
    body = run_body()
    seen = observed(
        job("clinc-mini-train-g1", "Succeeded", TRAINING_RESULT),
        job("clinc-mini-eval-g1", "Succeeded", evaluation_result(True)),
    )
    done = step(body, seen).status
    again = step(body, seen)
    assert again.actions == []
    assert again.notes == []
    assert again.status == done
    assert again.gate_passed is None


def test_spec_change_restarts_with_new_generation() -> None:
    seen = observed(
        job("clinc-mini-train-g1", "Succeeded", TRAINING_RESULT),
        job("clinc-mini-eval-g1", "Succeeded", evaluation_result(True)),
    )
    body = run_body()
    step(body, seen)
    body["metadata"]["generation"] = 2
    decision = step(body, seen)
    assert [(a.verb, a.kind, a.name) for a in decision.actions] == [
        ("delete", "Job", "clinc-mini-eval-g1"),
        ("delete", "Job", "clinc-mini-train-g1"),
        ("delete", "ConfigMap", "clinc-mini-spec-g1"),
        ("create", "ConfigMap", "clinc-mini-spec-g2"),
        ("create", "Job", "clinc-mini-train-g2"),
    ]
    assert decision.status["phase"] == "Pending"
    assert decision.status["observedGeneration"] == 2
    assert "metrics" not in decision.status
    assert "studentModel" not in decision.status
    assert condition(decision, "Ready")["observedGeneration"] == 2
    assert decision.notes[0].first is True


def test_spec_change_fixes_invalid_spec() -> None:
    body = run_body()
    body["spec"]["student"]["path"] = "/models/other"
    step(body, Observed(jobs={}))
    del body["spec"]["student"]["path"]
    body["metadata"]["generation"] = 2
    decision = step(body, Observed(jobs={}))
    assert decision.status["phase"] == "Pending"
    assert condition(decision, "Ready")["reason"] == "Pending"
    assert "completionTime" not in decision.status


def test_api_rejection_is_invalid_spec() -> None:
    decision = reject(
        run_body(), "Create Job ml/clinc-mini-train-g1 failed: HTTP 422: tolerations[0] invalid"
    )
    assert decision.status["phase"] == "Failed"
    assert condition(decision, "Ready")["reason"] == "InvalidSpec"
    assert "HTTP 422" in condition(decision, "Ready")["message"]


def test_status_patch_removes_and_nests() -> None:
    old = {
        "phase": "Succeeded",
        "metrics": {"ece": {"value": 0.1}, "agreement": {"value": 0.9}},
        "gate": {"passed": True},
    }
    new = {"phase": "Pending", "metrics": {"ece": {"value": 0.1}}}
    assert status_patch(old, new) == {"phase": "Pending", "metrics": {"agreement": None}, "gate": None}


def test_observe_job_reads_succeeded_pod_message() -> None:
    job_object = {
        "metadata": {"name": "r-train-g1", "uid": "j1", "labels": {"mangakd.io/generation": "1"}},
        "spec": {"backoffLimit": 1},
        "status": {
            "startTime": "t0",
            "completionTime": "t1",
            "succeeded": 1,
            "failed": 1,
            "conditions": [{"type": "Complete", "status": "True"}],
        },
    }
    pods = [
        {
            "metadata": {"name": "p1", "creationTimestamp": "1", "ownerReferences": [{"uid": "j1"}]},
            "status": {
                "phase": "Failed",
                "containerStatuses": [{"state": {"terminated": {"message": "boom"}}}],
            },
        },
        {
            "metadata": {"name": "p2", "creationTimestamp": "2", "ownerReferences": [{"uid": "j1"}]},
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{"state": {"terminated": {"message": "{}"}}}],
            },
        },
        {
            "metadata": {"name": "other", "creationTimestamp": "3", "ownerReferences": [{"uid": "j2"}]},
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{"state": {"terminated": {"message": "x"}}}],
            },
        },
    ]
    summary = observe_job(job_object, pods)
    assert summary.state == "Succeeded"
    assert summary.message == "{}"
    assert summary.failed_pods == 1
    assert summary.generation == 1
    assert summary.finished_at == "t1"


def test_observe_job_reads_failure_reason() -> None:
    job_object = {
        "metadata": {"name": "r-train-g1", "uid": "j1"},
        "status": {
            "failed": 2,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "limit reached",
                }
            ],
        },
    }
    pods = [
        {
            "metadata": {"name": "p", "ownerReferences": [{"uid": "j1"}]},
            "status": {
                "phase": "Failed",
                "containerStatuses": [{"state": {"terminated": {"message": "tail"}}}],
            },
        }
    ]
    summary = observe_job(job_object, pods)
    assert summary.state == "Failed"
    assert summary.failure == "BackoffLimitExceeded: limit reached"
    assert summary.message == "tail"


def test_observe_job_states_before_finishing() -> None:
    base = {"metadata": {"name": "r-train-g1", "uid": "j1"}}
    assert observe_job({**base, "spec": {"suspend": True}}, []).state == "Suspended"
    assert observe_job({**base, "status": {}}, []).state == "Pending"
    assert observe_job({**base, "status": {"startTime": "t0", "active": 1}}, []).state == "Running"
