"""Operator settings, read once at start-up from ``MANGAKD_*`` environment variables.

Every setting has a default, so the operator starts with no environment at
all; the Helm chart and the tests override what they need. Invalid values
raise :class:`ConfigError` naming the variable and the expected form.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from mangakd import __version__

DEFAULT_IMAGE = f"mangakd/trainer:{__version__}"
DEFAULT_SERVER_IMAGE = f"mangakd/server:{__version__}"


class ConfigError(ValueError):
    """An environment variable of the operator has an invalid value."""


@dataclass(frozen=True)
class OperatorConfig:
    """Settings of one operator process.

    Attributes
    ----------
    trainer_image : str
        Image of the training Job (prepare, finetune, distill), which needs torch and a GPU build.
    evaluator_image : str
        Image of the evaluation Job (calibrate, export, evaluate, gate), run on CPU.
    image_pull_policy : str
        ``imagePullPolicy`` of both Jobs' containers.
    service_account : str or None
        ServiceAccount of the Jobs' pods; the namespace default when None.
    metrics_port : int
        Port of the Prometheus endpoint; 0 disables it.
    metrics_address : str
        Address the Prometheus endpoint listens on; every interface by default, so Prometheus can scrape the pod.
    reconcile_interval : float
        Seconds between two level-triggered reconciles of one DistillationRun.
    retry_delay : float
        Seconds kopf waits before retrying after a transient API error.
    watch_timeout : float
        Seconds after which the API server closes a watch and kopf reopens it.
    server_image : str
        Image of the inference server pods of StudentModels without ``spec.serving.image``.
    rollout_interval : float
        Seconds between two reconciles of one StudentModel (rollout steps, analyses, guard checks).
    server_pre_stop_seconds : int
        Seconds a deleted server pod keeps serving (its preStop sleep) while it leaves the Service's endpoints.
    scrape_timeout : float
        Timeout in seconds of one scrape of a server pod's ``/metrics`` or one Prometheus query.
    """

    trainer_image: str = DEFAULT_IMAGE
    evaluator_image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    service_account: str | None = None
    metrics_port: int = 8000
    metrics_address: str = "0.0.0.0"
    reconcile_interval: float = 30.0
    retry_delay: float = 10.0
    watch_timeout: float = 300.0
    server_image: str = DEFAULT_SERVER_IMAGE
    rollout_interval: float = 5.0
    server_pre_stop_seconds: int = 5
    scrape_timeout: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        """Read the settings from ``environ`` (default: ``os.environ``).

        Variables: ``MANGAKD_TRAINER_IMAGE``, ``MANGAKD_EVALUATOR_IMAGE`` (default:
        the trainer image), ``MANGAKD_IMAGE_PULL_POLICY``,
        ``MANGAKD_JOB_SERVICE_ACCOUNT``, ``MANGAKD_METRICS_PORT``, ``MANGAKD_METRICS_ADDRESS``,
        ``MANGAKD_RECONCILE_INTERVAL``, ``MANGAKD_RETRY_DELAY`` and
        ``MANGAKD_WATCH_TIMEOUT`` (seconds); for StudentModels ``MANGAKD_SERVER_IMAGE``,
        ``MANGAKD_ROLLOUT_INTERVAL``, ``MANGAKD_SERVER_PRESTOP_SECONDS`` and
        ``MANGAKD_SCRAPE_TIMEOUT`` (seconds).
        """
        env = os.environ if environ is None else environ
        trainer_image = env.get("MANGAKD_TRAINER_IMAGE") or cls.trainer_image
        pull_policy = env.get("MANGAKD_IMAGE_PULL_POLICY") or cls.image_pull_policy
        if pull_policy not in ("Always", "IfNotPresent", "Never"):
            raise ConfigError(
                f"MANGAKD_IMAGE_PULL_POLICY={pull_policy!r} is invalid; use Always, IfNotPresent or Never"
            )
        return cls(
            trainer_image=trainer_image,
            evaluator_image=env.get("MANGAKD_EVALUATOR_IMAGE") or trainer_image,
            image_pull_policy=pull_policy,
            service_account=env.get("MANGAKD_JOB_SERVICE_ACCOUNT") or None,
            metrics_port=_port(env, "MANGAKD_METRICS_PORT", cls.metrics_port),
            metrics_address=env.get("MANGAKD_METRICS_ADDRESS") or cls.metrics_address,
            reconcile_interval=_seconds(env, "MANGAKD_RECONCILE_INTERVAL", cls.reconcile_interval),
            retry_delay=_seconds(env, "MANGAKD_RETRY_DELAY", cls.retry_delay),
            watch_timeout=_seconds(env, "MANGAKD_WATCH_TIMEOUT", cls.watch_timeout),
            server_image=env.get("MANGAKD_SERVER_IMAGE") or cls.server_image,
            rollout_interval=_seconds(env, "MANGAKD_ROLLOUT_INTERVAL", cls.rollout_interval),
            server_pre_stop_seconds=_whole_seconds(
                env, "MANGAKD_SERVER_PRESTOP_SECONDS", cls.server_pre_stop_seconds
            ),
            scrape_timeout=_seconds(env, "MANGAKD_SCRAPE_TIMEOUT", cls.scrape_timeout),
        )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a number; set it to a duration in seconds, e.g. 30"
        ) from None
    if not value > 0:
        raise ConfigError(f"{name}={raw!r} must be greater than 0 seconds")
    return value


def _whole_seconds(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set whole seconds, e.g. 5") from None
    if not 0 <= value <= 3600:
        raise ConfigError(f"{name}={raw!r} is out of range; set 0 to 3600 seconds")
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer; set a TCP port, or 0 to disable") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"{name}={raw!r} is out of range; set a TCP port from 1 to 65535, or 0 to disable")
    return value
