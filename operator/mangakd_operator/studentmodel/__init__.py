"""StudentModel reconciliation: serving, canary rollout, analysis, guard, revisions and rollback.

:mod:`.names` and :mod:`.manifests` build the child objects, :mod:`.observe`
summarises what the API server returned, :mod:`.revisions`,
:mod:`.analysis` and :mod:`.rollout` decide (pure code, no kopf and no API
calls), :mod:`.measure` scrapes the pods or queries Prometheus, :mod:`.kube`
talks to the API server and :mod:`.handlers` wires it into kopf.
"""
