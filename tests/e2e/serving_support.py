"""Helpers of the StudentModel end-to-end tests: exported models on the claim, a load generator, waits.

The exported models are one small real classifier (``tests/model_fixtures.py``:
MiniLM cut to two layers, fine-tuned a few steps on five CLINC150 intents)
copied under several folders of the claim. The teacher is the same export,
so a student copy agrees with it. The bad student is a copy whose
``manifest.json`` lists the labels in a shifted order. It therefore names a
different intent for every text and disagrees with the teacher.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e_support import Env, Kubectl, Operator
from prometheus_client.parser import text_string_to_metric_families

from mangakd.onnx_runtime import write_manifest

SERVING = "e2e-serving"
MODEL = "intents"
LOCAL_PORTS = "devcluster.mangakd.io/ports"
WAIT = 180.0


def shifted(labels: list[str]) -> list[str]:
    """Return the labels rotated by one, a permutation that moves every label."""
    return labels[1:] + labels[:1]


def poison(export_dir: Path, labels: list[str], temperature: float, max_length: int) -> None:
    """Rewrite an export's manifest in place with the labels rotated by one."""
    write_manifest(export_dir, model_file="model.onnx", labels=shifted(labels), temperature=temperature,
                   max_length=max_length)


def plugin_path(directory: Path) -> str:
    """Write a ``kubectl-mangakd`` executable into ``directory`` and return a PATH that finds it first.

    It runs the plugin module with this interpreter, as the installed console script does.
    """
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "kubectl-mangakd"
    script.write_text(f"#!{sys.executable}\nimport sys\nfrom mangakd.kubectl_plugin import main\nsys.exit(main())\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return f"{directory}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


class LoadGenerator:
    """Sends predict requests through the Service's local load balancer and counts every outcome.

    A request fails when the response is not 2xx or the connection fails; the
    tests allow none.
    """

    def __init__(self, port: int, texts: list[str], interval: float = 0.03) -> None:
        self.url = f"http://127.0.0.1:{port}/v1/predict"
        self.texts = texts
        self.interval = interval
        self.succeeded = 0
        self.failures: list[str] = []
        self.revisions: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            text = self.texts[index % len(self.texts)]
            index += 1
            body = json.dumps({"texts": [text]}).encode()
            request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    payload = json.loads(response.read())
                self.succeeded += 1
                self.revisions[str(payload["model"]["revision"])] += 1
            except urllib.error.HTTPError as error:
                self.failures.append(f"HTTP {error.code}: {error.read()[:200]!r}")
            except (urllib.error.URLError, OSError, ValueError) as error:
                self.failures.append(f"{type(error).__name__}: {error}")
            time.sleep(self.interval)


class Serving:
    """The StudentModel under test: kubectl access, waits with diagnostics, operator metrics."""

    def __init__(self, env: Env, operator: Operator, kubectl: Kubectl) -> None:
        self.env = env
        self.operator = operator
        self.kubectl = kubectl

    def model(self) -> dict[str, Any]:
        result = self.kubectl("get", "studentmodel", MODEL, "-n", SERVING, "-o", "json")
        return dict(json.loads(result.stdout))

    def diagnose(self) -> str:
        """Status, Events, children and the operator's log tail, for a failure message."""
        model = self.kubectl("get", "studentmodel", MODEL, "-n", SERVING, "-o", "json", check=False)
        status = json.loads(model.stdout).get("status") if model.returncode == 0 else model.stderr
        events = self.kubectl("get", "events", "-n", SERVING, check=False).stdout
        children = self.kubectl("get", "deployments,pods", "-n", SERVING, check=False).stdout
        return (f"status:\n{json.dumps(status, indent=1)}\n\nevents:\n{events[-3000:]}\n\nchildren:\n{children}"
                f"\n\noperator log tail:\n{self.operator.log_tail(60)}")

    def wait(self, predicate: Callable[[dict[str, Any]], bool], description: str,
             timeout: float = WAIT, every: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll the StudentModel until ``predicate`` holds; fail with diagnostics after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            model = self.model()
            if every is not None:
                every(model)
            if predicate(model):
                return model
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {description}\n\n{self.diagnose()}")
            time.sleep(0.5)

    def service_port(self) -> int:
        def annotated(_: dict[str, Any]) -> bool:
            result = self.kubectl("get", "service", MODEL, "-n", SERVING, "-o", "json", check=False)
            return result.returncode == 0 and LOCAL_PORTS in (json.loads(result.stdout)["metadata"].get("annotations") or {})

        self.wait(annotated, f"the local port of Service {MODEL}")
        service = self.kubectl.json("get", "service", MODEL, "-n", SERVING)
        return int(json.loads(service["metadata"]["annotations"][LOCAL_PORTS])["8080"])

    def apply(self, spec: dict[str, Any]) -> None:
        document = {"apiVersion": "mangakd.io/v1alpha1", "kind": "StudentModel",
                    "metadata": {"name": MODEL, "namespace": SERVING}, "spec": spec}
        self.kubectl("apply", "-f", "-", input=json.dumps(document))

    def set_artifact(self, path: str) -> None:
        patch = json.dumps({"spec": {"artifact": {"pvc": "models", "path": path}}})
        self.kubectl("patch", "studentmodel", MODEL, "-n", SERVING, "--type", "merge", "-p", patch)

    def warning_events(self) -> list[str]:
        events = self.kubectl.json("get", "events", "-n", SERVING, "--field-selector", f"involvedObject.name={MODEL}")
        return [item.get("message", "") for item in events["items"] if item.get("type") == "Warning"]

    def operator_metric(self, name: str, **labels: str) -> float:
        """Return one sample of the operator's /metrics, 0 when the series is absent."""
        for family in text_string_to_metric_families(self.operator.scrape()):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def restart_pods(self, revision: int) -> None:
        """Delete the revision's pods one at a time, each after its replacement is ready, as a rolling restart."""
        selector = f"mangakd.io/student-model={MODEL},mangakd.io/revision={revision}"
        names = [pod["metadata"]["name"]
                 for pod in self.kubectl.json("get", "pods", "-n", SERVING, "-l", selector)["items"]]
        for name in names:
            self.kubectl("delete", "pod", name, "-n", SERVING, "--wait=false")

            def replaced(_: dict[str, Any], gone: str = name) -> bool:
                pods = self.kubectl.json("get", "pods", "-n", SERVING, "-l", selector)["items"]
                ready = [pod for pod in pods if pod["metadata"]["name"] not in names
                         and not pod["metadata"].get("deletionTimestamp")
                         and any(c["type"] == "Ready" and c["status"] == "True"
                                 for c in pod["status"].get("conditions") or [])]
                return len(ready) >= names.index(gone) + 1

            self.wait(replaced, f"a ready replacement for pod {name}")


def copy_model(source: Path, target: Path) -> Path:
    """Copy an export folder onto the claim."""
    shutil.copytree(source, target)
    return target


def kubectl_plugin(kubectl: Kubectl, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``kubectl mangakd ARGS`` with the plugin found on ``path``."""
    environment = dict(kubectl.environment, PATH=path)
    from e2e_support import KUBECTL

    assert KUBECTL is not None
    return subprocess.run([KUBECTL, "mangakd", *args], env=environment, capture_output=True, text=True,
                          timeout=400)
