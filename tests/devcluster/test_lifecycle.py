"""Garbage collection, finalizers and namespace deletion."""

from __future__ import annotations

from devcluster_support import Http, wait_for


def configmap(namespace: str, name: str = "") -> str:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    return f"{base}/{name}" if name else base


def owned_by(owner: dict, name: str) -> dict:
    reference = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
                 "uid": owner["metadata"]["uid"]}
    return {"metadata": {"name": name, "ownerReferences": [reference]}}


def gone(http: Http, path: str) -> bool:
    return http.get(path)[0] == 404


def test_dependents_deleted_in_cascade(http: Http, namespace: str) -> None:
    _, owner = http.post(configmap(namespace), {"metadata": {"name": "owner"}})
    _, child = http.post(configmap(namespace), owned_by(owner, "child"))
    http.post(configmap(namespace), owned_by(child, "grandchild"))
    http.delete(configmap(namespace, "owner"))
    wait_for(lambda: gone(http, configmap(namespace, "child")), message="child deleted")
    wait_for(lambda: gone(http, configmap(namespace, "grandchild")), message="grandchild deleted")


def test_orphan_policy_keeps_dependents(http: Http, namespace: str) -> None:
    _, owner = http.post(configmap(namespace), {"metadata": {"name": "owner"}})
    http.post(configmap(namespace), owned_by(owner, "kept"))
    http.delete(configmap(namespace, "owner"), {"propagationPolicy": "Orphan"})
    status, kept = http.get(configmap(namespace, "kept"))
    assert status == 200
    assert "ownerReferences" not in kept["metadata"]


def test_foreground_waits_for_dependents(http: Http, namespace: str) -> None:
    _, owner = http.post(configmap(namespace), {"metadata": {"name": "owner"}})
    blocker = owned_by(owner, "blocker")
    blocker["metadata"]["finalizers"] = ["example.com/hold"]
    http.post(configmap(namespace), blocker)
    http.delete(configmap(namespace, "owner"), {"propagationPolicy": "Foreground"})
    status, waiting = http.get(configmap(namespace, "owner"))
    assert status == 200
    assert "foregroundDeletion" in waiting["metadata"]["finalizers"]
    http.patch(configmap(namespace, "blocker"), {"metadata": {"finalizers": None}})
    wait_for(lambda: gone(http, configmap(namespace, "owner")), message="owner deleted after its dependent")


def test_finalizer_delays_deletion(http: Http, namespace: str) -> None:
    http.post(configmap(namespace), {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    status, body = http.delete(configmap(namespace, "held"))
    assert status == 200
    assert body["metadata"]["deletionTimestamp"]
    assert http.get(configmap(namespace, "held"))[0] == 200
    http.patch(configmap(namespace, "held"), {"metadata": {"finalizers": []}})
    assert gone(http, configmap(namespace, "held"))


def test_no_new_finalizers_while_deleting(http: Http, namespace: str) -> None:
    http.post(configmap(namespace), {"metadata": {"name": "closing", "finalizers": ["example.com/a"]}})
    http.delete(configmap(namespace, "closing"))
    status, body = http.patch(configmap(namespace, "closing"), {"metadata": {"finalizers": ["example.com/a", "example.com/b"]}})
    assert status == 422
    assert "no new finalizers" in body["message"]


def test_namespace_deletion_empties_it(http: Http, namespace: str) -> None:
    http.post(configmap(namespace), {"metadata": {"name": "inside"}})
    http.delete(f"/api/v1/namespaces/{namespace}")
    wait_for(lambda: gone(http, f"/api/v1/namespaces/{namespace}"), message="namespace removed")
    assert gone(http, configmap(namespace, "inside"))


def test_terminating_namespace_rejects_creates(http: Http, namespace: str) -> None:
    http.post(configmap(namespace), {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}})
    http.delete(f"/api/v1/namespaces/{namespace}")
    status, phase = http.get(f"/api/v1/namespaces/{namespace}")
    created, body = http.post(configmap(namespace), {"metadata": {"name": "late"}})
    assert phase["status"]["phase"] == "Terminating"
    assert created == 403
    assert "being terminated" in body["message"]
    http.patch(configmap(namespace, "held"), {"metadata": {"finalizers": None}})
    wait_for(lambda: gone(http, f"/api/v1/namespaces/{namespace}"), message="namespace removed once empty")


def test_delete_precondition_uid(http: Http, namespace: str) -> None:
    http.post(configmap(namespace), {"metadata": {"name": "guarded"}})
    status, body = http.delete(configmap(namespace, "guarded"), {"preconditions": {"uid": "not-the-uid"}})
    assert status == 409
    assert "Precondition failed" in body["message"]
