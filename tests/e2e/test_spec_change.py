"""A gate failure, a spec change that fixes it, and the finalizer, on top of the shared trained run.

``clinc-mini-strict`` uses ``storage.subPath: clinc-mini``, the shared run's
folder, so its Jobs skip the stages that are already complete and only the
gate runs again. The tests build on each other in file order: GateFailed,
then a spec change to generation 2, then deletion.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from e2e_support import MAIN, RUN_TIMEOUT, Env, MainScenario, condition, phase

NAME = "clinc-mini-strict"


@pytest.fixture(scope="module")
def strict_run(env: Env, main_scenario: MainScenario) -> dict[str, Any]:
    main_scenario.result()

    def impossible_latency(document: dict[str, Any]) -> None:
        document["spec"]["storage"]["subPath"] = MainScenario.NAME
        # No ONNX model returns a prediction within a microsecond, so this check fails.
        document["spec"]["gate"]["maxP95LatencyMs"] = 0.001

    env.apply_run(MAIN, NAME, impossible_latency)
    return env.wait_for_phase(MAIN, NAME, ("Failed", "Succeeded"), timeout=RUN_TIMEOUT)


def test_impossible_gate_ends_gate_failed(env: Env, strict_run: dict[str, Any]) -> None:
    ready = condition(strict_run, "Ready")
    assert phase(strict_run) == "Failed", env.diagnose(MAIN, NAME)
    assert ready["reason"] == "GateFailed"
    assert "P95 latency" in ready["message"]
    assert strict_run["status"]["gate"]["passed"] is False
    assert env.kubectl("get", "studentmodel", NAME, "-n", MAIN, check=False).returncode != 0


def test_shared_folder_skips_trained_stages(strict_run: dict[str, Any]) -> None:
    states = {stage["name"]: stage["state"] for stage in strict_run["status"]["stages"]}
    assert states["finetune"] == "Skipped"
    assert states["distill"] == "Skipped"
    assert states["gate"] == "Succeeded"


def test_spec_change_runs_new_generation(env: Env, strict_run: dict[str, Any]) -> None:
    env.kubectl(
        "patch", "dr", NAME, "-n", MAIN, "--type", "merge", "-p", '{"spec":{"gate":{"maxP95LatencyMs":null}}}'
    )
    run = env.wait_for_run(
        MAIN,
        NAME,
        lambda body: body["status"].get("observedGeneration") == 2 and phase(body) in ("Succeeded", "Failed"),
        "generation 2 to finish",
        timeout=RUN_TIMEOUT,
    )
    assert phase(run) == "Succeeded", env.diagnose(MAIN, NAME)
    jobs = env.kubectl.json("get", "jobs", "-n", MAIN, "-l", f"mangakd.io/distillation-run={NAME}")
    assert sorted(job["metadata"]["name"] for job in jobs["items"]) == [f"{NAME}-eval-g2", f"{NAME}-train-g2"]
    maps = env.kubectl.json("get", "configmaps", "-n", MAIN, "-l", f"mangakd.io/distillation-run={NAME}")
    assert [item["metadata"]["name"] for item in maps["items"]] == [f"{NAME}-spec-g2"]
    assert condition(run, "Ready")["observedGeneration"] == 2


def test_deletion_cleans_children_and_keeps_data(env: Env, strict_run: dict[str, Any]) -> None:
    env.kubectl("delete", "dr", NAME, "-n", MAIN, "--wait=true", "--timeout=60s")
    jobs = env.kubectl.json("get", "jobs", "-n", MAIN, "-l", f"mangakd.io/distillation-run={NAME}")
    maps = env.kubectl.json("get", "configmaps", "-n", MAIN, "-l", f"mangakd.io/distillation-run={NAME}")
    assert jobs["items"] == []
    assert maps["items"] == []
    assert (env.claim_dir(MAIN) / MainScenario.NAME / "export" / "student" / "model.onnx").is_file()
    assert re.search(r"Deleted Job .*were kept", env.operators[MAIN].log_tail(200)), env.operators[
        MAIN
    ].log_tail()
