"""Watch streams over HTTP and through the official Python client."""

from __future__ import annotations

import threading

from devcluster_support import Http
from kubernetes import client, config, watch

from mangakd.devcluster import DevCluster


def configmaps(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps"


def test_watch_resumes_from_version(http: Http, namespace: str) -> None:
    _, first = http.post(configmaps(namespace), {"metadata": {"name": "one"}})
    http.post(configmaps(namespace), {"metadata": {"name": "two"}})
    http.patch(configmaps(namespace) + "/two", {"data": {"k": "v"}})
    http.delete(configmaps(namespace) + "/one")
    since = first["metadata"]["resourceVersion"]
    events = http.watch_lines(f"{configmaps(namespace)}?watch=1&resourceVersion={since}&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "two"), ("MODIFIED", "two"), ("DELETED", "one")]


def test_watch_without_version_lists_first(http: Http, namespace: str) -> None:
    http.post(configmaps(namespace), {"metadata": {"name": "existing"}})
    events = http.watch_lines(f"{configmaps(namespace)}?watch=true&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "existing")]


def test_watch_bookmark_closes_timeout(http: Http, namespace: str) -> None:
    events = http.watch_lines(f"{configmaps(namespace)}?watch=1&allowWatchBookmarks=true&timeoutSeconds=1")
    assert events[-1]["type"] == "BOOKMARK"
    assert events[-1]["object"]["kind"] == "ConfigMap"
    assert int(events[-1]["object"]["metadata"]["resourceVersion"]) > 0


def test_watch_initial_events_end_bookmark(http: Http, namespace: str) -> None:
    http.post(configmaps(namespace), {"metadata": {"name": "initial"}})
    events = http.watch_lines(f"{configmaps(namespace)}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
                              "&allowWatchBookmarks=true&timeoutSeconds=1")
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_watch_selector_transitions(http: Http, namespace: str) -> None:
    _, created = http.post(configmaps(namespace), {"metadata": {"name": "moving", "labels": {"pick": "no"}}})
    http.patch(configmaps(namespace) + "/moving", {"metadata": {"labels": {"pick": "yes"}}})
    http.patch(configmaps(namespace) + "/moving", {"metadata": {"labels": {"pick": "no"}}})
    since = created["metadata"]["resourceVersion"]
    events = http.watch_lines(f"{configmaps(namespace)}?watch=1&labelSelector=pick%3Dyes&resourceVersion={since}&timeoutSeconds=1")
    assert [e["type"] for e in events] == ["ADDED", "DELETED"]


def test_cluster_wide_watch_streams_all_namespaces(http: Http, namespace: str) -> None:
    _, created = http.post(configmaps(namespace), {"metadata": {"name": "wide"}})
    since = int(created["metadata"]["resourceVersion"]) - 1
    events = http.watch_lines(f"/api/v1/configmaps?watch=1&resourceVersion={since}&timeoutSeconds=1")
    assert ("ADDED", namespace) in [(e["type"], e["object"]["metadata"]["namespace"]) for e in events]


def test_watch_too_old_is_gone() -> None:
    with DevCluster(history_size=5, executor=False) as small:
        http = Http(small.url)
        for index in range(10):
            http.post(configmaps("default"), {"metadata": {"name": f"c{index}"}})
        events = http.watch_lines(f"{configmaps('default')}?watch=1&resourceVersion=1&timeoutSeconds=1")
    assert len(events) == 1
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] == "Expired"


def test_python_client_watch(cluster: DevCluster, namespace: str) -> None:
    api_client = config.new_client_from_config(str(cluster.kubeconfig_path))
    core = client.CoreV1Api(api_client)
    seen: list[tuple[str, str]] = []
    # Starting from the list's resourceVersion makes the result independent of
    # when the watch connects: the server replays the changes after it.
    since = core.list_namespaced_config_map(namespace).metadata.resource_version

    def consume() -> None:
        stream = watch.Watch()
        for event in stream.stream(core.list_namespaced_config_map, namespace, resource_version=since, timeout_seconds=10):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                stream.stop()

    consumer = threading.Thread(target=consume)
    consumer.start()
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "watched"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("watched", namespace, {"data": {"a": "2"}})
    core.delete_namespaced_config_map("watched", namespace)
    consumer.join(timeout=30)
    assert seen[-3:] == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")]


def test_python_client_typed_objects(cluster: DevCluster, namespace: str) -> None:
    api_client = config.new_client_from_config(str(cluster.kubeconfig_path))
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"token": "abc"}})
    secret = core.read_namespaced_secret("s", namespace)
    assert secret.data == {"token": "YWJj"}
    assert secret.type == "Opaque"
