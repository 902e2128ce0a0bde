"""The server as a process: graceful shutdown on SIGTERM with a request in flight, and exit codes."""

from __future__ import annotations

import asyncio
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server_support import (
    WAIT_TIMEOUT_S,
    ServerProcess,
    get_json,
    metric_value,
    post_json,
    scrape,
)

from mangakd.server.config import ServerConfig
from mangakd.server.serve import run_server

# The first request of a batch waits this long for more requests, which keeps
# a lone request in flight long enough to send SIGTERM while it waits.
SLOW_WAIT_MS = 4000


def test_sigterm_drains_in_flight_request(export_dir: Path, tmp_path: Path, texts: list[str]) -> None:
    server = ServerProcess(
        export_dir, tmp_path / "server.log", "--max-wait-ms", str(SLOW_WAIT_MS), "--revision", "3"
    )
    try:
        server.wait_until_ready()
        answers: list[tuple[int, Any]] = []
        client = threading.Thread(
            target=lambda: answers.append(post_json(server.url + "/v1/predict", {"texts": texts[:1]}))
        )
        client.start()
        _wait_until_in_flight(server.url)

        server.send_signal(signal.SIGTERM)
        readiness = _first_readiness_after_signal(server.url)
        client.join(WAIT_TIMEOUT_S)
        exit_code = server.process.wait(WAIT_TIMEOUT_S)
    finally:
        server.stop()

    assert readiness == (503, {"status": "draining"})
    assert len(answers) == 1
    status, answer = answers[0]
    assert status == 200
    assert len(answer["predictions"]) == 1
    assert answer["model"]["revision"] == "3"
    assert exit_code == 0, server.log()
    assert "received SIGTERM" in server.log()


def _wait_until_in_flight(url: str) -> None:
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while metric_value(scrape(url), "mangakd_requests_in_flight") < 1:
        assert time.monotonic() < deadline, "the predict request never arrived"
        time.sleep(0.02)


def _first_readiness_after_signal(url: str) -> tuple[int, Any]:
    # The signal handler runs on the server's next loop iteration, so the
    # first probes may still see 200; the slow request keeps the server up
    # until a 503 is seen.
    deadline = time.monotonic() + WAIT_TIMEOUT_S
    while time.monotonic() < deadline:
        status, body = get_json(url + "/readyz")
        if status != 200:
            return status, body
        time.sleep(0.01)
    return 200, None


def test_load_failure_exits_1(
    export_dir: Path, tmp_path: Path, make_config: Callable[..., ServerConfig]
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(export_dir, broken)
    (broken / "model.onnx").write_bytes(b"not an onnx model")

    exit_code = asyncio.run(run_server(make_config(export_dir=broken)))

    assert exit_code == 1
