"""The local executor: Jobs run as processes, Job status, logs, volumes, deletion, Deployments."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devcluster_support import Http, wait_for

from mangakd.devcluster import DevCluster
from mangakd.devcluster.kubelet import expand_variables, substitute_paths

PYTHON = "python"


def job_body(name: str, code: str, **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": "mangakd/trainer:dev", "command": [PYTHON, "-c", code]}
    container.update(spec.pop("container", {}))
    pod_spec = {"restartPolicy": "Never", "containers": [container], **spec.pop("pod", {})}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": pod_spec}, **spec}}


def jobs(namespace: str, name: str = "") -> str:
    return f"/apis/batch/v1/namespaces/{namespace}/jobs" + (f"/{name}" if name else "")


def condition(http: Http, namespace: str, name: str, kind: str) -> dict[str, Any] | None:
    _, job = http.get(jobs(namespace, name))
    return next((c for c in (job.get("status") or {}).get("conditions") or [] if c["type"] == kind and c["status"] == "True"), None)


def job_pods(http: Http, namespace: str, name: str) -> list[dict[str, Any]]:
    _, pods = http.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector=batch.kubernetes.io%2Fjob-name%3D{name}")
    return pods["items"]


def test_substitute_paths_at_boundaries() -> None:
    mounts = [("/data", "/tmp/d"), ("/data/models", "/tmp/m")]
    assert substitute_paths("/data/x", mounts) == "/tmp/d/x"
    assert substitute_paths("--out=/data/models/a", mounts) == "--out=/tmp/m/a"
    assert substitute_paths("/database", mounts) == "/database"
    assert substitute_paths("/other/data", mounts) == "/other/data"


def test_expand_variables() -> None:
    assert expand_variables("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"


def test_job_completes_with_termination_message(http: Http, namespace: str) -> None:
    code = "print('training'); open('/dev/termination-log', 'w').write('accuracy=0.9')"
    http.post(jobs(namespace), job_body("ok", code))
    wait_for(lambda: condition(http, namespace, "ok", "Complete"), message="Job Complete")
    _, job = http.get(jobs(namespace, "ok"))
    pod = job_pods(http, namespace, "ok")[0]
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert job["status"]["succeeded"] == 1
    assert job["status"]["completionTime"]
    assert job["status"]["startTime"]
    assert terminated["exitCode"] == 0
    assert terminated["reason"] == "Completed"
    assert terminated["message"] == "accuracy=0.9"
    assert pod["metadata"]["labels"]["job-name"] == "ok"
    assert pod["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]


def test_job_backoff_limit_retries(http: Http, namespace: str) -> None:
    http.post(jobs(namespace), job_body("fails", "import sys; print('boom'); sys.exit(3)", backoffLimit=1,
                                        container={"terminationMessagePolicy": "FallbackToLogsOnError"}))
    failed = wait_for(lambda: condition(http, namespace, "fails", "Failed"), message="Job Failed")
    _, job = http.get(jobs(namespace, "fails"))
    pods = job_pods(http, namespace, "fails")
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert failed["reason"] == "BackoffLimitExceeded"
    assert job["status"]["failed"] == 2
    assert len(pods) == 2
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"
    assert terminated["message"] == "boom\n"


def test_suspended_job_starts_no_pod(http: Http, namespace: str) -> None:
    http.post(jobs(namespace), job_body("held", "print('run')", suspend=True))
    wait_for(lambda: condition(http, namespace, "held", "Suspended"), message="Job Suspended")
    assert job_pods(http, namespace, "held") == []
    http.patch(jobs(namespace, "held"), {"spec": {"suspend": False}})
    wait_for(lambda: condition(http, namespace, "held", "Complete"), message="resumed Job Complete")


def test_active_deadline_fails_job(http: Http, namespace: str) -> None:
    http.post(jobs(namespace), job_body("slow", "import time; time.sleep(60)", activeDeadlineSeconds=1))
    failed = wait_for(lambda: condition(http, namespace, "slow", "Failed"), message="Job past its deadline")
    assert failed["reason"] == "DeadlineExceeded"


def test_env_mounts_and_working_dir(http: Http, cluster: DevCluster, namespace: str) -> None:
    http.post(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "cfg"}, "data": {"lr": "0.1"}})
    http.post(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
              {"metadata": {"name": "runs"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    code = ("import os, json; open('/runs/out.json', 'w').write(json.dumps({'cwd': os.getcwd(), 'pod': os.environ['POD'], "
            "'ns': os.environ['NS'], 'lr': os.environ['LR'], 'path': os.environ['OUT'], 'map': os.environ['MANGAKD_MOUNT_MAP']}))")
    http.post(jobs(namespace), job_body("mounts", code, container={
        "workingDir": "/runs/work",
        "volumeMounts": [{"name": "runs", "mountPath": "/runs"}, {"name": "scratch", "mountPath": "/scratch"}],
        "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "LR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "lr"}}},
                {"name": "OUT", "value": "/runs/model"}]},
        pod={"volumes": [{"name": "runs", "persistentVolumeClaim": {"claimName": "runs"}}, {"name": "scratch", "emptyDir": {}}]}))
    wait_for(lambda: condition(http, namespace, "mounts", "Complete"), message="Job Complete")
    claim_dir = Path(cluster.cluster.state_dir) / "pvc" / namespace / "runs"  # type: ignore[union-attr]
    result = json.loads((claim_dir / "out.json").read_text())
    pod_name = job_pods(http, namespace, "mounts")[0]["metadata"]["name"]
    assert result["cwd"] == str(claim_dir / "work")
    assert result["pod"] == pod_name
    assert result["ns"] == namespace
    assert result["lr"] == "0.1"
    assert result["path"] == str(claim_dir / "model")
    assert json.loads(result["map"])["/runs"] == str(claim_dir)
    assert http.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/runs")[1]["status"]["phase"] == "Bound"


def test_kubectl_logs_and_wait(kubectl: Callable[..., Any], http: Http, namespace: str) -> None:
    http.post(jobs(namespace), job_body("logged", "print('line one'); print('line two')"))
    kubectl("wait", "-n", namespace, "--for=condition=Complete", "job/logged", "--timeout=30s")
    logs = kubectl("logs", "-n", namespace, "job/logged").stdout
    tail = kubectl("logs", "-n", namespace, "job/logged", "--tail=1").stdout
    assert logs == "line one\nline two\n"
    assert tail == "line two\n"


def test_deleting_job_terminates_process(http: Http, cluster: DevCluster, namespace: str, tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    code = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    http.post(jobs(namespace), job_body("long", code, pod={"terminationGracePeriodSeconds": 5}))
    wait_for(lambda: marker.exists() and marker.read_text(), message="the container process to start")
    pid = int(marker.read_text())
    http.delete(jobs(namespace, "long"), {"propagationPolicy": "Background"})

    def process_gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie has exited and waits only for its parent's wait().
        return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

    wait_for(process_gone, message=f"process {pid} to end after the Job was deleted")
    wait_for(lambda: job_pods(http, namespace, "long") == [], message="pods garbage-collected")


def test_bare_pod_runs(http: Http, namespace: str) -> None:
    http.post(f"/api/v1/namespaces/{namespace}/pods", {"metadata": {"name": "bare"}, "spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "x", "command": [PYTHON, "-c", "print(1)"]}]}})
    wait_for(lambda: http.get(f"/api/v1/namespaces/{namespace}/pods/bare")[1]["status"]["phase"] == "Succeeded",
             message="pod Succeeded")


def test_missing_command_fails_pod(http: Http, namespace: str) -> None:
    http.post(f"/api/v1/namespaces/{namespace}/pods", {"metadata": {"name": "nocmd"}, "spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}})
    wait_for(lambda: http.get(f"/api/v1/namespaces/{namespace}/pods/nocmd")[1]["status"]["phase"] == "Failed",
             message="pod Failed")
    state = http.get(f"/api/v1/namespaces/{namespace}/pods/nocmd")[1]["status"]["containerStatuses"][0]["state"]
    assert state["terminated"]["reason"] == "StartError"
    assert "no command" in state["terminated"]["message"]


def test_deployment_status(http: Http, namespace: str) -> None:
    deployment = {"metadata": {"name": "student"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "student"}},
        "template": {"metadata": {"labels": {"app": "student"}},
                     "spec": {"containers": [{"name": "server", "image": "mangakd/server:dev"}]}}}}
    http.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment)

    def available() -> dict[str, Any] | None:
        status = http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/student")[1].get("status") or {}
        return status if status.get("availableReplicas") == 2 else None

    status = wait_for(available, message="Deployment available")
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert status["readyReplicas"] == 2
    assert status["updatedReplicas"] == 2
    assert status["observedGeneration"] == 1
    assert conditions["Available"] == "True"

    http.patch(f"/apis/apps/v1/namespaces/{namespace}/deployments/student", {"spec": {"replicas": 1}})
    wait_for(lambda: (http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/student")[1]["status"].get("replicas")) == 1,
             message="Deployment scaled down")
    _, pods = http.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3Dstudent")
    assert len(pods["items"]) == 1
