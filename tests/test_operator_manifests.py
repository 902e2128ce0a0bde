"""The operator's child manifests, names and settings, checked without a cluster."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from mangakd_operator import manifests
from mangakd_operator.config import ConfigError, OperatorConfig
from mangakd_operator.names import (
    QUEUE_LABEL,
    RUN_LABEL,
    child_name,
    run_selector,
    training_job_name,
)

from mangakd.resources import StudentModel
from mangakd.spec import parse_run

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "distillationrun-ci.yaml"
CONFIG = OperatorConfig(trainer_image="registry.example/trainer:1", evaluator_image="registry.example/eval:1")


def run_body(generation: int = 3, **resources: Any) -> dict[str, Any]:
    """Return the CI example as the API server would serve it, with ``spec.resources`` overrides."""
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace="ml", uid="uid-123", generation=generation)
    body["spec"]["resources"].update(resources)
    return body


def build(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    run = parse_run(copy.deepcopy(body))
    generation = body["metadata"]["generation"]
    if kind == "training":
        return manifests.training_job(body, run, generation, CONFIG)
    return manifests.evaluation_job(body, run, generation, CONFIG)


def container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_training_job_name_has_generation() -> None:
    job = build("training", run_body(generation=3))
    assert job["metadata"]["name"] == "clinc-mini-train-g3"


def test_evaluation_job_name_has_generation() -> None:
    job = build("evaluation", run_body(generation=3))
    assert job["metadata"]["name"] == "clinc-mini-eval-g3"


def test_training_job_gpu_limit() -> None:
    job = build("training", run_body(gpu=2))
    assert container(job)["resources"]["limits"] == {"nvidia.com/gpu": "2"}


def test_training_job_without_gpu_has_no_limit() -> None:
    job = build("training", run_body(gpu=0))
    assert "limits" not in container(job)["resources"]


def test_evaluation_job_never_requests_gpu() -> None:
    job = build("evaluation", run_body(gpu=4))
    assert "limits" not in container(job)["resources"]


def test_cpu_and_memory_requests_on_both_jobs() -> None:
    body = run_body(cpu="4", memory="16Gi")
    for kind in ("training", "evaluation"):
        assert container(build(kind, body))["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}


def test_training_job_scheduling_fields() -> None:
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    body = run_body(nodeSelector={"gpu": "a100"}, tolerations=[toleration], priorityClassName="ml-high")
    pod = build("training", body)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == [toleration]
    assert pod["priorityClassName"] == "ml-high"


def test_evaluation_job_skips_gpu_scheduling() -> None:
    body = run_body(nodeSelector={"gpu": "a100"}, tolerations=[{"operator": "Exists"}], priorityClassName="p")
    pod = build("evaluation", body)["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod
    assert "priorityClassName" not in pod


def test_queue_name_labels_and_suspends_jobs() -> None:
    body = run_body(queueName="team-a")
    for kind in ("training", "evaluation"):
        job = build(kind, body)
        assert job["metadata"]["labels"][QUEUE_LABEL] == "team-a"
        assert job["spec"]["template"]["metadata"]["labels"][QUEUE_LABEL] == "team-a"
        assert job["spec"]["suspend"] is True


def test_job_without_queue_is_not_suspended() -> None:
    job = build("training", run_body())
    assert QUEUE_LABEL not in job["metadata"]["labels"]
    assert "suspend" not in job["spec"]


def test_extra_labels_and_run_labels() -> None:
    job = build("training", run_body(labels={"team": "nlp"}))
    labels = job["metadata"]["labels"]
    assert labels["team"] == "nlp"
    assert labels[RUN_LABEL] == "clinc-mini"
    assert labels["mangakd.io/generation"] == "3"
    assert labels["app.kubernetes.io/component"] == "training"


def test_backoff_limit_and_deadline() -> None:
    job = build("training", run_body(backoffLimit=4, activeDeadlineSeconds=3600))
    assert job["spec"]["backoffLimit"] == 4
    assert job["spec"]["activeDeadlineSeconds"] == 3600


def test_owner_reference_points_at_run() -> None:
    job = build("training", run_body())
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner["kind"] == "DistillationRun"
    assert owner["name"] == "clinc-mini"
    assert owner["uid"] == "uid-123"
    assert owner["controller"] is True


def test_job_mounts_claim_and_runs_in_run_folder() -> None:
    job = build("training", run_body())
    pod = job["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["artifacts"]["persistentVolumeClaim"] == {"claimName": "mangakd-artifacts"}
    assert volumes["run-spec"]["configMap"] == {"name": "clinc-mini-spec-g3"}
    assert container(job)["workingDir"] == f"{manifests.ARTIFACTS_MOUNT}/clinc-mini"


def test_sub_path_sets_workdir() -> None:
    body = run_body()
    body["spec"]["storage"]["subPath"] = "team/runs/a/"
    job = build("training", body)
    assert container(job)["workingDir"] == f"{manifests.ARTIFACTS_MOUNT}/team/runs/a"


def test_termination_message_settings() -> None:
    spec = container(build("training", run_body()))
    assert spec["terminationMessagePath"] == "/dev/termination-log"
    assert spec["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert spec["command"][-2:] == ["--termination-log", "/dev/termination-log"]


def test_jobs_run_their_stages_on_their_images() -> None:
    training = container(build("training", run_body()))
    evaluation = container(build("evaluation", run_body()))
    assert training["command"][training["command"].index("--stages") + 1] == "prepare,finetune,distill"
    assert (
        evaluation["command"][evaluation["command"].index("--stages") + 1] == "calibrate,export,evaluate,gate"
    )
    assert training["image"] == "registry.example/trainer:1"
    assert evaluation["image"] == "registry.example/eval:1"


def test_config_map_holds_parsable_run() -> None:
    body = run_body()
    config_map = manifests.config_map(body, 3)
    document = yaml.safe_load(config_map["data"][manifests.SPEC_KEY])
    assert config_map["metadata"]["name"] == "clinc-mini-spec-g3"
    assert parse_run(document).spec == parse_run(copy.deepcopy(body)).spec


def test_student_model_validates_and_points_at_exports() -> None:
    body = run_body()
    manifest = manifests.student_model(body, parse_run(copy.deepcopy(body)), 3)
    model = StudentModel.model_validate(manifest)
    assert model.metadata.name == "clinc-mini"
    assert model.spec.artifact.path == "clinc-mini/export/student"
    assert model.spec.teacher is not None
    assert model.spec.teacher.artifact.path == "clinc-mini/export/teacher"
    assert model.spec.distillation_run == "clinc-mini"
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "uid-123"


def test_long_run_names_are_shortened_deterministically() -> None:
    name = "a" * 80
    first = training_job_name(name, 12)
    assert len(first) <= 63
    assert first == training_job_name(name, 12)
    assert first.endswith("-train-g12")


def test_distinct_long_names_stay_distinct() -> None:
    assert child_name("x" * 70 + "1", "train-g1") != child_name("x" * 70 + "2", "train-g1")


def test_selector_uses_shortened_label() -> None:
    assert run_selector("clinc-mini") == f"{RUN_LABEL}=clinc-mini"
    assert len(run_selector("b" * 100).split("=")[1]) <= 63


def test_config_defaults_without_environment() -> None:
    config = OperatorConfig.from_env({})
    assert config.evaluator_image == config.trainer_image
    assert config.metrics_port == 8000
    assert config.reconcile_interval == 30.0


def test_config_reads_environment() -> None:
    config = OperatorConfig.from_env(
        {"MANGAKD_TRAINER_IMAGE": "t:2", "MANGAKD_METRICS_PORT": "0", "MANGAKD_RECONCILE_INTERVAL": "2.5"}
    )
    assert config.trainer_image == "t:2"
    assert config.evaluator_image == "t:2"
    assert config.metrics_port == 0
    assert config.reconcile_interval == 2.5


def test_config_reads_metrics_address() -> None:
    assert OperatorConfig.from_env({}).metrics_address == "0.0.0.0"
    assert OperatorConfig.from_env({"MANGAKD_METRICS_ADDRESS": "127.0.0.1"}).metrics_address == "127.0.0.1"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MANGAKD_METRICS_PORT", "http"),
        ("MANGAKD_METRICS_PORT", "70000"),
        ("MANGAKD_RECONCILE_INTERVAL", "0"),
        ("MANGAKD_RETRY_DELAY", "soon"),
        ("MANGAKD_IMAGE_PULL_POLICY", "Sometimes"),
    ],
)
def test_config_rejects_invalid_values(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        OperatorConfig.from_env({variable: value})
