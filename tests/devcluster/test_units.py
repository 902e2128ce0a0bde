"""Pure functions of the development cluster: patches, selectors, schemas, JSONPath, durations."""

from __future__ import annotations

import pytest

from mangakd.devcluster import jsonpath, patch, schema, selectors
from mangakd.devcluster.errors import ApiError
from mangakd.devcluster.tables import human_duration


def test_merge_patch_deletes_null() -> None:
    assert patch.merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"a": None, "b": {"c": None}}) == {"b": {"d": 3}}


def test_merge_patch_replaces_lists() -> None:
    assert patch.merge_patch({"l": [1, 2]}, {"l": [3]}) == {"l": [3]}


def test_json_patch_move_and_copy() -> None:
    result = patch.json_patch({"a": {"x": 1}, "b": {}}, [
        {"op": "copy", "from": "/a/x", "path": "/b/y"}, {"op": "move", "from": "/a/x", "path": "/b/z"}])
    assert result == {"a": {}, "b": {"y": 1, "z": 1}}


def test_json_patch_missing_path_invalid() -> None:
    with pytest.raises(ApiError) as error:
        patch.json_patch({}, [{"op": "replace", "path": "/missing", "value": 1}])
    assert error.value.code == 422


def test_strategic_patch_directives() -> None:
    original = {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}], "finalizers": ["x"]}
    result = patch.strategic_merge_patch(original, {
        "containers": [{"name": "b", "$patch": "delete"}, {"name": "c", "image": "3"}],
        "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
        "finalizers": ["y"],
    })
    assert result["containers"] == [{"name": "c", "image": "3"}, {"name": "a", "image": "1"}]
    assert result["finalizers"] == ["x", "y"]


def test_strategic_patch_conditions_by_type() -> None:
    original = {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Synced", "status": "True"}]}
    result = patch.strategic_merge_patch(original, {"conditions": [{"type": "Ready", "status": "True"}]})
    assert result["conditions"] == [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}]


def test_label_selector_rejects_bad_key() -> None:
    with pytest.raises(ApiError) as error:
        selectors.parse_label_selector("bad key=1")
    assert error.value.code == 400


def test_label_selector_object() -> None:
    requirements = selectors.selector_from_label_selector_object(
        {"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "NotIn", "values": ["2"]}]})
    assert selectors.match_labels(requirements, {"metadata": {"labels": {"a": "1", "b": "3"}}})
    assert not selectors.match_labels(requirements, {"metadata": {"labels": {"a": "1", "b": "2"}}})


RUN_SCHEMA = {
    "type": "object",
    "properties": {"spec": {"type": "object", "properties": {
        "name": {"type": "string", "minLength": 2, "maxLength": 4, "pattern": "^[a-z]+$"},
        "tags": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "string"}},
        "port": {"x-kubernetes-int-or-string": True},
        "note": {"type": "string", "nullable": True},
        "limit": {"type": "integer", "maximum": 10, "exclusiveMaximum": True},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    }}},
}


@pytest.mark.parametrize(("spec", "message"), [
    ({"name": "a"}, "spec.name in body should be at least 2 chars long"),
    ({"name": "abcde"}, "spec.name in body should be at most 4 chars long"),
    ({"name": "AB"}, "spec.name in body should match '^[a-z]+$'"),
    ({"tags": []}, "spec.tags in body should have at least 1 items"),
    ({"tags": ["a", "b", "c"]}, "spec.tags in body should have at most 2 items"),
    ({"port": 1.5}, 'spec.port in body must be of type integer-or-string: "number"'),
    ({"limit": 10}, "spec.limit in body should be less than 10"),
    ({"tags": None}, 'spec.tags in body must be of type array: "null"'),
])
def test_schema_rejects(spec: dict, message: str) -> None:
    causes = schema.validate({"spec": spec}, RUN_SCHEMA)
    assert [message in cause["message"] for cause in causes] == [True]


@pytest.mark.parametrize("spec", [{"name": "ab"}, {"port": "http"}, {"port": 80}, {"note": None}, {"free": {"x": [1]}}])
def test_schema_accepts(spec: dict) -> None:
    assert schema.validate({"spec": spec}, RUN_SCHEMA) == []


def test_prune_keeps_preserved_fields() -> None:
    obj = {"apiVersion": "v", "kind": "K", "metadata": {"name": "n"}, "spec": {"free": {"x": 1}, "bogus": 1}, "top": 2}
    removed = schema.prune(obj, RUN_SCHEMA)
    assert sorted(removed) == ["spec.bogus", "top"]
    assert obj["spec"] == {"free": {"x": 1}}


def test_jsonpath_filter_and_index() -> None:
    obj = {"status": {"conditions": [{"type": "A", "status": "x"}, {"type": "Ready", "status": "True"}]}, "l": [1, 2, 3]}
    assert jsonpath.evaluate('.status.conditions[?(@.type=="Ready")].status', obj) == ["True"]
    assert jsonpath.evaluate("{.l[-1]}", obj) == [3]
    assert jsonpath.evaluate(".status.conditions[*].type", obj) == ["A", "Ready"]
    assert jsonpath.evaluate(".missing.field", obj) == []


def test_jsonpath_rejects_unsupported() -> None:
    with pytest.raises(jsonpath.JsonPathError):
        jsonpath.parse(".a..b")


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (150, "2m30s"), (3600 * 5, "5h"), (86400 * 3, "3d"), (86400 * 800, "2y")])
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text
