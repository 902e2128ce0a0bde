"""``kubectl mangakd`` without a cluster: argument parsing, reports and rollback checks."""

from __future__ import annotations

from typing import Any

import pytest

from mangakd.kubectl_plugin import PluginError, build_parser, format_history, format_status, main, rollback

MODEL: dict[str, Any] = {
    "metadata": {"name": "intents", "namespace": "ml", "resourceVersion": "41"},
    "spec": {"serving": {"replicas": 2}, "rollout": {"steps": [{"weight": 50}, {"weight": 100}]}},
    "status": {
        "phase": "Stable", "stableRevision": 2, "lastGoodRevision": 1, "readyReplicas": 2,
        "conditions": [{"type": "Ready", "status": "True", "reason": "StableAvailable", "message": "ok"}],
        "history": [
            {"revision": 1, "state": "Superseded", "artifact": {"pvc": "models", "path": "a"},
             "createdAt": "2025-01-01T12:00:00Z", "promotedAt": "2025-01-01T12:00:05Z"},
            {"revision": 2, "state": "Stable", "artifact": {"pvc": "models", "path": "b"},
             "createdAt": "2025-01-01T12:01:00Z", "promotedAt": "2025-01-01T12:02:00Z", "reason": "CanaryPromoted"},
            {"revision": 3, "state": "Reverted", "createdAt": "2025-01-01T12:03:00Z", "reason": "CanaryReverted"},
        ],
    },
}


class FakeModels:
    """Stands in for the API layer: returns MODEL and records annotation patches."""

    namespace = "ml"

    def __init__(self) -> None:
        self.patches: list[tuple[str, str, str]] = []

    def get(self, name: str) -> dict[str, Any]:
        return MODEL

    def annotate(self, name: str, resource_version: str, value: str) -> None:
        self.patches.append((name, resource_version, value))


def test_namespace_before_or_after_subcommand() -> None:
    parser = build_parser()
    assert parser.parse_args(["-n", "ml", "status", "x"]).namespace == "ml"
    assert parser.parse_args(["status", "x", "-n", "ml"]).namespace == "ml"
    assert parser.parse_args(["status", "x"]).namespace is None


def test_history_marks_stable() -> None:
    lines = format_history(MODEL).splitlines()
    assert lines[0].split()[:3] == ["REVISION", "STATE", "ARTIFACT"]
    assert lines[2].split()[:3] == ["2*", "Stable", "models:b"]
    assert lines[3].split()[:3] == ["3", "Reverted", "(none)"]


def test_status_names_serving_revision() -> None:
    text = format_status(MODEL)
    assert "Serving:        revision 2 (models:b), 2/2 pods ready" in text
    assert "Last good:      revision 1" in text


def test_rollback_unknown_revision_raises() -> None:
    models = FakeModels()
    with pytest.raises(PluginError, match="revision 9 of StudentModel ml/intents is unknown; known revisions: 1, 2, 3"):
        rollback(models, "intents", 9, timeout=1)  # type: ignore[arg-type]
    assert models.patches == []


def test_rollback_revision_without_artifact_raises() -> None:
    with pytest.raises(PluginError, match="revision 3 has no artifact"):
        rollback(FakeModels(), "intents", 3, timeout=1)  # type: ignore[arg-type]


def test_rollback_waits_then_times_out() -> None:
    models = FakeModels()
    with pytest.raises(PluginError, match="timed out after 0.1 s"):
        rollback(models, "intents", None, timeout=0.1)  # type: ignore[arg-type]
    name, version, value = models.patches[0]
    assert (name, version) == ("intents", "41")
    assert '"toRevision":1' in value


def test_invalid_revision_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollback", "intents", "--to-revision", "0"]) == 2
    assert "revisions start at 1" in capsys.readouterr().err
