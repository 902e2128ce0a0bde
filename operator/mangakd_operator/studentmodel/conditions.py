"""Phase and conditions of a StudentModel, derived from its status at the end of a decision.

| phase | when | Ready |
|---|---|---|
| Pending | the first revision's pods are starting | False, RevisionDeploying |
| Progressing | a canary runs, or the stable revision is being switched | True while stable pods serve |
| Stable | the spec's revision is stable and all its pods are ready | True, StableAvailable |
| Reverted | the spec's revision was reverted or rolled back and is held | False, CanaryReverted, GuardReverted or RolledBack |
| Degraded | stable pods are missing, or the guard fails with nothing to revert to | False, StableUnavailable or GuardFailing |

The ``Progressing`` condition is True during a canary or a switch, and
otherwise False with the reason of the last transition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mangakd.status import Reason, get_condition, set_condition

from .revisions import find

if TYPE_CHECKING:
    from .steps import Machine

HELD_REASONS = {Reason.CANARY_REVERTED.value, Reason.GUARD_REVERTED.value, Reason.ROLLED_BACK.value}
SWITCH_REASONS = {"Promotion": Reason.CANARY_PROGRESSING, "GuardRevert": Reason.GUARD_REVERTED,
                  "Rollback": Reason.ROLLING_BACK}


def apply_conditions(machine: Machine) -> None:
    """Set ``phase``, ``Ready`` and ``Progressing`` in the machine's status."""
    st = machine.st
    generation = st.get("observedGeneration")
    conditions: list[dict[str, Any]] = list(st.get("conditions") or [])
    stable = st.get("stableRevision")
    canary = st.get("canaryRevision")
    switch = st.get("switch")
    total = machine.total
    ready = int(st.get("readyReplicas") or 0)
    event = machine.event

    progressing: tuple[str, Reason, str] | None = None
    ready_condition: tuple[str, Reason | str, str] | None
    if stable is None:
        target = (switch or {}).get("toRevision")
        phase = "Pending"
        ready_condition = ("False", Reason.REVISION_DEPLOYING,
                           f"Waiting for the pods of revision {target}: "
                           f"{machine.observed.ready_pods(target) if target else 0} of {total} ready.")
        progressing = ("True", Reason.REVISION_DEPLOYING, f"Starting revision {target}.")
    elif switch:
        target = int(switch["toRevision"])
        phase = "Progressing"
        ready_condition = _serving(stable, ready, total)
        text = (f"Switching the stable revision from {stable} to {target} ({switch['reason']}): "
                f"{machine.observed.ready_pods(target)} of {total} pods of revision {target} ready.")
        progressing = ("True", SWITCH_REASONS[switch["reason"]], text)
    elif canary is not None:
        phase = "Progressing"
        ready_condition = _serving(stable, ready, total)
        steps = machine.spec.rollout.steps
        index = int(st.get("currentStep") or 0)
        stage = "analysing" if st.get("stepStartedAt") else "waiting for its pods"
        text = (f"Canary revision {canary} at step {index + 1} of {len(steps)} "
                f"({st.get('canaryWeight')}% of the pods), {stage}.")
        progressing = ("True", Reason.CANARY_PROGRESSING, text)
    else:
        ready_condition, phase = _settled(machine, stable, ready, total, conditions)

    if event is not None and progressing is None:
        progressing = ("False", event[0], event[1])
    if progressing is None:
        previous = get_condition(conditions, "Progressing")
        if previous is None or previous.get("status") == "True":
            progressing = ("False", Reason.STABLE_AVAILABLE, f"Revision {stable} is stable.")
    if progressing is not None:
        conditions = set_condition(conditions, "Progressing", progressing[0], progressing[1], progressing[2],
                                   generation)
    if ready_condition is not None:
        conditions = set_condition(conditions, "Ready", ready_condition[0], ready_condition[1], ready_condition[2],
                                   generation)
    st["conditions"] = conditions
    st["phase"] = phase


def _serving(stable: int, ready: int, total: int) -> tuple[str, Reason, str]:
    if ready == 0:
        return "False", Reason.STABLE_UNAVAILABLE, f"No pod of stable revision {stable} is ready."
    return "True", Reason.STABLE_AVAILABLE, f"Stable revision {stable} serves with {ready} of {total} pods ready."


def _settled(
    machine: Machine, stable: int, ready: int, total: int, conditions: list[dict[str, Any]]
) -> tuple[tuple[str, Reason | str, str] | None, str]:
    st = machine.st
    event = machine.event
    stable_record = find(machine.history, stable) or {}
    held = st.get("heldSpecHash")
    if held and held != stable_record.get("specHash"):
        if event is not None and event[0].value in HELD_REASONS:
            return ("False", event[0], event[1]), "Reverted"
        previous = get_condition(conditions, "Ready") or {}
        if previous.get("status") == "False" and previous.get("reason") in HELD_REASONS:
            return None, "Reverted"  # keep the message of the revert
        return ("False", Reason.ROLLED_BACK,
                f"Stable revision {stable} serves; the spec's revision is held after a revert or rollback. "
                "Change spec.artifact to roll out a new revision."), "Reverted"

    guard = st.get("guard") or {}
    if machine.spec.guard.enabled and int(guard.get("consecutiveFailures") or 0) >= machine.spec.guard.failing_intervals:
        message = event[1] if event is not None and event[0] is Reason.GUARD_FAILING else (
            f"Stable revision {stable} fails its guard checks and there is no good revision to revert to.")
        return ("False", Reason.GUARD_FAILING, message), "Degraded"
    if ready < total:
        return ("False", Reason.STABLE_UNAVAILABLE,
                f"{ready} of {total} pods of stable revision {stable} are ready."), "Degraded"
    if event is not None and event[0] in (Reason.CANARY_PROMOTED, Reason.STABLE_AVAILABLE):
        return ("True", event[0], event[1]), "Stable"
    return ("True", Reason.STABLE_AVAILABLE, f"Stable revision {stable} serves with {ready} of {total} pods ready."), \
        "Stable"
