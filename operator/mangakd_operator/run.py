"""Start the operator: ``python -m mangakd_operator`` and ``mangakd operator`` both call :func:`main`.

kopf is imported only when the operator starts, so building the ``mangakd``
command line (which adds this module's arguments) stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence

from .config import OperatorConfig

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the operator's options to ``parser``."""
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch DistillationRuns in this namespace (repeat for several; kopf glob patterns work)",
    )
    scope.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        help="watch DistillationRuns in every namespace (the default when no --namespace is given)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="port of the Prometheus /metrics endpoint; 0 disables it "
        "(default: MANGAKD_METRICS_PORT, else 8000)",
    )


def run_operator(
    namespaces: Sequence[str] = (),
    *,
    all_namespaces: bool = False,
    metrics_port: int | None = None,
    verbose: bool = False,
) -> None:
    """Run the operator in the foreground until SIGINT or SIGTERM.

    Parameters
    ----------
    namespaces : sequence of str
        Namespaces (or kopf glob patterns) to watch; every namespace when empty.
    all_namespaces : bool
        Watch every namespace; the same as giving no namespace.
    metrics_port : int, optional
        Overrides ``MANGAKD_METRICS_PORT``; 0 disables the metrics endpoint.
    verbose : bool
        Log debug messages.

    Raises
    ------
    ConfigError
        When an ``MANGAKD_*`` variable or ``metrics_port`` is invalid.
    """
    import kopf

    from .config import ConfigError
    from .handlers import register

    config = OperatorConfig.from_env()
    if metrics_port is not None:
        if not 0 <= metrics_port <= 65535:
            raise ConfigError(
                f"--metrics-port {metrics_port} is out of range; use 1 to 65535, or 0 to disable"
            )
        config = dataclasses.replace(config, metrics_port=metrics_port)

    # The prefix puts [namespace/name] on every line of the per-object logger.
    kopf.configure(verbose=verbose, log_prefix=True)
    registry = kopf.OperatorRegistry()
    register(registry, config)
    clusterwide = all_namespaces or not namespaces
    # Standalone: one operator per namespace set, without kopf's peering objects.
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=clusterwide,
        namespaces=[] if clusterwide else list(namespaces),
        memo=kopf.Memo(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the operator and return the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m mangakd_operator",
        description="Run the mangakd operator, which reconciles DistillationRun resources.",
    )
    add_arguments(parser)
    parser.add_argument("--verbose", "-v", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    return run_from_arguments(args)


def run_from_arguments(args: argparse.Namespace) -> int:
    """Run the operator with options parsed by a parser that :func:`add_arguments` set up."""
    from .config import ConfigError

    try:
        # `mangakd -v operator` and `python -m mangakd_operator -v` both set `verbose`.
        run_operator(
            args.namespace,
            all_namespaces=args.all_namespaces,
            metrics_port=args.metrics_port,
            verbose=getattr(args, "verbose", False),
        )
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
