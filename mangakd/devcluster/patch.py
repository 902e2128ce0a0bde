"""The three patch formats of the Kubernetes API, applied to JSON-like objects.

- JSON merge patch (RFC 7386, ``application/merge-patch+json``): maps merge,
  ``null`` deletes a key, lists are replaced.
- JSON patch (RFC 6902, ``application/json-patch+json``): a list of
  ``add``/``remove``/``replace``/``move``/``copy``/``test`` operations.
- Strategic merge patch (``application/strategic-merge-patch+json``): a merge
  patch in which some lists of built-in types merge by a key instead of being
  replaced (containers by ``name``, conditions by ``type``, ...), with the
  ``$patch``, ``$retainKeys``, ``$setElementOrder/<list>`` and
  ``$deleteFromPrimitiveList/<list>`` directives that ``kubectl apply`` sends.

Every function returns a new object and leaves its inputs unchanged.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError, bad_request


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise bad_request(f"invalid JSON pointer {pointer!r}: it must be empty or start with '/'")
    return [_unescape(token) for token in pointer[1:].split("/")]


def _resolve_parent(document: Any, tokens: list[str], pointer: str) -> Any:
    current = document
    for token in tokens[:-1]:
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            raise _patch_failed(f"path {pointer!r} does not exist")
    return current


def _patch_failed(message: str) -> ApiError:
    # kube-apiserver answers a JSON patch that cannot be applied with 422 Invalid
    # (for example "the server rejected our request due to an error in our request").
    return ApiError(422, "Invalid", f"the JSON patch could not be applied: {message}")


def _get(document: Any, pointer: str) -> Any:
    tokens = _split_pointer(pointer)
    if not tokens:
        return document
    parent = _resolve_parent(document, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise _patch_failed(f"path {pointer!r} does not exist")


def _add(document: Any, pointer: str, value: Any) -> Any:
    tokens = _split_pointer(pointer)
    if not tokens:
        return value
    parent = _resolve_parent(document, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _patch_failed(f"index {last!r} in {pointer!r} is out of range")
    else:
        raise _patch_failed(f"parent of {pointer!r} is not an object or a list")
    return document


def _remove(document: Any, pointer: str) -> tuple[Any, Any]:
    tokens = _split_pointer(pointer)
    if not tokens:
        raise _patch_failed("cannot remove the whole document")
    parent = _resolve_parent(document, tokens, pointer)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return document, parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return document, parent.pop(int(last))
    raise _patch_failed(f"path {pointer!r} does not exist")


def json_patch(target: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch; a failed ``test`` or a missing path raises 422."""
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations such as [{\"op\": \"add\", \"path\": \"/x\", \"value\": 1}]")
    document = copy.deepcopy(target)
    for operation in operations:
        op = operation.get("op") if isinstance(operation, dict) else None
        path = operation.get("path", "") if isinstance(operation, dict) else ""
        if op == "add":
            document = _add(document, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            document, _ = _remove(document, path)
        elif op == "replace":
            _get(document, path)
            document, _ = _remove(document, path) if path else (document, None)
            document = _add(document, path, copy.deepcopy(operation.get("value")))
        elif op == "move":
            document, value = _remove(document, operation.get("from", ""))
            document = _add(document, path, value)
        elif op == "copy":
            document = _add(document, path, copy.deepcopy(_get(document, operation.get("from", ""))))
        elif op == "test":
            actual = _get(document, path)
            if actual != operation.get("value"):
                raise _patch_failed(f"test operation failed: value at {path!r} is {actual!r}, not {operation.get('value')!r}")
        else:
            raise bad_request(f"unsupported JSON patch operation {op!r}: use add, remove, replace, move, copy or test")
    return document


# Lists of built-in types that merge by key (the `patchMergeKey` of the Go API
# types). Lists not named here are replaced, like atomic lists.
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
# Lists of scalars that merge as sets.
MERGE_PRIMITIVE_LISTS = {"finalizers"}


def _merge_key(field_name: str, items: list[Any]) -> str | None:
    if field_name == "ports":
        # Container ports merge by containerPort, Service ports by port.
        sample = next((item for item in items if isinstance(item, dict)), {})
        return "containerPort" if "containerPort" in sample else "port"
    return MERGE_KEYS.get(field_name)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch using the built-in merge keys above."""
    return _strategic_map(copy.deepcopy(target) if isinstance(target, dict) else {}, patch)


def _strategic_map(original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {key: copy.deepcopy(value) for key, value in patch.items() if key != "$patch"}
    if directive == "delete":
        return {}
    result = original

    retain = patch.get("$retainKeys")
    order_directives = {key[len("$setElementOrder/"):]: value for key, value in patch.items() if key.startswith("$setElementOrder/")}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field_name = key.split("/", 1)[1]
            result[field_name] = [item for item in result.get(field_name) or [] if item not in value]

    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            result[key] = _strategic_map(current if isinstance(current, dict) else {}, value)
        elif isinstance(value, list):
            result[key] = _strategic_list(key, result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)

    for field_name, order in order_directives.items():
        if isinstance(result.get(field_name), list):
            result[field_name] = _apply_order(field_name, result[field_name], order)
    if isinstance(retain, list):
        result = {key: value for key, value in result.items() if key in retain}
    return result


def _strategic_list(field_name: str, original: Any, patch: list[Any]) -> list[Any]:
    original_list = original if isinstance(original, list) else []
    if field_name in MERGE_PRIMITIVE_LISTS:
        merged = list(original_list)
        merged += [item for item in patch if item not in merged]
        return merged
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    merge_key = _merge_key(field_name, patch + original_list)
    if merge_key is None or not all(isinstance(item, dict) for item in patch):
        return copy.deepcopy(patch)

    merged = [copy.deepcopy(item) for item in original_list]
    for item in patch:
        key_value = item.get(merge_key)
        position = next((i for i, existing in enumerate(merged)
                         if isinstance(existing, dict) and existing.get(merge_key) == key_value), None)
        if item.get("$patch") == "delete":
            if position is not None:
                merged.pop(position)
        elif position is None:
            merged.append(_strategic_map({}, item))
        else:
            merged[position] = _strategic_map(merged[position], item)
    return merged


def _apply_order(field_name: str, items: list[Any], order: list[Any]) -> list[Any]:
    """Reorder ``items`` as ``$setElementOrder`` lists them; unlisted items keep their place at the end."""
    merge_key = _merge_key(field_name, items)

    def identity(item: Any) -> Any:
        return item.get(merge_key) if merge_key and isinstance(item, dict) else item

    order_keys = [identity(entry) for entry in order]
    listed = [next(item for item in items if identity(item) == key) for key in order_keys if any(identity(item) == key for item in items)]
    rest = [item for item in items if identity(item) not in order_keys]
    return listed + rest
