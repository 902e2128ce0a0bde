"""Fixtures of the end-to-end tests: one dev cluster, two operators and the shared run per session.

See :mod:`e2e_support` for how the operators and the shared run are driven.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import CRDS, MAIN, MISC, Env, Kubectl, MainScenario, Operator

from mangakd.devcluster import DevCluster


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    state_dir = tmp_path_factory.mktemp("e2e-state")
    config_dir = tmp_path_factory.mktemp("e2e-config")
    with DevCluster(config_dir / "kubeconfig", state_dir=state_dir) as cluster:
        kubectl = Kubectl(cluster.kubeconfig_path, tmp_path_factory.mktemp("kubectl-cache"))
        kubectl("apply", "-f", str(CRDS))
        operators = {}
        for namespace in (MAIN, MISC):
            # `kubectl create namespace` sends protobuf, which the dev cluster does not read; apply sends JSON.
            kubectl(
                "apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n"
            )
            operators[namespace] = Operator(
                namespace, cluster.kubeconfig_path, config_dir / f"operator-{namespace}.log"
            )
            operators[namespace].start()
        try:
            yield Env(cluster, kubectl, state_dir, operators)
        finally:
            for operator in operators.values():
                operator.stop()


@pytest.fixture(scope="session")
def main_scenario(env: Env) -> MainScenario:
    """The shared run, started once per session."""
    scenario = MainScenario(env)
    scenario.start()
    return scenario


@pytest.fixture(scope="session", autouse=True)
def start_shared_run(request: pytest.FixtureRequest) -> None:
    """Start the shared run before the first e2e test when a selected test waits for it.

    The short tests then overlap with its training; a session without such
    a test (say, only the StudentModel tests) trains nothing.
    """
    if request.config.stash.get(_NEEDS_SHARED_RUN, False):
        request.getfixturevalue("main_scenario")


# Fixtures that wait for the shared run to finish.
_WAITS_FOR_SHARED_RUN = {"finished", "strict_run"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the e2e tests that do not wait for the shared run first, so they overlap with its training."""
    here = Path(__file__).parent

    def waits(item: pytest.Item) -> bool:
        in_e2e = here in item.path.parents
        return in_e2e and bool(_WAITS_FOR_SHARED_RUN & set(getattr(item, "fixturenames", ())))

    # A stable sort keeps the file order within each group.
    items.sort(key=waits)
    config = items[0].config if items else None
    if config is not None:
        config.stash[_NEEDS_SHARED_RUN] = any(waits(item) for item in items)


_NEEDS_SHARED_RUN = pytest.StashKey[bool]()
