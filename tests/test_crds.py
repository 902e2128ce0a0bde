"""The checked-in CRDs match the pydantic models, and their schemas are structural."""

from __future__ import annotations

from pathlib import Path

import yaml

from mangakd.crds import RESOURCES, build_crd, render_crds

CRD_DIR = Path(__file__).resolve().parent.parent / "crds"


def test_checked_in_crds_match_models():
    for name, text in render_crds().items():
        path = CRD_DIR / name
        assert path.is_file(), f"{path} is missing; run: mangakd crds --output crds"
        assert path.read_text(encoding="utf-8") == text, f"{path} is out of date; run: mangakd crds --output crds"


def _walk(schema, path="$"):
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def test_schemas_are_structural():
    for resource in RESOURCES:
        root = build_crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in _walk(root):
            assert "$ref" not in node, f"{resource.kind} {path} keeps a $ref"
            assert "anyOf" not in node, f"{resource.kind} {path} keeps anyOf"
            assert "title" not in node, f"{resource.kind} {path} keeps title"
            opaque = node.get("x-kubernetes-preserve-unknown-fields")
            assert "type" in node or opaque, f"{resource.kind} {path} has no type"
            if isinstance(node.get("exclusiveMinimum"), bool):
                assert "minimum" in node, f"{resource.kind} {path} has exclusiveMinimum without minimum"


def test_spec_fields_have_descriptions():
    root = build_crd(RESOURCES[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = root["properties"]["spec"]
    missing = [path for path, node in _walk(spec) if path != "$" and "description" not in node and not path.endswith(("[]", "{}"))]
    assert missing == [], f"fields without a description: {missing}"


def test_distillation_bounds_in_schema():
    root = build_crd(RESOURCES[0])["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    distillation = root["properties"]["spec"]["properties"]["distillation"]
    temperature = distillation["properties"]["temperature"]
    assert temperature["minimum"] == 0
    assert temperature["exclusiveMinimum"] is True
    assert temperature["default"] == 3.0
    assert distillation["properties"]["alpha"]["maximum"] == 1
    assert distillation["default"] == {}


def test_crd_names_and_columns():
    crd = yaml.safe_load(render_crds()["distillationruns.yaml"])
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["dr", "drun"]
    assert names["categories"] == ["mangakd"]
    columns = {column["name"]: column for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["ECE"]["priority"] == 1
    assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}
