"""Parsing DistillationRun documents: what the API server would accept, and nothing else."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from mangakd.pipeline import RunDirBusy, _forget_from, _locked, fingerprints
from mangakd.rundir import RunDir
from mangakd.spec import SpecError, load_run, parse_run

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

BASE = {
    "apiVersion": "mangakd.io/v1alpha1",
    "kind": "DistillationRun",
    "metadata": {"name": "spec-test"},
    "spec": {
        "dataset": {"builtin": "clinc150"},
        "teacher": {"baseModel": "all-minilm-l6-v2"},
        "student": {"numLayers": 2},
    },
}


def _with(path: str, value) -> dict:
    document = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return document


@pytest.mark.parametrize("example", sorted(EXAMPLES.glob("distillationrun*.yaml")), ids=lambda p: p.name)
def test_examples_parse(example):
    run = load_run(example)
    assert run.kind == "DistillationRun"


def test_defaults_filled():
    run = parse_run(BASE)
    assert run.spec.distillation.temperature == 3.0
    assert run.spec.distillation.alpha == 0.7
    assert run.spec.calibration.bins == 15


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("spec.distillation.temperature", -1, "spec.distillation.temperature: Input should be greater than 0"),
        ("spec.distillation.alpha", 1.5, "spec.distillation.alpha: Input should be less than or equal to 1"),
        ("spec.distillation.epochs", 0, "spec.distillation.epochs: Input should be greater than or equal to 1"),
        ("spec.gate.maxP95LatencyMs", float("inf"), "spec.gate.maxP95LatencyMs: Input should be a finite number"),
        ("spec.distillation.epochs", "3", "spec.distillation.epochs: Input should be a valid integer"),
        ("spec.calibration.enabled", "no", "spec.calibration.enabled: Input should be a valid boolean"),
        ("spec.distillation.hidden_state_loss_weight", 1.0, "spec.distillation.hidden_state_loss_weight: Extra inputs"),
        ("spec.distillaton", {}, "spec.distillaton: Extra inputs are not permitted"),
        ("extra", 1, "extra: Extra inputs are not permitted"),
        ("metadata.name", "My_Run", "metadata.name: String should match pattern"),
        ("apiVersion", "mangakd.io/v1", "apiVersion: Input should be 'mangakd.io/v1alpha1'"),
    ],
)
def test_invalid_field_named(path, value, message):
    with pytest.raises(SpecError) as caught:
        parse_run(_with(path, value))
    assert message in str(caught.value)


def test_one_student_source():
    document = _with("spec.student.path", "/models/student")
    with pytest.raises(SpecError, match="set exactly one of student.numLayers, student.teacherLayers or student.path"):
        parse_run(document)


def test_hidden_loss_needs_teacher_layers():
    document = _with("spec.student", {"path": "/models/student"})
    document["spec"]["distillation"] = {"hiddenStateLossWeight": 1.0}
    with pytest.raises(SpecError, match="hiddenStateLossWeight needs a student built from teacher layers"):
        parse_run(document)


def test_yaml_error_names_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("kind: DistillationRun\nspec: [unclosed\n")
    with pytest.raises(SpecError) as caught:
        load_run(path)
    assert str(path) in str(caught.value)
    assert "<unicode string>" not in str(caught.value)


def test_data_file_change_reruns_prepare(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "hi", "label": "greet"}\n')
    document = copy.deepcopy(BASE)
    document["spec"]["dataset"] = {"train": str(data)}
    before = fingerprints(parse_run(document))
    data.write_text('{"text": "hello", "label": "greet"}\n')
    after = fingerprints(parse_run(document))
    assert before["prepare"] != after["prepare"]
    assert before["gate"] != after["gate"]


def test_second_process_rejected(tmp_path):
    rundir = RunDir(tmp_path)
    with _locked(rundir):
        with pytest.raises(RunDirBusy, match="another mangakd process"):
            with _locked(rundir):
                pass


def test_running_stage_forgets_later_results(tmp_path):
    rundir = RunDir(tmp_path)
    for name in ("prepare", "finetune", "distill", "gate"):
        rundir.marker(name).parent.mkdir(parents=True, exist_ok=True)
        rundir.marker(name).write_text("{}")
    rundir.report_json.write_text("{}")
    _forget_from(rundir, "finetune")
    assert rundir.marker("prepare").exists()
    assert not rundir.marker("finetune").exists()
    assert not rundir.marker("gate").exists()
    assert not rundir.report_json.exists()


def test_examples_are_valid_yaml_documents():
    for example in EXAMPLES.glob("*.yaml"):
        documents = [doc for doc in yaml.safe_load_all(example.read_text()) if doc]
        assert documents, f"{example} is empty"
