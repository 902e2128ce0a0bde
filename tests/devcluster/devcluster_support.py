"""Helpers shared by the dev cluster tests: an HTTP client, polling and test objects."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
CRD_PATH = HERE / "test-crd.yaml"


class Http:
    """Raw HTTP calls to the server, returning the status code and the decoded JSON body."""

    def __init__(self, url: str) -> None:
        self.url = url

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None
        if body is not None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": content_type, **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw = error.read()
            status = error.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode()

    def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
        return self.request("POST", path, body, **kwargs)

    def put(self, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
        return self.request("PUT", path, body, **kwargs)

    def patch(self, path: str, body: Any, content_type: str = "application/merge-patch+json") -> tuple[int, Any]:
        return self.request("PATCH", path, body, content_type=content_type)

    def delete(self, path: str, body: Any = None) -> tuple[int, Any]:
        return self.request("DELETE", path, body)

    def watch_lines(self, path: str) -> list[dict[str, Any]]:
        """Read a watch stream that the server closes (the path must set ``timeoutSeconds``)."""
        with urllib.request.urlopen(self.url + path, timeout=60) as response:
            return [json.loads(line) for line in response.read().splitlines() if line.strip()]


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, message: str = "") -> Any:
    """Poll ``condition`` until it returns a truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message or condition}")
        time.sleep(interval)


def run_path(namespace: str, name: str = "") -> str:
    base = f"/apis/mangakd.io/v1alpha1/namespaces/{namespace}/distillationruns"
    return f"{base}/{name}" if name else base


def run_body(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "mangakd.io/v1alpha1", "kind": "DistillationRun", "metadata": {"name": name},
            "spec": {"teacher": "minilm", **spec}}
