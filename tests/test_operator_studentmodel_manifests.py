"""Manifests of a StudentModel's children: server and teacher Deployments, Services, revision hashes."""

from __future__ import annotations

from typing import Any

import pytest
from test_operator_rollout_support import make_spec

from mangakd.resources import ArtifactRef, StudentModelSpec
from mangakd.spec import SpecError
from mangakd_operator.config import OperatorConfig
from mangakd_operator.studentmodel.manifests import (
    check_artifact_path,
    revision_template,
    server_deployment,
    server_service,
    teacher_deployment,
)
from mangakd_operator.studentmodel.names import REVISION_LABEL, ROLE_LABEL

BODY = {"apiVersion": "mangakd.io/v1alpha1", "kind": "StudentModel",
        "metadata": {"name": "intents", "namespace": "ml", "uid": "uid-1"}}


def deployment(**spec_changes: Any) -> dict[str, Any]:
    spec = StudentModelSpec.model_validate({**make_spec(), **spec_changes})
    return server_deployment(BODY, spec, 3, revision_template(spec), 2, "canary", OperatorConfig())


def test_server_mounts_artifact_read_only() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "claim", "readOnly": True}
    assert container["volumeMounts"][0]["readOnly"] is True
    assert container["args"][0] == "/var/lib/mangakd/artifacts/models/a"


def test_server_shadows_teacher_service() -> None:
    args = deployment()["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--teacher-url") + 1] == "http://intents-teacher.ml.svc:8080"
    assert args[args.index("--shadow-sample-rate") + 1] == "1"
    assert args[args.index("--revision") + 1] == "3"


def test_no_teacher_no_shadowing() -> None:
    args = deployment(teacher=None)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--teacher-url" not in args


def test_role_label_only_on_deployment() -> None:
    manifest = deployment()
    assert manifest["metadata"]["labels"][ROLE_LABEL] == "canary"
    assert ROLE_LABEL not in manifest["spec"]["template"]["metadata"]["labels"]
    assert manifest["spec"]["template"]["metadata"]["labels"][REVISION_LABEL] == "3"
    assert manifest["spec"]["selector"]["matchLabels"][REVISION_LABEL] == "3"


def test_probes_and_graceful_stop() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["lifecycle"]["preStop"]["sleep"]["seconds"] == OperatorConfig().server_pre_stop_seconds
    assert pod["terminationGracePeriodSeconds"] > OperatorConfig().server_pre_stop_seconds


def test_replicas_do_not_change_revision() -> None:
    first = StudentModelSpec.model_validate(make_spec())
    scaled = StudentModelSpec.model_validate({**make_spec(), "serving": {"replicas": 5, "shadowSampleRate": 1.0}})
    other = StudentModelSpec.model_validate(make_spec("models/b"))
    assert revision_template(first).spec_hash() == revision_template(scaled).spec_hash()
    assert revision_template(first).spec_hash() != revision_template(other).spec_hash()


def test_service_selects_every_revision() -> None:
    spec = StudentModelSpec.model_validate(make_spec())
    service = server_service(BODY, spec)
    assert service["metadata"]["name"] == "intents"
    assert REVISION_LABEL not in service["spec"]["selector"]
    assert service["spec"]["selector"]["mangakd.io/student-model"] == "intents"


def test_teacher_has_no_teacher_url() -> None:
    spec = StudentModelSpec.model_validate(make_spec())
    args = teacher_deployment(BODY, spec, OperatorConfig())["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "/var/lib/mangakd/teacher/models/teacher"
    assert "--teacher-url" not in args


@pytest.mark.parametrize("path", ["../other", "/abs/path", "a/../../b", "/"])
def test_artifact_path_outside_claim_rejected(path: str) -> None:
    with pytest.raises(SpecError, match="must be a relative folder inside the claim"):
        check_artifact_path("spec.artifact", ArtifactRef(pvc="claim", path=path), "StudentModel ml/intents")
