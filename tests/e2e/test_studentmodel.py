"""A StudentModel end to end: real server pods on the dev cluster, traffic through its Service.

One StudentModel lives through this story, in order, while a load
generator sends predict requests through its Service from the moment the
first revision serves:

1. revision 1 (student A) becomes stable without analysis;
2. revision 2 (a copy of A) passes both canary steps and is promoted;
3. revision 3 (a relabelled copy that disagrees with the teacher) is
   reverted at its first analysis;
4. ``kubectl mangakd rollback --to-revision 1`` makes revision 1 stable;
5. revision 4 (another copy of A) is promoted;
6. revision 4's artifact is replaced in place by a relabelled one and its
   pods are restarted one at a time, as a bad re-upload to the same folder
   would do; the guard measures agreement collapse and reverts to the last good
   revision.

Each test triggers the steps it needs (once per module) and checks one
part of the story. The load generator must see no failed request at all.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Env, Operator
from model_fixtures import (
    MAX_LENGTH,
    TEMPERATURE,
    build_small_export,
    clinc_test_texts,
    relabel_export_dir,
    small_intents,
)
from serving_support import MODEL, SERVING, LoadGenerator, Serving, kubectl_plugin, plugin_path, poison

STEPS = [{"weight": 50, "pauseSeconds": 2}, {"weight": 100, "pauseSeconds": 2}]


def spec(path: str) -> dict[str, Any]:
    return {
        "artifact": {"pvc": "models", "path": path},
        "teacher": {"artifact": {"pvc": "models", "path": "teacher"}},
        "serving": {"replicas": 2, "shadowSampleRate": 1.0, "threads": 1, "maxWaitMs": 1},
        "rollout": {
            "steps": STEPS,
            # The test model is fine-tuned for a few steps only, so its confidence
            # does not track agreement. maxEce is checked by the unit tests.
            "analysis": {"minSamples": 20, "minAgreement": 0.9, "maxEce": 1.0, "failureLimit": 1,
                         "intervalSeconds": 2, "sampleTimeoutSeconds": 120},
        },
        "guard": {"enabled": True, "intervalSeconds": 2, "failingIntervals": 2},
        "historyLimit": 10,
    }


class Story:
    """Runs the steps of the module docstring once each, in order, on demand."""

    def __init__(self, env: Env, operator: Operator, models: Path, tmp: Path) -> None:
        self.serving = Serving(env, operator, env.kubectl)
        self.env = env
        self.models = models
        self.path = plugin_path(tmp / "bin")
        self.done: dict[str, Any] = {}
        self.load: LoadGenerator | None = None
        self.weights: set[int] = set()
        self.revisions_seen_in_canary: set[str] = set()

    def step(self, name: str) -> Any:
        order = ["first", "promoted", "reverted", "rolled_back", "repromoted", "guarded"]
        for earlier in order[: order.index(name) + 1]:
            if earlier not in self.done:
                self.done[earlier] = getattr(self, f"_{earlier}")()
        return self.done[name]

    def _first(self) -> dict[str, Any]:
        self.serving.apply(spec("student-a"))
        model = self.serving.wait(lambda m: (m.get("status") or {}).get("phase") == "Stable",
                                  "revision 1 to become stable")
        self.load = LoadGenerator(self.serving.service_port(), clinc_test_texts(small_intents(), 64))
        self.load.start()
        return model

    def _promoted(self) -> dict[str, Any]:
        assert self.load is not None
        before = dict(self.load.revisions)
        self.serving.set_artifact("student-b")

        def record(model: dict[str, Any]) -> None:
            weight = (model.get("status") or {}).get("canaryWeight")
            if weight:
                self.weights.add(int(weight))

        model = self.serving.wait(lambda m: (m.get("status") or {}).get("stableRevision") == 2
                                  and (m.get("status") or {}).get("phase") == "Stable",
                                  "revision 2 to be promoted", every=record)
        self.revisions_seen_in_canary = {revision for revision, count in self.load.revisions.items()
                                         if count > before.get(revision, 0)}
        return model

    def _reverted(self) -> dict[str, Any]:
        self.serving.set_artifact("student-bad")
        return self.serving.wait(lambda m: (m.get("status") or {}).get("phase") == "Reverted",
                                 "canary revision 3 to be reverted")

    def _rolled_back(self) -> dict[str, Any]:
        result = kubectl_plugin(self.env.kubectl, self.path, "rollback", MODEL, "-n", SERVING, "--to-revision", "1",
                                "--timeout", "150")
        history = kubectl_plugin(self.env.kubectl, self.path, "history", MODEL, "-n", SERVING)
        return {"rollback": result, "history": history, "model": self.serving.model()}

    def _repromoted(self) -> dict[str, Any]:
        self.serving.set_artifact("student-c")
        return self.serving.wait(lambda m: (m.get("status") or {}).get("stableRevision") == 4
                                 and (m.get("status") or {}).get("phase") == "Stable",
                                 "revision 4 to be promoted")

    def _guarded(self) -> dict[str, Any]:
        last_good = self.done["repromoted"]["status"]["lastGoodRevision"]
        poison(self.models / "student-c", small_intents(), TEMPERATURE, MAX_LENGTH)
        self.serving.restart_pods(4)
        model = self.serving.wait(lambda m: (m.get("status") or {}).get("stableRevision") == last_good
                                  and not (m.get("status") or {}).get("switch"),
                                  f"the guard to revert revision 4 to revision {last_good}")
        return {"model": model, "last_good": last_good}

    def close(self) -> None:
        if self.load is not None:
            self.load.stop()


@pytest.fixture(scope="module")
def story(env: Env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    env.kubectl("apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {SERVING}\n")
    models = env.state_dir / "pvc" / SERVING / "models"
    models.mkdir(parents=True, exist_ok=True)
    export = build_small_export(tmp_path_factory.mktemp("served-model"))
    for folder in ("teacher", "student-a", "student-b", "student-c"):
        shutil.copytree(export, models / folder)
    relabel_export_dir(export, models / "student-bad", [*small_intents()[1:], small_intents()[0]])

    operator = Operator(SERVING, env.cluster.kubeconfig_path, env.state_dir.parent / "operator-serving.log")
    operator.environment.update(MANGAKD_ROLLOUT_INTERVAL="1", MANGAKD_SERVER_PRESTOP_SECONDS="1",
                                MANGAKD_SERVER_IMAGE="mangakd/server:dev")
    operator.start()
    env.operators[SERVING] = operator
    story = Story(env, operator, models, tmp_path_factory.mktemp("plugin"))
    try:
        yield story
    finally:
        story.close()
        operator.stop()


def status_of(model: dict[str, Any]) -> dict[str, Any]:
    return dict(model.get("status") or {})


def record(model: dict[str, Any], revision: int) -> dict[str, Any]:
    for item in status_of(model).get("history") or []:
        if item["revision"] == revision:
            return dict(item)
    raise AssertionError(f"no revision {revision} in {json.dumps(status_of(model).get('history'), indent=1)}")


def ready_condition(model: dict[str, Any]) -> dict[str, Any]:
    for item in status_of(model).get("conditions") or []:
        if item["type"] == "Ready":
            return dict(item)
    raise AssertionError(f"no Ready condition in {status_of(model)}")


def test_first_revision_stable_without_canary(story: Story) -> None:
    model = story.step("first")
    status = status_of(model)
    assert status["stableRevision"] == 1, story.serving.diagnose()
    assert status.get("canaryRevision") is None
    assert record(model, 1)["reason"] == "FirstRevision"
    assert ready_condition(model)["status"] == "True"


def test_good_canary_promoted_through_steps(story: Story) -> None:
    model = story.step("promoted")
    status = status_of(model)
    assert status["stableRevision"] == 2
    assert status["lastGoodRevision"] == 1
    assert story.weights == {50, 100}, story.weights
    assert record(model, 2)["state"] == "Stable"
    assert record(model, 2)["reason"] == "CanaryPromoted"
    assert record(model, 2)["metrics"]["verdict"] == "Passed"
    assert record(model, 1)["state"] == "Superseded"
    # Requests went through the one Service to both revisions during the canary.
    assert {"1", "2"} <= story.revisions_seen_in_canary, story.revisions_seen_in_canary
    deployments = story.env.kubectl.json("get", "deployments", "-n", SERVING, "-l", f"mangakd.io/student-model={MODEL}")
    names = sorted(item["metadata"]["name"] for item in deployments["items"])
    assert names == ["intents-r2", "intents-teacher"]
    assert story.serving.operator_metric("mangakd_operator_rollouts_total", result="promoted") == 1


def test_bad_canary_reverted_at_first_analysis(story: Story) -> None:
    model = story.step("reverted")
    status = status_of(model)
    bad = record(model, 3)
    assert status["stableRevision"] == 2
    assert bad["state"] == "Reverted"
    assert bad["reason"] == "CanaryReverted"
    assert bad["metrics"]["agreement"] < 0.9, bad
    assert ready_condition(model)["reason"] == "CanaryReverted"
    assert story.serving.operator_metric(
        "mangakd_operator_analysis_results_total", target="canary", result="Failed"
    ) == 1
    assert story.serving.operator_metric("mangakd_operator_rollouts_total", result="reverted") == 1
    assert any("Reverted canary revision 3" in message for message in story.serving.warning_events())


def test_reverted_spec_not_rolled_out_again(story: Story) -> None:
    story.step("reverted")
    model = story.serving.wait(lambda m: True, "the StudentModel")
    assert status_of(model).get("canaryRevision") is None
    assert status_of(model)["latestRevision"] == 3


def test_kubectl_rollback_to_revision(story: Story) -> None:
    outcome = story.step("rolled_back")
    result, history, model = outcome["rollback"], outcome["history"], outcome["model"]
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{story.serving.diagnose()}"
    assert "Rolled back StudentModel e2e-serving/intents to revision 1" in result.stdout
    assert "revision 1 (models:student-a), 2/2 pods ready" in result.stdout
    assert status_of(model)["stableRevision"] == 1
    assert status_of(model)["rollback"]["result"] == "Succeeded"
    assert record(model, 2)["state"] == "RolledBack"
    assert history.returncode == 0, history.stderr
    rows = {line.split()[0]: line for line in history.stdout.splitlines()[1:] if line.strip() and line[0].isdigit()}
    assert "RolledBack" in rows["2"], history.stdout
    assert rows["1*"].split()[1] == "Stable", history.stdout


def test_kubectl_rollback_unknown_revision(story: Story) -> None:
    story.step("rolled_back")
    result = kubectl_plugin(story.env.kubectl, story.path, "rollback", MODEL, "-n", SERVING, "--to-revision", "99")
    assert result.returncode == 1
    assert "revision 99 of StudentModel e2e-serving/intents is unknown" in result.stderr


def test_kubectl_status_unknown_name(story: Story) -> None:
    result = kubectl_plugin(story.env.kubectl, story.path, "status", "no-such-model", "-n", SERVING)
    assert result.returncode == 1
    assert 'StudentModel "no-such-model" not found in namespace "e2e-serving"' in result.stderr


def test_guard_reverts_degraded_stable(story: Story) -> None:
    outcome = story.step("guarded")
    model, last_good = outcome["model"], outcome["last_good"]
    bad = record(model, 4)
    assert status_of(model)["stableRevision"] == last_good
    assert bad["state"] == "Reverted"
    assert bad["reason"] == "GuardReverted"
    assert bad["metrics"]["agreement"] < 0.9, bad
    assert story.serving.operator_metric("mangakd_operator_guard_reverts_total") == 1
    assert any("Reverting stable revision 4" in message for message in story.serving.warning_events())


def test_no_request_failed(story: Story) -> None:
    story.step("guarded")
    load = story.load
    assert load is not None
    load.stop()
    assert load.succeeded > 0
    assert load.failures == [], load.failures[:10]
