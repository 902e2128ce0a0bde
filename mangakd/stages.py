"""The stages of a DistillationRun, in the order they run.

Each stage reads the spec and the run directory and returns a JSON summary.
``mangakd.pipeline`` records the summary in the stage's marker, decides which
stages to skip and times them. Stages know nothing of Kubernetes: the
operator runs them as Jobs through the same CLI commands.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from transformers import AutoTokenizer

from mangakd import calibration, costs, datasets, evaluation, export, latency, models, onnx_runtime
from mangakd.data import labels, texts
from mangakd.labels import LabelMap
from mangakd.prepared import data_report, read_prepared, write_prepared
from mangakd.gate import evaluate_gate
from mangakd.rundir import RunDir, write_json
from mangakd.spec import DistillationRun
from mangakd.training import DistillTargets, TrainSettings, compute_logits, fit, set_seed

log = logging.getLogger(__name__)

# Training checkpoints of the stages that train, inside RunDir.checkpoints.
CHECKPOINTS = {"finetune": "teacher.pt", "distill": "student.pt"}


def _settings(spec) -> TrainSettings:
    # Only fine-tuning has a fresh head; a distilled student copies the teacher's.
    return TrainSettings(
        head_learning_rate=getattr(spec, "head_learning_rate", None),
        epochs=spec.epochs,
        learning_rate=spec.learning_rate,
        batch_size=spec.batch_size,
        max_length=spec.max_length,
        warmup_ratio=spec.warmup_ratio,
        weight_decay=spec.weight_decay,
        seed=spec.seed,
    )


def _save_classifier(model, tokenizer, label_map, directory) -> None:
    # Save next to the final folder and swap it in, so a kill mid-save leaves no half model.
    partial = directory.with_name(directory.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(str(partial))
    tokenizer.save_pretrained(str(partial))
    label_map.save(partial / "labels.json")
    shutil.rmtree(directory, ignore_errors=True)
    partial.rename(directory)


def teacher_dir(run: DistillationRun, rundir: RunDir):
    """Return the teacher classifier directory: the spec's path or the fine-tuned one."""
    if run.spec.teacher.path is not None:
        return models.resolve_model_path(run.spec.teacher.path)
    return rundir.teacher


def prepare(run: DistillationRun, rundir: RunDir, fingerprint: str) -> dict:
    """Load, validate, subset and write the splits and the label map."""
    source = run.spec.dataset
    for field in ("train", "dev", "test"):
        given = getattr(source, field)
        if given is not None and Path(given).resolve().is_relative_to(rundir.data.resolve()):
            raise ValueError(
                f"dataset.{field} {given!r} is inside {rundir.data}, which the prepare stage "
                "overwrites; move the file out of the run directory's data/ folder"
            )
    splits = datasets.load_splits(
        builtin=source.builtin,
        train=source.train,
        dev=source.dev,
        test=source.test,
        text_column=source.text_column,
        label_column=source.label_column,
        dev_fraction=source.dev_fraction,
        test_fraction=source.test_fraction,
        seed=source.seed,
    )
    if source.subset is not None:
        splits = datasets.subset_splits(
            splits,
            train_per_class=source.subset.train_per_class,
            dev_per_class=source.subset.dev_per_class,
            test_per_class=source.subset.test_per_class,
            seed=source.seed,
        )
    label_map = LabelMap.from_examples(splits.train)

    # Checked now, against the real labels, so a typo fails before any training.
    costs.cost_matrix_from_spec(run.spec.evaluation.cost_matrix, label_map.names)
    report = data_report(splits)
    write_prepared(rundir.data, splits, label_map, report)
    return {
        "classes": len(label_map),
        "examples": {name: len(getattr(splits, name)) for name in ("train", "dev", "test")},
        "report": report,
    }


def teacher(run: DistillationRun, rundir: RunDir, fingerprint: str) -> dict:
    """Check a given teacher against the label map, or fine-tune a base encoder into one."""
    splits, label_map = read_prepared(rundir.data)
    spec = run.spec.teacher
    if spec.path is not None:
        model, _, _ = models.load_classifier(models.resolve_model_path(spec.path), label_map.names)
        return {"source": "path", "path": str(spec.path), "parameters": models.count_parameters(model)}

    base = models.resolve_model_path(spec.base_model)
    set_seed(spec.finetune.seed)
    model = models.new_classifier(base, label_map.names).to(models.pick_device())
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    result = fit(
        model,
        tokenizer,
        texts(splits.train),
        label_map.encode(labels(splits.train)),
        _settings(spec.finetune),
        rundir.checkpoints / CHECKPOINTS["finetune"],
        run_key=fingerprint,
        description="finetune",
    )
    _save_classifier(model, tokenizer, label_map, rundir.teacher)
    return {
        "source": "finetune",
        "base_model": str(spec.base_model),
        "parameters": models.count_parameters(model),
        "history": result.history,
        "train_seconds": result.seconds,
    }


def distill(run: DistillationRun, rundir: RunDir, fingerprint: str) -> dict:
    """Cache the teacher's logits, build the student and train it with the KD loss."""
    splits, label_map = read_prepared(rundir.data)
    spec = run.spec.distillation
    device = models.pick_device()
    teacher_model, teacher_tokenizer, label_order = models.load_classifier(
        teacher_dir(run, rundir), label_map.names
    )
    teacher_model.to(device)

    # The student is built first, so a bad layer choice fails before the slow logits pass.
    set_seed(spec.seed)
    student, layer_map, student_tokenizer_dir = models.build_student(
        teacher_model, run.spec.student, label_map.names
    )
    student.to(device)
    if student_tokenizer_dir is None:
        student_tokenizer = teacher_tokenizer
    else:
        student_tokenizer = AutoTokenizer.from_pretrained(str(student_tokenizer_dir))

    # Teacher logits are computed once per split; the student's epochs reuse them.
    for split in ("train", "dev", "test"):
        logits = compute_logits(
            teacher_model, teacher_tokenizer, texts(getattr(splits, split)), max_length=spec.max_length
        )
        rundir.save_logits("teacher", split, logits[:, label_order])

    targets = DistillTargets(
        teacher_logits=rundir.load_logits("teacher", "train"),
        temperature=spec.temperature,
        alpha=spec.alpha,
        teacher_model=teacher_model if spec.hidden_state_loss_weight > 0 else None,
        layer_map=layer_map,
        hidden_weight=spec.hidden_state_loss_weight,
    )
    result = fit(
        student,
        student_tokenizer,
        texts(splits.train),
        label_map.encode(labels(splits.train)),
        _settings(spec),
        rundir.checkpoints / CHECKPOINTS["distill"],
        run_key=fingerprint,
        targets=targets,
        description="distill",
    )
    _save_classifier(student, student_tokenizer, label_map, rundir.student)
    return {
        "layer_map": layer_map,
        "parameters": {
            "teacher": models.count_parameters(teacher_model),
            "student": models.count_parameters(student),
        },
        "history": result.history,
        "resumed_from_epoch": result.resumed_from_epoch,
        "train_seconds": result.seconds,
        "device": str(device),
    }


def calibrate(run: DistillationRun, rundir: RunDir, fingerprint: str) -> dict:
    """Fit the student's temperature on dev and draw reliability diagrams on test."""
    splits, label_map = read_prepared(rundir.data)
    student, tokenizer, _ = models.load_classifier(rundir.student, label_map.names)
    student.to(models.pick_device())
    max_length = run.spec.distillation.max_length
    for split in ("dev", "test"):
        logits = compute_logits(student, tokenizer, texts(getattr(splits, split)), max_length=max_length)
        rundir.save_logits("student", split, logits)

    spec = run.spec.calibration
    fitted = calibration.calibrate(
        rundir.load_logits("student", "dev"),
        label_map.encode(labels(splits.dev)),
        n_bins=spec.bins,
        enabled=spec.enabled,
    )
    # The diagrams use the held-out test split: dev was used to fit T.
    plots = calibration.reliability_diagrams(
        rundir.load_logits("student", "test"),
        label_map.encode(labels(splits.test)),
        fitted["temperature"],
        rundir.plots,
        n_bins=spec.bins,
    )
    return {**fitted, "plots": [str(path.relative_to(rundir.root)) for path in plots]}


def export_models(run: DistillationRun, rundir: RunDir, fingerprint: str) -> dict:
    """Export teacher and student to ONNX, check parity, quantize and measure latency."""
    splits, label_map = read_prepared(rundir.data)
    spec = run.spec.export
    max_length = run.spec.distillation.max_length
    temperature = rundir.summary("calibrate")["temperature"]
    test_texts = texts(splits.test)
    summary: dict = {"parity": {}, "latency_ms": {}}

    sources = {"teacher": teacher_dir(run, rundir), "student": rundir.student}
    onnx_models = {}
    for name, source in sources.items():
        target = rundir.export / name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        model_path = export.export_onnx(source, target / "model.onnx", opset=spec.opset)
        AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(target))
        onnx_runtime.write_manifest(
            target,
            model_file="model.onnx",
            labels=label_map.names,
            temperature=temperature if name == "student" else 1.0,
            max_length=max_length,
        )
        summary["parity"][name] = export.check_parity(source, model_path, test_texts, max_length=max_length)
        onnx_models[name] = (model_path, target)

    if spec.quantize:
        target = rundir.export / "student"
        int8_path = export.quantize_int8(target / "model.onnx", target / "model.int8.onnx")
        summary["parity"]["student_int8"] = export.check_parity(
            rundir.student, int8_path, test_texts, max_length=max_length
        )
        onnx_models["student_int8"] = (int8_path, target)

    # All models are timed in this one process, interleaved, so their ratio is fair.
    timed = latency.compare_latency(
        onnx_models,
        test_texts,
        batch_sizes=(1, 32),
        iterations=spec.latency_iterations,
        max_length=max_length,
        threads=spec.latency_threads,
    )
    summary["latency_ms"] = timed
    return summary


def evaluate(run: DistillationRun, rundir: RunDir, fingerprint: str) -> dict:
    """Compute every metric with bootstrap confidence intervals on the test split."""
    splits, label_map = read_prepared(rundir.data)
    spec = run.spec.evaluation
    cost = costs.cost_matrix_from_spec(spec.cost_matrix, label_map.names)
    result = evaluation.evaluate_predictions(
        student_logits=rundir.load_logits("student", "test"),
        teacher_logits=rundir.load_logits("teacher", "test"),
        y_true=label_map.encode(labels(splits.test)),
        student_temperature=rundir.summary("calibrate")["temperature"],
        label_names=label_map.names,
        cost_matrix=cost,
        n_bins=run.spec.calibration.bins,
        n_resamples=spec.bootstrap_samples,
        confidence_level=spec.confidence_level,
        seed=spec.seed,
    )
    write_json(rundir.root / "metrics.json", result)
    return result


def gate(run: DistillationRun, rundir: RunDir, fingerprint: str) -> dict:
    """Judge the student against the gate policy."""
    thresholds = run.spec.gate.model_dump(exclude={"min_onnx_argmax_agreement", "judge_on", "judge_on_overrides"})
    if all(value is None for value in thresholds.values()):
        log.warning("spec.gate sets no thresholds, so only ONNX parity is checked; set minAccuracy or maxAccuracyGap")
    exported = rundir.summary("export")
    student_latency = exported["latency_ms"]["student"]["batch_1"]
    verdict = evaluate_gate(
        run.spec.gate,
        rundir.summary("evaluate"),
        p95_latency_ms=student_latency["p95_ms"],
        onnx_argmax_agreement=exported["parity"]["student"]["argmax_agreement"],
    )
    return verdict.to_dict()


# Stage name, function, and the spec sections whose change invalidates it.
STAGES = [
    ("prepare", prepare, ("dataset",)),
    ("finetune", teacher, ("teacher",)),
    ("distill", distill, ("student", "distillation")),
    ("calibrate", calibrate, ("calibration",)),
    ("export", export_models, ("export",)),
    ("evaluate", evaluate, ("evaluation",)),
    ("gate", gate, ("gate",)),
]
