"""The mangakd operator: reconciles DistillationRun resources into Jobs, status and StudentModels.

Run it with ``python -m mangakd_operator`` or ``mangakd operator``. The
modules split the work as follows: :mod:`.config` reads settings from the
environment, :mod:`.names` and :mod:`.manifests` build child objects,
:mod:`.observe` and :mod:`.results` read Jobs, Pods and termination
messages, :mod:`.reconcile` and :mod:`.phases` decide what to do and
:mod:`.decision` contains their result (no kopf, no API calls), :mod:`.kube`
talks to the API server, :mod:`.metrics` exports Prometheus metrics and
:mod:`.handlers` and :mod:`.run` wire it all into kopf.
"""

from mangakd import __version__

__all__ = ["__version__"]
