"""Run the development cluster: ``python -m mangakd.devcluster --kubeconfig PATH``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .cluster import run_dev_cluster


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mangakd.devcluster",
                                     description="Serve an in-memory Kubernetes API (a development sandbox) on 127.0.0.1.")
    parser.add_argument("--kubeconfig", type=Path, required=True, help="kubeconfig file to write for kubectl and clients")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="listen port; 0 picks a free port (default 0)")
    parser.add_argument("--state-dir", type=Path, default=None,
                        help="directory for PVC data and pod logs (default: a temporary directory removed on exit)")
    parser.add_argument("--no-executor", action="store_true", help="do not run Jobs, Deployments or pods")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_dev_cluster(args.kubeconfig, host=args.host, port=args.port, state_dir=args.state_dir,
                    executor=not args.no_executor)


if __name__ == "__main__":
    main()
