"""The kubelet of the development cluster: runs a Pod's containers as local processes.

The image is ignored: every container runs ``command + args`` in the local
Python environment, with the directory of the running interpreter first on
``PATH`` (so ``python`` and console scripts such as ``mangakd`` resolve to
this environment). A local process cannot see the container's mount paths.
So each ``volumeMount.mountPath`` and the ``terminationMessagePath`` are
rewritten to local directories wherever they start a path in the command,
the arguments, ``workingDir`` and environment values. The mapping is also
exported as JSON in ``MANGAKD_MOUNT_MAP`` for paths the process builds itself.

Volumes map to local directories:

- ``persistentVolumeClaim``: ``STATE_DIR/pvc/NAMESPACE/CLAIM`` (kept across pods),
- ``emptyDir``: ``STATE_DIR/pods/NAMESPACE/POD/volumes/NAME`` (deleted with the pod),
- ``configMap`` / ``secret``: the same, filled with one file per key,
- ``hostPath``: the path itself.

Logs (stdout and stderr together) go to ``STATE_DIR/logs/NAMESPACE/POD/CONTAINER.log``.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import json
import logging
import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from .api import ClusterApi
from .errors import ApiError
from .meta import format_time

logger = logging.getLogger(__name__)

# Limits of the termination message, as the kubelet applies them.
# Process groups of pod processes still running. shutdown() stops pods
# gracefully, and kill_remaining() kills any it missed at interpreter exit,
# so that no pod process outlives the dev cluster.
_RUNNING_GROUPS: set[int] = set()


def kill_remaining() -> None:
    """Send SIGKILL to the process group of every pod process still running."""
    for group in list(_RUNNING_GROUPS):
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _RUNNING_GROUPS.discard(group)


atexit.register(kill_remaining)


MAX_TERMINATION_MESSAGE_BYTES = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048


class ContainerStartError(RuntimeError):
    """A container cannot start (no command, missing workingDir, executable not found)."""


def substitute_paths(value: str, mounts: list[tuple[str, str]]) -> str:
    """Replace each container path prefix by its local directory where it starts a path.

    ``mounts`` contains ``(container_path, local_path)`` pairs; longer container
    paths are tried first so ``/data/models`` wins over ``/data``. A prefix
    matches at the start of the string or after ``=``, ``:``, ``,``, a quote
    or whitespace, and must end the string or be followed by ``/``.
    """
    for container_path, local_path in sorted(mounts, key=lambda pair: -len(pair[0])):
        pattern = r"(^|(?<=[=:,\s'\"]))" + re.escape(container_path.rstrip("/")) + r"(?=/|$|[\s'\",:])"
        value = re.sub(pattern, lambda _match, local=local_path: local, value)
    return value


def expand_variables(value: str, variables: dict[str, str]) -> str:
    """Expand ``$(NAME)`` references as Kubernetes does; ``$$`` escapes, unknown names stay."""
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return variables.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, value)


class PodRunner:
    """Runs one pod's containers and writes the pod's status."""

    def __init__(self, api: ClusterApi, state_dir: Path, pod: dict[str, Any]) -> None:
        self.api = api
        self.state_dir = state_dir
        self.namespace = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.pod = pod
        self.pod_dir = state_dir / "pods" / self.namespace / self.name
        self.log_dir = state_dir / "logs" / self.namespace / self.name
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.finished = asyncio.Event()

    # ---- status ------------------------------------------------------------

    def _write_status(self, update: dict[str, Any]) -> None:
        pod_type = self.api.registry.lookup("", "v1", "pods")
        assert pod_type is not None
        try:
            current = self.api.get(pod_type, self.namespace, self.name)
        except ApiError:
            return  # deleted meanwhile
        if current["metadata"]["uid"] != self.uid:
            return
        current["status"] = {**(current.get("status") or {}), **update}
        self.api.update(pod_type, self.namespace, self.name, current, subresource="status")

    def _conditions(self, ready: bool) -> list[dict[str, Any]]:
        timestamp = format_time()
        conditions = [("PodScheduled", True), ("Initialized", True), ("ContainersReady", ready), ("Ready", ready)]
        return [{"type": kind, "status": "True" if value else "False", "lastTransitionTime": timestamp}
                for kind, value in conditions]

    # ---- volumes and environment --------------------------------------------

    def _volume_dirs(self) -> dict[str, Path]:
        directories: dict[str, Path] = {}
        for volume in (self.pod.get("spec") or {}).get("volumes") or []:
            name = volume["name"]
            if "persistentVolumeClaim" in volume:
                path = self.state_dir / "pvc" / self.namespace / volume["persistentVolumeClaim"]["claimName"]
            elif "hostPath" in volume:
                path = Path(volume["hostPath"]["path"])
            else:
                path = self.pod_dir / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                data = self._lookup("configmaps", volume["configMap"].get("name", "")).get("data") or {}
                for key, value in data.items():
                    (path / key).write_text(value)
            elif "secret" in volume:
                data = self._lookup("secrets", volume["secret"].get("secretName", "")).get("data") or {}
                for key, value in data.items():
                    (path / key).write_bytes(base64.b64decode(value))
            directories[name] = path
        return directories

    def _lookup(self, plural: str, name: str) -> dict[str, Any]:
        resource_type = self.api.registry.lookup("", "v1", plural)
        assert resource_type is not None
        try:
            return self.api.get(resource_type, self.namespace, name)
        except ApiError:
            return {}

    def _field_value(self, path: str) -> str:
        match = re.match(r"^metadata\.(labels|annotations)\['(.+)'\]$", path)
        if match:
            return str((self.pod["metadata"].get(match.group(1)) or {}).get(match.group(2), ""))
        value: Any = self.pod
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None and path in ("status.podIP", "status.hostIP"):
            return "127.0.0.1"
        return "" if value is None else str(value)

    def _env_value(self, source: dict[str, Any]) -> str | None:
        if "fieldRef" in source:
            return self._field_value(source["fieldRef"]["fieldPath"])
        for key, plural in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
            if key in source:
                reference = source[key]
                data = self._lookup(plural, reference.get("name", "")).get("data") or {}
                if reference["key"] not in data:
                    if reference.get("optional"):
                        return None
                    raise ContainerStartError(f"{key} {reference.get('name')}/{reference['key']} not found")
                raw = data[reference["key"]]
                return base64.b64decode(raw).decode() if plural == "secrets" else raw
        return None

    def _environment(self, container: dict[str, Any], mounts: list[tuple[str, str]]) -> dict[str, str]:
        environment = dict(os.environ)
        environment["PATH"] = str(Path(sys.executable).parent) + os.pathsep + environment.get("PATH", "")
        environment["HOSTNAME"] = self.name
        environment["MANGAKD_MOUNT_MAP"] = json.dumps(dict(mounts))
        declared: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                for key, value in (self._lookup("configmaps", source["configMapRef"]["name"]).get("data") or {}).items():
                    declared[prefix + key] = value
            if "secretRef" in source:
                for key, value in (self._lookup("secrets", source["secretRef"]["name"]).get("data") or {}).items():
                    declared[prefix + key] = base64.b64decode(value).decode()
        for variable in container.get("env") or []:
            if "valueFrom" in variable:
                value = self._env_value(variable["valueFrom"])
                if value is None:
                    continue
            else:
                value = expand_variables(str(variable.get("value", "")), declared)
            declared[variable["name"]] = value
        for key, value in declared.items():
            environment[key] = substitute_paths(value, mounts)
        return environment

    # ---- running -------------------------------------------------------------

    async def run(self) -> None:
        """Run init containers one by one, then the containers together, and write the final phase."""
        try:
            spec = self.pod.get("spec") or {}
            volumes = self._volume_dirs()
            self._write_status({"phase": "Pending", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                                "podIPs": [{"ip": "127.0.0.1"}], "startTime": format_time(),
                                "conditions": self._conditions(False)})
            init_statuses = []
            for container in spec.get("initContainers") or []:
                status = await self._run_container(container, volumes, init=True)
                init_statuses.append(status)
                self._write_status({"initContainerStatuses": init_statuses})
                if status["state"]["terminated"]["exitCode"] != 0:
                    self._write_status({"phase": "Failed", "conditions": self._conditions(False)})
                    return
            results = await asyncio.gather(*(self._run_container(c, volumes) for c in spec.get("containers") or []))
            succeeded = all(result["state"]["terminated"]["exitCode"] == 0 for result in results)
            self._write_status({"phase": "Succeeded" if succeeded else "Failed", "conditions": self._conditions(False),
                                "containerStatuses": list(results)})
        finally:
            self.finished.set()

    def _container_status(self, container: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {"name": container["name"], "image": container.get("image", ""), "imageID": "",
                "containerID": f"local://{self.uid}/{container['name']}", "ready": ready, "started": "running" in state,
                "restartCount": 0, "state": state, "lastState": {}}

    def _set_running(self, container: dict[str, Any], started_at: str) -> None:
        pod_type = self.api.registry.lookup("", "v1", "pods")
        assert pod_type is not None
        try:
            current = self.api.get(pod_type, self.namespace, self.name)
        except ApiError:
            return
        statuses = [s for s in (current.get("status") or {}).get("containerStatuses") or [] if s["name"] != container["name"]]
        statuses.append(self._container_status(container, {"running": {"startedAt": started_at}}, True))
        self._write_status({"phase": "Running", "containerStatuses": statuses, "conditions": self._conditions(True)})

    async def _run_container(self, container: dict[str, Any], volumes: dict[str, Path], init: bool = False) -> dict[str, Any]:
        started_at = format_time()
        log_path = self.log_dir / f"{container['name']}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_bytes(b"")
        message_path = self.pod_dir / container["name"] / "termination-log"
        message_path.parent.mkdir(parents=True, exist_ok=True)
        message_path.write_bytes(b"")

        try:
            mounts = []
            for mount in container.get("volumeMounts") or []:
                if mount["name"] not in volumes:
                    raise ContainerStartError(f"volumeMount {mount['name']!r} names no volume of the pod")
                local = volumes[mount["name"]] / mount.get("subPath", "")
                local.mkdir(parents=True, exist_ok=True)
                mounts.append((mount["mountPath"], str(local)))
            mounts.append((container.get("terminationMessagePath", "/dev/termination-log"), str(message_path)))
            argv = self._argv(container, mounts)
            environment = self._environment(container, mounts)
            cwd = self._working_dir(container, mounts)
            with log_path.open("ab") as log_file:
                process = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=asyncio.subprocess.STDOUT,
                    env=environment, cwd=cwd, start_new_session=True)
        except (ContainerStartError, OSError) as error:
            log_path.write_text(f"{error}\n")
            terminated = {"exitCode": 128, "reason": "StartError", "message": str(error),
                          "startedAt": started_at, "finishedAt": format_time()}
            return self._container_status(container, {"terminated": terminated}, False)

        self.processes[container["name"]] = process
        _RUNNING_GROUPS.add(process.pid)
        if getattr(self, "stopping", False):
            # terminate() ran while this process was being started, so it missed it.
            _signal_group(process, signal.SIGTERM)
        if not init:
            self._set_running(container, started_at)
        exit_code = await process.wait()
        _RUNNING_GROUPS.discard(process.pid)
        self.processes.pop(container["name"], None)
        # A process killed by a signal reports -SIGNAL; the kubelet reports 128 + SIGNAL.
        exit_code = 128 - exit_code if exit_code < 0 else exit_code
        terminated = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                      "startedAt": started_at, "finishedAt": format_time()}
        message = self._termination_message(container, message_path, log_path, exit_code)
        if message:
            terminated["message"] = message
        return self._container_status(container, {"terminated": terminated}, False)

    def _argv(self, container: dict[str, Any], mounts: list[tuple[str, str]]) -> list[str]:
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        if not argv:
            raise ContainerStartError(f"container {container['name']!r} has no command: the image entrypoint is unknown "
                                      "to the local executor, so set command (and args)")
        variables = {v["name"]: str(v["value"]) for v in container.get("env") or [] if "value" in v}
        return [substitute_paths(expand_variables(str(part), variables), mounts) for part in argv]

    def _working_dir(self, container: dict[str, Any], mounts: list[tuple[str, str]]) -> str:
        if not container.get("workingDir"):
            scratch = self.pod_dir / container["name"] / "work"
            scratch.mkdir(parents=True, exist_ok=True)
            return str(scratch)
        local = substitute_paths(container["workingDir"], mounts)
        if local != container["workingDir"]:
            Path(local).mkdir(parents=True, exist_ok=True)
        if not Path(local).is_dir():
            raise ContainerStartError(f"workingDir {container['workingDir']!r} does not exist on this machine: "
                                      "put it under a volumeMount or use an existing directory")
        return local

    @staticmethod
    def _termination_message(container: dict[str, Any], message_path: Path, log_path: Path, exit_code: int) -> str:
        message = message_path.read_bytes()[:MAX_TERMINATION_MESSAGE_BYTES].decode(errors="replace")
        if not message and exit_code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            lines = log_path.read_bytes().splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
            message = b"".join(lines)[-FALLBACK_LOG_BYTES:].decode(errors="replace")
        return message

    async def terminate(self, grace_seconds: float) -> None:
        """Send SIGTERM to every process group, then SIGKILL after ``grace_seconds``; remove emptyDirs."""
        for process in list(self.processes.values()):
            _signal_group(process, signal.SIGTERM)
        try:
            await asyncio.wait_for(self.finished.wait(), timeout=grace_seconds)
        except TimeoutError:
            for process in list(self.processes.values()):
                _signal_group(process, signal.SIGKILL)
        volumes_dir = self.pod_dir / "volumes"
        if volumes_dir.exists():
            shutil.rmtree(volumes_dir, ignore_errors=True)


def _signal_group(process: asyncio.subprocess.Process, signal_number: int) -> None:
    try:
        os.killpg(process.pid, signal_number)
    except ProcessLookupError:
        pass  # already exited
