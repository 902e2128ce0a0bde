"""Run the inference server as a process: ``mangakd serve`` and ``python -m mangakd.server``.

On SIGTERM or SIGINT the server turns ``/readyz`` to 503 at once, keeps
serving while in-flight predict requests finish (at most
``--drain-seconds``), then closes its listener and exits 0. If the model
cannot be loaded it exits 1, so that Kubernetes restarts the pod.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from aiohttp import web

from mangakd.onnx_runtime import ManifestError, read_manifest
from mangakd.server.app import create_app
from mangakd.server.config import (
    ConfigError,
    ServerConfig,
    add_arguments,
    config_from_arguments,
)
from mangakd.server.routes import STATE_KEY
from mangakd.server.state import Phase

logger = logging.getLogger("mangakd.server")

EXIT_OK = 0
EXIT_LOAD_FAILED = 1
EXIT_BAD_CONFIG = 2

# Time that aiohttp gives open connections to finish after the drain, in seconds.
CLOSE_TIMEOUT_S = 2.0


def check_export_dir(config: ServerConfig) -> None:
    """Check before start-up that the manifest is valid and the model file exists.

    Raises
    ------
    FileNotFoundError, ManifestError
        With a message that names the missing or invalid file.
    """
    manifest = read_manifest(config.export_dir)
    model_file = config.model_file or manifest.model
    path = Path(config.export_dir) / model_file
    if not path.is_file():
        present = sorted(item.name for item in Path(config.export_dir).glob("*.onnx"))
        raise FileNotFoundError(
            f"model file {str(path)!r} not found; the export directory has {present}, pass one with --model-file"
        )


async def run_server(config: ServerConfig) -> int:
    """Serve ``config`` until SIGTERM or SIGINT, drain, and return the exit code.

    Returns
    -------
    int
        0 after a graceful shutdown, 1 if the model failed to load.
    """
    app = create_app(config)
    state = app[STATE_KEY]
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=CLOSE_TIMEOUT_S)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    await site.start()
    for address in runner.addresses:
        host, port = address[0], address[1]
        logger.info("listening on http://%s:%d", host, port)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _request_stop, stop, signum)

    stop_task = asyncio.create_task(stop.wait())
    loaded_task = asyncio.create_task(state.loaded.wait())
    await asyncio.wait({stop_task, loaded_task}, return_when=asyncio.FIRST_COMPLETED)
    if state.phase is not Phase.FAILED and not stop.is_set():
        await stop.wait()
    stop_task.cancel()
    loaded_task.cancel()

    exit_code = EXIT_LOAD_FAILED if state.phase is Phase.FAILED else EXIT_OK
    state.begin_drain()
    drained = await state.wait_idle(config.drain_seconds)
    logger.info("drained in-flight requests; closing" if drained else "drain timed out; closing")
    await runner.cleanup()
    logger.info("stopped with exit code %d", exit_code)
    return exit_code


def _request_stop(stop: asyncio.Event, signum: int) -> None:
    if stop.is_set():
        return
    logger.info(
        "received %s; /readyz now returns 503 and in-flight requests are drained", signal.Signals(signum).name
    )
    stop.set()


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``python -m mangakd.server``."""
    parser = argparse.ArgumentParser(
        prog="python -m mangakd.server",
        description="Serve an exported intent classifier over HTTP with micro-batching and Prometheus metrics.",
    )
    add_arguments(parser)
    return parser


def run_from_arguments(args: argparse.Namespace) -> int:
    """Validate parsed options, serve, and return the exit code (2 for invalid settings)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mangakd").setLevel(args.log_level)
    try:
        config = config_from_arguments(args)
        check_export_dir(config)
    except (ConfigError, FileNotFoundError, ManifestError) as error:
        print(f"mangakd serve: error: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return asyncio.run(run_server(config))


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), serve, and return the exit code."""
    return run_from_arguments(build_parser().parse_args(argv))
