"""Fixtures of the server tests: one small real classifier, exported once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from model_fixtures import build_small_export, clinc_test_texts, small_intents

from mangakd.onnx_runtime import OnnxClassifier
from mangakd.server.config import ServerConfig


@pytest.fixture(scope="session")
def intents() -> list[str]:
    return small_intents()


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_export(tmp_path_factory.mktemp("served-model"))


@pytest.fixture(scope="session")
def texts(intents: list[str]) -> list[str]:
    return clinc_test_texts(intents, 64)


@pytest.fixture(scope="session")
def reference(export_dir: Path) -> OnnxClassifier:
    """The exported model run directly with onnxruntime, to compare the server with."""
    return OnnxClassifier(export_dir, threads=1)


@pytest.fixture(scope="session")
def make_config(export_dir: Path) -> Callable[..., ServerConfig]:
    """Return a function that builds a ServerConfig for 127.0.0.1 on a free port with one thread."""

    def build(**overrides: Any) -> ServerConfig:
        settings: dict[str, Any] = {"export_dir": export_dir, "host": "127.0.0.1", "port": 0, "threads": 1}
        settings.update(overrides)
        return ServerConfig(**settings)

    return build
