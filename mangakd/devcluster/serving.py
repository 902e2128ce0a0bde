"""Long-running pods of the development cluster: Deployment (ReplicaSet) pods as local server processes.

A ReplicaSet pod whose containers all set ``command`` runs as local
processes, like a Job pod (:mod:`.kubelet`: the same volume, path and
environment handling), with what a server needs on top:

- Ports. Every ``containerPort`` gets a free port on 127.0.0.1, because all
  pods share this machine's network. The mapping is written to the pod's
  annotation ``devcluster.mangakd.io/ports`` as JSON (``{"8080": 41234}``),
  exported as ``PORT`` (the first container port's local port) and
  ``MANGAKD_POD_PORTS`` (the same JSON), and substituted in the command and
  arguments: the value after ``--port`` (or in ``--port=N``) is replaced
  when it names a container port. ``status.podIP`` is 127.0.0.1, so a
  client reaches a pod at ``127.0.0.1:<local port>``.
- Service names. ``http://NAME:PORT`` (also ``NAME.NAMESPACE``,
  ``NAME.NAMESPACE.svc`` and ``NAME.NAMESPACE.svc.cluster.local``) in the
  arguments and environment values becomes ``http://127.0.0.1:LOCAL``, the
  Service's local load balancer (:mod:`.services`), when that Service exists
  when the pod starts. This replaces cluster DNS.
- Readiness. The ``readinessProbe``'s ``httpGet`` is polled against the
  local port with the probe's period and thresholds, and sets the pod's
  ``Ready`` condition; without a probe a pod is ready once its process runs.
  Liveness probes are not run.
- Restarts. With ``restartPolicy`` Always (the Deployment default) an exited
  container starts again after a back-off of 1, 2, 4, ... s (at most 10 s),
  and ``restartCount`` counts it.
- Termination. Deleting the pod runs the ``preStop`` hook (``sleep.seconds``
  or ``exec.command``), then sends SIGTERM, and SIGKILL when
  ``terminationGracePeriodSeconds`` (counted from the deletion) runs out.

Pods without a ``command`` (the image entrypoint is unknown here) are marked
Running and Ready without a process, as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .api import ClusterApi
from .errors import ApiError
from .kubelet import PodRunner, expand_variables
from .meta import format_time

logger = logging.getLogger(__name__)

PORTS_ANNOTATION = "devcluster.mangakd.io/ports"
MAX_RESTART_BACKOFF_SECONDS = 10.0

# Resolves "http://NAME[.NS[.svc[.cluster.local]]]:PORT" of a Service to "127.0.0.1:LOCAL", or None.
ServiceResolver = Callable[[str, str, int], int | None]

_SERVICE_URL = re.compile(
    r"(?P<scheme>https?://)(?P<name>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
    r"(\.(?P<namespace>[a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.svc(\.cluster\.local)?)?)?:(?P<port>\d+)"
)


def free_port() -> int:
    """Return a TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def substitute_service_urls(value: str, namespace: str, resolve: ServiceResolver) -> str:
    """Replace ``http://SERVICE:PORT`` forms by the Service's local load balancer address."""
    def replace(match: re.Match[str]) -> str:
        local = resolve(match.group("namespace") or namespace, match.group("name"), int(match.group("port")))
        if local is None:
            return match.group(0)
        return f"{match.group('scheme')}127.0.0.1:{local}"

    return _SERVICE_URL.sub(replace, value)


def substitute_port_arguments(argv: list[str], ports: dict[int, int]) -> list[str]:
    """Replace the value of ``--port N`` and ``--port=N`` when N is a container port in ``ports``."""
    result = list(argv)
    for index, part in enumerate(result):
        if part == "--port" and index + 1 < len(result) and result[index + 1].isdigit():
            local = ports.get(int(result[index + 1]))
            if local is not None:
                result[index + 1] = str(local)
        elif part.startswith("--port=") and part[len("--port="):].isdigit():
            local = ports.get(int(part[len("--port="):]))
            if local is not None:
                result[index] = f"--port={local}"
    return result


class ServingPodRunner(PodRunner):
    """Runs a long-running pod: restarts its containers, probes readiness, runs preStop on deletion."""

    def __init__(self, api: ClusterApi, state_dir: Path, pod: dict[str, Any], resolve: ServiceResolver) -> None:
        super().__init__(api, state_dir, pod)
        self.resolve = resolve
        self.ports: dict[int, int] = {}
        self.stopping = False
        self.running: dict[str, bool] = {}
        self.restarts: dict[str, int] = {}
        self.ready = False

    # ---- ports and substitutions -----------------------------------------------

    def _allocate_ports(self) -> None:
        for container in (self.pod.get("spec") or {}).get("containers") or []:
            for port in container.get("ports") or []:
                number = int(port["containerPort"])
                if number not in self.ports:
                    self.ports[number] = free_port()
        if not self.ports:
            return
        pod_type = self.api.registry.lookup("", "v1", "pods")
        assert pod_type is not None
        try:
            current = self.api.get(pod_type, self.namespace, self.name)
        except ApiError:
            return
        annotations = current["metadata"].setdefault("annotations", {})
        annotations[PORTS_ANNOTATION] = json.dumps({str(key): value for key, value in sorted(self.ports.items())})
        self.api.update(pod_type, self.namespace, self.name, current)

    def _argv(self, container: dict[str, Any], mounts: list[tuple[str, str]]) -> list[str]:
        argv = substitute_port_arguments(super()._argv(container, mounts), self.ports)
        return [substitute_service_urls(part, self.namespace, self.resolve) for part in argv]

    def _environment(self, container: dict[str, Any], mounts: list[tuple[str, str]]) -> dict[str, str]:
        environment = super()._environment(container, mounts)
        declared = {variable["name"] for variable in container.get("env") or []}
        for key in declared:
            if key in environment:
                environment[key] = substitute_service_urls(environment[key], self.namespace, self.resolve)
        container_ports = [int(port["containerPort"]) for port in container.get("ports") or []]
        if container_ports:
            environment["PORT"] = str(self.ports[container_ports[0]])
        environment["MANGAKD_POD_PORTS"] = json.dumps({str(key): value for key, value in self.ports.items()})
        return environment

    # ---- status ----------------------------------------------------------------

    def _set_running(self, container: dict[str, Any], started_at: str) -> None:
        # Called by PodRunner when the process has started; readiness comes from the probe.
        self.running[container["name"]] = True
        self._write_container_state(container, {"running": {"startedAt": started_at}})

    def _write_container_state(self, container: dict[str, Any], state: dict[str, Any],
                               last_state: dict[str, Any] | None = None) -> None:
        pod_type = self.api.registry.lookup("", "v1", "pods")
        assert pod_type is not None
        try:
            current = self.api.get(pod_type, self.namespace, self.name)
        except ApiError:
            return
        statuses = [s for s in (current.get("status") or {}).get("containerStatuses") or []
                    if s["name"] != container["name"]]
        entry = self._container_status(container, state, self.ready and "running" in state)
        entry["restartCount"] = self.restarts.get(container["name"], 0)
        if last_state is not None:
            entry["lastState"] = last_state
        statuses.append(entry)
        self._write_status({"phase": "Running", "containerStatuses": statuses,
                            "conditions": self._conditions(self.ready)})

    def _set_ready(self, ready: bool) -> None:
        if ready == self.ready:
            return
        self.ready = ready
        pod_type = self.api.registry.lookup("", "v1", "pods")
        assert pod_type is not None
        try:
            current = self.api.get(pod_type, self.namespace, self.name)
        except ApiError:
            return
        statuses = [dict(status, ready=ready and "running" in (status.get("state") or {}))
                    for status in (current.get("status") or {}).get("containerStatuses") or []]
        self._write_status({"containerStatuses": statuses, "conditions": self._conditions(ready)})

    # ---- running ---------------------------------------------------------------

    async def run(self) -> None:
        """Start every container, keep restarting them per ``restartPolicy``, probe readiness."""
        try:
            spec = self.pod.get("spec") or {}
            volumes = self._volume_dirs()
            self._allocate_ports()
            self._write_status({"phase": "Pending", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                                "podIPs": [{"ip": "127.0.0.1"}], "startTime": format_time(),
                                "conditions": self._conditions(False)})
            containers = spec.get("containers") or []
            probe = asyncio.get_running_loop().create_task(self._probe_loop(containers))
            try:
                results = await asyncio.gather(*(self._supervise(container, volumes) for container in containers))
            finally:
                probe.cancel()
            succeeded = all(result["state"]["terminated"]["exitCode"] == 0 for result in results)
            self.ready = False
            self._write_status({"phase": "Succeeded" if succeeded else "Failed",
                                "conditions": self._conditions(False), "containerStatuses": list(results)})
        finally:
            self.finished.set()

    async def _supervise(self, container: dict[str, Any], volumes: dict[str, Path]) -> dict[str, Any]:
        policy = (self.pod.get("spec") or {}).get("restartPolicy", "Always")
        while True:
            result = await self._run_container(container, volumes)
            self.running[container["name"]] = False
            exit_code = result["state"]["terminated"]["exitCode"]
            restart = policy == "Always" or (policy == "OnFailure" and exit_code != 0)
            if self.stopping or not restart:
                return result
            count = self.restarts.get(container["name"], 0)
            self.restarts[container["name"]] = count + 1
            backoff = min(MAX_RESTART_BACKOFF_SECONDS, 2.0 ** count)
            logger.info("Container %s of pod %s/%s exited with %d; restarting in %.0f s",
                        container["name"], self.namespace, self.name, exit_code, backoff)
            self._write_container_state(container, {"waiting": {"reason": "CrashLoopBackOff"}},
                                        last_state={"terminated": result["state"]["terminated"]})
            await asyncio.sleep(backoff)
            if self.stopping:
                return result

    async def _probe_loop(self, containers: list[dict[str, Any]]) -> None:
        probes = [(container, container.get("readinessProbe")) for container in containers]
        period = min([float((probe or {}).get("periodSeconds", 10)) for _, probe in probes] or [10.0])
        delay = max([float((probe or {}).get("initialDelaySeconds", 0)) for _, probe in probes] or [0.0])
        successes = failures = 0
        started = time.monotonic()
        while True:
            running = all(self.running.get(container["name"]) for container in containers)
            passed = running and time.monotonic() - started >= delay
            if passed:
                for container, probe in probes:
                    if probe is not None and not await self._probe(container, probe):
                        passed = False
                        break
            successes, failures = (successes + 1, 0) if passed else (0, failures + 1)
            success_threshold = max(int((probe or {}).get("successThreshold", 1)) for _, probe in probes)
            failure_threshold = min(int((probe or {}).get("failureThreshold", 3)) for _, probe in probes)
            if passed and successes >= success_threshold:
                self._set_ready(True)
            elif not running or failures >= failure_threshold:
                self._set_ready(False)
            # Poll faster until the first success, so that a pod turns ready soon after its server does.
            await asyncio.sleep(period if self.ready else min(period, 0.5))

    async def _probe(self, container: dict[str, Any], probe: dict[str, Any]) -> bool:
        http_get = probe.get("httpGet")
        if http_get is None:
            return True  # NOTE: exec and tcpSocket probes are not run; the pod counts as ready.
        port = http_get.get("port")
        if isinstance(port, str) and not port.isdigit():
            named = {p.get("name"): int(p["containerPort"]) for p in container.get("ports") or []}
            port = named.get(port)
        local = self.ports.get(int(port)) if port is not None else None
        if local is None:
            return False
        url = f"http://127.0.0.1:{local}{http_get.get('path', '/')}"
        timeout = float(probe.get("timeoutSeconds", 1))
        return await asyncio.to_thread(_http_ok, url, timeout)

    async def terminate(self, grace_seconds: float) -> None:
        """Run the preStop hooks, then SIGTERM; SIGKILL when the grace period (counted from now) ends."""
        deadline = time.monotonic() + grace_seconds
        self._set_ready(False)
        containers = (self.pod.get("spec") or {}).get("containers") or []
        hooks = [self._pre_stop(container) for container in containers
                 if ((container.get("lifecycle") or {}).get("preStop"))]
        if hooks:
            try:
                await asyncio.wait_for(asyncio.gather(*hooks), timeout=max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                logger.info("preStop of pod %s/%s ran past the grace period", self.namespace, self.name)
        self.stopping = True
        await super().terminate(max(deadline - time.monotonic(), 0.0))

    async def _pre_stop(self, container: dict[str, Any]) -> None:
        hook = container["lifecycle"]["preStop"]
        if "sleep" in hook:
            await asyncio.sleep(float(hook["sleep"].get("seconds", 0)))
        elif "exec" in hook:
            # Paths are not rewritten: a preStop command such as `sleep 5` needs none.
            variables = {v["name"]: str(v["value"]) for v in container.get("env") or [] if "value" in v}
            command = [expand_variables(str(part), variables) for part in hook["exec"].get("command") or []]
            if command:
                process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL,
                                                               stdout=asyncio.subprocess.DEVNULL,
                                                               stderr=asyncio.subprocess.DEVNULL)
                await process.wait()
        # NOTE: httpGet preStop hooks are not run.


def _http_ok(url: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ServingRuntime:
    """Runtime of ReplicaSet pods: local processes when every container has a command, else simulated."""

    def __init__(self, api: ClusterApi, state_dir: Path, resolve: ServiceResolver,
                 simulated: Any) -> None:
        self.api = api
        self.state_dir = state_dir
        self.resolve = resolve
        self.simulated = simulated
        self.runners: dict[str, ServingPodRunner] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def start(self, pod: dict[str, Any]) -> None:
        containers = (pod.get("spec") or {}).get("containers") or []
        if not containers or not all(container.get("command") or container.get("args") for container in containers):
            self.simulated.start(pod)
            return
        runner = ServingPodRunner(self.api, self.state_dir, pod, self.resolve)
        self.runners[pod["metadata"]["uid"]] = runner
        self._spawn(self._run(runner))

    async def _run(self, runner: ServingPodRunner) -> None:
        try:
            await runner.run()
        except Exception:  # a runner bug must not stop the executor; the pod stays as last written
            logger.exception("Running pod %s/%s failed", runner.namespace, runner.name)

    def stop(self, namespace: str, name: str, uid: str, grace_seconds: float) -> None:
        runner = self.runners.pop(uid, None)
        if runner is None:
            return
        logger.info("Stopping pod %s/%s (grace period %.0f s)", namespace, name, grace_seconds)
        self._spawn(runner.terminate(grace_seconds))

    def log_running(self, uid: str) -> bool:
        return uid in self.runners and not self.runners[uid].finished.is_set()

    async def shutdown(self) -> None:
        for uid, runner in list(self.runners.items()):
            self.runners.pop(uid, None)
            runner.stopping = True
            self._spawn(PodRunner.terminate(runner, 2.0))
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)
