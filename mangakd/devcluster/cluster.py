"""Start the development cluster: API server, garbage collector, executor and kubeconfig.

Three ways to run it:

- ``await serve_dev_cluster(kubeconfig)`` inside an event loop, until cancelled;
- ``run_dev_cluster(kubeconfig)``, blocking until Ctrl-C or SIGTERM;
- ``with DevCluster() as cluster:`` from tests: a background thread with its
  own event loop, exposing ``cluster.url`` and ``cluster.kubeconfig_path``.

This is a development sandbox, not Kubernetes: no authentication or RBAC,
no TLS, JSON only, state kept in memory and lost on exit (``state_dir``
holds only PVC directories, pod logs and scratch files).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from .api import ClusterApi
from .executor import Executor
from .gc import GarbageCollector
from .registry import Registry
from .server import ApiHttpServer
from .store import DEFAULT_HISTORY_SIZE, Store

logger = logging.getLogger(__name__)

CONTEXT_NAME = "mangakd-dev"
INITIAL_NAMESPACES = ("default", "kube-system")


def kubeconfig_document(url: str, namespace: str = "default") -> dict[str, Any]:
    """Build a kubeconfig with one cluster (plain HTTP), one user without credentials and one context."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT_NAME, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT_NAME, "user": {}}],
        "contexts": [{"name": CONTEXT_NAME, "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": namespace}}],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }


def write_kubeconfig(path: Path, url: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig_document(url), sort_keys=False))


@dataclass
class RunningCluster:
    """Handles of a started cluster; :meth:`close` stops it."""

    api: ClusterApi
    url: str
    runner: web.AppRunner
    executor: Executor | None
    state_dir: Path
    owns_state_dir: bool

    async def close(self) -> None:
        if self.executor is not None:
            await self.executor.shutdown()
        await self.runner.cleanup()
        if self.owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)


async def start_cluster(*, host: str = "127.0.0.1", port: int = 0, state_dir: Path | None = None,
                        executor: bool = True, history_size: int = DEFAULT_HISTORY_SIZE) -> RunningCluster:
    """Start the server on the running loop and create the initial namespaces."""
    loop = asyncio.get_running_loop()
    owns_state_dir = state_dir is None
    state_path = Path(tempfile.mkdtemp(prefix="mangakd-devcluster-")) if state_dir is None else Path(state_dir)
    state_path.mkdir(parents=True, exist_ok=True)

    api = ClusterApi(Store(history_size), Registry())
    GarbageCollector(api, loop)
    local_executor = Executor(api, state_path, loop) if executor else None
    namespace_type = api.registry.lookup("", "v1", "namespaces")
    assert namespace_type is not None
    for name in INITIAL_NAMESPACES:
        api.create(namespace_type, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    http = ApiHttpServer(api, local_executor)
    runner = web.AppRunner(http.app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    url = f"http://{host}:{bound_port}"
    logger.info("Development cluster serving at %s (state in %s)", url, state_path)
    return RunningCluster(api, url, runner, local_executor, state_path, owns_state_dir)


async def serve_dev_cluster(kubeconfig: Path, *, host: str = "127.0.0.1", port: int = 0,
                            state_dir: Path | None = None, executor: bool = True,
                            ready: Callable[[RunningCluster], None] | None = None,
                            history_size: int = DEFAULT_HISTORY_SIZE) -> None:
    """Serve the development cluster and write ``kubeconfig`` until the task is cancelled.

    Parameters
    ----------
    kubeconfig : Path
        File to write; its context points kubectl and clients at the server.
    host, port : str, int
        Listen address; port 0 picks a free port.
    state_dir : Path, optional
        Directory for PVC data, pod logs and scratch files; a temporary
        directory, removed on exit, when omitted.
    executor : bool
        Run Jobs, Deployments and pods (the local executor).
    ready : callable, optional
        Called with the :class:`RunningCluster` once the server listens.
    history_size : int
        Number of changes kept for watches that resume from a resourceVersion.
    """
    cluster = await start_cluster(host=host, port=port, state_dir=state_dir, executor=executor,
                                  history_size=history_size)
    try:
        write_kubeconfig(Path(kubeconfig), cluster.url)
        logger.info("Wrote kubeconfig %s", kubeconfig)
        if ready is not None:
            ready(cluster)
        await asyncio.Event().wait()
    finally:
        await cluster.close()
        logger.info("Development cluster at %s stopped", cluster.url)


def run_dev_cluster(kubeconfig: Path, *, host: str = "127.0.0.1", port: int = 0,
                    state_dir: Path | None = None, executor: bool = True) -> None:
    """Run :func:`serve_dev_cluster` in the foreground until SIGINT or SIGTERM."""
    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, task.cancel)
        try:
            await serve_dev_cluster(kubeconfig, host=host, port=port, state_dir=state_dir, executor=executor)
        except asyncio.CancelledError:
            pass

    asyncio.run(main())


class DevCluster:
    """The development cluster in a background thread, for tests and notebooks.

    Examples
    --------
    >>> with DevCluster() as cluster:                     # doctest: +SKIP
    ...     subprocess.run(["kubectl", "--kubeconfig", cluster.kubeconfig_path, "get", "ns"])
    """

    def __init__(self, kubeconfig: Path | None = None, *, state_dir: Path | None = None, executor: bool = True,
                 host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0,
                 history_size: int = DEFAULT_HISTORY_SIZE) -> None:
        self._history_size = history_size
        self._own_dir = tempfile.mkdtemp(prefix="mangakd-devcluster-config-") if kubeconfig is None else None
        self.kubeconfig_path = Path(kubeconfig) if kubeconfig else Path(self._own_dir or ".") / "kubeconfig"
        self._state_dir = state_dir
        self._executor = executor
        self._host = host
        self._port = port
        self._startup_timeout = startup_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.cluster: RunningCluster | None = None

    @property
    def url(self) -> str:
        if self.cluster is None:
            raise RuntimeError("the development cluster is not running: call start() first")
        return self.cluster.url

    @property
    def api(self) -> ClusterApi:
        """The in-process API, for assertions that bypass HTTP (call it only via :meth:`call`)."""
        if self.cluster is None:
            raise RuntimeError("the development cluster is not running: call start() first")
        return self.cluster.api

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` on the cluster's event loop thread and return its result."""
        if self._loop is None:
            raise RuntimeError("the development cluster is not running: call start() first")

        async def invoke() -> Any:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(timeout=30)

    def start(self) -> DevCluster:
        self._thread = threading.Thread(target=self._run, name="mangakd-devcluster", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._startup_timeout):
            raise TimeoutError(f"the development cluster did not start within {self._startup_timeout} s")
        if self._error is not None:
            raise RuntimeError(f"the development cluster failed to start: {self._error!r}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop

        def on_ready(cluster: RunningCluster) -> None:
            self.cluster = cluster
            self._ready.set()

        async def main() -> None:
            self._task = asyncio.current_task()
            await serve_dev_cluster(self.kubeconfig_path, host=self._host, port=self._port, state_dir=self._state_dir,
                                    executor=self._executor, ready=on_ready, history_size=self._history_size)

        try:
            loop.run_until_complete(main())
        except asyncio.CancelledError:
            pass
        except BaseException as error:  # reported to the thread that called start()
            self._error = error
            self._ready.set()
        finally:
            # Pod runners still waiting on their processes are cancelled and run
            # to the end here, so that none is destroyed pending with the loop.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def stop(self) -> None:
        """Stop the server and the executor's processes, and wait for the thread to end."""
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
