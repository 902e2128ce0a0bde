"""The StudentModel rollout state machine, decision by decision, without a cluster."""

from __future__ import annotations

import logging

import pytest
from test_operator_rollout_support import (
    BAD,
    FEW,
    GOOD,
    Model,
    condition,
    make_spec,
    promote_first,
    record,
    request,
    start_canary,
)

from mangakd_operator.studentmodel.rollout import split_replicas

# Seconds past a step's pause (10 s in make_spec), so the analysis is due.
AFTER_PAUSE = 11


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [(2, 50, (1, 1)), (2, 25, (1, 1)), (4, 25, (3, 1)), (4, 100, (1, 4)), (10, 15, (8, 2)), (1, 50, (1, 1))],
)
def test_split_replicas(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert split_replicas(total, weight) == expected


def test_first_revision_goes_straight_to_stable() -> None:
    model = Model(make_spec())
    model.tick()
    assert model.status["phase"] == "Pending"
    assert model.replicas() == {1: 2}
    assert condition(model.status, "Ready")["status"] == "False"

    decision = model.deploy_ready()
    assert model.status["phase"] == "Stable"
    assert model.status["stableRevision"] == 1
    assert record(model.status, 1)["state"] == "Stable"
    assert record(model.status, 1)["reason"] == "FirstRevision"
    assert condition(model.status, "Ready")["status"] == "True"
    assert decision.promoted is False


def test_steady_model_makes_no_changes() -> None:
    model = Model(make_spec())
    promote_first(model)
    model.tick(1)
    decision = model.tick(1)
    # The harness keeps only the server Deployments; the teacher's is left out here.
    assert [action for action in decision.actions if action.name.startswith("intents-r")] == []


def test_new_artifact_starts_canary_at_first_weight() -> None:
    model = Model(make_spec())
    promote_first(model)
    model.set_spec(artifact={"pvc": "claim", "path": "models/b"})
    decision = model.tick(1)
    assert model.status["canaryRevision"] == 2
    assert model.status["canaryWeight"] == 50
    assert model.replicas() == {1: 1, 2: 1}
    assert model.status["phase"] == "Progressing"
    assert [action.verb for action in decision.actions if action.name == "intents-r1"] == ["scale"]


def test_step_waits_for_ready_pods_then_pause() -> None:
    model = Model(make_spec())
    promote_first(model)
    model.set_spec(artifact={"pvc": "claim", "path": "models/b"})
    model.tick(1)
    assert model.tick(30).measure is None  # canary pods not ready: the step has not begun
    decision = model.deploy_ready()
    assert model.status["stepStartedAt"]
    assert [(item.target, item.revision) for item in decision.baselines] == [("canary", 2)]
    assert model.tick(5).measure is None  # still within pauseSeconds
    assert model.tick(6).measure is not None


def test_passing_steps_promote_canary() -> None:
    model = Model(make_spec())
    promote_first(model)
    start_canary(model, "models/b")
    model.tick(AFTER_PAUSE, figures=GOOD)
    assert model.status["currentStep"] == 1
    assert model.replicas() == {1: 1, 2: 2}

    model.deploy_ready()
    model.tick(AFTER_PAUSE, figures=GOOD)
    assert model.status["switch"]["reason"] == "Promotion"
    assert model.replicas() == {1: 1, 2: 2}

    decision = model.deploy_ready()
    assert decision.promoted is True
    assert model.status["stableRevision"] == 2
    assert model.status.get("canaryRevision") is None
    assert model.status["lastGoodRevision"] == 1
    assert model.replicas() == {2: 2}
    assert record(model.status, 2)["reason"] == "CanaryPromoted"
    assert record(model.status, 2)["metrics"]["verdict"] == "Passed"
    assert record(model.status, 1)["state"] == "Superseded"
    assert condition(model.status, "Progressing")["reason"] == "CanaryPromoted"


def test_failed_analysis_reverts_at_once() -> None:
    model = Model(make_spec())
    promote_first(model)
    start_canary(model, "models/bad")
    decision = model.tick(AFTER_PAUSE, figures=BAD)
    assert decision.reverted is True
    assert decision.analysis == ("canary", "Failed")
    assert model.status["phase"] == "Reverted"
    assert model.status["stableRevision"] == 1
    assert model.status.get("canaryRevision") is None
    assert model.replicas() == {1: 2}
    bad = record(model.status, 2)
    assert bad["state"] == "Reverted"
    assert "agreement 0.100 is below minAgreement 0.9" in bad["message"]
    assert "ECE 0.400 is above maxEce 0.2" in bad["message"]
    assert condition(model.status, "Ready")["reason"] == "CanaryReverted"
    assert condition(model.status, "Progressing")["reason"] == "CanaryReverted"
    assert any(note.level == logging.WARNING for note in decision.notes)


def test_failures_counted_toward_limit() -> None:
    spec = make_spec()
    spec["rollout"]["analysis"]["failureLimit"] = 2
    model = Model(spec)
    promote_first(model)
    start_canary(model, "models/b")
    decision = model.tick(AFTER_PAUSE, figures=BAD)
    assert decision.reverted is False
    assert model.status["analysisFailures"] == 1
    assert [item.target for item in decision.baselines] == ["canary"]  # a new window starts

    assert model.tick(1).measure is None  # the next analysis waits intervalSeconds
    decision = model.tick(5, figures=BAD)
    assert decision.reverted is True


def test_too_few_samples_waits_then_fails() -> None:
    model = Model(make_spec())
    promote_first(model)
    start_canary(model, "models/b")
    decision = model.tick(AFTER_PAUSE, figures=FEW)
    assert decision.analysis == ("canary", "Inconclusive")
    assert model.status["canaryRevision"] == 2
    assert model.status.get("analysisFailures") in (None, 0)

    decision = model.tick(60, figures=FEW)  # past pauseSeconds + sampleTimeoutSeconds
    assert decision.analysis == ("canary", "Failed")
    assert decision.reverted is True
    assert "sample timeout" in record(model.status, 2)["message"]


def test_unreadable_metrics_are_inconclusive() -> None:
    model = Model(make_spec())
    promote_first(model)
    start_canary(model, "models/b")
    decision = model.tick(AFTER_PAUSE, error="revision 2 has no ready pod to scrape")
    assert decision.analysis == ("canary", "Inconclusive")
    assert "no ready pod" in model.status["lastAnalysis"]["message"]


def test_reverted_spec_is_held() -> None:
    model = Model(make_spec())
    promote_first(model)
    start_canary(model, "models/bad")
    model.tick(AFTER_PAUSE, figures=BAD)
    model.tick(30)
    assert model.status.get("canaryRevision") is None
    assert model.status["latestRevision"] == 2

    model.set_spec(artifact={"pvc": "claim", "path": "models/c"})
    model.tick(1)
    assert model.status["canaryRevision"] == 3
    assert model.status.get("heldSpecHash") is None


def test_spec_back_to_stable_aborts_canary() -> None:
    model = Model(make_spec())
    promote_first(model)
    start_canary(model, "models/b")
    model.set_spec(artifact={"pvc": "claim", "path": "models/a"})
    model.tick(1)
    assert model.status.get("canaryRevision") is None
    assert record(model.status, 2)["state"] == "Aborted"
    assert model.replicas() == {1: 2}


def test_replica_change_is_no_new_revision() -> None:
    model = Model(make_spec())
    promote_first(model)
    serving = dict(model.body["spec"]["serving"], replicas=3)
    model.set_spec(serving=serving)
    model.tick(1)
    assert model.status["latestRevision"] == 1
    assert model.replicas() == {1: 3}


def test_serving_change_is_new_revision() -> None:
    model = Model(make_spec())
    promote_first(model)
    serving = dict(model.body["spec"]["serving"], maxBatchSize=8)
    model.set_spec(serving=serving)
    model.tick(1)
    assert model.status["canaryRevision"] == 2
    stable_args = model.deployments[1]["spec"]["template"]["spec"]["containers"][0]["args"]
    canary_args = model.deployments[2]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert stable_args[stable_args.index("--max-batch-size") + 1] == "32"
    assert canary_args[canary_args.index("--max-batch-size") + 1] == "8"


def promoted_twice() -> Model:
    model = Model(make_spec())
    promote_first(model)
    start_canary(model, "models/b")
    model.tick(AFTER_PAUSE, figures=GOOD)
    model.deploy_ready()
    model.tick(AFTER_PAUSE, figures=GOOD)
    model.deploy_ready()
    assert model.status["stableRevision"] == 2
    return model


def test_guard_counts_consecutive_failures() -> None:
    model = promoted_twice()
    decision = model.tick(1)
    assert [(item.target, item.revision) for item in decision.baselines] == [("stable", 2)]
    model.tick(31, figures=BAD)
    assert model.status["guard"]["consecutiveFailures"] == 1
    model.tick(31, figures=GOOD)
    assert model.status["guard"]["consecutiveFailures"] == 0
    model.tick(31, figures=FEW)
    assert model.status["guard"]["consecutiveFailures"] == 0


def test_guard_reverts_to_last_good() -> None:
    model = promoted_twice()
    model.tick(1)
    model.tick(31, figures=BAD)
    decision = model.tick(31, figures=BAD)
    assert decision.guard_reverted is True
    assert model.status["switch"] == {"toRevision": 1, "reason": "GuardRevert",
                                      "startedAt": model.status["switch"]["startedAt"]}
    assert model.replicas() == {1: 2, 2: 2}  # revision 2 serves until revision 1 is ready
    assert record(model.status, 2)["reason"] == "GuardReverted"

    model.deploy_ready()
    assert model.status["stableRevision"] == 1
    assert model.replicas() == {1: 2}
    assert model.status["phase"] == "Reverted"
    assert condition(model.status, "Ready")["reason"] == "GuardReverted"
    assert model.status.get("lastGoodRevision") is None


def test_guard_without_good_revision_degrades() -> None:
    model = Model(make_spec())
    promote_first(model)
    model.tick(1)
    model.tick(31, figures=BAD)
    decision = model.tick(31, figures=BAD)
    assert decision.guard_reverted is False
    assert model.status["phase"] == "Degraded"
    assert condition(model.status, "Ready")["reason"] == "GuardFailing"
    assert model.replicas() == {1: 2}


def test_guard_disabled_never_measures() -> None:
    spec = make_spec()
    spec["guard"]["enabled"] = False
    model = Model(spec)
    promote_first(model)
    assert model.tick(100).measure is None
    assert model.tick(100).baselines == []


def test_rollback_to_revision() -> None:
    model = promoted_twice()
    decision = model.tick(1, rollback=request(1))
    assert model.status["rollback"]["result"] == "InProgress"
    assert model.status["switch"]["reason"] == "Rollback"
    assert any(note.level == logging.WARNING for note in decision.notes)

    model.make_ready()
    model.tick(1, rollback=request(1))
    assert model.status["stableRevision"] == 1
    assert model.status["rollback"]["result"] == "Succeeded"
    assert record(model.status, 2)["state"] == "RolledBack"
    assert model.status["phase"] == "Reverted"
    assert model.status["lastGoodRevision"] == 2  # a rolled-back revision stays good

    model.tick(5, rollback=request(1))  # the same request id is handled once
    assert model.status["stableRevision"] == 1
    assert model.status.get("canaryRevision") is None  # the unchanged spec does not roll forward


def test_rollback_default_is_last_good() -> None:
    model = promoted_twice()
    model.tick(1, rollback=request(None))
    assert model.status["rollback"]["toRevision"] == 1


def test_rollback_rejects_unknown_revision() -> None:
    model = promoted_twice()
    decision = model.tick(1, rollback=request(7))
    assert model.status["rollback"]["result"] == "Rejected"
    assert "revision 7 is not in status.history (known revisions: 1, 2)" in model.status["rollback"]["message"]
    assert model.status.get("switch") is None
    assert any(note.level == logging.WARNING for note in decision.notes)


def test_rollback_rejects_missing_artifact() -> None:
    model = promoted_twice()
    for item in model.status["history"]:
        if item["revision"] == 1:
            del item["artifact"]
    model.tick(1, rollback=request(1))
    assert model.status["rollback"]["result"] == "Rejected"
    assert "has no artifact" in model.status["rollback"]["message"]


def test_rollback_without_good_revision_rejected() -> None:
    model = Model(make_spec())
    promote_first(model)
    model.tick(1, rollback=request(None))
    assert model.status["rollback"]["result"] == "Rejected"
    assert "no earlier good revision" in model.status["rollback"]["message"]


def test_rollback_aborts_canary() -> None:
    model = promoted_twice()
    start_canary(model, "models/c")
    model.tick(1, rollback=request(1, id_="r-2"))
    assert model.status.get("canaryRevision") is None
    assert record(model.status, 3)["state"] == "Aborted"
    assert model.status["switch"]["toRevision"] == 1


def test_history_is_bounded() -> None:
    spec = make_spec()
    spec["historyLimit"] = 2
    model = Model(spec)
    promote_first(model)
    for path in ("models/b", "models/c", "models/d"):
        start_canary(model, path)
        model.tick(AFTER_PAUSE, figures=BAD)
    revisions = [item["revision"] for item in model.status["history"]]
    assert model.status["stableRevision"] == 1
    assert revisions == [1, 3, 4]  # the stable revision is kept beyond the limit
    assert model.status["latestRevision"] == 4
