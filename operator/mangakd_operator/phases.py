"""The phase machine of one generation of a valid DistillationRun (pure logic).

:class:`PhaseMachine` compares the run's Jobs with the spec and returns the
next step: create the ConfigMap and training Job, wait, create the
evaluation Job, read the results, create the StudentModel. Conditions are
set with :func:`mangakd.status.set_condition`, so ``lastTransitionTime``
changes only when a condition's status flips.

A stage in ``status.stages`` is Pending until its Job starts. While the Job
runs, each of its stages is Running, because results are read only when a
Job ends. Then it is Succeeded or Skipped, with ``durationSeconds`` from the
termination message, or Failed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from mangakd.spec import DistillationRun
from mangakd.status import Reason, get_condition, now_rfc3339, set_condition

from . import manifests
from .config import OperatorConfig
from .decision import Action, Decision, Note
from .names import (
    ALL_STAGES,
    EVALUATION_STAGES,
    TRAINING_STAGES,
    config_map_name,
    evaluation_job_name,
    student_model_name,
    training_job_name,
)
from .observe import Observed, ObservedJob
from .results import (
    JobResult,
    ResultError,
    failed_checks,
    failure_excerpt,
    gate_status,
    metrics_status,
    parse_result,
)

CONDITION_TYPES = ("Trained", "Evaluated", "Gated", "Ready")
# Status fields that describe one generation's results; a new generation drops them.
RESULT_FIELDS = (
    "stages",
    "metrics",
    "gate",
    "artifact",
    "studentModel",
    "evaluationJob",
    "jobFailures",
    "completionTime",
)

_FAILED_STAGE = re.compile(r"stage (\w+) failed")


class PhaseMachine:
    """One reconcile of a valid run; :meth:`decide` takes the next step of the phase machine once."""

    def __init__(
        self,
        body: Mapping[str, Any],
        run: DistillationRun,
        observed: Observed,
        config: OperatorConfig,
        generation: int,
        old: dict[str, Any],
        actions: list[Action],
        notes: list[Note],
    ) -> None:
        self.body = body
        self.run = run
        self.observed = observed
        self.config = config
        self.generation = generation
        self.old = old
        self.actions = actions
        self.notes = notes
        self.name = run.metadata.name
        self.training_name = training_job_name(self.name, generation)
        self.evaluation_name = evaluation_job_name(self.name, generation)
        self.same_generation = old.get("observedGeneration") == generation

        # Results of an earlier generation describe another spec, so they are dropped.
        carried = {
            key: value for key, value in old.items() if self.same_generation or key not in RESULT_FIELDS
        }
        self.status: dict[str, Any] = {**carried, "observedGeneration": generation}
        self.stages = {stage["name"]: dict(stage) for stage in carried.get("stages") or []}
        for stage in ALL_STAGES:
            self.stages.setdefault(stage, {"name": stage, "state": "Pending"})
        self.gate_passed: bool | None = None

    # ---- the phase machine ---------------------------------------------------

    def decide(self) -> Decision:
        """Return the actions, status and notes for this reconcile."""
        if self.old.get("observedGeneration") not in (None, self.generation):
            self.notes.append(
                Note(
                    logging.INFO,
                    f"Started generation {self.generation} after a spec change; "
                    "finished stages whose spec sections did not change will be skipped.",
                    first=True,
                )
            )
        self._ensure_config_map()
        self.status["trainingJob"] = self.training_name
        training = self.observed.jobs.get(self.training_name)
        evaluation = self.observed.jobs.get(self.evaluation_name)
        if evaluation is None:
            self._training(training)
        else:
            self._evaluation(training, evaluation)

        failures = sum(job.failed_pods for job in (training, evaluation) if job is not None)
        self.status["jobFailures"] = failures
        self.status["stages"] = [self.stages[stage] for stage in ALL_STAGES]
        self._note_phase_change()
        return Decision(
            status=self.status, actions=self.actions, notes=self.notes, gate_passed=self.gate_passed
        )

    def _training(self, training: ObservedJob | None) -> None:
        if training is None:
            manifest = manifests.training_job(self.body, self.run, self.generation, self.config)
            self.actions.append(
                Action(
                    "create",
                    "Job",
                    self.training_name,
                    f"Created training Job {self.training_name}.",
                    manifest,
                )
            )
            self._set_phase(
                "Pending",
                trained=("False", Reason.JOB_CREATED, f"Created training Job {self.training_name}."),
                ready=("False", Reason.PENDING, f"Training Job {self.training_name} has not started yet."),
            )
            return

        self._mark_stages(TRAINING_STAGES, training)
        if training.state in ("Suspended", "Pending"):
            queue = self.run.spec.resources.queue_name
            waiting = (
                f"Training Job {self.training_name} is suspended until Kueue admits it from LocalQueue {queue}."
                if training.state == "Suspended" and queue
                else f"Training Job {self.training_name} is {training.state.lower()} and has not started yet."
            )
            self._set_phase(
                "Pending",
                trained=("False", Reason.PENDING, waiting),
                ready=("False", Reason.PENDING, waiting),
            )
        elif training.state == "Running":
            trained = self._running_condition(training, "Training", TRAINING_STAGES)
            self._set_phase("Training", trained=trained, ready=("False", trained[1], trained[2]))
        elif training.state == "Failed":
            message = self._job_failed_message("Training", training)
            self._fail(Reason.JOB_FAILED, message, trained=("False", Reason.JOB_FAILED, message))
        else:
            manifest = manifests.evaluation_job(self.body, self.run, self.generation, self.config)
            self.actions.append(
                Action(
                    "create",
                    "Job",
                    self.evaluation_name,
                    f"Created evaluation Job {self.evaluation_name}.",
                    manifest,
                )
            )
            self.status["evaluationJob"] = self.evaluation_name
            self._set_phase(
                "Evaluating",
                trained=("True", Reason.STAGE_SUCCEEDED, f"Training Job {self.training_name} succeeded."),
                evaluated=("False", Reason.JOB_CREATED, f"Created evaluation Job {self.evaluation_name}."),
                ready=("False", Reason.JOB_CREATED, f"Created evaluation Job {self.evaluation_name}."),
            )

    def _evaluation(self, training: ObservedJob | None, evaluation: ObservedJob) -> None:
        self.status["evaluationJob"] = self.evaluation_name
        if training is not None:
            self._mark_stages(TRAINING_STAGES, training)
        self._mark_stages(EVALUATION_STAGES, evaluation)
        trained = ("True", Reason.STAGE_SUCCEEDED, f"Training Job {self.training_name} succeeded.")

        if evaluation.state in ("Suspended", "Pending", "Running"):
            evaluated = (
                self._running_condition(evaluation, "Evaluation", EVALUATION_STAGES)
                if evaluation.state == "Running"
                else ("False", Reason.PENDING, f"Evaluation Job {self.evaluation_name} has not started yet.")
            )
            self._set_phase(
                "Evaluating",
                trained=trained,
                evaluated=evaluated,
                ready=("False", evaluated[1], evaluated[2]),
            )
            return
        if evaluation.state == "Failed":
            message = self._job_failed_message("Evaluation", evaluation)
            self._fail(
                Reason.JOB_FAILED, message, trained=trained, evaluated=("False", Reason.JOB_FAILED, message)
            )
            return

        try:
            result = parse_result(evaluation.message, f"Evaluation Job {self.evaluation_name}")
        except ResultError as error:
            self._fail(
                Reason.RESULT_UNREADABLE,
                str(error),
                trained=trained,
                evaluated=("False", Reason.RESULT_UNREADABLE, str(error)),
            )
            return
        gate = gate_status(result)
        if gate is None:
            message = f"Evaluation Job {self.evaluation_name} succeeded but reported no gate verdict."
            self._fail(
                Reason.RESULT_UNREADABLE,
                message,
                trained=trained,
                evaluated=("False", Reason.RESULT_UNREADABLE, message),
            )
            return

        storage = self.run.spec.storage
        assert storage is not None  # validate_run checked it
        self.status["metrics"] = metrics_status(result)
        self.status["gate"] = gate
        self.status["artifact"] = {
            "pvc": storage.pvc,
            "path": f"{manifests.run_folder(self.run)}/export/student",
        }
        self.status["completionTime"] = evaluation.finished_at or now_rfc3339()
        evaluated = ("True", Reason.STAGE_SUCCEEDED, f"Evaluation Job {self.evaluation_name} succeeded.")
        self.gate_passed = bool(gate["passed"])
        if not gate["passed"]:
            message = f"The student failed the gate: {failed_checks(gate)}"
            self._fail(
                Reason.GATE_FAILED,
                message,
                trained=trained,
                evaluated=evaluated,
                gated=("False", Reason.GATE_FAILED, message),
            )
            return

        model_name = student_model_name(self.name)
        manifest = manifests.student_model(self.body, self.run, self.generation)
        verb = "Updated" if self.observed.student_model else "Created"
        self.actions.append(
            Action(
                "apply",
                "StudentModel",
                model_name,
                f"{verb} StudentModel {model_name} for the exported student.",
                manifest,
            )
        )
        self.status["studentModel"] = model_name
        message = f"The student passed every gate check; StudentModel {model_name} serves it."
        self._set_phase(
            "Succeeded",
            trained=trained,
            evaluated=evaluated,
            gated=("True", Reason.GATE_PASSED, "The student passed every gate check."),
            ready=("True", Reason.GATE_PASSED, message),
        )

    # ---- helpers -------------------------------------------------------------

    def _ensure_config_map(self) -> None:
        map_name = config_map_name(self.name, self.generation)
        if map_name not in self.observed.config_maps:
            manifest = manifests.config_map(self.body, self.generation)
            self.actions.append(
                Action(
                    "create",
                    "ConfigMap",
                    map_name,
                    f"Created ConfigMap {map_name} with the run's spec.",
                    manifest,
                )
            )

    def _running_condition(
        self, job: ObservedJob, kind: str, stages: tuple[str, ...]
    ) -> tuple[str, Reason, str]:
        if job.failed_pods:
            allowed = self.run.spec.resources.backoff_limit + 1
            return (
                "False",
                Reason.JOB_RETRYING,
                f"{kind} Job {job.name} failed {job.failed_pods} of {allowed} allowed attempts and is retrying.",
            )
        return ("False", Reason.JOB_RUNNING, f"{kind} Job {job.name} is running stages {', '.join(stages)}.")

    def _job_failed_message(self, kind: str, job: ObservedJob) -> str:
        excerpt = failure_excerpt(job.message) or "the pod left no termination message or log"
        failure = job.failure or "Failed"
        return f"{kind} Job {job.name} failed ({failure}) after {job.failed_pods} failed pod(s): {excerpt}"

    def _mark_stages(self, stages: tuple[str, ...], job: ObservedJob) -> None:
        """Update the stages a Job runs from its state and, once it ends, from its result."""
        if job.state == "Running":
            for stage in stages:
                if self.stages[stage]["state"] == "Pending":
                    # The operator reads results only when a Job ends, so every stage of a running Job shows Running.
                    self.stages[stage] = {"name": stage, "state": "Running", "startedAt": job.started_at}
        elif job.state == "Failed":
            match = _FAILED_STAGE.search(job.message)
            failed = match.group(1) if match and match.group(1) in stages else None
            # Without "stage NAME failed" in the log (a crash before the
            # pipeline started, an OOM kill), every stage of the Job shows Failed.
            for index, stage in enumerate(stages):
                if failed is None:
                    state = "Failed"
                elif index < stages.index(failed):
                    state = "Succeeded"
                else:
                    state = "Failed" if stage == failed else "Pending"
                self.stages[stage] = {"name": stage, "state": state}
        elif job.state == "Succeeded":
            try:
                result = parse_result(job.message, f"Job {job.name}")
            except ResultError as error:
                self.notes.append(Note(logging.DEBUG, f"No stage results from Job {job.name}: {error}"))
                result = JobResult()
            for stage in stages:
                self.stages[stage] = _stage_entry(stage, result)

    def _set_phase(
        self,
        phase: str,
        *,
        ready: tuple[str, Reason | str, str],
        trained: tuple[str, Reason | str, str] | None = None,
        evaluated: tuple[str, Reason | str, str] | None = None,
        gated: tuple[str, Reason | str, str] | None = None,
    ) -> None:
        self.status["phase"] = phase
        waiting = ("False", Reason.PENDING, "Waits for the steps before it.")
        conditions = list(self.old.get("conditions") or [])
        values = {
            "Trained": trained or waiting,
            "Evaluated": evaluated or waiting,
            "Gated": gated or waiting,
            "Ready": ready,
        }
        for kind in CONDITION_TYPES:
            state, reason, message = values[kind]
            conditions = set_condition(conditions, kind, state, reason, message, self.generation)
        self.status["conditions"] = conditions

    def _fail(self, reason: Reason | str, message: str, **steps: tuple[str, Reason | str, str]) -> None:
        self.status.setdefault("completionTime", now_rfc3339())
        self._set_phase("Failed", ready=("False", reason, message), **steps)

    def _note_phase_change(self) -> None:
        before = self.old.get("phase") if self.same_generation else None
        after = self.status.get("phase")
        if before == after:
            return
        ready = get_condition(self.status.get("conditions"), "Ready") or {}
        change = f"Changed phase from {before} to {after}" if before else f"Changed phase to {after}"
        if after == "Failed":
            self.notes.append(
                Note(logging.WARNING, f"{change} ({ready.get('reason')}): {ready.get('message')}")
            )
        else:
            self.notes.append(Note(logging.INFO, f"{change}: {ready.get('message')}"))


def _stage_entry(stage: str, result: JobResult) -> dict[str, Any]:
    outcome = result.stages.get(stage)
    if outcome is None:
        return {"name": stage, "state": "Succeeded"}
    entry: dict[str, Any] = {
        "name": stage,
        "state": "Skipped" if outcome.skipped else "Succeeded",
        "durationSeconds": outcome.duration_s,
    }
    # NOTE: `mangakd run` does not yet put stage start and end times in its
    # termination message, so these stay unset until it does.
    if outcome.started_at:
        entry["startedAt"] = outcome.started_at
    if outcome.finished_at:
        entry["finishedAt"] = outcome.finished_at
    return entry
