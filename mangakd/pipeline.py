"""Running stages in order, skipping the ones whose outputs are complete.

A stage is complete when its marker exists and carries the same fingerprint:
a hash of the spec sections the stage reads and of the fingerprints of the
stages before it. Changing ``distillation.alpha`` therefore reruns distill
and everything after it, but not data preparation or the teacher.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


class RunDirBusy(ValueError):
    """Another process holds the run directory's lock."""


def _file_digest(path: str | None) -> str | None:
    # Data files are part of the prepare stage's inputs: editing one must
    # rerun prepare and everything after it, not reuse stale splits.
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return "unreadable"


def fingerprints(run: DistillationRun) -> dict[str, str]:
    """Return each stage's fingerprint, chained through the stages before it."""
    spec = run.spec.model_dump(mode="json", by_alias=True)
    dataset = run.spec.dataset
    data_files = {split: _file_digest(getattr(dataset, split)) for split in ("train", "dev", "test")}
    result: dict[str, str] = {}
    previous = ""
    for name, _, sections in stage_functions.STAGES:
        inputs = {key: spec[key] for key in sections}
        if name == "prepare" and any(data_files.values()):
            inputs["dataFiles"] = data_files
        payload = json.dumps({"stage": name, "previous": previous, **inputs}, sort_keys=True)
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
                f"stage {stage} needs stage {name}, which {state} in {rundir.root}; run the stages "
                f"up to {stage} first (mangakd run --stages {','.join(STAGE_NAMES[: STAGE_NAMES.index(stage) + 1])})"
            )


@contextmanager
def _locked(rundir: RunDir) -> Iterator[None]:
    # Two processes in one run directory would overwrite each other's
    # checkpoints and models, so the second one stops at once.
    handle = open(rundir.root / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise RunDirBusy(
            f"another mangakd process (pid {holder}) is running in {rundir.root}; "
            "wait for it to finish or use another --workdir"
        ) from None
    handle.truncate(0)
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _forget_from(rundir: RunDir, stage: str) -> None:
    # A stage about to run invalidates its own marker, every later one and
    # the reports, so a failure cannot leave an old report that looks current.
    for name in STAGE_NAMES[STAGE_NAMES.index(stage) :]:
        rundir.marker(name).unlink(missing_ok=True)
    for path in (rundir.report_json, rundir.report_md, rundir.root / "metrics.json"):
        path.unlink(missing_ok=True)


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
    if rundir.root.exists() and not rundir.root.is_dir():
        raise NotADirectoryError(f"--workdir {rundir.root} is a file; give a directory")
    rundir.root.mkdir(parents=True, exist_ok=True)
    with _locked(rundir):
        return _run_locked(run, rundir, select_stages(only), force)


def _run_locked(run: DistillationRun, rundir: RunDir, selected: list[str], force: bool) -> dict[str, dict]:
    expected = fingerprints(run)
    functions = {name: function for name, function, _ in stage_functions.STAGES}
    markers: dict[str, dict] = {}

    for name in selected:
        _check_inputs(rundir, name, expected)
        marker = rundir.read_marker(name)
        if marker is not None and marker.get("fingerprint") == expected[name] and not force:
            log.info("stage %s: complete, skipped", name)
            markers[name] = {**marker, "skipped": True}
            continue

        _forget_from(rundir, name)
        checkpoint = stage_functions.CHECKPOINTS.get(name)
        if force and checkpoint is not None:
            # --force means train again, not resume the finished checkpoint.
            (rundir.checkpoints / checkpoint).unlink(missing_ok=True)

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
        if checkpoint is not None:
            # The model is saved; its checkpoint (hundreds of MB) only served resumption.
            (rundir.checkpoints / checkpoint).unlink(missing_ok=True)
        log.info("stage %s: finished in %.1f s", name, marker["duration_s"])
        markers[name] = {**marker, "skipped": False}

    # Reports need every stage; a partial run (one Job's share of stages) skips them.
    if all(rundir.read_marker(name) is not None for name in STAGE_NAMES):
        write_reports(run, rundir)
    return markers
