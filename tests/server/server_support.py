"""Helpers for the server tests: an in-process server on a background loop, a server process, a JSON client.

Every server listens on 127.0.0.1 on a port the operating system picks.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Self

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

REPO_ROOT = Path(__file__).resolve().parents[2]
# Bounded waits for servers to start or counters to arrive. They only stop a
# hung test; no assertion depends on how long anything took.
START_TIMEOUT_S = 180.0
WAIT_TIMEOUT_S = 60.0


class BackgroundServer:
    """Run an aiohttp application on 127.0.0.1 in an event loop on a background thread."""

    def __init__(self, make_app: Any) -> None:
        self._make_app = make_app
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-server", daemon=True)
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.url = ""

    def __enter__(self) -> Self:
        self._thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        self.loop.close()

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float = WAIT_TIMEOUT_S) -> Any:
        """Run ``coroutine`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _start(self) -> None:
        self.app = self._make_app()
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class ServerProcess:
    """A ``python -m mangakd.server`` process on 127.0.0.1 with its output in ``log_path``."""

    def __init__(self, export_dir: Path, log_path: Path, *options: str) -> None:
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "mangakd.server",
            str(export_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--threads",
            "1",
            *options,
        ]
        environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # The child keeps its own descriptor of the log after this one closes.
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment
            )
        self.url = ""

    def log(self) -> str:
        """Return what the process has written so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_until_ready(self) -> ServerProcess:
        """Wait for the listening address in the log, then for ``/readyz`` to return 200."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.url:
            match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.log())
            if match:
                self.url = match.group(1)
            elif self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
            elif time.monotonic() > deadline:
                raise AssertionError(f"server did not start within {START_TIMEOUT_S} s:\n{self.log()}")
            else:
                time.sleep(0.1)
        while get_json(self.url + "/readyz")[0] != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"server never became ready:\n{self.log()}")
            time.sleep(0.1)
        return self

    def send_signal(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` to this process only, by its PID."""
        os.kill(self.process.pid, signum)

    def stop(self) -> int:
        """Stop the process with SIGTERM (SIGKILL after 30 s) and return its exit code."""
        if self.process.poll() is None:
            self.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode


def request(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = WAIT_TIMEOUT_S,
) -> tuple[int, dict[str, str], bytes]:
    """Send one HTTP request and return status, headers and body, also for 4xx and 5xx responses."""
    prepared = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(prepared, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post_json(url: str, payload: Any) -> tuple[int, Any]:
    """POST ``payload`` as JSON and return the status and the decoded JSON body."""
    status, _, body = request("POST", url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)


def get_json(url: str) -> tuple[int, Any]:
    """GET ``url`` and return the status and the decoded JSON body, or status 0 when nothing listens."""
    try:
        status, _, body = request("GET", url, timeout=10)
    except (urllib.error.URLError, ConnectionError):
        return 0, None
    return status, json.loads(body)


def scrape(url: str) -> str:
    """Return the ``/metrics`` text of the server at ``url``."""
    status, _, body = request("GET", url + "/metrics")
    assert status == 200, f"/metrics answered {status}"
    return body.decode()


def metric_value(text: str, sample_name: str, /, **labels: str) -> float:
    """Return the sum of the samples called ``sample_name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(
                sample.labels.get(key) == value for key, value in labels.items()
            ):
                total += sample.value
    return total


def wait_for_metric(url: str, sample_name: str, minimum: float, /, **labels: str) -> str:
    """Scrape ``url`` until the sample ``sample_name`` reaches ``minimum``; return that scrape."""
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while True:
        text = scrape(url)
        if metric_value(text, sample_name, **labels) >= minimum:
            return text
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{sample_name} stayed below {minimum} for {WAIT_TIMEOUT_S} s; last scrape:\n"
                + "\n".join(line for line in text.splitlines() if line.startswith("mangakd_shadow"))
            )
        time.sleep(0.05)
