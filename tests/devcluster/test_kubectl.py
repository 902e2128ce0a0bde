"""The real kubectl against the development cluster: apply, get, describe, explain, patch, delete, events."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import yaml
from devcluster_support import CRD_PATH, Http

Kubectl = Callable[..., Any]

RUN = """
apiVersion: mangakd.io/v1alpha1
kind: DistillationRun
metadata:
  name: {name}
spec:
  teacher: minilm
  distillation:
    temperature: {temperature}
"""


def apply_run(kubectl: Kubectl, namespace: str, name: str, temperature: float = 2, check: bool = True) -> Any:
    return kubectl("apply", "-n", namespace, "-f", "-", input=RUN.format(name=name, temperature=temperature), check=check)


def test_apply_creates_then_updates(kubectl: Kubectl, crd: dict, namespace: str) -> None:
    created = apply_run(kubectl, namespace, "applied")
    configured = apply_run(kubectl, namespace, "applied", temperature=4)
    unchanged = apply_run(kubectl, namespace, "applied", temperature=4)
    spec = json.loads(kubectl("get", "-n", namespace, "dr", "applied", "-o", "json").stdout)["spec"]
    assert "created" in created.stdout
    assert "configured" in configured.stdout
    assert "unchanged" in unchanged.stdout
    assert spec["distillation"]["temperature"] == 4


def test_apply_crd_file(kubectl: Kubectl, crd: dict) -> None:
    result = kubectl("apply", "-f", str(CRD_PATH))
    assert "customresourcedefinition.apiextensions.k8s.io/distillationruns.mangakd.io" in result.stdout


def test_apply_invalid_shows_field(kubectl: Kubectl, crd: dict, namespace: str) -> None:
    result = apply_run(kubectl, namespace, "frozen", temperature=-1, check=False)
    assert result.returncode != 0
    assert "spec.distillation.temperature" in result.stderr
    assert "should be greater than 0" in result.stderr


def test_apply_unknown_field_strict(kubectl: Kubectl, crd: dict, namespace: str) -> None:
    document = RUN.format(name="typo", temperature=2) + "  tacher: oops\n"
    result = kubectl("apply", "-n", namespace, "-f", "-", input=document, check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.tacher"' in result.stderr


def test_get_short_name_and_category(kubectl: Kubectl, crd: dict, namespace: str) -> None:
    apply_run(kubectl, namespace, "listed")
    by_short_name = kubectl("get", "-n", namespace, "dr").stdout
    by_category = kubectl("get", "-n", namespace, "mangakd").stdout
    assert by_short_name.split()[:4] == ["NAME", "PHASE", "READY", "AGE"]
    assert "listed" in by_short_name
    assert "listed" in [line.split()[0] for line in by_category.splitlines()]


def test_get_wide_shows_priority_columns(kubectl: Kubectl, crd: dict, namespace: str) -> None:
    apply_run(kubectl, namespace, "wide", temperature=2.5)
    output = kubectl("get", "-n", namespace, "dr", "-o", "wide").stdout
    header, row = output.splitlines()[:2]
    assert "TEMPERATURE" in header.split()
    assert "2.5" in row.split()


def test_get_yaml_round_trips(kubectl: Kubectl, crd: dict, namespace: str) -> None:
    apply_run(kubectl, namespace, "yamled")
    document = yaml.safe_load(kubectl("get", "-n", namespace, "dr", "yamled", "-o", "yaml").stdout)
    assert document["kind"] == "DistillationRun"
    assert document["spec"]["distillation"]["loss"] == "kl"


def test_get_all_namespaces(kubectl: Kubectl, crd: dict, namespace: str) -> None:
    apply_run(kubectl, namespace, "anywhere")
    output = kubectl("get", "dr", "-A").stdout
    assert any(line.split()[:2] == [namespace, "anywhere"] for line in output.splitlines())


def test_describe_custom_resource_lists_events(kubectl: Kubectl, http: Http, crd: dict, namespace: str) -> None:
    apply_run(kubectl, namespace, "described")
    run = json.loads(kubectl("get", "-n", namespace, "dr", "described", "-o", "json").stdout)
    http.post(f"/api/v1/namespaces/{namespace}/events", {
        "metadata": {"generateName": "described-"}, "type": "Normal", "reason": "Started",
        "message": "Started distillation", "source": {"component": "test"},
        "involvedObject": {"apiVersion": "mangakd.io/v1alpha1", "kind": "DistillationRun", "name": "described",
                           "namespace": namespace, "uid": run["metadata"]["uid"]},
        "firstTimestamp": run["metadata"]["creationTimestamp"], "lastTimestamp": run["metadata"]["creationTimestamp"], "count": 1})
    output = kubectl("describe", "-n", namespace, "dr", "described").stdout
    assert "Teacher:" in output
    assert "Started distillation" in output


def test_get_events(kubectl: Kubectl, http: Http, namespace: str) -> None:
    http.post(f"/api/v1/namespaces/{namespace}/events", {
        "metadata": {"name": "ev1"}, "type": "Warning", "reason": "Degraded", "message": "Agreement fell",
        "involvedObject": {"kind": "StudentModel", "name": "s1", "namespace": namespace}})
    output = kubectl("get", "events", "-n", namespace).stdout
    assert "Agreement fell" in output
    assert "studentmodel/s1" in output


def test_explain_prints_descriptions(kubectl: Kubectl, crd: dict) -> None:
    output = kubectl("explain", "distillationrun.spec").stdout
    assert "Teacher model reference." in output
    assert "KD hyper-parameters." in output


def test_patch_types(kubectl: Kubectl, crd: dict, namespace: str) -> None:
    apply_run(kubectl, namespace, "patched")
    kubectl("patch", "-n", namespace, "dr", "patched", "--type=merge", "-p", '{"spec":{"teacher":"bert"}}')
    kubectl("patch", "-n", namespace, "dr", "patched", "--type=json", "-p", '[{"op":"replace","path":"/spec/distillation/alpha","value":0.2}]')
    strategic = kubectl("patch", "-n", namespace, "dr", "patched", "--type=strategic", "-p", '{"spec":{"teacher":"x"}}', check=False)
    spec = json.loads(kubectl("get", "-n", namespace, "dr", "patched", "-o", "json").stdout)["spec"]
    assert spec["teacher"] == "bert"
    assert spec["distillation"]["alpha"] == 0.2
    assert strategic.returncode != 0


def test_strategic_patch_builtin(kubectl: Kubectl, namespace: str) -> None:
    # `kubectl create configmap` sends protobuf, which this server does not decode; `-f` sends JSON.
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}
    kubectl("create", "-n", namespace, "-f", "-", input=yaml.safe_dump(settings))
    kubectl("patch", "-n", namespace, "configmap", "settings", "--type=strategic", "-p", '{"data":{"b":"2"}}')
    data = json.loads(kubectl("get", "-n", namespace, "configmap", "settings", "-o", "json").stdout)["data"]
    assert data == {"a": "1", "b": "2"}


def test_apply_builtin_twice(kubectl: Kubectl, namespace: str) -> None:
    document = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))
    document["spec"]["ports"].append({"port": 443, "name": "https"})
    document["spec"]["ports"][0]["name"] = "http"
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))
    ports = json.loads(kubectl("get", "-n", namespace, "svc", "web", "-o", "json").stdout)["spec"]["ports"]
    assert sorted(port["port"] for port in ports) == [80, 443]


def test_delete_removes(kubectl: Kubectl, crd: dict, namespace: str) -> None:
    apply_run(kubectl, namespace, "deleted")
    result = kubectl("delete", "-n", namespace, "dr", "deleted")
    missing = kubectl("get", "-n", namespace, "dr", "deleted", check=False)
    assert "deleted" in result.stdout
    assert missing.returncode != 0
    assert "NotFound" in missing.stderr
