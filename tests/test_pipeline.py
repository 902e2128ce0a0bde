"""The whole pipeline on a small real run: stages, skipping, reports and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mangakd.cli import main
from mangakd.datasets import load_builtin

RATE_KEYS = {"value", "ci_low", "ci_high"}


def _write_data(directory: Path) -> Path:
    """Write 6 CLINC150 intents with 20 texts each as JSONL; dev and test are carved from it."""
    splits = load_builtin("clinc150")
    intents = sorted({example.label for example in splits.train})[:6]
    counts: dict[str, int] = {}
    lines = []
    for example in splits.train:
        if example.label in intents and counts.get(example.label, 0) < 20:
            counts[example.label] = counts.get(example.label, 0) + 1
            lines.append(json.dumps({"utterance": example.text, "intent": example.label}))
    path = directory / "intents.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _run_document(data_path: Path, **gate) -> dict:
    return {
        "apiVersion": "mangakd.io/v1alpha1",
        "kind": "DistillationRun",
        "metadata": {"name": "pipeline-test"},
        "spec": {
            "dataset": {
                "train": str(data_path),
                "textColumn": "utterance",
                "labelColumn": "intent",
                "devFraction": 0.2,
                "testFraction": 0.2,
            },
            "teacher": {"baseModel": "all-minilm-l6-v2", "finetune": {"epochs": 2, "maxLength": 16, "batchSize": 16}},
            "student": {"numLayers": 1},
            "distillation": {"epochs": 2, "maxLength": 16, "batchSize": 16},
            "evaluation": {"bootstrapSamples": 200},
            "export": {"latencyIterations": 10, "quantize": True},
            "gate": {"minAccuracy": 0.0, **gate},
        },
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """Run every stage once and return (spec file, workdir, exit code, termination log)."""
    root = tmp_path_factory.mktemp("pipeline")
    spec_file = root / "run.yaml"
    spec_file.write_text(yaml.safe_dump(_run_document(_write_data(root))), encoding="utf-8")
    workdir = root / "work"
    termination = root / "termination-log"
    code = main(["run", str(spec_file), "--workdir", str(workdir), "--termination-log", str(termination)])
    return spec_file, workdir, code, termination


def test_run_succeeds(finished_run):
    _, _, code, _ = finished_run
    assert code == 0


def test_report_has_rates_with_intervals(finished_run):
    _, workdir, _, _ = finished_run
    report = json.loads((workdir / "report.json").read_text())
    for model in ("teacher", "student"):
        for key in ("accuracy", "macro_f1", "ece", "nll"):
            assert set(report[model][key]) == RATE_KEYS, f"{model}.{key}"
            estimate = report[model][key]
            assert estimate["ci_low"] <= estimate["value"] <= estimate["ci_high"], f"{model}.{key}"
        assert report[model]["latency_ms"]["p50"] <= report[model]["latency_ms"]["p95"]
    assert set(report["student"]["ece_uncalibrated"]) == RATE_KEYS
    assert set(report["agreement"]) == RATE_KEYS
    assert report["temperature"] > 0
    assert report["parameters"]["student"] < report["parameters"]["teacher"]


def test_report_gate_checks(finished_run):
    _, workdir, _, _ = finished_run
    gate = json.loads((workdir / "report.json").read_text())["gate"]
    names = [check["name"] for check in gate["checks"]]
    assert "accuracy" in names
    assert "onnxParity" in names
    for check in gate["checks"]:
        assert {"name", "passed", "value", "threshold", "reason"} <= set(check)


def test_artifacts_written(finished_run):
    _, workdir, _, _ = finished_run
    for relative in (
        "report.md",
        "plots/reliability_before.png",
        "plots/reliability_after.png",
        "export/student/model.onnx",
        "export/student/model.int8.onnx",
        "export/student/manifest.json",
        "export/teacher/model.onnx",
        "student/labels.json",
        "data/labels.json",
    ):
        assert (workdir / relative).is_file(), f"{relative} is missing"
    for checkpoint in ("teacher.pt", "student.pt"):
        assert not (workdir / "checkpoints" / checkpoint).exists(), f"{checkpoint} kept after training finished"


def test_termination_log_fits_kubernetes_limit(finished_run):
    _, _, _, termination = finished_run
    text = termination.read_text()
    assert len(text.encode()) <= 4096
    result = json.loads(text)
    assert set(result["stages"]) == {"prepare", "finetune", "distill", "calibrate", "export", "evaluate", "gate"}
    assert set(result["metrics"]["studentAccuracy"]) == RATE_KEYS
    assert isinstance(result["gate"]["passed"], bool)


def test_second_run_skips_every_stage(finished_run, tmp_path):
    spec_file, workdir, _, _ = finished_run
    termination = tmp_path / "again"
    assert main(["run", str(spec_file), "--workdir", str(workdir), "--termination-log", str(termination)]) == 0
    stages = json.loads(termination.read_text())["stages"]
    assert all(stage["skipped"] for stage in stages.values()), stages


def test_gate_change_reruns_only_gate(finished_run, tmp_path):
    spec_file, workdir, _, _ = finished_run
    document = yaml.safe_load(spec_file.read_text())
    document["spec"]["gate"]["minAccuracy"] = 1.0
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(document))
    termination = tmp_path / "changed-log"
    assert main(["run", str(changed), "--workdir", str(workdir), "--termination-log", str(termination)]) == 0
    result = json.loads(termination.read_text())
    ran = sorted(name for name, stage in result["stages"].items() if not stage["skipped"])
    assert ran == ["gate"]
    assert result["gate"]["passed"] is False


def test_stage_needs_earlier_stages(tmp_path, capsys):
    spec_file = tmp_path / "run.yaml"
    spec_file.write_text(yaml.safe_dump(_run_document(_write_data(tmp_path))))
    assert main(["calibrate", str(spec_file), "--workdir", str(tmp_path / "empty")]) == 2
    assert "needs stage prepare, which has not run" in capsys.readouterr().err


def test_invalid_spec_names_field(tmp_path, capsys):
    document = _run_document(tmp_path / "missing.jsonl")
    document["spec"]["distillation"]["temperature"] = -1
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump(document))
    assert main(["run", str(spec_file), "--workdir", str(tmp_path / "w")]) == 2
    assert "spec.distillation.temperature: Input should be greater than 0" in capsys.readouterr().err


def test_missing_data_file_names_path(tmp_path, capsys):
    spec_file = tmp_path / "run.yaml"
    spec_file.write_text(yaml.safe_dump(_run_document(tmp_path / "missing.jsonl")))
    assert main(["run", str(spec_file), "--workdir", str(tmp_path / "w")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err


def test_data_inside_run_directory_rejected(tmp_path, capsys):
    workdir = tmp_path / "w"
    (workdir / "data").mkdir(parents=True)
    data_path = _write_data(workdir / "data")
    spec_file = tmp_path / "run.yaml"
    spec_file.write_text(yaml.safe_dump(_run_document(data_path)))
    assert main(["prepare", str(spec_file), "--workdir", str(workdir)]) == 2
    assert "which the prepare stage overwrites" in capsys.readouterr().err
    assert data_path.is_file()
