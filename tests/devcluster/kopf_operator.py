"""A small kopf operator used by test_kopf.py: it accepts DistillationRuns.

On creation it sets ``status.phase`` to ``Accepted`` through kopf's status
patch and posts a Normal event with ``kopf.info``. The deletion handler makes
kopf add its finalizer, which it removes when the object is deleted.
"""

from __future__ import annotations

from typing import Any

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.watching.server_timeout = 30
    settings.persistence.finalizer = "mangakd.io/test-operator"


@kopf.on.create("mangakd.io", "v1alpha1", "distillationruns")
def accept(body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
    patch.status["phase"] = "Accepted"
    patch.status["teacher"] = spec["teacher"]
    kopf.info(body, reason="Accepted", message=f"Accepted DistillationRun with teacher {spec['teacher']}")


@kopf.on.delete("mangakd.io", "v1alpha1", "distillationruns")
def release(logger: Any, **_: Any) -> None:
    logger.info("Released DistillationRun")
