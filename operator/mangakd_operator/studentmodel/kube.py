"""The operator's API calls for StudentModels: read the model and its children, apply actions, write status.

Errors are classified as in :mod:`..kube`: :class:`..kube.TransientApiError`
is worth a retry, :class:`..kube.RejectedError` (HTTP 400 and 422) is not.
"""

from __future__ import annotations

from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from mangakd.spec import API_GROUP, API_VERSION

from ..kube import MERGE_PATCH, STUDENT_MODELS, KubeApi, _as_body, _classify, _json
from .children import ChildAction
from .names import model_selector
from .observe import ModelObserved, observe_model


class StudentModelApi:
    """Reads and writes one namespace's StudentModels and their Deployments, Services and Pods."""

    def __init__(self, kube: KubeApi) -> None:
        self.custom = kube.custom
        self.core = kube.core
        self.apps = client.AppsV1Api(kube.api_client)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Return the StudentModel, or None when it no longer exists."""
        try:
            model: dict[str, Any] | None = _json(
                self.custom.get_namespaced_custom_object(
                    API_GROUP, API_VERSION, namespace, STUDENT_MODELS, name, _preload_content=False
                )
            )
            return model
        except ApiException as error:
            if error.status == 404:
                return None
            raise _classify(error, f"Reading StudentModel {namespace}/{name}") from error
        except urllib3.exceptions.HTTPError as error:
            raise _classify(error, f"Reading StudentModel {namespace}/{name}") from error

    def observe(self, namespace: str, name: str) -> ModelObserved:
        """Read the model's Deployments, Services and Pods (selected by the model's label)."""
        selector = model_selector(name)
        try:
            deployments = _json(
                self.apps.list_namespaced_deployment(namespace, label_selector=selector, _preload_content=False)
            )
            services = _json(
                self.core.list_namespaced_service(namespace, label_selector=selector, _preload_content=False)
            )
            pods = _json(self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False))
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            raise _classify(error, f"Listing the children of StudentModel {namespace}/{name}") from error
        return observe_model(
            deployments.get("items") or [], services.get("items") or [], pods.get("items") or []
        )

    def apply(self, namespace: str, action: ChildAction) -> bool:
        """Apply one action; return False when a delete found the object already gone.

        Raises
        ------
        TransientApiError, RejectedError
        """
        verbs = {"apply": "Applying", "scale": "Scaling", "delete": "Deleting"}
        operation = f"{verbs[action.verb]} {action.kind} {namespace}/{action.name}"
        try:
            if action.verb == "delete":
                return self._delete(namespace, action)
            assert action.manifest is not None
            if action.verb == "scale":
                self._scale(namespace, action.manifest)
            else:
                self._apply(namespace, action.kind, action.manifest)
            return True
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            raise _classify(error, operation) from error

    def _apply(self, namespace: str, kind: str, manifest: dict[str, Any]) -> None:
        name = manifest["metadata"]["name"]
        try:
            if kind == "Deployment":
                self.apps.create_namespaced_deployment(namespace, _as_body(manifest), _preload_content=False)
            else:
                self.core.create_namespaced_service(namespace, _as_body(manifest), _preload_content=False)
            return
        except ApiException as error:
            if error.status != 409:
                raise
        # It exists: update labels, annotations and spec. A merge patch replaces
        # lists whole, so the containers end up exactly as in the manifest.
        patch = {
            "metadata": {"labels": manifest["metadata"]["labels"], "annotations": manifest["metadata"]["annotations"]},
            "spec": manifest["spec"],
        }
        if kind == "Deployment":
            self.apps.patch_namespaced_deployment(
                name, namespace, patch, _content_type=MERGE_PATCH, _preload_content=False
            )
        else:
            self.core.patch_namespaced_service(
                name, namespace, patch, _content_type=MERGE_PATCH, _preload_content=False
            )

    def _scale(self, namespace: str, manifest: dict[str, Any]) -> None:
        patch = {"metadata": {"labels": manifest["metadata"]["labels"]}, "spec": {"replicas": manifest["spec"]["replicas"]}}
        self.apps.patch_namespaced_deployment(
            manifest["metadata"]["name"], namespace, patch, _content_type=MERGE_PATCH, _preload_content=False
        )

    def _delete(self, namespace: str, action: ChildAction) -> bool:
        try:
            if action.kind == "Deployment":
                # Background propagation deletes the ReplicaSets and pods too.
                self.apps.delete_namespaced_deployment(
                    action.name, namespace, propagation_policy="Background", _preload_content=False
                )
            else:
                self.core.delete_namespaced_service(action.name, namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """Merge-patch the StudentModel's status subresource."""
        try:
            self.custom.patch_namespaced_custom_object_status(
                API_GROUP,
                API_VERSION,
                namespace,
                STUDENT_MODELS,
                name,
                {"status": patch},
                _content_type=MERGE_PATCH,
                _preload_content=False,
            )
        except (ApiException, urllib3.exceptions.HTTPError) as error:
            raise _classify(error, f"Writing the status of StudentModel {namespace}/{name}") from error
