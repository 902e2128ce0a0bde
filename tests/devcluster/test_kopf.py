"""A kopf operator runs against the development cluster and its results are visible over the API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devcluster_support import Http, run_body, run_path, wait_for

from mangakd.devcluster import DevCluster

OPERATOR = Path(__file__).with_name("kopf_operator.py")


@pytest.fixture
def operator(cluster: DevCluster, crd: dict[str, Any], namespace: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log_path = tmp_path / "kopf.log"
    environment = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig_path))
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", namespace, str(OPERATOR)],
            env=environment, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.returncode not in (0, -signal.SIGINT):
            print(log_path.read_text())


def test_kopf_handler_patches_status_and_posts_event(http: Http, namespace: str, operator: subprocess.Popen[bytes]) -> None:
    http.post(run_path(namespace), run_body("handled"))

    def phase() -> str | None:
        return (http.get(run_path(namespace, "handled"))[1].get("status") or {}).get("phase")

    def event_messages() -> list[str]:
        _, events = http.get(f"/api/v1/namespaces/{namespace}/events?fieldSelector=involvedObject.name%3Dhandled")
        return [event["message"] for event in events["items"]]

    wait_for(lambda: phase() == "Accepted", timeout=60, message="kopf to set status.phase")
    # kopf posts events from a background task, after the handler's patch.
    messages = wait_for(event_messages, timeout=30, message="kopf to post an event")
    assert operator.poll() is None
    assert any("Accepted DistillationRun with teacher minilm" in message for message in messages)
    _, body = http.get(run_path(namespace, "handled"))
    assert body["status"]["teacher"] == "minilm"
    assert "mangakd.io/test-operator" in body["metadata"].get("finalizers", [])


def test_kopf_releases_finalizer_on_delete(http: Http, namespace: str, operator: subprocess.Popen[bytes]) -> None:
    http.post(run_path(namespace), run_body("released"))
    wait_for(lambda: "mangakd.io/test-operator" in (http.get(run_path(namespace, "released"))[1]["metadata"].get("finalizers") or []),
             timeout=60, message="kopf to add its finalizer")
    http.delete(run_path(namespace, "released"))
    wait_for(lambda: http.get(run_path(namespace, "released"))[0] == 404, timeout=60, message="kopf to release the finalizer")
