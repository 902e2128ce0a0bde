"""The steps of the rollout state machine: rollback, switch, new revision, canary, guard.

:class:`Machine` works on one copy of the status. Each step method reads
and updates it, adds notes, and sets the flags of the decision. The
desired Deployments follow from the status at the end
(:meth:`Machine.desired_revisions`), and the phase and conditions from
:mod:`.conditions`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from mangakd.status import Reason

from .analysis import MeasureRequest, Target, judge
from .children import DesiredRevision, plan_children
from .conditions import apply_conditions
from .manifests import RevisionTemplate, revision_template, template_from_record
from .names import CANARY, STABLE
from .revisions import find, last_good, new_record, parse_time, rfc3339, trim
from .rollout import INFO, WARNING, RolloutDecision, RolloutInput, initial_status, note, split_replicas


class Machine:
    """One decision in the making."""

    def __init__(self, inputs: RolloutInput) -> None:
        self.inputs = inputs
        self.spec = inputs.spec
        self.observed = inputs.observed
        self.now = inputs.now
        self.stamp = rfc3339(inputs.now)
        self.st = initial_status(inputs.body)
        self.history: list[dict[str, Any]] = self.st["history"]
        self.desired = revision_template(self.spec)
        self.desired_hash = self.desired.spec_hash()
        self.decision = RolloutDecision(status=self.st)
        # Reason and message of a transition in this call, for the conditions.
        self.event: tuple[Reason, str] | None = None

    @property
    def total(self) -> int:
        return self.spec.serving.replicas

    # ---- the whole decision ----------------------------------------------------

    def run(self) -> RolloutDecision:
        self.handle_rollback()
        if self.st.get("switch"):
            self.progress_switch()
        elif self.st.get("stableRevision") is None:
            self.start_first_revision()
        else:
            self.follow_spec()
            if self.st.get("canaryRevision") is not None:
                self.progress_canary()
            else:
                self.guard()

        body = self.inputs.body
        self.st["observedGeneration"] = int(body["metadata"].get("generation") or 1)
        self.st["lastGoodRevision"] = last_good(self.history, self.st.get("stableRevision"))
        self.st["service"] = body["metadata"]["name"]
        stable = self.st.get("stableRevision")
        self.st["readyReplicas"] = self.observed.ready_pods(stable) if stable is not None else 0
        keep = {value for value in (stable, self.st.get("canaryRevision"), self.st.get("lastGoodRevision")) if value}
        switch = self.st.get("switch") or {}
        if switch:
            keep.add(switch["toRevision"])
        self.st["history"] = trim(self.history, self.spec.history_limit, keep)
        apply_conditions(self)
        self.decision.actions = plan_children(
            body, self.spec, self.desired_revisions(), self.observed, self.inputs.config
        )
        return self.decision

    def desired_revisions(self) -> list[DesiredRevision]:
        """Return the revisions that should have a Deployment, with their replicas and role."""
        stable = self.st.get("stableRevision")
        canary = self.st.get("canaryRevision")
        switch = self.st.get("switch")
        result: list[DesiredRevision] = []
        if switch:
            target = int(switch["toRevision"])
            template = self.template(target)
            if template is not None:
                result.append(DesiredRevision(target, template, self.total, STABLE))
            old = self.observed.revision_deployment(stable) if stable is not None and stable != target else None
            old_template = self.template(stable) if old is not None else None
            if old is not None and old_template is not None and stable is not None:
                # The old stable revision keeps serving with its pods until the new one is ready.
                result.append(DesiredRevision(stable, old_template, max(old.replicas, 1), STABLE))
            return result
        if stable is None:
            return result
        stable_template = self.template(stable)
        if canary is not None:
            weight = int(self.st.get("canaryWeight") or 0)
            stable_replicas, canary_replicas = split_replicas(self.total, weight)
            canary_template = self.template(canary)
            if canary_template is not None:
                result.append(DesiredRevision(canary, canary_template, canary_replicas, CANARY))
        else:
            stable_replicas = self.total
        if stable_template is not None:
            result.insert(0, DesiredRevision(stable, stable_template, stable_replicas, STABLE))
        return result

    def template(self, revision: int | None) -> RevisionTemplate | None:
        record = find(self.history, revision)
        return template_from_record(record, self.spec) if record is not None else None

    def log(self, level: int, message: str) -> None:
        self.decision.notes.append(note(level, message))

    def window(self, target: Target, revision: int) -> MeasureRequest:
        """Start a measuring window now and ask the handler for its baseline."""
        request = MeasureRequest(target, revision, self.stamp)
        self.decision.baselines.append(request)
        return request

    def measured(self, target: Target, revision: int, window_started_at: str) -> dict[str, Any] | None:
        """Return the judged analysis of the window, or None after asking the handler to measure."""
        measurement = self.inputs.measurement
        request = MeasureRequest(target, revision, window_started_at)
        if measurement is None or measurement.request != request:
            self.decision.measure = request
            return None
        record = find(self.history, revision) or {}
        shadowing = bool(record.get("shadowing")) and self.spec.teacher is not None
        result = judge(measurement, self.spec.rollout.analysis, shadowing, self.stamp)
        self.st["lastAnalysis"] = result
        self.decision.analysis = (target, result["verdict"])
        return result

    def due(self, value: str | None) -> bool:
        moment = parse_time(value)
        return moment is None or self.now >= moment

    def later(self, seconds: float) -> str:
        return rfc3339(self.now + timedelta(seconds=seconds))

    # ---- rollback requests -----------------------------------------------------------

    def handle_rollback(self) -> None:
        request = self.inputs.rollback
        handled = self.st.get("rollback") or {}
        if request is None or handled.get("id") == request.id:
            return
        stable = self.st.get("stableRevision")
        target = request.to_revision or last_good(self.history, stable)
        record = find(self.history, target)
        known = ", ".join(str(item["revision"]) for item in self.history) or "none"
        problem = None
        if target is None:
            problem = "there is no earlier good revision to roll back to; pass --to-revision"
        elif record is None:
            problem = f"revision {target} is not in status.history (known revisions: {known})"
        elif not record.get("artifact"):
            problem = f"revision {target} has no artifact recorded, so it cannot be served again"
        if problem is not None:
            self.st["rollback"] = {"id": request.id, "toRevision": target, "handledAt": self.stamp,
                                   "result": "Rejected", "message": f"Rejected the rollback request: {problem}."}
            self.log(WARNING, f"Rejected rollback request {request.id}: {problem}.")
            return
        assert target is not None and record is not None

        self.abort_canary(f"Aborted by rollback request {request.id}.", Reason.ROLLED_BACK)
        switch = self.st.get("switch")
        if switch and switch["toRevision"] != target:
            self.cancel_switch(f"Cancelled by rollback request {request.id}.")
        self.st["heldSpecHash"] = self.desired_hash
        if target == self.st.get("stableRevision"):
            message = f"Revision {target} is already stable; it stays pinned until the spec changes."
            self.st["rollback"] = {"id": request.id, "toRevision": target, "handledAt": self.stamp,
                                   "result": "Succeeded", "message": message}
            self.event = (Reason.ROLLED_BACK, f"Rolled back to revision {target} by request {request.id}.")
            self.log(INFO, f"Handled rollback request {request.id}: {message}")
            return
        old = find(self.history, stable)
        if old is not None:
            old.update(state="RolledBack", reason=Reason.ROLLED_BACK.value,
                       message=f"Rolled back to revision {target} by request {request.id}.")
        self.st["switch"] = {"toRevision": target, "reason": "Rollback", "startedAt": self.stamp}
        self.st["rollback"] = {"id": request.id, "toRevision": target, "handledAt": self.stamp,
                               "result": "InProgress",
                               "message": f"Starting the pods of revision {target}."}
        self.event = (Reason.ROLLING_BACK, f"Rolling back from revision {stable} to revision {target}.")
        self.log(WARNING, f"Rolling back StudentModel from revision {stable} to revision {target} "
                          f"(request {request.id}).")

    def cancel_switch(self, message: str) -> None:
        switch = self.st.pop("switch", None) or {}
        record = find(self.history, switch.get("toRevision"))
        if record is not None and record.get("state") in ("Canary", "Deploying"):
            record.update(state="Aborted", endedAt=self.stamp, reason=Reason.CANARY_ABORTED.value, message=message)
        self.st["switch"] = None

    # ---- switching the stable revision --------------------------------------------

    def progress_switch(self) -> None:
        switch = self.st["switch"]
        target = int(switch["toRevision"])
        # NOTE: a switch has no deadline. When the target's pods never become ready
        # (say, its artifact folder was deleted), the old stable pods keep serving
        # and the switch waits until the spec changes or another rollback is requested.
        if self.observed.ready_pods(target) < self.total:
            return
        old = self.st.get("stableRevision")
        record = find(self.history, target)
        reason = switch["reason"]
        self.st.update(stableRevision=target, switch=None)
        self.clear_canary()
        self.st["guard"] = None
        if record is not None:
            record.update(state="Stable", endedAt=None)
            if reason == "Promotion":
                record["promotedAt"] = self.stamp
        previous = find(self.history, old) if old != target else None
        if previous is not None:
            previous["endedAt"] = self.stamp
            if previous.get("state") == "Stable":
                previous.update(state="Superseded", reason="Superseded",
                                message=f"Replaced by revision {target}.")
        if reason == "Promotion":
            self.decision.promoted = old is not None
            first = old is None
            if record is not None:
                record.update(reason="FirstRevision" if first else Reason.CANARY_PROMOTED.value,
                              message=record.get("message") or ("The first revision is stable without analysis."
                                                                if first else "Passed every rollout step."))
            text = (f"Revision {target} is stable." if first else
                    f"Promoted revision {target} to stable; revision {old} was removed.")
            self.event = (Reason.STABLE_AVAILABLE if first else Reason.CANARY_PROMOTED, text)
            self.log(INFO, text.replace("Revision", "StudentModel revision", 1) if first else text)
        elif reason == "GuardRevert":
            text = f"Reverted to revision {target}: the guard failed on revision {old}."
            self.event = (Reason.GUARD_REVERTED, text)
            self.log(WARNING, f"Completed the revert to revision {target}; revision {old} was removed.")
        else:
            rollback = self.st.get("rollback") or {}
            text = f"Rolled back to revision {target} (request {rollback.get('id')})."
            rollback.update(result="Succeeded", message=f"{text} It stays stable until the spec changes.")
            self.st["rollback"] = rollback
            self.event = (Reason.ROLLED_BACK, text)
            self.log(INFO, f"Completed the rollback to revision {target}; revision {old} was removed.")

    def start_first_revision(self) -> None:
        revision = int(self.st.get("latestRevision") or 0) + 1
        self.history.append(new_record(revision, self.desired, "Deploying", self.stamp))
        self.st.update(latestRevision=revision,
                       switch={"toRevision": revision, "reason": "Promotion", "startedAt": self.stamp})
        self.event = (Reason.REVISION_DEPLOYING, f"Starting revision {revision}.")
        self.log(INFO, f"Created revision {revision} of StudentModel with artifact "
                       f"{self.desired.artifact.pvc}:{self.desired.artifact.path}; it becomes stable when ready.")

    # ---- following the spec -------------------------------------------------------

    def follow_spec(self) -> None:
        stable_record = find(self.history, self.st.get("stableRevision")) or {}
        canary = self.st.get("canaryRevision")
        canary_record = find(self.history, canary) or {}
        if self.desired_hash == stable_record.get("specHash"):
            self.st["heldSpecHash"] = None
            self.abort_canary("The spec returned to the stable revision.", Reason.CANARY_ABORTED)
            return
        if self.desired_hash == self.st.get("heldSpecHash"):
            return
        if canary is not None and canary_record.get("specHash") == self.desired_hash:
            return
        revision = int(self.st.get("latestRevision") or 0) + 1
        self.abort_canary(f"Replaced by revision {revision} after a spec change.", Reason.CANARY_ABORTED)
        self.history.append(new_record(revision, self.desired, "Canary", self.stamp))
        self.st.update(latestRevision=revision, canaryRevision=revision, heldSpecHash=None)
        self.start_step(0)
        self.log(INFO, f"Started the canary of revision {revision} (artifact {self.desired.artifact.pvc}:"
                       f"{self.desired.artifact.path}) against stable revision {self.st.get('stableRevision')}.")

    def start_step(self, index: int) -> None:
        self.st.update(currentStep=index, canaryWeight=self.spec.rollout.steps[index].weight,
                       stepStartedAt=None, windowStartedAt=None, nextAnalysisAt=None)
        if index == 0:
            self.st["analysisFailures"] = 0

    def clear_canary(self) -> None:
        for key in ("canaryRevision", "canaryWeight", "currentStep", "stepStartedAt", "windowStartedAt",
                    "nextAnalysisAt", "analysisFailures"):
            self.st[key] = None

    def abort_canary(self, message: str, reason: Reason) -> None:
        canary = self.st.get("canaryRevision")
        if canary is None:
            return
        record = find(self.history, canary)
        if record is not None:
            record.update(state="Aborted", endedAt=self.stamp, reason=reason.value, message=message)
        self.clear_canary()
        self.log(INFO, f"Aborted the canary of revision {canary}: {message}")

    # ---- canary steps -------------------------------------------------------------

    def progress_canary(self) -> None:
        canary = int(self.st["canaryRevision"])
        stable = int(self.st["stableRevision"])
        steps = self.spec.rollout.steps
        index = min(int(self.st.get("currentStep") or 0), len(steps) - 1)
        step = steps[index]
        if self.st.get("canaryWeight") != step.weight:
            self.st["canaryWeight"] = step.weight
        stable_replicas, canary_replicas = split_replicas(self.total, step.weight)

        if self.st.get("stepStartedAt") is None:
            ready = (self.observed.ready_pods(canary) >= canary_replicas
                     and self.observed.ready_pods(stable) >= stable_replicas)
            if ready:
                self.st.update(stepStartedAt=self.stamp, nextAnalysisAt=self.later(step.pause_seconds))
                self.st["windowStartedAt"] = self.window("canary", canary).window_started_at
                self.log(INFO, f"Canary revision {canary} serves {step.weight}% of the pods "
                               f"(step {index + 1} of {len(steps)}); analysing in {step.pause_seconds} s.")
            return
        if not self.due(self.st.get("nextAnalysisAt")):
            return
        window_start = str(self.st.get("windowStartedAt") or self.st["stepStartedAt"])
        result = self.measured("canary", canary, window_start)
        if result is None:
            return

        analysis = self.spec.rollout.analysis
        if result["verdict"] == "Inconclusive":
            started = parse_time(window_start) or self.now
            waited = (self.now - started).total_seconds()
            if waited < step.pause_seconds + analysis.sample_timeout_seconds:
                self.st["nextAnalysisAt"] = self.later(analysis.interval_seconds)
                return
            result.update(verdict="Failed", message=f"{result['message']} The sample timeout of "
                                                    f"{analysis.sample_timeout_seconds} s ran out.")
            self.decision.analysis = ("canary", "Failed")

        record = find(self.history, canary)
        if result["verdict"] == "Passed":
            if record is not None:
                record["metrics"] = result
            if index + 1 < len(steps):
                self.start_step(index + 1)
                self.log(INFO, f"Canary revision {canary} passed step {index + 1} of {len(steps)}: "
                               f"{result['message']}")
            else:
                self.st["switch"] = {"toRevision": canary, "reason": "Promotion", "startedAt": self.stamp}
                if record is not None:
                    record["message"] = f"Passed all {len(steps)} rollout steps: {result['message']}"
                self.log(INFO, f"Canary revision {canary} passed all {len(steps)} steps; promoting it.")
            return

        failures = int(self.st.get("analysisFailures") or 0) + 1
        self.st["analysisFailures"] = failures
        if failures < analysis.failure_limit:
            self.st["windowStartedAt"] = self.window("canary", canary).window_started_at
            self.st["nextAnalysisAt"] = self.later(analysis.interval_seconds)
            self.log(WARNING, f"Canary analysis of revision {canary} failed ({failures} of "
                              f"{analysis.failure_limit} allowed): {result['message']}")
            return
        self.revert_canary(canary, stable, result)

    def revert_canary(self, canary: int, stable: int, result: dict[str, Any]) -> None:
        record = find(self.history, canary)
        message = f"Canary analysis failed: {result['message']}"
        if record is not None:
            record.update(state="Reverted", endedAt=self.stamp, reason=Reason.CANARY_REVERTED.value,
                          message=message, metrics=result)
            self.st["heldSpecHash"] = record.get("specHash")
        self.clear_canary()
        self.decision.reverted = True
        self.event = (Reason.CANARY_REVERTED, f"Reverted canary revision {canary}; stable revision {stable} "
                                              f"serves. {message}")
        self.log(WARNING, f"Reverted canary revision {canary} to stable revision {stable}: {result['message']}")

    # ---- guard -----------------------------------------------------------------------

    def guard(self) -> None:
        settings = self.spec.guard
        stable = int(self.st["stableRevision"])
        if not settings.enabled:
            self.st["guard"] = None
            return
        state = dict(self.st.get("guard") or {"consecutiveFailures": 0})
        self.st["guard"] = state
        if self.observed.ready_pods(stable) < 1:
            return
        if not state.get("windowStartedAt"):
            state["windowStartedAt"] = self.window("stable", stable).window_started_at
            state["nextCheckAt"] = self.later(settings.interval_seconds)
            return
        if not self.due(state.get("nextCheckAt")):
            return
        result = self.measured("stable", stable, str(state["windowStartedAt"]))
        if result is None:
            return
        state["nextCheckAt"] = self.later(settings.interval_seconds)
        if result["verdict"] == "Inconclusive":
            return  # the window keeps growing until it has enough samples
        state["windowStartedAt"] = self.window("stable", stable).window_started_at
        if result["verdict"] == "Passed":
            state["consecutiveFailures"] = 0
            return
        failures = int(state.get("consecutiveFailures") or 0) + 1
        state["consecutiveFailures"] = failures
        if failures < settings.failing_intervals:
            self.log(WARNING, f"Guard check of stable revision {stable} failed ({failures} of "
                              f"{settings.failing_intervals} in a row): {result['message']}")
            return
        self.guard_revert(stable, result)

    def guard_revert(self, stable: int, result: dict[str, Any]) -> None:
        failing = self.spec.guard.failing_intervals
        target = last_good(self.history, stable)
        if target is None:
            failures = int((self.st.get("guard") or {}).get("consecutiveFailures") or 0)
            self.event = (Reason.GUARD_FAILING, f"Stable revision {stable} failed {failures} guard checks in a row "
                                                f"and there is no good revision to revert to: {result['message']}")
            # Warn when the limit is reached and then once per further limit's worth of failures.
            if failures % failing == 0:
                self.log(WARNING, f"Guard failed {failures} checks in a row on stable revision {stable} and there "
                                  f"is no good revision to revert to: {result['message']}")
            return
        record = find(self.history, stable)
        message = f"Guard failed {failing} checks in a row: {result['message']}"
        if record is not None:
            record.update(state="Reverted", reason=Reason.GUARD_REVERTED.value, message=message, metrics=result)
            self.st["heldSpecHash"] = record.get("specHash")
        self.st["switch"] = {"toRevision": target, "reason": "GuardRevert", "startedAt": self.stamp}
        self.st["guard"] = None
        self.decision.guard_reverted = True
        self.event = (Reason.GUARD_REVERTED, f"Reverting from revision {stable} to revision {target}. {message}")
        self.log(WARNING, f"Reverting stable revision {stable} to last good revision {target}: {result['message']}")
