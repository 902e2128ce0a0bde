"""Specs the API server or the operator rejects, and a Job that fails until its retries run out.

These tests run in the ``e2e-misc`` namespace while the shared run trains.
"""

from __future__ import annotations

import re
from typing import Any

from e2e_support import MISC, Env, condition, phase


def test_schema_invalid_spec_rejected_by_kubectl(env: Env) -> None:
    def negative_temperature(document: dict[str, Any]) -> None:
        document["spec"]["distillation"]["temperature"] = -1

    result = env.apply_run(MISC, "negative-temperature", negative_temperature, check=False)
    assert result.returncode != 0
    assert "spec.distillation.temperature" in result.stderr
    assert env.kubectl.run(MISC, "negative-temperature") is None


def test_semantic_error_ends_invalid_spec(env: Env) -> None:
    def two_students(document: dict[str, Any]) -> None:
        document["spec"]["student"]["path"] = "/models/another-student"

    env.apply_run(MISC, "two-students", two_students)
    run = env.wait_for_phase(MISC, "two-students", ("Failed",))
    ready = condition(run, "Ready")
    assert ready["reason"] == "InvalidSpec"
    assert "spec.student: set exactly one of" in ready["message"]
    assert ready["observedGeneration"] == run["metadata"]["generation"]
    jobs = env.kubectl.json("get", "jobs", "-n", MISC, "-l", "mangakd.io/distillation-run=two-students")
    assert jobs["items"] == []


def test_invalid_spec_posts_warning_event(env: Env) -> None:
    def no_storage(document: dict[str, Any]) -> None:
        del document["spec"]["storage"]

    env.apply_run(MISC, "no-storage", no_storage)
    env.wait_for_phase(MISC, "no-storage", ("Failed",))

    def warning_posted(_: dict[str, Any]) -> bool:
        events = env.kubectl.json(
            "get", "events", "-n", MISC, "--field-selector", "involvedObject.name=no-storage"
        )
        return any(
            event["type"] == "Warning" and "spec.storage" in event["message"] for event in events["items"]
        )

    env.wait_for_run(MISC, "no-storage", warning_posted, "a Warning Event naming spec.storage")


def test_failing_job_retried_then_job_failed(env: Env) -> None:
    def missing_data(document: dict[str, Any]) -> None:
        document["spec"]["dataset"]["train"] = "inputs/missing.jsonl"
        document["spec"]["resources"]["backoffLimit"] = 1

    env.apply_run(MISC, "missing-data", missing_data)
    run = env.wait_for_phase(MISC, "missing-data", ("Failed", "Succeeded"))
    ready = condition(run, "Ready")
    assert phase(run) == "Failed"
    assert ready["reason"] == "JobFailed"
    assert "inputs/missing.jsonl" in ready["message"]
    assert "not found" in ready["message"]
    assert run["status"]["jobFailures"] == 2
    pods = env.kubectl.json("get", "pods", "-n", MISC, "-l", "job-name=missing-data-train-g1")
    assert len(pods["items"]) == 2


def test_invalid_spec_counted_in_metrics(env: Env) -> None:
    def negative_subpath(document: dict[str, Any]) -> None:
        document["spec"]["storage"]["subPath"] = "../outside"

    env.apply_run(MISC, "escaping-folder", negative_subpath)
    run = env.wait_for_phase(MISC, "escaping-folder", ("Failed",))
    assert condition(run, "Ready")["reason"] == "InvalidSpec"
    text = env.operators[MISC].scrape()
    assert re.search(r'^mangakd_operator_reconcile_errors_total\{reason="InvalidSpec"\} [1-9]', text, re.M), (
        text
    )
    assert re.search(r'^mangakd_operator_distillation_runs\{phase="Failed"\} [1-9]', text, re.M), text
