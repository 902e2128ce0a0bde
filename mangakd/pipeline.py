"""Running stages in order, skipping the ones whose outputs are complete.

A stage is complete when its marker exists and carries the same fingerprint:
a hash of the spec sections the stage reads and of the fingerprints of the
stages before it. Changing ``distillation.alpha`` therefore reruns distill
and everything after it, but not data preparation or the teacher.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from mangakd import stages as stage_functions
from mangakd.report import write_reports
from mangakd.rundir import RunDir, write_json
from mangakd.spec import DistillationRun

log = logging.getLogger(__name__)

STAGE_NAMES = [name for name, _, _ in stage_functions.STAGES]


class StageFailed(RuntimeError):
    """A stage raised; the message names the stage and the cause."""


class StageOrderError(ValueError):
    """A stage was asked to run before the stages it reads from."""


def fingerprints(run: DistillationRun) -> dict[str, str]:
    """Return each stage's fingerprint, chained through the stages before it."""
    spec = run.spec.model_dump(mode="json", by_alias=True)
    result: dict[str, str] = {}
    previous = ""
    for name, _, sections in stage_functions.STAGES:
        payload = json.dumps({"stage": name, "previous": previous, **{key: spec[key] for key in sections}}, sort_keys=True)
        previous = hashlib.sha256(payload.encode()).hexdigest()[:16]
        result[name] = previous
    return result


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def select_stages(only: list[str] | None) -> list[str]:
    """Validate a list of stage names, keeping pipeline order."""
    if not only:
        return list(STAGE_NAMES)
    unknown = [name for name in only if name not in STAGE_NAMES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; valid stages in order: {', '.join(STAGE_NAMES)}")
    return [name for name in STAGE_NAMES if name in only]


def _check_inputs(rundir: RunDir, stage: str, expected: dict[str, str]) -> None:
    # A stage run on its own (as one Job of the operator) must not read the
    # outputs of an earlier stage that was run with a different spec.
    for name in STAGE_NAMES[: STAGE_NAMES.index(stage)]:
        marker = rundir.read_marker(name)
        if marker is None or marker.get("fingerprint") != expected[name]:
            state = "has not run" if marker is None else "ran with a different spec"
            raise StageOrderError(
                f"stage {stage} needs stage {name}, which {state} in {rundir.root}; run it first "
                f"(mangakd run FILE --workdir {rundir.root})"
            )


def run_pipeline(
    run: DistillationRun,
    workdir: str | Path,
    *,
    only: list[str] | None = None,
    force: bool = False,
) -> dict[str, dict]:
    """Run the selected stages in order and write the reports.

    Returns
    -------
    dict
        The marker of every selected stage, keyed by stage name, with
        ``skipped`` telling whether it ran now.
    """
    rundir = RunDir(workdir)
    rundir.root.mkdir(parents=True, exist_ok=True)
    expected = fingerprints(run)
    functions = {name: function for name, function, _ in stage_functions.STAGES}
    markers: dict[str, dict] = {}

    for name in select_stages(only):
        _check_inputs(rundir, name, expected)
        marker = rundir.read_marker(name)
        if marker is not None and marker.get("fingerprint") == expected[name] and not force:
            log.info("stage %s: complete, skipped", name)
            markers[name] = {**marker, "skipped": True}
            continue

        log.info("stage %s: started", name)
        started_at, started = _now(), time.perf_counter()
        try:
            summary = functions[name](run, rundir, expected[name])
        except Exception as error:
            raise StageFailed(f"stage {name} failed: {error}") from error
        marker = {
            "stage": name,
            "fingerprint": expected[name],
            "started_at": started_at,
            "finished_at": _now(),
            "duration_s": round(time.perf_counter() - started, 3),
            "summary": summary,
        }
        write_json(rundir.marker(name), marker)
        log.info("stage %s: finished in %.1f s", name, marker["duration_s"])
        markers[name] = {**marker, "skipped": False}

    # Reports need every stage; a partial run (one Job's share of stages) skips them.
    if all(rundir.read_marker(name) is not None for name in STAGE_NAMES):
        write_reports(run, rundir)
    return markers
