"""The ``mangakd`` command line.

``mangakd run FILE --workdir DIR`` runs every stage of a DistillationRun on
this machine; ``mangakd STAGE FILE --workdir DIR`` runs one stage, which is
how the operator's Jobs call it.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from mangakd import __version__

STAGE_COMMANDS = {
    "prepare": "Load, validate and split the data set; write the label map.",
    "finetune": "Fine-tune the base encoder into the teacher, or check a given teacher.",
    "distill": "Distill the student from the teacher's cached logits.",
    "calibrate": "Fit the student's temperature on dev; draw reliability diagrams.",
    "export": "Export teacher and student to ONNX, check parity, measure latency.",
    "evaluate": "Compute metrics with bootstrap confidence intervals on test.",
    "gate": "Judge the student against the gate policy.",
}

# The termination message of a Kubernetes container is cut at 4096 bytes.
TERMINATION_LIMIT = 4096


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="DistillationRun YAML, the same file kubectl applies")
    parser.add_argument("--workdir", type=Path, required=True, help="run directory for all artifacts")
    parser.add_argument("--force", action="store_true", help="rerun stages even when their outputs are complete")
    parser.add_argument(
        "--termination-log",
        type=Path,
        help="also write a JSON result of at most 4096 bytes here (a container's terminationMessagePath)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one subcommand per stage."""
    parser = argparse.ArgumentParser(
        prog="mangakd",
        description="Distill, calibrate, gate, export and serve intent classifiers; run the operator.",
        epilog="Start with: mangakd run examples/distillationrun-quick.yaml --workdir runs/quick",
    )
    parser.add_argument("--version", action="version", version=f"mangakd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run all stages (or --stages) and write the reports")
    _add_run_arguments(run)
    run.add_argument("--stages", help="comma-separated stages to run, e.g. prepare,finetune,distill")
    for name, text in STAGE_COMMANDS.items():
        _add_run_arguments(commands.add_parser(name, help=text, description=text))

    crds = commands.add_parser("crds", help="write the CustomResourceDefinitions generated from the models")
    crds.add_argument("--output", type=Path, default=Path("crds"), help="folder to write into (default: crds)")
    crds.add_argument("--check", action="store_true", help="only report whether the files differ; exit 1 if they do")

    from mangakd_operator.run import add_arguments as add_operator_arguments

    operator = commands.add_parser(
        "operator", help="run the Kubernetes operator that reconciles DistillationRuns (same as python -m mangakd_operator)"
    )
    add_operator_arguments(operator)

    from mangakd.server.config import add_arguments as add_server_arguments

    serve = commands.add_parser(
        "serve", help="serve an exported model over HTTP (same as python -m mangakd.server)"
    )
    add_server_arguments(serve)

    dev_cluster = commands.add_parser(
        "dev-cluster", help="serve the in-memory development cluster (a sandbox, not Kubernetes) on 127.0.0.1"
    )
    dev_cluster.add_argument("--kubeconfig", type=Path, required=True, help="kubeconfig file to write for kubectl and clients")
    dev_cluster.add_argument("--port", type=int, default=0, help="listen port; 0 picks a free port (default 0)")
    dev_cluster.add_argument(
        "--state-dir", type=Path, default=None,
        help="folder for PVC data and pod logs (default: a temporary folder removed on exit)",
    )
    return parser


def _crds(output: Path, check: bool) -> int:
    from mangakd.crds import render_crds, write_crds

    if not check:
        for path in write_crds(output):
            print(f"wrote {path}")
        return 0
    stale = [
        name
        for name, text in render_crds().items()
        if not (output / name).is_file() or (output / name).read_text(encoding="utf-8") != text
    ]
    for name in stale:
        print(f"{output / name} is out of date; run: mangakd crds --output {output}", file=sys.stderr)
    return 1 if stale else 0


def _termination_message(markers: dict, workdir: Path) -> str:
    from mangakd.rundir import RunDir

    stage_keys = ("started_at", "finished_at", "duration_s", "skipped")
    result: dict = {"stages": {name: {key: marker[key] for key in stage_keys} for name, marker in markers.items()}}
    rundir = RunDir(workdir)
    evaluated = rundir.read_marker("evaluate")
    if evaluated is not None and "evaluate" in markers:
        summary = evaluated["summary"]
        result["metrics"] = {
            "teacherAccuracy": summary["teacher"]["accuracy"],
            "studentAccuracy": summary["student"]["accuracy"],
            "agreement": summary["agreement"],
            "accuracyGap": summary["accuracy_gap"],
            "ece": summary["student"]["ece"],
        }
    verdict = rundir.read_marker("gate")
    if verdict is not None and "gate" in markers:
        result["gate"] = {
            "passed": verdict["summary"]["passed"],
            "checks": [{"name": c["name"], "passed": c["passed"], "reason": c["reason"]} for c in verdict["summary"]["checks"]],
        }
    text = json.dumps(result, separators=(",", ":"))
    if len(text.encode()) > TERMINATION_LIMIT:
        # Reasons are the longest part; the full verdict stays in the run directory.
        for check in result.get("gate", {}).get("checks", []):
            check["reason"] = check["reason"][:80]
        text = json.dumps(result, separators=(",", ":"))[:TERMINATION_LIMIT]
    return text


class Terminated(BaseException):
    """SIGTERM arrived; raised from the signal handler like KeyboardInterrupt."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "operator":
        # Before basicConfig: kopf installs its own log handler with [namespace/name] prefixes.
        from mangakd_operator.run import run_from_arguments

        return run_from_arguments(args)
    if args.command == "serve":
        from mangakd.server.serve import run_from_arguments as serve_from_arguments

        return serve_from_arguments(args)
    # Libraries (onnxruntime's quantizer, onnx_ir) log chatty INFO lines to
    # the root logger; only mangakd's own INFO lines are shown.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mangakd").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if args.command == "crds":
        return _crds(args.output, args.check)
    if args.command == "dev-cluster":
        from mangakd.devcluster import run_dev_cluster

        run_dev_cluster(args.kubeconfig, port=args.port, state_dir=args.state_dir)
        return 0

    # transformers reports every freshly initialised head and shows its own
    # progress bars; mangakd logs what matters itself.
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    # Heavy imports (torch, transformers) only after argument parsing, so --help is fast.
    from mangakd.data import DataError
    from mangakd.models import ModelError
    from mangakd.pipeline import StageFailed, run_pipeline, select_stages
    from mangakd.report import format_summary
    from mangakd.rundir import RunDir
    from mangakd.spec import SpecError, load_run

    if args.termination_log is not None and not args.termination_log.parent.is_dir():
        print(f"error: --termination-log {args.termination_log}: folder {args.termination_log.parent} "
              "does not exist; create it or give another path", file=sys.stderr)
        return 2

    # Kubernetes stops a pod with SIGTERM; treat it like Ctrl-C so the same message is printed.
    previous_handler = signal.signal(signal.SIGTERM, _terminate)
    try:
        run = load_run(args.file)
        if args.command == "run":
            only = select_stages(args.stages.split(",")) if args.stages else None
        else:
            only = [args.command]
        markers = run_pipeline(run, args.workdir, only=only, force=args.force)
    except (KeyboardInterrupt, Terminated) as stop:
        print(
            "interrupted: finished stages and the last epoch checkpoint are kept; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 143 if isinstance(stop, Terminated) else 130
    except (SpecError, DataError, ModelError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except StageFailed as error:
        cause = error.__cause__
        print(f"error: {error}", file=sys.stderr)
        if isinstance(cause, (DataError, ModelError, ValueError, OSError)):
            return 2
        raise
    except OSError as error:
        # A workdir that is a file, read-only or otherwise unusable.
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous_handler)

    if args.termination_log is not None:
        args.termination_log.write_text(_termination_message(markers, args.workdir), encoding="utf-8")
    rundir = RunDir(args.workdir)
    if args.command == "run" and rundir.report_json.is_file() and "gate" in markers:
        report = json.loads(rundir.report_json.read_text(encoding="utf-8"))
        print(format_summary(report))
        print(f"\nreport: {rundir.report_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
