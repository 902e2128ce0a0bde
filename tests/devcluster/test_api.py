"""CRUD, CRD schema handling, status subresource and patches over real HTTP."""

from __future__ import annotations

from typing import Any

from devcluster_support import Http, run_body, run_path


def test_create_sets_server_metadata(http: Http, crd: dict[str, Any], namespace: str) -> None:
    status, body = http.post(run_path(namespace), run_body("meta"))
    assert status == 201
    assert body["metadata"]["uid"]
    assert body["metadata"]["generation"] == 1
    assert body["metadata"]["creationTimestamp"].endswith("Z")
    assert int(body["metadata"]["resourceVersion"]) > 0


def test_create_twice_is_already_exists(http: Http, crd: dict[str, Any], namespace: str) -> None:
    http.post(run_path(namespace), run_body("twice"))
    status, body = http.post(run_path(namespace), run_body("twice"))
    assert status == 409
    assert body["kind"] == "Status"
    assert body["reason"] == "AlreadyExists"


def test_get_missing_is_not_found(http: Http, crd: dict[str, Any], namespace: str) -> None:
    status, body = http.get(run_path(namespace, "missing"))
    assert status == 404
    assert body["reason"] == "NotFound"
    assert body["message"] == 'distillationruns.mangakd.io "missing" not found'


def test_create_in_missing_namespace_is_not_found(http: Http) -> None:
    status, body = http.post("/api/v1/namespaces/no-such-namespace/configmaps", {"metadata": {"name": "x"}})
    assert status == 404
    assert body["message"] == 'namespaces "no-such-namespace" not found'


def test_generate_name_adds_suffix(http: Http, namespace: str) -> None:
    status, body = http.post(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"generateName": "cfg-"}})
    assert status == 201
    assert body["metadata"]["name"].startswith("cfg-")
    assert len(body["metadata"]["name"]) == len("cfg-") + 5


def test_invalid_name_is_rejected(http: Http, namespace: str) -> None:
    status, body = http.post(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "Bad_Name"}})
    assert status == 422
    assert body["reason"] == "Invalid"


def test_schema_defaults_applied(http: Http, crd: dict[str, Any], namespace: str) -> None:
    _, body = http.post(run_path(namespace), run_body("defaults", distillation={"alpha": 0.5}))
    assert body["spec"]["distillation"] == {"alpha": 0.5, "temperature": 3, "loss": "kl"}


def test_unknown_fields_pruned(http: Http, crd: dict[str, Any], namespace: str) -> None:
    _, body = http.post(run_path(namespace), run_body("pruned", extra="dropped"))
    assert "extra" not in body["spec"]


def test_unknown_field_strict_is_bad_request(http: Http, crd: dict[str, Any], namespace: str) -> None:
    status, body = http.post(run_path(namespace) + "?fieldValidation=Strict", run_body("strict", extra=1))
    assert status == 400
    assert 'unknown field "spec.extra"' in body["message"]


def test_exclusive_minimum_message(http: Http, crd: dict[str, Any], namespace: str) -> None:
    status, body = http.post(run_path(namespace), run_body("cold", distillation={"temperature": -1}))
    assert status == 422
    assert body["message"] == (
        'DistillationRun.mangakd.io "cold" is invalid: spec.distillation.temperature: Invalid value: -1: '
        "spec.distillation.temperature in body should be greater than 0")
    assert body["details"]["causes"][0]["field"] == "spec.distillation.temperature"


def test_schema_errors_listed_together(http: Http, crd: dict[str, Any], namespace: str) -> None:
    body_in = run_body("many", distillation={"alpha": 2, "loss": "l1"})
    del body_in["spec"]["teacher"]
    status, body = http.post(run_path(namespace), body_in)
    assert status == 422
    fields = sorted(cause["field"] for cause in body["details"]["causes"])
    assert fields == ["spec.distillation.alpha", "spec.distillation.loss", "spec.teacher"]
    assert 'spec.distillation.loss: Unsupported value: "l1": supported values: "kl", "mse"' in body["message"]
    assert "spec.teacher: Required value" in body["message"]


def test_wrong_type_rejected(http: Http, crd: dict[str, Any], namespace: str) -> None:
    status, body = http.post(run_path(namespace), run_body("typed", distillation={"alpha": "high"}))
    assert status == 422
    assert 'spec.distillation.alpha in body must be of type number: "string"' in body["message"]


def test_generation_counts_spec_changes_only(http: Http, crd: dict[str, Any], namespace: str) -> None:
    http.post(run_path(namespace), run_body("gen"))
    _, after_spec = http.patch(run_path(namespace, "gen"), {"spec": {"teacher": "bigger"}})
    _, after_labels = http.patch(run_path(namespace, "gen"), {"metadata": {"labels": {"a": "b"}}})
    _, after_status = http.patch(run_path(namespace, "gen") + "/status", {"status": {"phase": "Running"}})
    assert after_spec["metadata"]["generation"] == 2
    assert after_labels["metadata"]["generation"] == 2
    assert after_status["metadata"]["generation"] == 2


def test_main_resource_ignores_status(http: Http, crd: dict[str, Any], namespace: str) -> None:
    http.post(run_path(namespace), run_body("split"))
    _, patched = http.patch(run_path(namespace, "split"), {"status": {"phase": "Hacked"}, "spec": {"teacher": "t2"}})
    assert "status" not in patched
    assert patched["spec"]["teacher"] == "t2"


def test_status_subresource_ignores_spec(http: Http, crd: dict[str, Any], namespace: str) -> None:
    http.post(run_path(namespace), run_body("status-only"))
    _, patched = http.patch(run_path(namespace, "status-only") + "/status",
                            {"status": {"phase": "Done"}, "spec": {"teacher": "ignored"}})
    assert patched["status"] == {"phase": "Done"}
    assert patched["spec"]["teacher"] == "minilm"


def test_put_with_stale_version_conflicts(http: Http, crd: dict[str, Any], namespace: str) -> None:
    _, created = http.post(run_path(namespace), run_body("stale"))
    http.patch(run_path(namespace, "stale"), {"spec": {"teacher": "t2"}})
    status, body = http.put(run_path(namespace, "stale"), created)
    assert status == 409
    assert body["reason"] == "Conflict"


def test_patch_with_stale_version_conflicts(http: Http, crd: dict[str, Any], namespace: str) -> None:
    _, created = http.post(run_path(namespace), run_body("stale-patch"))
    http.patch(run_path(namespace, "stale-patch"), {"spec": {"teacher": "t2"}})
    status, body = http.patch(run_path(namespace, "stale-patch"),
                              {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"teacher": "t3"}})
    assert status == 409
    assert body["reason"] == "Conflict"


def test_put_custom_resource_needs_version(http: Http, crd: dict[str, Any], namespace: str) -> None:
    _, created = http.post(run_path(namespace), run_body("unversioned"))
    del created["metadata"]["resourceVersion"]
    status, body = http.put(run_path(namespace, "unversioned"), created)
    assert status == 422
    assert "must be specified for an update" in body["message"]


def test_noop_patch_keeps_resource_version(http: Http, crd: dict[str, Any], namespace: str) -> None:
    _, created = http.post(run_path(namespace), run_body("noop"))
    _, patched = http.patch(run_path(namespace, "noop"), {"spec": {"teacher": "minilm"}})
    assert patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_json_patch_failed_test_is_invalid(http: Http, crd: dict[str, Any], namespace: str) -> None:
    http.post(run_path(namespace), run_body("jp"))
    status, body = http.patch(run_path(namespace, "jp"), [{"op": "test", "path": "/spec/teacher", "value": "other"}],
                              content_type="application/json-patch+json")
    assert status == 422
    assert body["reason"] == "Invalid"


def test_json_patch_applies_operations(http: Http, crd: dict[str, Any], namespace: str) -> None:
    http.post(run_path(namespace), run_body("jp-ok"))
    status, body = http.patch(run_path(namespace, "jp-ok"), [
        {"op": "test", "path": "/spec/teacher", "value": "minilm"},
        {"op": "replace", "path": "/spec/teacher", "value": "bert"},
        {"op": "add", "path": "/metadata/labels", "value": {"k": "v"}},
    ], content_type="application/json-patch+json")
    assert status == 200
    assert body["spec"]["teacher"] == "bert"
    assert body["metadata"]["labels"] == {"k": "v"}


def test_strategic_patch_on_custom_resource_unsupported(http: Http, crd: dict[str, Any], namespace: str) -> None:
    http.post(run_path(namespace), run_body("smp"))
    status, body = http.patch(run_path(namespace, "smp"), {"spec": {"teacher": "x"}},
                              content_type="application/strategic-merge-patch+json")
    assert status == 415
    assert body["reason"] == "UnsupportedMediaType"


def test_strategic_patch_merges_containers(http: Http, namespace: str) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "x", "command": ["sleep", "0"], "env": [{"name": "A", "value": "1"}]},
        {"name": "b", "image": "y", "command": ["sleep", "0"]}]}}
    deployment = {"metadata": {"name": "smp"}, "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "smp"}},
                                                          "template": {"metadata": {"labels": {"app": "smp"}}, "spec": pod["spec"]}}}
    http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment)
    status, body = http.patch(f"/apis/apps/v1/namespaces/{namespace}/deployments/smp",
                              {"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "B", "value": "2"}]}]}}}},
                              content_type="application/strategic-merge-patch+json")
    assert status == 200
    containers = body["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["a", "b"]
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]


def test_list_is_typed(http: Http, crd: dict[str, Any], namespace: str) -> None:
    http.post(run_path(namespace), run_body("listed"))
    _, body = http.get(run_path(namespace))
    assert body["kind"] == "DistillationRunList"
    assert body["apiVersion"] == "mangakd.io/v1alpha1"
    assert int(body["metadata"]["resourceVersion"]) > 0
    assert [item["metadata"]["name"] for item in body["items"]] == ["listed"]


def test_list_across_namespaces(http: Http, namespace: str) -> None:
    http.post(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "everywhere"}})
    _, body = http.get("/api/v1/configmaps?fieldSelector=metadata.name%3Deverywhere")
    assert [item["metadata"]["namespace"] for item in body["items"]] == [namespace]


def test_label_selectors(http: Http, namespace: str) -> None:
    for name, labels in {"a": {"tier": "web", "env": "prod"}, "b": {"tier": "db"}, "c": {}}.items():
        http.post(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": name, "labels": labels}})
    cases = {
        "tier=web": ["a"], "tier==db": ["b"], "tier!=web": ["b", "c"], "tier in (web,db)": ["a", "b"],
        "tier notin (web)": ["b", "c"], "env": ["a"], "!env": ["b", "c"], "tier,env=prod": ["a"],
    }
    for selector, expected in cases.items():
        query = urllib_quote(selector)
        _, body = http.get(f"/api/v1/namespaces/{namespace}/configmaps?labelSelector={query}")
        assert [item["metadata"]["name"] for item in body["items"]] == expected, selector


def test_event_field_selectors(http: Http, namespace: str) -> None:
    for name, kind in (("e1", "Pod"), ("e2", "Job")):
        http.post(f"/api/v1/namespaces/{namespace}/events", {
            "metadata": {"name": name}, "involvedObject": {"kind": kind, "name": "x", "namespace": namespace},
            "reason": "Tested", "message": "m", "type": "Normal"})
    _, body = http.get(f"/api/v1/namespaces/{namespace}/events?fieldSelector=involvedObject.kind%3DJob,involvedObject.name%3Dx")
    assert [item["metadata"]["name"] for item in body["items"]] == ["e2"]


def test_events_api_group_shares_storage(http: Http, namespace: str) -> None:
    http.post(f"/api/v1/namespaces/{namespace}/events", {
        "metadata": {"name": "shared"}, "involvedObject": {"kind": "Pod", "name": "x"}, "message": "hello", "reason": "R"})
    status, body = http.get(f"/apis/events.k8s.io/v1/namespaces/{namespace}/events/shared")
    assert status == 200
    assert body["note"] == "hello"
    assert body["regarding"]["name"] == "x"


def test_crd_appears_in_discovery(http: Http, crd: dict[str, Any]) -> None:
    _, groups = http.get("/apis")
    _, resources = http.get("/apis/mangakd.io/v1alpha1")
    names = {group["name"] for group in groups["groups"]}
    entry = next(r for r in resources["resources"] if r["name"] == "distillationruns")
    assert "mangakd.io" in names
    assert entry["shortNames"] == ["dr"]
    assert entry["categories"] == ["mangakd"]
    assert any(r["name"] == "distillationruns/status" for r in resources["resources"])


def test_crd_status_established(crd: dict[str, Any]) -> None:
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"


def test_cluster_scoped_crd_served(http: Http) -> None:
    definition = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "teacherpools.example.io"},
        "spec": {"group": "example.io", "scope": "Cluster",
                 "names": {"plural": "teacherpools", "singular": "teacherpool", "kind": "TeacherPool"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
    assert http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", definition)[0] == 201
    status, body = http.post("/apis/example.io/v1/teacherpools", {"apiVersion": "example.io/v1", "kind": "TeacherPool",
                                                                  "metadata": {"name": "pool"}, "anything": {"goes": 1}})
    assert status == 201
    assert "namespace" not in body["metadata"]
    assert body["anything"] == {"goes": 1}
    http.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/teacherpools.example.io")
    assert http.get("/apis/example.io/v1/teacherpools/pool")[0] == 404


def test_invalid_crd_rejected(http: Http) -> None:
    definition = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                  "metadata": {"name": "wrong.example.io"},
                  "spec": {"group": "example.io", "scope": "Namespaced", "names": {"plural": "things", "kind": "Thing"},
                           "versions": [{"name": "v1", "served": True, "storage": True,
                                         "schema": {"openAPIV3Schema": {"type": "object"}}}]}}
    status, body = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", definition)
    assert status == 422
    assert 'must be spec.names.plural+"."+spec.group' in body["message"]


def test_table_uses_printer_columns(http: Http, crd: dict[str, Any], namespace: str) -> None:
    http.post(run_path(namespace), run_body("tabled", distillation={}))
    http.patch(run_path(namespace, "tabled") + "/status",
               {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}, {"type": "Other", "status": "True"}]}})
    _, table = http.get(run_path(namespace), headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    names = [column["name"] for column in table["columnDefinitions"]]
    priorities = {column["name"]: column["priority"] for column in table["columnDefinitions"]}
    cells = dict(zip(names, table["rows"][0]["cells"], strict=True))
    assert table["kind"] == "Table"
    assert names == ["Name", "Phase", "Ready", "Temperature", "Age"]
    assert priorities["Temperature"] == 1
    assert cells["Ready"] == "False"
    assert cells["Phase"] == "Running"
    assert cells["Temperature"] == 3
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_version_and_openapi(http: Http, crd: dict[str, Any]) -> None:
    _, version = http.get("/version")
    _, root = http.get("/openapi/v3")
    url = root["paths"]["apis/mangakd.io/v1alpha1"]["serverRelativeURL"]
    _, document = http.get(url)
    schema = document["components"]["schemas"]["io.mangakd.v1alpha1.DistillationRun"]
    assert version["major"] == "1"
    assert schema["properties"]["spec"]["properties"]["teacher"]["description"] == "Teacher model reference."
    assert schema["x-kubernetes-group-version-kind"] == [{"group": "mangakd.io", "version": "v1alpha1", "kind": "DistillationRun"}]


def test_unknown_path_not_found(http: Http) -> None:
    status, body = http.get("/apis/nothing.example.io/v1/things")
    assert status == 404
    assert body["kind"] == "Status"


def urllib_quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")
