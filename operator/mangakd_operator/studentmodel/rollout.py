"""The StudentModel rollout state machine: pure code from (spec, status, children, time) to a decision.

One call of :func:`decide` takes the next steps and returns the new status,
the changes to the children and the log lines. It never calls the API and
never reads the clock: the handler passes ``now`` and, when the decision
requests one (``decision.measure``), a :class:`.analysis.Measurement`, and
then calls :func:`decide` again with it. The same inputs give the same
decision, so that second call only adds the verdict.

Order of work in one call:

1. a new rollback request (annotation ``mangakd.io/rollback-request``);
2. a switch of the stable revision in progress (promotion, guard revert,
   rollback, or the first revision): it completes when the new revision's
   pods are all ready, and then the old stable Deployment is deleted;
3. otherwise follow the spec: a spec whose revision is neither stable,
   canary nor held starts a new revision (the first one goes straight to
   stable), and the canary steps or the guard checks advance.

The step logic lives in :mod:`.steps`; this module contains the inputs, the
result and the bookkeeping around them.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mangakd.resources import RollbackRequest, StudentModelSpec

from ..config import OperatorConfig
from ..decision import Note
from .analysis import Measurement, MeasureRequest
from .children import ChildAction
from .observe import ModelObserved


@dataclass(frozen=True)
class RolloutInput:
    """Everything :func:`decide` reads.

    Attributes
    ----------
    body : mapping
        The StudentModel (metadata with name, namespace, uid and generation; spec; status).
    spec : StudentModelSpec
        The validated spec.
    observed : ModelObserved
        Its Deployments, Services and Pods.
    now : datetime
        The current time (timezone-aware).
    config : OperatorConfig
        Images and other operator settings used in the manifests.
    rollback : RollbackRequest or None
        The request in the rollback annotation, if any; one already handled (same id) is ignored.
    measurement : Measurement or None
        The live metrics that the previous call asked for.
    """

    body: Mapping[str, Any]
    spec: StudentModelSpec
    observed: ModelObserved
    now: datetime
    config: OperatorConfig
    rollback: RollbackRequest | None = None
    measurement: Measurement | None = None


@dataclass
class RolloutDecision:
    """The result of one :func:`decide` call.

    Attributes
    ----------
    status : dict
        The complete new ``status`` (camelCase keys).
    actions : list of ChildAction
        Changes to the Deployments and Services, in order.
    notes : list of Note
        Log lines (INFO and above become Events; reverts are Warnings).
    measure : MeasureRequest or None
        Live metrics needed before the analysis due now can be judged.
    baselines : list of MeasureRequest
        Windows that start now: scrape the pods after applying the decision.
    promoted, reverted, guard_reverted : bool
        Whether this decision completed a promotion, reverted a canary, or started a guard revert.
    analysis : tuple of (str, str) or None
        ``(target, verdict)`` of the analysis judged in this decision.
    """

    status: dict[str, Any]
    actions: list[ChildAction] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    measure: MeasureRequest | None = None
    baselines: list[MeasureRequest] = field(default_factory=list)
    promoted: bool = False
    reverted: bool = False
    guard_reverted: bool = False
    analysis: tuple[str, str] | None = None


def split_replicas(total: int, weight: int) -> tuple[int, int]:
    """Return ``(stable, canary)`` pod counts for a canary weight in percent.

    The canary gets ``weight`` percent of ``total``, rounded half up and at
    least 1. The stable revision keeps at least 1 pod at every weight, so a
    revert never has to wait for stable pods to start.
    """
    canary = max(1, int(total * weight / 100 + 0.5))
    stable = max(1, total - canary)
    return stable, canary


def decide(inputs: RolloutInput) -> RolloutDecision:
    """Decide the next steps of one StudentModel; see the module docstring for the order."""
    # Imported here because steps.py imports this module's records.
    from .steps import Machine

    return Machine(inputs).run()


def initial_status(body: Mapping[str, Any]) -> dict[str, Any]:
    """Return a deep copy of the body's status with ``history`` and ``conditions`` present."""
    status = copy.deepcopy(dict(body.get("status") or {}))
    status.setdefault("history", [])
    status.setdefault("conditions", [])
    return status


def note(level: int, message: str) -> Note:
    """Return a note logged after the actions (the usual case)."""
    return Note(level, message)


WARNING = logging.WARNING
INFO = logging.INFO
