"""Deployment pods as local server processes, readiness, restarts, and the Service load balancer."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from devcluster_support import Http, wait_for

from mangakd.devcluster.serving import (
    PORTS_ANNOTATION,
    substitute_port_arguments,
    substitute_service_urls,
)

# A tiny HTTP server that returns, for every path, its pod name, its PORT variable and its arguments.
SERVER = """
import json, os, sys
from aiohttp import web
port = int(sys.argv[sys.argv.index("--port") + 1])
async def reply(request):
    return web.json_response({"pod": os.environ["HOSTNAME"], "port": os.environ.get("PORT"), "args": sys.argv[1:]})
app = web.Application()
app.router.add_route("*", "/{tail:.*}", reply)
web.run_app(app, host="127.0.0.1", port=port, print=None)
"""


@pytest.fixture(scope="module")
def server_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("serving") / "server.py"
    path.write_text(SERVER)
    return path


def deployment(name: str, script: Path, replicas: int = 2, extra_args: list[str] | None = None,
               command: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "server", "image": "local/server:dev",
        "command": command or [sys.executable, str(script), "--port", "8080", *(extra_args or [])],
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 1},
    }
    return {"metadata": {"name": name}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}}}}


def service(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"selector": {"app": name},
                                                 "ports": [{"port": 80, "targetPort": 8080}]}}


def ready_pods(http: Http, namespace: str, app: str, count: int) -> list[dict[str, Any]]:
    def check() -> list[dict[str, Any]] | None:
        _, pods = http.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3D{app}")
        ready = [pod for pod in pods["items"] if not pod["metadata"].get("deletionTimestamp") and any(
            c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])]
        return ready if len(ready) == count else None

    return wait_for(check, timeout=60, message=f"{count} ready pods of {app}")


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def service_port(http: Http, namespace: str, name: str) -> int:
    def check() -> int | None:
        _, body = http.get(f"/api/v1/namespaces/{namespace}/services/{name}")
        ports = json.loads((body["metadata"].get("annotations") or {}).get(PORTS_ANNOTATION, "{}"))
        return ports.get("80")

    return int(wait_for(check, timeout=20, message=f"local port of Service {name}"))


def test_port_arguments_substituted() -> None:
    ports = {8080: 41000}
    assert substitute_port_arguments(["x", "--port", "8080"], ports) == ["x", "--port", "41000"]
    assert substitute_port_arguments(["--port=8080"], ports) == ["--port=41000"]
    assert substitute_port_arguments(["--port", "9090"], ports) == ["--port", "9090"]


def test_service_urls_substituted() -> None:
    def resolve(namespace: str, name: str, port: int) -> int | None:
        return 40000 + port if (namespace, name) == ("ml", "teacher") else None

    assert substitute_service_urls("http://teacher:8080", "ml", resolve) == "http://127.0.0.1:48080"
    assert substitute_service_urls("http://teacher.ml.svc:80/v1", "other", resolve) == "http://127.0.0.1:40080/v1"
    assert substitute_service_urls("http://teacher.ml.svc.cluster.local:80", "x", resolve) == "http://127.0.0.1:40080"
    assert substitute_service_urls("http://unknown:80", "ml", resolve) == "http://unknown:80"


def test_deployment_pods_run_and_get_ports(http: Http, namespace: str, server_script: Path) -> None:
    http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment("echo", server_script))
    pods = ready_pods(http, namespace, "echo", 2)

    local_ports = set()
    for pod in pods:
        ports = json.loads(pod["metadata"]["annotations"][PORTS_ANNOTATION])
        assert pod["status"]["podIP"] == "127.0.0.1"
        reply = get_json(f"http://127.0.0.1:{ports['8080']}/")
        assert reply["pod"] == pod["metadata"]["name"]
        assert reply["port"] == str(ports["8080"])
        assert reply["args"] == ["--port", str(ports["8080"])]
        local_ports.add(ports["8080"])
    assert len(local_ports) == 2


def test_service_balances_requests(http: Http, namespace: str, server_script: Path) -> None:
    http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment("split", server_script))
    http.post(f"/api/v1/namespaces/{namespace}/services", service("split"))
    pods = ready_pods(http, namespace, "split", 2)
    port = service_port(http, namespace, "split")

    def endpoints() -> list[str] | None:
        _, body = http.get(f"/api/v1/namespaces/{namespace}/endpoints/split")
        addresses = [a["targetRef"]["name"] for s in (body or {}).get("subsets") or [] for a in s["addresses"]]
        return addresses if len(addresses) == 2 else None

    assert sorted(wait_for(endpoints, message="two endpoints")) == sorted(p["metadata"]["name"] for p in pods)
    counts = Counter(get_json(f"http://127.0.0.1:{port}/v1/predict")["pod"] for _ in range(20))
    assert sorted(counts) == sorted(p["metadata"]["name"] for p in pods)
    assert set(counts.values()) == {10}


def test_service_urls_reach_pods(http: Http, namespace: str, server_script: Path) -> None:
    http.post(f"/api/v1/namespaces/{namespace}/services", service("upstream"))
    port = service_port(http, namespace, "upstream")
    client = deployment("client", server_script, replicas=1, extra_args=["--upstream", "http://upstream:80/x"])
    http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", client)
    pod = ready_pods(http, namespace, "client", 1)[0]

    ports = json.loads(pod["metadata"]["annotations"][PORTS_ANNOTATION])
    reply = get_json(f"http://127.0.0.1:{ports['8080']}/")
    assert reply["args"][-1] == f"http://127.0.0.1:{port}/x"


def test_exited_container_restarts(http: Http, namespace: str, tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "import sys; sys.exit(3)", "--port", "8080"]
    http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments",
              deployment("crash", tmp_path, replicas=1, command=crash))

    def restarted() -> dict[str, Any] | None:
        _, pods = http.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3Dcrash")
        for pod in pods["items"]:
            for status in pod["status"].get("containerStatuses") or []:
                if status.get("restartCount", 0) >= 1:
                    return dict(status)
        return None

    status = wait_for(restarted, timeout=30, message="a restart of the crashing container")
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert status["ready"] is False


def test_deleted_pod_leaves_endpoints(http: Http, namespace: str, server_script: Path) -> None:
    body = deployment("drain", server_script, replicas=1)
    body["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 1}}}
    http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", body)
    http.post(f"/api/v1/namespaces/{namespace}/services", service("drain"))
    first = ready_pods(http, namespace, "drain", 1)[0]
    port = service_port(http, namespace, "drain")
    assert get_json(f"http://127.0.0.1:{port}/")["pod"] == first["metadata"]["name"]

    http.delete(f"/api/v1/namespaces/{namespace}/pods/{first['metadata']['name']}")
    second = wait_for(lambda: [p for p in ready_pods(http, namespace, "drain", 1)
                               if p["metadata"]["name"] != first["metadata"]["name"]],
                      timeout=60, message="the replacement pod")[0]
    assert get_json(f"http://127.0.0.1:{port}/")["pod"] == second["metadata"]["name"]
