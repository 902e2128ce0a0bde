"""Settings of the inference server and the command-line options that set them.

``mangakd serve`` and ``python -m mangakd.server`` share :func:`add_arguments`
and :func:`config_from_arguments`, so both accept the same options.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# Defaults of the request limits. 64 texts of 2,000 characters fit well
# inside 1 MiB of JSON, so a request that passes the body limit can still be
# rejected by name for its texts.
DEFAULT_MAX_TEXTS = 64
DEFAULT_MAX_CHARS = 2000
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_SHADOW_SAMPLE_RATE = 0.1
UNSET_REVISION = "unversioned"


class ConfigError(ValueError):
    """A server setting is out of range or two settings contradict each other."""


@dataclass(frozen=True)
class ServerConfig:
    """Validated settings of one server process.

    Attributes
    ----------
    export_dir
        Export directory with ``manifest.json``, the ONNX files and the tokenizer.
    model_file
        ONNX file inside ``export_dir`` to serve; None serves the manifest's model.
    model_name
        Name reported in responses and in ``mangakd_model_info``; None uses the
        export directory's name.
    revision
        Revision label (the StudentModel revision number) shown in responses and metrics.
    max_wait_ms
        Maximum time in milliseconds that the first request of a micro-batch
        waits for more requests.
    shadow_sample_rate
        Share of requests that are also sent to ``teacher_url``. Ignored without a teacher.
    shadow_queue_size
        Shadow requests that may wait for a sender; more are dropped and counted.
    drain_seconds
        Maximum time in seconds that in-flight requests may take to finish after SIGTERM or SIGINT.
    """

    export_dir: Path
    host: str = "0.0.0.0"
    port: int = 8080
    threads: int | None = None
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_texts: int = DEFAULT_MAX_TEXTS
    max_chars: int = DEFAULT_MAX_CHARS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    teacher_url: str | None = None
    shadow_sample_rate: float = DEFAULT_SHADOW_SAMPLE_RATE
    shadow_seed: int | None = None
    shadow_queue_size: int = 256
    shadow_concurrency: int = 4
    shadow_timeout_s: float = 5.0
    revision: str = UNSET_REVISION
    model_name: str | None = None
    model_file: str | None = None
    drain_seconds: float = 30.0

    def __post_init__(self) -> None:
        _check_port(self.port)
        if self.threads is not None:
            _check_at_least("threads", self.threads, 1, "--threads")
        _check_at_least("max_batch_size", self.max_batch_size, 1, "--max-batch-size")
        _check_at_least("max_texts", self.max_texts, 1, "--max-texts")
        _check_at_least("max_chars", self.max_chars, 1, "--max-chars")
        _check_at_least("max_body_bytes", self.max_body_bytes, 1, "--max-body-bytes")
        _check_at_least("shadow_queue_size", self.shadow_queue_size, 1, "--shadow-queue-size")
        _check_at_least("shadow_concurrency", self.shadow_concurrency, 1, "--shadow-concurrency")
        _check_finite_range("max_wait_ms", self.max_wait_ms, 0.0, 60_000.0, "--max-wait-ms")
        _check_finite_range("drain_seconds", self.drain_seconds, 0.0, 3600.0, "--drain-seconds")
        _check_finite_range("shadow_sample_rate", self.shadow_sample_rate, 0.0, 1.0, "--shadow-sample-rate")
        if not math.isfinite(self.shadow_timeout_s) or self.shadow_timeout_s <= 0:
            raise ConfigError(
                f"--shadow-timeout-s is {self.shadow_timeout_s}; set a finite number of seconds above 0"
            )
        if self.teacher_url is not None:
            _check_teacher_url(self.teacher_url)
        if not self.revision or not self.revision.strip():
            raise ConfigError(f"--revision is {self.revision!r}; pass a non-empty revision label")
        if self.model_file is not None and (
            not self.model_file or Path(self.model_file).name != self.model_file
        ):
            raise ConfigError(
                f"--model-file is {self.model_file!r}; pass a file name inside the export "
                "directory, such as model.onnx or model.int8.onnx"
            )

    @property
    def shadowing(self) -> bool:
        """Whether requests are sampled and sent to a teacher."""
        return self.teacher_url is not None and self.shadow_sample_rate > 0

    @property
    def name(self) -> str:
        """Model name reported in responses and metrics."""
        return self.model_name or self.export_dir.resolve().name


def _check_port(port: int) -> None:
    # Port 0 lets the operating system pick a free port, which tests use.
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port is {port}; pass a port from 1 to 65535, or 0 for any free port")


def _check_at_least(field: str, value: int, minimum: int, option: str) -> None:
    if value < minimum:
        raise ConfigError(f"{option} ({field}) is {value}; pass an integer of at least {minimum}")


def _check_finite_range(field: str, value: float, low: float, high: float, option: str) -> None:
    if not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{option} ({field}) is {value}; pass a number from {low:g} to {high:g}")


def _check_teacher_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"--teacher-url is {url!r}; pass the teacher server's base URL, such as http://teacher:8080"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server's options to ``parser`` (a subcommand parser or a standalone one)."""
    parser.add_argument(
        "export_dir", metavar="EXPORT_DIR", type=Path, help="export directory with manifest.json"
    )
    parser.add_argument(
        "--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0, every interface)"
    )
    parser.add_argument(
        "--port", type=int, default=8080, help="port to listen on; 0 picks a free port (default 8080)"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level"
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model-file",
        default=None,
        help="ONNX file in EXPORT_DIR to serve, such as model.int8.onnx (default: the manifest's model)",
    )
    model.add_argument(
        "--model-name",
        default=None,
        help="model name shown in responses (default: the export directory's name)",
    )
    model.add_argument(
        "--revision",
        default=UNSET_REVISION,
        help="revision label shown in responses and metrics (the StudentModel revision)",
    )
    model.add_argument(
        "--threads",
        type=int,
        default=None,
        help="onnxruntime intra-op threads (default: every core this process may use)",
    )

    batching = parser.add_argument_group("micro-batching")
    batching.add_argument(
        "--max-batch-size",
        type=int,
        default=32,
        help="maximum texts merged into one onnxruntime call (default 32)",
    )
    batching.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="maximum time in ms that the first request of a batch waits for more requests (default 5)",
    )

    limits = parser.add_argument_group("request limits")
    limits.add_argument(
        "--max-texts",
        type=int,
        default=DEFAULT_MAX_TEXTS,
        help=f"maximum texts per request (default {DEFAULT_MAX_TEXTS})",
    )
    limits.add_argument(
        "--max-chars",
        type=int,
        default=DEFAULT_MAX_CHARS,
        help=f"maximum characters per text (default {DEFAULT_MAX_CHARS})",
    )
    limits.add_argument(
        "--max-body-bytes",
        type=int,
        default=DEFAULT_MAX_BODY_BYTES,
        help=f"largest request body in bytes (default {DEFAULT_MAX_BODY_BYTES}, 1 MiB)",
    )

    shadow = parser.add_argument_group("shadowing to a teacher")
    shadow.add_argument(
        "--teacher-url", default=None, help="base URL of a teacher server to shadow sampled requests to"
    )
    shadow.add_argument(
        "--shadow-sample-rate",
        type=float,
        default=None,
        help=f"share of requests sent to the teacher, 0 to 1 (default {DEFAULT_SHADOW_SAMPLE_RATE} with --teacher-url)",
    )
    shadow.add_argument(
        "--shadow-seed", type=int, default=None, help="seed of the shadow sampling, for repeatable tests"
    )
    shadow.add_argument(
        "--shadow-queue-size",
        type=int,
        default=256,
        help="shadow requests that may wait for a sender; more are dropped and counted (default 256)",
    )
    shadow.add_argument(
        "--shadow-concurrency",
        type=int,
        default=4,
        help="shadow requests sent to the teacher at once (default 4)",
    )
    shadow.add_argument(
        "--shadow-timeout-s",
        type=float,
        default=5.0,
        help="timeout of one shadow request in seconds (default 5)",
    )

    shutdown = parser.add_argument_group("shutdown")
    shutdown.add_argument(
        "--drain-seconds",
        type=float,
        default=30.0,
        help="maximum time in seconds that in-flight requests may take after SIGTERM (default 30)",
    )


def config_from_arguments(args: argparse.Namespace) -> ServerConfig:
    """Build a :class:`ServerConfig` from parsed options.

    Raises
    ------
    ConfigError
        If a setting is out of range, or a sample rate is given without a teacher URL.
    """
    if args.shadow_sample_rate is not None and args.shadow_sample_rate > 0 and args.teacher_url is None:
        raise ConfigError(
            f"--shadow-sample-rate is {args.shadow_sample_rate} but --teacher-url is missing; "
            "pass the teacher's URL or drop the sample rate"
        )
    rate = DEFAULT_SHADOW_SAMPLE_RATE if args.shadow_sample_rate is None else args.shadow_sample_rate
    return ServerConfig(
        export_dir=args.export_dir,
        host=args.host,
        port=args.port,
        threads=args.threads,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        max_body_bytes=args.max_body_bytes,
        teacher_url=args.teacher_url,
        shadow_sample_rate=rate,
        shadow_seed=args.shadow_seed,
        shadow_queue_size=args.shadow_queue_size,
        shadow_concurrency=args.shadow_concurrency,
        shadow_timeout_s=args.shadow_timeout_s,
        revision=args.revision,
        model_name=args.model_name,
        model_file=args.model_file,
        drain_seconds=args.drain_seconds,
    )
