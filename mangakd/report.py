"""``report.json``, ``report.md`` and the summary table of a finished run.

``report.json`` is the machine-readable result the operator copies into the
DistillationRun's status; every rate in it is ``{value, ci_low, ci_high}``.
"""

from __future__ import annotations

from datetime import datetime, timezone

from mangakd.rundir import RunDir, write_json
from mangakd.spec import DistillationRun

RATE_KEYS = ("accuracy", "macro_f1", "ece", "nll", "brier", "business_error")


def _latency(exported: dict, model: str) -> dict:
    timed = exported["latency_ms"][model]
    return {
        "p50": timed["batch_1"]["p50_ms"],
        "p95": timed["batch_1"]["p95_ms"],
        "batch_32": {"p50": timed["batch_32"]["p50_ms"], "p95": timed["batch_32"]["p95_ms"]},
    }


def build_report(run: DistillationRun, rundir: RunDir) -> dict:
    """Collect the stage summaries into the report structure."""
    from mangakd.pipeline import STAGE_NAMES

    markers = {name: _read(rundir, name) for name in STAGE_NAMES}
    evaluated = markers["evaluate"]["summary"]
    exported = markers["export"]["summary"]
    calibrated = markers["calibrate"]["summary"]
    distilled = markers["distill"]["summary"]

    report: dict = {"name": run.metadata.name, "generated_at": _now()}
    for model in ("teacher", "student"):
        block = {key: evaluated[model][key] for key in RATE_KEYS if key in evaluated[model]}
        block["per_class_recall"] = evaluated[model].get("per_class_recall", {})
        block["latency_ms"] = _latency(exported, model)
        report[model] = block
    report["student"]["ece_uncalibrated"] = evaluated["student"]["ece_uncalibrated"]
    if "student_int8" in exported["latency_ms"]:
        report["student_int8"] = {
            "latency_ms": _latency(exported, "student_int8"),
            "parity": exported["parity"]["student_int8"],
        }

    teacher_p95 = report["teacher"]["latency_ms"]["p95"]
    student_p95 = report["student"]["latency_ms"]["p95"]
    report.update(
        {
            "agreement": evaluated["agreement"],
            "accuracy_gap": evaluated["accuracy_gap"],
            "temperature": calibrated["temperature"],
            "calibration": {key: calibrated[key] for key in ("ece_before", "ece_after", "nll_before", "nll_after")},
            "gate": markers["gate"]["summary"],
            "parameters": distilled["parameters"],
            "latency_ratio_p95": teacher_p95 / student_p95 if student_p95 else None,
            "parity": exported["parity"],
            "n_test_examples": evaluated["n_examples"],
            "data": markers["prepare"]["summary"]["examples"],
            "plots": calibrated["plots"],
            "student_artifact": str((rundir.export / "student").resolve()),
            "stages": {
                name: {key: marker[key] for key in ("started_at", "finished_at", "duration_s")}
                for name, marker in markers.items()
            },
        }
    )
    return report


def _read(rundir: RunDir, stage: str) -> dict:
    marker = rundir.read_marker(stage)
    assert marker is not None
    return marker


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _rate(estimate: dict, digits: int = 3) -> str:
    return f"{estimate['value']:.{digits}f} [{estimate['ci_low']:.{digits}f}, {estimate['ci_high']:.{digits}f}]"


def format_summary(report: dict) -> str:
    """Render the headline figures as a fixed-width table for the terminal."""
    teacher, student = report["teacher"], report["student"]
    rows = [
        ("", "teacher", "student"),
        ("accuracy (95% CI)", _rate(teacher["accuracy"]), _rate(student["accuracy"])),
        ("macro-F1", _rate(teacher["macro_f1"]), _rate(student["macro_f1"])),
        ("ECE (student calibrated)", _rate(teacher["ece"]), _rate(student["ece"])),
        ("ECE before calibration", "", _rate(student["ece_uncalibrated"])),
        ("NLL", _rate(teacher["nll"]), _rate(student["nll"])),
        ("P50 / P95 latency, batch 1 (ms)",
         f"{teacher['latency_ms']['p50']:.2f} / {teacher['latency_ms']['p95']:.2f}",
         f"{student['latency_ms']['p50']:.2f} / {student['latency_ms']['p95']:.2f}"),
        ("parameters", f"{report['parameters']['teacher']:,}", f"{report['parameters']['student']:,}"),
    ]
    width = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = ["  ".join(cell.ljust(width[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in width))

    gate = report["gate"]
    lines += [
        "",
        f"agreement {_rate(report['agreement'])}, accuracy gap {_rate(report['accuracy_gap'])}, "
        f"temperature {report['temperature']:.3f}, P95 latency ratio {report['latency_ratio_p95']:.2f}x",
        f"gate: {'PASSED' if gate['passed'] else 'FAILED'}",
    ]
    lines += [f"  [{'ok' if check['passed'] else 'FAIL'}] {check['reason']}" for check in gate["checks"]]
    lines.append("stage times: " + ", ".join(f"{name} {stage['duration_s']:.0f} s" for name, stage in report["stages"].items()))
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """Render the report as Markdown, with the reliability diagrams linked."""
    teacher, student = report["teacher"], report["student"]
    lines = [
        f"# DistillationRun {report['name']}",
        "",
        f"Generated {report['generated_at']} on {report['n_test_examples']} test examples. "
        "Intervals are bootstrap 95% confidence intervals.",
        "",
        "| metric | teacher | student |",
        "|---|---|---|",
    ]
    for key in RATE_KEYS:
        if key in teacher and key in student:
            lines.append(f"| {key} | {_rate(teacher[key])} | {_rate(student[key])} |")
    lines += [
        f"| ECE before calibration | | {_rate(student['ece_uncalibrated'])} |",
        f"| P50 latency, batch 1 (ms) | {teacher['latency_ms']['p50']:.2f} | {student['latency_ms']['p50']:.2f} |",
        f"| P95 latency, batch 1 (ms) | {teacher['latency_ms']['p95']:.2f} | {student['latency_ms']['p95']:.2f} |",
        f"| P95 latency, batch 32 (ms) | {teacher['latency_ms']['batch_32']['p95']:.2f} | {student['latency_ms']['batch_32']['p95']:.2f} |",
        f"| parameters | {report['parameters']['teacher']:,} | {report['parameters']['student']:,} |",
        "",
        f"- Teacher-student agreement: {_rate(report['agreement'])}",
        f"- Accuracy gap (teacher minus student): {_rate(report['accuracy_gap'])}",
        f"- Fitted temperature: {report['temperature']:.3f}",
        f"- P95 latency ratio (teacher / student): {report['latency_ratio_p95']:.2f}",
    ]
    if "student_int8" in report:
        int8 = report["student_int8"]
        lines.append(
            f"- int8 student: P95 {int8['latency_ms']['p95']:.2f} ms, argmax agreement with torch "
            f"{int8['parity']['argmax_agreement']:.4f}"
        )
    gate = report["gate"]
    lines += ["", f"## Gate: {'passed' if gate['passed'] else 'failed'}", ""]
    lines += [f"- {'pass' if check['passed'] else 'FAIL'}: {check['reason']}" for check in gate["checks"]]
    lines += ["", "## Stages", "", "| stage | started | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {stage['started_at']} | {stage['duration_s']:.1f} |" for name, stage in report["stages"].items()]
    lines += ["", "## Reliability (test split)", ""]
    lines += [f"![{path}]({path})" for path in report["plots"]]
    return "\n".join(lines) + "\n"


def write_reports(run: DistillationRun, rundir: RunDir) -> dict:
    """Write report.json and report.md and return the report."""
    report = build_report(run, rundir)
    write_json(rundir.report_json, report)
    rundir.report_md.write_text(format_markdown(report), encoding="utf-8")
    return report
