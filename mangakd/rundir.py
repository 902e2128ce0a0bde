"""The run directory: where every stage reads its inputs and writes its outputs.

The run directory is the contract between stages and between executors: a
local ``mangakd run`` and the operator's Jobs (which mount it from a PVC)
use the same layout, so any stage can run wherever the folder is mounted.

    data/            train.jsonl, dev.jsonl, test.jsonl, labels.json, report.json
    teacher/         the fine-tuned teacher (absent when teacher.path is used)
    student/         the distilled student classifier
    cache/           teacher and student logits per split (.npy)
    checkpoints/     per-epoch training checkpoints
    export/teacher/  model.onnx, tokenizer, manifest.json
    export/student/  model.onnx, model.int8.onnx, tokenizer, manifest.json
    plots/           reliability diagrams
    stages/          one JSON marker per finished stage
    report.json, report.md
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically, so that a killed Job never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(partial, path)


def read_json(path: Path) -> Any:
    """Read a JSON file written by ``write_json``."""
    return json.loads(path.read_text(encoding="utf-8"))


class RunDir:
    """Paths inside one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.data = self.root / "data"
        self.teacher = self.root / "teacher"
        self.student = self.root / "student"
        self.cache = self.root / "cache"
        self.checkpoints = self.root / "checkpoints"
        self.export = self.root / "export"
        self.plots = self.root / "plots"
        self.stages = self.root / "stages"
        self.report_json = self.root / "report.json"
        self.report_md = self.root / "report.md"

    def logits_path(self, model: str, split: str) -> Path:
        """Cached logits of ``model`` ("teacher" or "student") on a split."""
        return self.cache / f"{model}_logits_{split}.npy"

    def save_logits(self, model: str, split: str, logits: np.ndarray) -> None:
        """Cache logits atomically."""
        path = self.logits_path(model, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.stem + ".partial.npy")
        np.save(partial, logits)
        os.replace(partial, path)

    def load_logits(self, model: str, split: str) -> np.ndarray:
        """Load cached logits; the stage that writes them must have run."""
        path = self.logits_path(model, split)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; run the stage that writes {model} logits first")
        return np.load(path)

    def marker(self, stage: str) -> Path:
        """Return the path of the marker a stage writes when it has finished."""
        return self.stages / f"{stage}.json"

    def read_marker(self, stage: str) -> dict | None:
        """Return a stage's marker, or None if the stage has not finished."""
        path = self.marker(stage)
        return read_json(path) if path.is_file() else None

    def summary(self, stage: str) -> dict:
        """Return the summary a finished stage recorded."""
        marker = self.read_marker(stage)
        if marker is None:
            raise FileNotFoundError(f"stage {stage!r} has not finished in {self.root}; run it first")
        return marker["summary"]
