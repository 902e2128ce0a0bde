"""Lifecycle of one server: load the model, warm it up, serve, drain.

:class:`ServerState` is shared by the route handlers and the process runner
in :mod:`mangakd.server.serve`. Its phase drives ``/readyz``: ``loading``
until the model is loaded and a warm-up inference passed, then ``ready``,
then ``draining`` from the moment a shutdown begins, or ``failed`` if the
model could not be loaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from enum import Enum

from mangakd.onnx_runtime import OnnxClassifier
from mangakd.server.batcher import MicroBatcher
from mangakd.server.config import ServerConfig
from mangakd.server.metrics import ServerMetrics
from mangakd.server.shadow import ShadowSender
from mangakd.server.validation import RequestLimits

logger = logging.getLogger(__name__)

WARM_UP_TEXT = "what time is it in tokyo"

ClassifierLoader = Callable[[ServerConfig], OnnxClassifier]


class Phase(str, Enum):
    """Lifecycle phase of a server."""

    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


def load_classifier(config: ServerConfig) -> OnnxClassifier:
    """Open the export directory's model (or ``config.model_file``) with onnxruntime.

    Raises
    ------
    FileNotFoundError, ManifestError
        If the export directory, its manifest, the model file or the tokenizer is missing or invalid.
    """
    return OnnxClassifier(
        config.export_dir,
        threads=config.threads,
        batch_size=config.max_batch_size,
        model_file=config.model_file,
    )


class ServerState:
    """The model, the batcher, the shadow sender and the lifecycle phase of one server.

    Parameters
    ----------
    config
        Validated settings.
    loader
        Function that opens the classifier; it runs in a worker thread. Tests
        pass one that blocks, to observe the loading phase.
    """

    def __init__(self, config: ServerConfig, loader: ClassifierLoader = load_classifier) -> None:
        self.config = config
        self.limits = RequestLimits(
            max_texts=config.max_texts, max_chars=config.max_chars, max_body_bytes=config.max_body_bytes
        )
        self.metrics = ServerMetrics(
            model_name=config.name, revision=config.revision, model_file=config.model_file or "unknown"
        )
        self.phase = Phase.LOADING
        self.load_error: str | None = None
        self.classifier: OnnxClassifier | None = None
        self.batcher: MicroBatcher | None = None
        self.shadow: ShadowSender | None = None
        self._loader = loader
        self._load_task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.loaded = asyncio.Event()

    @property
    def accepting(self) -> bool:
        """Whether predict requests are served: once ready, and while draining."""
        return self.batcher is not None and self.phase in (Phase.READY, Phase.DRAINING)

    def start_loading(self) -> None:
        """Start loading and warming up the model in the background."""
        self._load_task = asyncio.create_task(self._load(), name="mangakd-load-model")

    async def _load(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            classifier = await loop.run_in_executor(None, self._loader, self.config)
            # The first run allocates onnxruntime's buffers and loads the
            # tokenizer's lazy parts, so it is slower than the rest and
            # would otherwise land on a real request.
            await loop.run_in_executor(None, classifier.predict, [WARM_UP_TEXT], 1)
        except Exception as error:  # any load failure makes the server unready, then exit
            self.phase = Phase.FAILED
            self.load_error = f"{type(error).__name__}: {error}"
            logger.exception("failed to load the model from %s", self.config.export_dir)
            self.loaded.set()
            return

        self.classifier = classifier
        self.metrics.describe_model(
            model_name=self.config.name, revision=self.config.revision, model_file=classifier.manifest.model
        )
        self.metrics.declare_intents(classifier.labels)
        self.batcher = MicroBatcher(
            classifier.predict,
            max_batch_size=self.config.max_batch_size,
            max_wait_ms=self.config.max_wait_ms,
            on_batch=self._observe_batch,
        )
        self.batcher.start()
        if self.config.shadowing:
            assert self.config.teacher_url is not None, "shadowing implies a teacher URL"
            self.shadow = ShadowSender(
                self.config.teacher_url,
                sample_rate=self.config.shadow_sample_rate,
                metrics=self.metrics,
                seed=self.config.shadow_seed,
                queue_size=self.config.shadow_queue_size,
                concurrency=self.config.shadow_concurrency,
                timeout_s=self.config.shadow_timeout_s,
            )
            await self.shadow.start()
        # A shutdown that began while loading keeps the server draining.
        if self.phase is Phase.LOADING:
            self.phase = Phase.READY
        logger.info(
            "model %s revision %s (%s, %d intents) ready after %.1f s",
            self.config.name,
            self.config.revision,
            classifier.manifest.model,
            len(classifier.labels),
            time.perf_counter() - started,
        )
        self.loaded.set()

    def _observe_batch(self, size: int, duration_s: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.inference_duration.observe(duration_s)

    def request_started(self) -> None:
        """Count a predict request in flight."""
        self._in_flight += 1
        self._idle.clear()
        self.metrics.in_flight.inc()

    def request_finished(self) -> None:
        """Count a predict request as completed."""
        self._in_flight -= 1
        self.metrics.in_flight.dec()
        if self._in_flight == 0:
            self._idle.set()

    def begin_drain(self) -> None:
        """Turn ``/readyz`` to 503 at once; requests are still served until :meth:`close`."""
        if self.phase is not Phase.FAILED:
            self.phase = Phase.DRAINING

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` seconds for in-flight predict requests; return whether none is left."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            logger.warning(
                "%d predict request(s) still in flight after %.1f s of draining", self._in_flight, timeout_s
            )
            return False
        return True

    async def close(self, shadow_timeout_s: float = 1.0) -> None:
        """Stop loading, let the batcher run the queued requests, then stop the shadow sender."""
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
            await asyncio.gather(self._load_task, return_exceptions=True)
        if self.batcher is not None:
            await self.batcher.close()
        if self.shadow is not None:
            await self.shadow.close(shadow_timeout_s)
