"""The verbs of the Kubernetes API (get, list, create, update, patch, delete) over the store.

This layer applies what kube-apiserver does between a request and etcd:
metadata (uid, generation, creationTimestamp, generateName), optimistic
concurrency on resourceVersion, the split between an object and its status
subresource, CRD schema pruning, defaulting and validation, defaults of
built-in kinds, finalizers and deletionTimestamp, and the namespace lifecycle
checks. Garbage collection and namespace cleanup run in :mod:`.gc`.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from . import builtins, crds, errors, patch as patches, schema
from .meta import format_time, generate_name, metadata, name_causes
from .registry import Registry, ResourceType
from .store import Store

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_SERVER_OWNED_METADATA = ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation", "generateName", "selfLink")


class ClusterApi:
    """Kubernetes API semantics over a :class:`Store` and a :class:`Registry`."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry

    # ---- reads -------------------------------------------------------------

    def to_client(self, resource_type: ResourceType, stored: dict[str, Any]) -> dict[str, Any]:
        """Return the stored object as ``resource_type``'s version presents it."""
        obj = builtins.event_from_storage(resource_type, stored)
        obj["apiVersion"] = resource_type.api_version
        obj["kind"] = resource_type.kind
        return obj

    def get(self, resource_type: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        stored = self.store.get(resource_type.storage_key, namespace if resource_type.namespaced else "", name)
        if stored is None:
            raise errors.not_found(resource_type.plural, resource_type.group, name)
        return self.to_client(resource_type, stored)

    def list(self, resource_type: ResourceType, namespace: str | None) -> list[dict[str, Any]]:
        """Return the objects of a namespace (all namespaces for ``None``), sorted by namespace and name."""
        scope = namespace if resource_type.namespaced else None
        return [self.to_client(resource_type, obj) for obj in self.store.items(resource_type.storage_key, scope)]

    # ---- writes ------------------------------------------------------------

    def create(self, resource_type: ResourceType, namespace: str, body: Any, *,
               dry_run: bool = False, field_validation: str = "Warn") -> tuple[dict[str, Any], list[str]]:
        """Create an object; return it and the warnings for unknown fields."""
        obj = self._decode(resource_type, body)
        meta = metadata(obj)
        self._check_namespace(resource_type, namespace, meta)

        if not meta.get("name"):
            if not meta.get("generateName"):
                raise errors.invalid(resource_type.kind, resource_type.group, "",
                                     [{"reason": "FieldValueRequired", "field": "metadata.name",
                                       "message": "metadata.name: Required value: name or generateName is required"}])
            meta["name"] = generate_name(meta["generateName"])
        causes = name_causes(meta["name"], dns_label=resource_type.kind == "Namespace")
        if causes:
            raise errors.invalid(resource_type.kind, resource_type.group, meta["name"], causes)
        storage_namespace = meta.get("namespace", "")
        if self.store.get(resource_type.storage_key, storage_namespace, meta["name"]) is not None:
            raise errors.already_exists(resource_type.plural, resource_type.group, meta["name"])

        for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = format_time()
        meta["generation"] = 1
        if resource_type.has_status:
            obj.pop("status", None)

        warnings = self._admit(resource_type, obj, None, field_validation)
        return self._write(resource_type, obj, None, dry_run), warnings

    def update(self, resource_type: ResourceType, namespace: str, name: str, body: Any, *,
               subresource: str | None = None, dry_run: bool = False, field_validation: str = "Warn",
               require_resource_version: bool | None = None) -> tuple[dict[str, Any], list[str]]:
        """Replace an object (PUT), or only its status when ``subresource == "status"``."""
        old = self.get(resource_type, namespace, name)
        new = self._decode(resource_type, body)
        meta = metadata(new)
        if meta.get("name", name) != name:
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")

        requested_version = meta.get("resourceVersion")
        if requested_version and requested_version != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource_type.plural, resource_type.group, name)
        if require_resource_version is None:
            require_resource_version = resource_type.custom and subresource is None
        if not requested_version and require_resource_version:
            raise errors.invalid(resource_type.kind, resource_type.group, name, [{
                "reason": "FieldValueInvalid", "field": "metadata.resourceVersion",
                "message": "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"}])

        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            new = merged
        else:
            for key in _SERVER_OWNED_METADATA:
                if key in old["metadata"]:
                    meta[key] = old["metadata"][key]
                else:
                    meta.pop(key, None)
            if resource_type.has_status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            self._check_finalizers(resource_type, new, old)

        causes = builtins.prepare_update(resource_type, new, old) if not resource_type.custom else []
        if causes:
            raise errors.invalid(resource_type.kind, resource_type.group, name, causes)
        warnings = self._admit(resource_type, new, old, field_validation)
        return self._write(resource_type, new, old, dry_run), warnings

    def patch(self, resource_type: ResourceType, namespace: str, name: str, patch_type: str, body: Any, *,
              subresource: str | None = None, dry_run: bool = False, field_validation: str = "Warn",
              ) -> tuple[dict[str, Any], list[str]]:
        """Apply a merge, JSON, strategic merge or server-side apply patch."""
        if patch_type == STRATEGIC_MERGE_PATCH and resource_type.custom:
            raise errors.ApiError(415, "UnsupportedMediaType",
                                  "the body of the request was in an unknown format - accepted media types include: "
                                  f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH}")
        try:
            old = self.get(resource_type, namespace, name)
        except errors.ApiError as error:
            if patch_type == APPLY_PATCH and error.code == 404 and subresource is None:
                # Server-side apply creates a missing object.
                return self.create(resource_type, namespace, body, dry_run=dry_run, field_validation=field_validation)
            raise

        if patch_type == MERGE_PATCH or (patch_type == APPLY_PATCH and resource_type.custom):
            patched = patches.merge_patch(old, body)
        elif patch_type == JSON_PATCH:
            patched = patches.json_patch(old, body)
        elif patch_type in (STRATEGIC_MERGE_PATCH, APPLY_PATCH):
            # NOTE: server-side apply is a strategic merge here: fields removed from
            # the applied configuration are not removed (no managedFields tracking).
            patched = patches.strategic_merge_patch(old, body)
        else:
            raise errors.unsupported_media_type(patch_type)
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch did not produce an object")

        requested_version = (patched.get("metadata") or {}).get("resourceVersion")
        if requested_version and requested_version != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource_type.plural, resource_type.group, name)
        return self.update(resource_type, namespace, name, patched, subresource=subresource, dry_run=dry_run,
                           field_validation=field_validation, require_resource_version=False)

    def delete(self, resource_type: ResourceType, namespace: str, name: str, *,
               propagation: str | None = None, preconditions: dict[str, Any] | None = None,
               dry_run: bool = False) -> tuple[dict[str, Any], bool]:
        """Delete an object; return its last state and whether it is gone (not waiting on finalizers)."""
        old = self.get(resource_type, namespace, name)
        meta = old["metadata"]
        preconditions = preconditions or {}
        if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
            raise errors.ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: {meta['uid']}")
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta["resourceVersion"]:
            raise errors.ApiError(409, "Conflict", f"Precondition failed: ResourceVersion in precondition: {preconditions['resourceVersion']}, ResourceVersion in object meta: {meta['resourceVersion']}")
        if dry_run:
            return old, False

        if propagation == "Orphan":
            self.orphan_dependents(meta["uid"])
        new = copy.deepcopy(old)
        finalizers = new["metadata"].setdefault("finalizers", [])
        if propagation == "Foreground" and "foregroundDeletion" not in finalizers and self.find_dependents(meta["uid"]):
            finalizers.append("foregroundDeletion")
        if not finalizers:
            del new["metadata"]["finalizers"]
        if resource_type.kind == "Namespace" and resource_type.group == "":
            new["status"] = {"phase": "Terminating"}
        pending = bool(new["metadata"].get("finalizers")) or self._spec_finalizers(resource_type, new)
        if not pending:
            return self._remove(resource_type, new), True
        if meta.get("deletionTimestamp") and new == old:
            return old, False
        new["metadata"].setdefault("deletionTimestamp", format_time())
        new["metadata"].setdefault("deletionGracePeriodSeconds", 0)
        return self._write(resource_type, new, old, False), False

    # ---- helpers -----------------------------------------------------------

    def _decode(self, resource_type: ResourceType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request(f"the request body must be a JSON object of kind {resource_type.kind}")
        api_version = body.get("apiVersion", resource_type.api_version)
        kind = body.get("kind", resource_type.kind)
        if kind != resource_type.kind or api_version != resource_type.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({resource_type.api_version})" if api_version != resource_type.api_version else
                f"the kind in the data ({kind}) does not match the expected kind ({resource_type.kind})")
        obj = copy.deepcopy(body)
        obj["apiVersion"] = resource_type.api_version
        obj["kind"] = resource_type.kind
        return builtins.event_to_storage(resource_type, obj)

    def _check_namespace(self, resource_type: ResourceType, namespace: str, meta: dict[str, Any]) -> None:
        if not resource_type.namespaced:
            meta.pop("namespace", None)
            return
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request("the namespace of the provided object does not match the namespace sent on the request")
        meta["namespace"] = namespace
        namespace_obj = self.store.get(("", "namespaces"), "", namespace)
        if namespace_obj is None:
            raise errors.not_found("namespaces", "", namespace)
        if namespace_obj["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                f'{resource_type.plural} "{meta.get("name") or meta.get("generateName", "")}" is forbidden: '
                f"unable to create new content in namespace {namespace} because it is being terminated")

    def _check_finalizers(self, resource_type: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> None:
        if not old["metadata"].get("deletionTimestamp"):
            return
        added = sorted(set(new["metadata"].get("finalizers") or []) - set(old["metadata"].get("finalizers") or []))
        if added:
            raise errors.invalid(resource_type.kind, resource_type.group, old["metadata"]["name"], [{
                "reason": "FieldValueForbidden", "field": "metadata.finalizers",
                "message": f"metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added}"}])

    def _admit(self, resource_type: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None,
               field_validation: str) -> list[str]:
        """Prune, default and validate; return warnings for unknown fields."""
        name = obj["metadata"]["name"]
        warnings: list[str] = []
        if resource_type.custom and resource_type.schema is not None:
            removed = schema.prune(obj, resource_type.schema)
            if removed and field_validation == "Strict":
                unknown = ", ".join(f'unknown field "{path}"' for path in removed)
                raise errors.bad_request(f'{resource_type.kind} in version "{resource_type.version}" cannot be handled as a '
                                         f"{resource_type.kind}: strict decoding error: {unknown}")
            if field_validation == "Warn":
                warnings = [f'unknown field "{path}"' for path in removed]
            schema.apply_defaults(obj, resource_type.schema)
            causes = schema.validate(obj, resource_type.schema)
        elif old is None:
            causes = builtins.prepare_create(resource_type, obj)
        else:
            causes = []
        if resource_type.kind == "CustomResourceDefinition" and resource_type.group == "apiextensions.k8s.io":
            causes += crds.validate_crd(obj)
            if not causes:
                obj["status"] = crds.crd_status(obj)
        if causes:
            raise errors.invalid(resource_type.kind, resource_type.group, name, causes)
        return warnings

    @staticmethod
    def _spec_finalizers(resource_type: ResourceType, obj: dict[str, Any]) -> bool:
        return resource_type.kind == "Namespace" and bool((obj.get("spec") or {}).get("finalizers"))

    def _write(self, resource_type: ResourceType, new: dict[str, Any], old: dict[str, Any] | None,
               dry_run: bool) -> dict[str, Any]:
        meta = new["metadata"]
        if old is not None:
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            ignored = ("metadata", "status") if resource_type.has_status else ("metadata",)
            spec_new = {key: value for key, value in new.items() if key not in ignored}
            spec_old = {key: value for key, value in old.items() if key not in ignored}
            meta["generation"] = old["metadata"].get("generation", 1) + (spec_new != spec_old)
            if new == old:
                return old  # a no-op write keeps the resourceVersion, as in kube-apiserver
        if dry_run:
            return new
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not self._spec_finalizers(resource_type, new):
            return self._remove(resource_type, new)
        stored = self.store.put(resource_type.storage_key, new)
        if resource_type.kind == "CustomResourceDefinition" and resource_type.group == "apiextensions.k8s.io":
            self._serve_crd(stored)
        return self.to_client(resource_type, stored)

    def _remove(self, resource_type: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        if resource_type.kind == "CustomResourceDefinition" and resource_type.group == "apiextensions.k8s.io":
            storage_key = (obj["spec"]["group"], obj["spec"]["names"]["plural"])
            for custom in list(self.store.items(storage_key)):
                self.store.remove(storage_key, custom["metadata"].get("namespace", ""), custom["metadata"]["name"])
            self.registry.remove_storage(storage_key)
        final = self.store.remove(resource_type.storage_key, meta.get("namespace", ""), meta["name"])
        return self.to_client(resource_type, final if final is not None else obj)

    def _serve_crd(self, crd: dict[str, Any]) -> None:
        storage_key = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        self.registry.remove_storage(storage_key)
        for resource_type in crds.resource_types(crd):
            self.registry.add(resource_type)

    def resource_type_for_storage(self, storage_key: tuple[str, str]) -> ResourceType | None:
        """Return the preferred served type of a storage (core ``events`` for the shared Event storage)."""
        candidates = [rt for rt in self.registry.all() if rt.storage_key == storage_key]
        exact = [rt for rt in candidates if rt.group == storage_key[0]]
        return (exact or candidates or [None])[0]

    def find_dependents(self, owner_uid: str) -> list[tuple[ResourceType, dict[str, Any]]]:
        """Return every object with an owner reference to ``owner_uid``."""
        dependents = []
        for storage_key in self.store.storage_keys():
            resource_type = self.resource_type_for_storage(storage_key)
            if resource_type is None:
                continue
            for obj in self.store.items(storage_key):
                if any(ref.get("uid") == owner_uid for ref in obj["metadata"].get("ownerReferences") or []):
                    dependents.append((resource_type, self.to_client(resource_type, obj)))
        return dependents

    def orphan_dependents(self, owner_uid: str) -> None:
        for resource_type, dependent in self.find_dependents(owner_uid):
            new = copy.deepcopy(dependent)
            new["metadata"]["ownerReferences"] = [ref for ref in new["metadata"]["ownerReferences"] if ref.get("uid") != owner_uid]
            if not new["metadata"]["ownerReferences"]:
                del new["metadata"]["ownerReferences"]
            self._write(resource_type, new, dependent, False)
