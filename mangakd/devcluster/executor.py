"""Local executor: the Job, Deployment and ReplicaSet controllers and the kubelet.

The executor listens to store changes and reconciles on the event loop.
Which runtime runs a pod is decided by :meth:`Executor.runtime_for`:

- :class:`ProcessRuntime` runs the containers as local processes
  (:mod:`.kubelet`): the default for Job pods and bare pods;
- :class:`.serving.ServingRuntime` runs ReplicaSet (Deployment) pods as
  long-running local processes with ports, readiness probes, restarts and
  preStop hooks, and pods without a ``command`` as :class:`SimulatedRuntime`
  does;
- :class:`SimulatedRuntime` marks the pod Running and Ready without a
  process.

``replicaset_runtime`` replaces the runtime of ReplicaSet pods (another
:class:`PodRuntime`). :class:`.services.ServiceProxies` keeps each
Service's endpoints and local load balancer.

Deleting a pod (directly, or through its Job's garbage collection) sends
SIGTERM to its process groups and SIGKILL after
``spec.terminationGracePeriodSeconds``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from .api import ClusterApi
from .deployments import DeploymentController, ReplicaSetController
from .errors import ApiError, bad_request
from .jobs import JobController
from .kubelet import PodRunner
from .meta import format_time
from .serving import ServingRuntime
from .services import ServiceProxies
from .store import Change

logger = logging.getLogger(__name__)

LOG_FOLLOW_POLL_SECONDS = 0.2


class PodRuntime(Protocol):
    """Starts a pod and stops it when the pod is deleted."""

    def start(self, pod: dict[str, Any]) -> None: ...

    def stop(self, namespace: str, name: str, uid: str, grace_seconds: float) -> None: ...

    def log_running(self, uid: str) -> bool: ...


class ProcessRuntime:
    """Runs pods as local processes through :class:`.kubelet.PodRunner`."""

    def __init__(self, api: ClusterApi, state_dir: Path) -> None:
        self.api = api
        self.state_dir = state_dir
        self.runners: dict[str, PodRunner] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, pod: dict[str, Any]) -> None:
        runner = PodRunner(self.api, self.state_dir, pod)
        self.runners[pod["metadata"]["uid"]] = runner
        task = asyncio.get_running_loop().create_task(self._run(runner))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, runner: PodRunner) -> None:
        try:
            await runner.run()
        except Exception:  # a runner bug must not stop the executor; the pod stays as last written
            logger.exception("Running pod %s/%s failed", runner.namespace, runner.name)
        finally:
            if runner.uid in self.runners and not runner.processes:
                self.runners.pop(runner.uid, None)

    def stop(self, namespace: str, name: str, uid: str, grace_seconds: float) -> None:
        runner = self.runners.pop(uid, None)
        if runner is None:
            return
        logger.info("Stopping pod %s/%s (grace period %.0f s)", namespace, name, grace_seconds)
        task = asyncio.get_running_loop().create_task(runner.terminate(grace_seconds))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def log_running(self, uid: str) -> bool:
        return uid in self.runners and not self.runners[uid].finished.is_set()

    async def shutdown(self) -> None:
        for uid, runner in list(self.runners.items()):
            self.stop(runner.namespace, runner.name, uid, 2.0)
        if self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


class SimulatedRuntime:
    """Marks pods Running and Ready without starting anything."""

    def __init__(self, api: ClusterApi) -> None:
        self.api = api

    def start(self, pod: dict[str, Any]) -> None:
        pod_type = self.api.registry.lookup("", "v1", "pods")
        assert pod_type is not None
        # Re-read the pod: it may have changed since the change that started it.
        pod = self.api.get(pod_type, pod["metadata"]["namespace"], pod["metadata"]["name"])
        timestamp = format_time()
        containers = (pod.get("spec") or {}).get("containers") or []
        pod["status"] = {
            "phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "startTime": timestamp,
            "conditions": [{"type": kind, "status": "True", "lastTransitionTime": timestamp}
                           for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True,
                                   "started": True, "restartCount": 0, "state": {"running": {"startedAt": timestamp}}}
                                  for c in containers],
        }
        self.api.update(pod_type, pod["metadata"]["namespace"], pod["metadata"]["name"], pod, subresource="status")

    def stop(self, namespace: str, name: str, uid: str, grace_seconds: float) -> None:
        return None

    def log_running(self, uid: str) -> bool:
        return False


class Executor:
    """Runs the controllers and the kubelet on the server's event loop."""

    def __init__(self, api: ClusterApi, state_dir: Path, loop: asyncio.AbstractEventLoop, *,
                 replicaset_runtime: PodRuntime | None = None) -> None:
        self.api = api
        self.state_dir = state_dir
        self.loop = loop
        self.processes = ProcessRuntime(api, state_dir)
        self.services = ServiceProxies(api, loop)
        self.replicaset_runtime: PodRuntime = replicaset_runtime or ServingRuntime(
            api, state_dir, self.services.resolve, SimulatedRuntime(api))
        self.jobs = JobController(api, loop)
        self.replica_sets = ReplicaSetController(api)
        self.deployments = DeploymentController(api)
        self._started: dict[str, PodRuntime] = {}
        self._pending: dict[tuple[str, str, str], Callable[[str, str], None]] = {}
        api.store.subscribe(self._on_change)

    def runtime_for(self, pod: dict[str, Any]) -> PodRuntime:
        """Choose the runtime of a pod: simulated for ReplicaSet pods, processes otherwise."""
        owners = {ref.get("kind") for ref in pod["metadata"].get("ownerReferences") or []}
        return self.replicaset_runtime if "ReplicaSet" in owners else self.processes

    def _enqueue(self, kind: str, namespace: str, name: str, reconcile: Callable[[str, str], None]) -> None:
        key = (kind, namespace, name)
        if key in self._pending:
            return
        self._pending[key] = reconcile
        self.loop.call_soon(self._run_pending, key)

    def _run_pending(self, key: tuple[str, str, str]) -> None:
        reconcile = self._pending.pop(key, None)
        if reconcile is None:
            return
        try:
            reconcile(key[1], key[2])
        except ApiError as error:
            # Another writer changed the object between read and write; the change that it
            # caused triggers another reconcile.
            logger.debug("Reconcile of %s %s/%s deferred: %s", *key, error)
        except Exception:
            logger.exception("Reconcile of %s %s/%s failed", *key)

    def _on_change(self, change: Change) -> None:
        meta = change.obj["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        owners = [(ref.get("kind"), ref.get("name")) for ref in meta.get("ownerReferences") or []]
        if change.storage_key == ("batch", "jobs") and change.type != "DELETED":
            self._enqueue("Job", namespace, name, self.jobs.reconcile)
        elif change.storage_key == ("apps", "deployments") and change.type != "DELETED":
            self._enqueue("Deployment", namespace, name, self.deployments.reconcile)
        elif change.storage_key == ("apps", "replicasets"):
            if change.type != "DELETED":
                self._enqueue("ReplicaSet", namespace, name, self.replica_sets.reconcile)
            for kind, owner in owners:
                if kind == "Deployment":
                    self._enqueue("Deployment", namespace, owner, self.deployments.reconcile)
        elif change.storage_key == ("", "persistentvolumeclaims") and change.type == "ADDED":
            self._enqueue("PersistentVolumeClaim", namespace, name, self._bind_claim)
        elif change.storage_key == ("", "pods"):
            self._on_pod_change(change)
            for kind, owner in owners:
                if kind == "Job":
                    self._enqueue("Job", namespace, owner, self.jobs.reconcile)
                elif kind == "ReplicaSet":
                    self._enqueue("ReplicaSet", namespace, owner, self.replica_sets.reconcile)

    def _on_pod_change(self, change: Change) -> None:
        meta = change.obj["metadata"]
        uid = meta["uid"]
        grace = float((change.obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        if change.type == "DELETED" or meta.get("deletionTimestamp"):
            runtime = self._started.pop(uid, None)
            if runtime is not None:
                runtime.stop(meta.get("namespace", ""), meta["name"], uid, grace)
            return
        if change.type == "ADDED" and uid not in self._started:
            runtime = self.runtime_for(change.obj)
            self._started[uid] = runtime
            pod = self.api.to_client(self.api.registry.lookup("", "v1", "pods"), change.obj)  # type: ignore[arg-type]
            self.loop.call_soon(self._start_pod, runtime, pod)

    def _start_pod(self, runtime: PodRuntime, pod: dict[str, Any]) -> None:
        if self._started.get(pod["metadata"]["uid"]) is not runtime:
            return  # deleted before it started
        try:
            runtime.start(pod)
        except ApiError as error:
            logger.debug("Pod %s/%s not started: %s", pod["metadata"]["namespace"], pod["metadata"]["name"], error)

    def _bind_claim(self, namespace: str, name: str) -> None:
        claim_type = self.api.registry.lookup("", "v1", "persistentvolumeclaims")
        assert claim_type is not None
        claim = self.api.get(claim_type, namespace, name)
        (self.state_dir / "pvc" / namespace / name).mkdir(parents=True, exist_ok=True)
        requested = ((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}
        claim["status"] = {"phase": "Bound", "accessModes": (claim.get("spec") or {}).get("accessModes") or ["ReadWriteOnce"],
                           "capacity": {"storage": requested.get("storage", "1Gi")}}
        self.api.update(claim_type, namespace, name, claim, subresource="status")

    async def read_log(self, request: web.Request, namespace: str, pod: dict[str, Any],
                       container: str, params: Mapping[str, str]) -> web.StreamResponse:
        """Serve ``pods/NAME/log`` from the container's log file (``follow``, ``tailLines``, ``limitBytes``)."""
        path = self.state_dir / "logs" / namespace / pod["metadata"]["name"] / f"{container}.log"
        if not path.exists():
            raise bad_request(f'container "{container}" in pod "{pod["metadata"]["name"]}" is waiting to start: ContainerCreating')
        content = path.read_bytes()
        if params.get("tailLines"):
            lines = content.splitlines(keepends=True)
            content = b"".join(lines[-int(params["tailLines"]):]) if int(params["tailLines"]) > 0 else b""
        if params.get("limitBytes"):
            content = content[:int(params["limitBytes"])]
        follow = params.get("follow") in ("1", "true", "True")
        if not follow:
            return web.Response(body=content, content_type="text/plain")

        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(content)
        offset = path.stat().st_size
        uid = pod["metadata"]["uid"]
        while True:
            running = self.processes.log_running(uid) or self.replicaset_runtime.log_running(uid)
            size = path.stat().st_size if path.exists() else offset
            if size > offset:
                with path.open("rb") as log_file:
                    log_file.seek(offset)
                    await response.write(log_file.read(size - offset))
                offset = size
            elif not running:
                break
            await asyncio.sleep(LOG_FOLLOW_POLL_SECONDS)
        await response.write_eof()
        return response

    async def shutdown(self) -> None:
        await self.processes.shutdown()
        if isinstance(self.replicaset_runtime, ServingRuntime):
            await self.replicaset_runtime.shutdown()
        await self.services.shutdown()
