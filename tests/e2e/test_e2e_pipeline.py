"""The shared run end to end: trained, evaluated and gated through the operator, read back with kubectl.

The run's operator was killed with SIGKILL while the run trained and then
restarted (see ``MainScenario``), so every test here also checks that a
restarted operator finishes the run.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from e2e_support import MAIN, Env, MainScenario, condition, phase

NAME = MainScenario.NAME


@pytest.fixture(scope="module")
def finished(main_scenario: MainScenario) -> dict[str, Any]:
    return main_scenario.result()


def table(output: str) -> dict[str, str]:
    """Turn the header and first row of ``kubectl get`` output into a column-to-value mapping."""
    header, row = output.splitlines()[:2]
    names = header.split()
    return dict(zip(names, row.split(), strict=False))


def test_run_succeeds_with_metrics(env: Env, finished: dict[str, Any]) -> None:
    status = finished["status"]
    assert phase(finished) == "Succeeded", env.diagnose(MAIN, NAME)
    assert condition(finished, "Ready")["reason"] == "GatePassed"
    for metric in ("teacherAccuracy", "studentAccuracy", "agreement", "accuracyGap", "ece"):
        rate = status["metrics"][metric]
        assert rate["ciLow"] <= rate["value"] <= rate["ciHigh"], f"{metric}: {rate}"
    assert status["gate"]["passed"] is True
    assert status["completionTime"]


def test_status_records_every_stage(finished: dict[str, Any]) -> None:
    stages = finished["status"]["stages"]
    assert [stage["name"] for stage in stages] == [
        "prepare",
        "finetune",
        "distill",
        "calibrate",
        "export",
        "evaluate",
        "gate",
    ]
    for stage in stages:
        assert stage["state"] == "Succeeded", stage
        assert stage["durationSeconds"] >= 0, stage


def test_conditions_carry_generation(finished: dict[str, Any]) -> None:
    for kind in ("Trained", "Evaluated", "Gated", "Ready"):
        found = condition(finished, kind)
        assert found["status"] == "True", found
        assert found["observedGeneration"] == finished["metadata"]["generation"], found
        assert found["lastTransitionTime"], found


def test_student_model_created(env: Env, finished: dict[str, Any]) -> None:
    model = env.kubectl.json("get", "studentmodel", NAME, "-n", MAIN)
    assert model["spec"]["artifact"] == {"pvc": "mangakd-artifacts", "path": f"{NAME}/export/student"}
    assert model["spec"]["teacher"]["artifact"]["path"] == f"{NAME}/export/teacher"
    assert model["spec"]["distillationRun"] == NAME
    assert model["metadata"]["ownerReferences"][0]["uid"] == finished["metadata"]["uid"]
    assert finished["status"]["studentModel"] == NAME


def test_exported_student_on_claim(env: Env, finished: dict[str, Any]) -> None:
    artifact = finished["status"]["artifact"]
    folder = env.state_dir / "pvc" / MAIN / artifact["pvc"] / artifact["path"]
    assert (folder / "model.onnx").is_file(), sorted(path.name for path in folder.parent.glob("*/*"))


def test_restart_keeps_one_training_job(env: Env, finished: dict[str, Any]) -> None:
    jobs = env.kubectl.json("get", "jobs", "-n", MAIN, "-l", f"mangakd.io/distillation-run={NAME}")
    names = sorted(job["metadata"]["name"] for job in jobs["items"])
    assert names == [f"{NAME}-eval-g1", f"{NAME}-train-g1"]
    pods = env.kubectl.json("get", "pods", "-n", MAIN, "-l", f"job-name={NAME}-train-g1")
    assert len(pods["items"]) == 1
    log = env.operators[MAIN].log_path.read_text()
    assert log.count("Started the mangakd operator") == 2, "the operator was not restarted"


def test_kubectl_get_shows_columns(env: Env, finished: dict[str, Any]) -> None:
    row = table(env.kubectl("get", "dr", NAME, "-n", MAIN).stdout)
    assert row["PHASE"] == "Succeeded"
    assert row["READY"] == "True"
    assert float(row["ACCURACY"]) == pytest.approx(finished["status"]["metrics"]["studentAccuracy"]["value"])
    assert float(row["AGREEMENT"]) == pytest.approx(finished["status"]["metrics"]["agreement"]["value"])
    assert row["GATE"] == "true"


def test_kubectl_get_wide_shows_details(env: Env, finished: dict[str, Any]) -> None:
    row = table(env.kubectl("get", "dr", NAME, "-n", MAIN, "-o", "wide").stdout)
    assert float(row["TEACHER-ACC"]) == pytest.approx(
        finished["status"]["metrics"]["teacherAccuracy"]["value"]
    )
    assert float(row["ECE"]) == pytest.approx(finished["status"]["metrics"]["ece"]["value"])
    assert row["STUDENT"] == NAME
    assert row["REASON"] == "GatePassed"


def test_kubectl_describe_shows_conditions_and_events(env: Env, finished: dict[str, Any]) -> None:
    text = env.kubectl("describe", "dr", NAME, "-n", MAIN).stdout
    assert re.search(r"Type:\s+Ready", text), text
    assert re.search(r"Reason:\s+GatePassed", text), text
    events = text[text.index("Events:") :]
    assert f"Created training Job {NAME}-train-g1." in events
    assert f"Created evaluation Job {NAME}-eval-g1." in events
    assert "Changed phase from Evaluating to Succeeded" in events


def test_restarted_operator_exports_metrics(env: Env, finished: dict[str, Any]) -> None:
    text = env.operators[MAIN].scrape()
    assert re.search(r'^mangakd_operator_gate_results_total\{result="passed"\} [1-9]', text, re.M), text
    assert re.search(
        r'^mangakd_operator_stage_duration_seconds_count\{stage="finetune"\} [1-9]', text, re.M
    ), text
    assert re.search(r'^mangakd_operator_distillation_runs\{phase="Succeeded"\} [1-9]', text, re.M), text
