"""The operator's thin layer over the official ``kubernetes`` client.

One :class:`KubeApi` is created at start-up and kept in kopf's memo. It
reads and writes plain dicts (``_preload_content=False``), so the
reconcile logic reads exactly the JSON the API server sent. Errors are
classified here once: :class:`TransientApiError` is worth a retry,
:class:`RejectedError` (HTTP 400 and 422) is not, because the object built
from the spec is invalid.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from mangakd.spec import API_GROUP, API_VERSION

from .names import run_selector
from .observe import Observed, observe_job
from .reconcile import Action

log = logging.getLogger(__name__)

RUNS = "distillationruns"
STUDENT_MODELS = "studentmodels"
MERGE_PATCH = "application/merge-patch+json"


class TransientApiError(RuntimeError):
    """An API call failed in a way a later retry may fix (5xx, 409 Conflict, 429, 403, network)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class RejectedError(ValueError):
    """The API server rejected an object as invalid (HTTP 400 or 422); retrying cannot help."""


def _api_message(error: ApiException) -> str:
    try:
        body = json.loads(error.body or "")
    except (TypeError, ValueError):
        return f"{error.status} {error.reason}"
    return (
        str(body.get("message") or f"{error.status} {error.reason}") if isinstance(body, dict) else str(body)
    )


def _classify(error: Exception, operation: str) -> Exception:
    """Turn a client error into TransientApiError or RejectedError whose message starts with ``operation``."""
    if isinstance(error, ApiException):
        message = f"{operation} failed: HTTP {error.status}: {_api_message(error)}"
        if error.status in (400, 422):
            return RejectedError(message)
        reason = {403: "Forbidden", 404: "NotFound", 409: "Conflict", 429: "TooManyRequests"}.get(
            error.status or 0, "ServerError" if (error.status or 0) >= 500 else f"HTTP{error.status}"
        )
        return TransientApiError(message, reason)
    return TransientApiError(f"{operation} failed: {error}", "Connection")


def _json(response: Any) -> Any:
    return json.loads(response.data or b"null")


def _as_body(manifest: dict[str, Any]) -> Any:
    """Pass a plain dict where the client's signature names a model class; it sends dicts as they are."""
    return manifest


class KubeApi:
    """Reads and writes the objects of DistillationRuns; every method takes a namespace."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self.api_client = api_client
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    @classmethod
    def connect(cls) -> KubeApi:
        """Connect with the in-cluster ServiceAccount, or else the kubeconfig (``KUBECONFIG``)."""
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except ConfigException:
            # Read KUBECONFIG now: the client's default is fixed when it is imported.
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG"), client_configuration=configuration
            )
        return cls(client.ApiClient(configuration))

    def close(self) -> None:
        """Close the connection pool."""
        self.api_client.close()  # type: ignore[no-untyped-call]

    # ---- reading -------------------------------------------------------------

    def get_run(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the DistillationRun, or None when it no longer exists."""
        try:
            run: dict[str, Any] | None = _json(
                self.custom.get_namespaced_custom_object(
                    API_GROUP, API_VERSION, namespace, RUNS, name, _preload_content=False
                )
            )
            return run
        except ApiException as error:
            if error.status == 404:
                return None
            raise _classify(error, f"Reading DistillationRun {namespace}/{name}") from error
        except urllib3.exceptions.HTTPError as error:
            raise _classify(error, f"Reading DistillationRun {namespace}/{name}") from error

    def observe(self, namespace: str, run_name: str) -> Observed:
        """Read the run's Jobs (with their Pods), ConfigMaps and StudentModel."""
        selector = run_selector(run_name)
        operation = f"Listing the children of DistillationRun {namespace}/{run_name}"
        try:
            jobs = _json(
                self.batch.list_namespaced_job(namespace, label_selector=selector, _preload_content=False)
            )
            pods = _json(
                self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
            )
            maps = _json(
                self.core.list_namespaced_config_map(
                    namespace, label_selector=selector, _preload_content=False
                )
            )
            student = self._exists_student_model(namespace, run_name)
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            raise _classify(error, operation) from error
        pod_items = pods.get("items") or []
        observed_jobs = {
            job["metadata"]["name"]: observe_job(job, pod_items) for job in jobs.get("items") or []
        }
        map_names = frozenset(item["metadata"]["name"] for item in maps.get("items") or [])
        return Observed(jobs=observed_jobs, config_maps=map_names, student_model=student)

    def _exists_student_model(self, namespace: str, name: str) -> bool:
        try:
            self.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, STUDENT_MODELS, name, _preload_content=False
            )
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    # ---- writing -------------------------------------------------------------

    def apply_action(self, namespace: str, action: Action) -> bool:
        """Apply one action; return False when it found the object already created or already gone.

        Raises
        ------
        TransientApiError, RejectedError
        """
        operation = f"{action.verb.capitalize()} {action.kind} {namespace}/{action.name}"
        try:
            if action.verb == "delete":
                return self._delete(namespace, action.kind, action.name)
            assert action.manifest is not None
            return self._create(namespace, action)
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            raise _classify(error, operation) from error

    def _create(self, namespace: str, action: Action) -> bool:
        manifest = action.manifest
        assert manifest is not None
        try:
            if action.kind == "Job":
                self.batch.create_namespaced_job(namespace, _as_body(manifest), _preload_content=False)
            elif action.kind == "ConfigMap":
                self.core.create_namespaced_config_map(namespace, _as_body(manifest), _preload_content=False)
            else:
                self.custom.create_namespaced_custom_object(
                    API_GROUP, API_VERSION, namespace, STUDENT_MODELS, manifest, _preload_content=False
                )
        except ApiException as error:
            if error.status != 409:
                raise
            # The name is deterministic, so an existing object is the one a
            # previous operator process created for the same generation.
            if action.verb == "apply":
                patch = {
                    "metadata": {
                        "labels": manifest["metadata"]["labels"],
                        "annotations": manifest["metadata"]["annotations"],
                    },
                    "spec": manifest["spec"],
                }
                self.custom.patch_namespaced_custom_object(
                    API_GROUP,
                    API_VERSION,
                    namespace,
                    STUDENT_MODELS,
                    action.name,
                    patch,
                    _preload_content=False,
                )
                return True
            return False
        return True

    def _delete(self, namespace: str, kind: str, name: str) -> bool:
        try:
            if kind == "Job":
                # Background propagation deletes the Job's pods too, which stops them.
                self.batch.delete_namespaced_job(
                    name, namespace, propagation_policy="Background", _preload_content=False
                )
            elif kind == "ConfigMap":
                self.core.delete_namespaced_config_map(name, namespace, _preload_content=False)
            else:
                self.custom.delete_namespaced_custom_object(
                    API_GROUP, API_VERSION, namespace, STUDENT_MODELS, name, _preload_content=False
                )
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def patch_run_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the run's status subresource."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                API_GROUP,
                API_VERSION,
                namespace,
                RUNS,
                name,
                {"status": patch},
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            raise _classify(error, f"Writing the status of DistillationRun {namespace}/{name}") from error

    def delete_children(self, namespace: str, run_name: str) -> list[str]:
        """Delete every Job and ConfigMap of the run (any generation); return what was deleted."""
        selector = run_selector(run_name)
        deleted = []
        try:
            jobs = _json(
                self.batch.list_namespaced_job(namespace, label_selector=selector, _preload_content=False)
            )
            maps = _json(
                self.core.list_namespaced_config_map(
                    namespace, label_selector=selector, _preload_content=False
                )
            )
            for kind, items in (("Job", jobs.get("items") or []), ("ConfigMap", maps.get("items") or [])):
                for item in items:
                    if self._delete(namespace, kind, item["metadata"]["name"]):
                        deleted.append(f"{kind} {item['metadata']['name']}")
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            raise _classify(
                error, f"Deleting the children of DistillationRun {namespace}/{run_name}"
            ) from error
        return deleted
