"""HTTP inference server for exported intent classifiers (``mangakd serve``).

``POST /v1/predict`` classifies texts through a micro-batcher in front of
onnxruntime; ``/healthz``, ``/readyz`` and ``/metrics`` serve Kubernetes
probes and Prometheus. With a teacher URL the server shadows a sample of
requests to the teacher and counts agreement, which
:mod:`mangakd.server.analysis` turns into the canary figures.

Modules: :mod:`.config` (settings and options), :mod:`.validation` (request
checks), :mod:`.batcher`, :mod:`.shadow`, :mod:`.metrics`, :mod:`.state`
(model loading and lifecycle), :mod:`.routes` and :mod:`.app` (HTTP),
:mod:`.serve` (the process), :mod:`.analysis` and :mod:`.prometheus_query`
(reading the metrics back).

The entry points are imported on first use, so that the operator can import
:mod:`mangakd.server.analysis` without loading onnxruntime and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "main": "mangakd.server.serve",
    "run_from_arguments": "mangakd.server.serve",
    "run_server": "mangakd.server.serve",
    "create_app": "mangakd.server.app",
    "ServerConfig": "mangakd.server.config",
    "ConfigError": "mangakd.server.config",
    "add_arguments": "mangakd.server.config",
    "config_from_arguments": "mangakd.server.config",
}

__all__ = [
    "ConfigError",
    "ServerConfig",
    "add_arguments",
    "config_from_arguments",
    "create_app",
    "main",
    "run_from_arguments",
    "run_server",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mangakd.server' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
