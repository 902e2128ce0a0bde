"""Shadow a sample of requests to the teacher and count where the two agree.

There are no labels in production, so the teacher's intent is the reference.
After the student's response is sent, a sampled request goes into a bounded
queue, and sender tasks post its texts to the teacher's ``/v1/predict``. Per
text the student's confidence bin and whether the two intents agree are
counted, which is enough to compute live agreement and the ECE of the
student's confidence against the teacher's labels (see
:mod:`mangakd.server.analysis`). A full queue drops the sample and counts
it, so a slow teacher never slows the student down.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from mangakd.metrics import confidence_bin
from mangakd.server.metrics import CONFIDENCE_BINS, PREDICT_ROUTE, ServerMetrics

logger = logging.getLogger(__name__)

# At most one warning per interval about failing shadow requests, with the
# count since the last one, so that a teacher outage does not flood the log.
ERROR_LOG_INTERVAL_S = 60.0


class ShadowResponseError(ValueError):
    """The teacher responded, but not with one prediction per shadowed text."""


@dataclass(frozen=True)
class ShadowJob:
    """The texts of one sampled request and the student's predictions for them."""

    texts: list[str]
    student_intents: list[str]
    student_confidences: list[float]


def predict_url(teacher_url: str) -> str:
    """Return the teacher's predict endpoint for a base URL (or the endpoint itself)."""
    base = teacher_url.rstrip("/")
    if urlsplit(base).path.endswith(PREDICT_ROUTE):
        return base
    return base + PREDICT_ROUTE


class ShadowSender:
    """Sample requests, send them to the teacher in the background and count agreement.

    Parameters
    ----------
    teacher_url
        Base URL of a server with the same predict API, usually ``mangakd serve`` on the teacher export.
    sample_rate
        Share of requests to shadow, from 0 to 1.
    metrics
        Where the shadow counters live.
    seed
        Seed of the sampling; None draws from the operating system.
    queue_size, concurrency, timeout_s
        Queued samples before dropping, concurrent teacher requests, and the
        timeout of one teacher request in seconds.
    """

    def __init__(
        self,
        teacher_url: str,
        *,
        sample_rate: float,
        metrics: ServerMetrics,
        seed: int | None = None,
        queue_size: int = 256,
        concurrency: int = 4,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = predict_url(teacher_url)
        self.sample_rate = sample_rate
        self._metrics = metrics
        self._random = random.Random(seed)
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=queue_size)
        self._concurrency = concurrency
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unlogged_errors = 0
        self._last_error_log = -ERROR_LOG_INTERVAL_S

    async def start(self) -> None:
        """Open the HTTP session and start the sender tasks."""
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        for index in range(self._concurrency):
            self._tasks.append(asyncio.create_task(self._send_forever(), name=f"mangakd-shadow-{index}"))
        logger.info(
            "shadowing %.3g of requests to %s with %d senders", self.sample_rate, self.url, self._concurrency
        )

    def sample(self) -> bool:
        """Draw whether the current request is shadowed."""
        return self._random.random() < self.sample_rate

    def submit(self, texts: Sequence[str], predictions: Sequence[dict[str, Any]]) -> bool:
        """Queue a request for shadowing without waiting; return False and count a drop when the queue is full."""
        job = ShadowJob(
            texts=list(texts),
            student_intents=[prediction["intent"] for prediction in predictions],
            student_confidences=[float(prediction["confidence"]) for prediction in predictions],
        )
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self._metrics.shadow_dropped.inc()
            return False
        return True

    async def close(self, timeout_s: float) -> None:
        """Send what is queued for up to ``timeout_s`` seconds, then stop the senders and close the session.

        Samples still queued or in flight at the deadline are dropped and counted.
        """
        try:
            await asyncio.wait_for(self._queue.join(), timeout_s)
        except TimeoutError:
            logger.warning(
                "dropped %d queued shadow requests at shutdown after %.1f s", self._queue.qsize(), timeout_s
            )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            self._metrics.shadow_dropped.inc()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _send_forever(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                await self._shadow(job)
            except asyncio.CancelledError:
                self._metrics.shadow_dropped.inc()
                raise
            except (aiohttp.ClientError, TimeoutError, ValueError) as error:
                # ValueError covers a body that is not JSON and ShadowResponseError.
                self._record_error(error)
            except Exception:
                # A sender that died would silently stop all shadowing, so an
                # unexpected error is logged with its traceback and counted.
                logger.exception("shadow request to %s failed unexpectedly", self.url)
                self._metrics.shadow_errors.inc()
            finally:
                self._queue.task_done()

    async def _shadow(self, job: ShadowJob) -> None:
        assert self._session is not None, "start() opens the session before senders run"
        async with self._session.post(self.url, json={"texts": job.texts, "topK": 1}) as response:
            if response.status != 200:
                body = (await response.text())[:200]
                raise ShadowResponseError(f"the teacher returned HTTP {response.status}: {body}")
            payload = await response.json(content_type=None)
        teacher_intents = parse_teacher_intents(payload, len(job.texts))

        confidences = np.asarray(job.student_confidences, dtype=np.float64)
        bins = confidence_bin(confidences, CONFIDENCE_BINS)
        for student, teacher, confidence, bin_index in zip(
            job.student_intents, teacher_intents, confidences, bins
        ):
            self._metrics.observe_shadow(int(bin_index), float(confidence), student == teacher)

    def _record_error(self, error: Exception) -> None:
        self._metrics.shadow_errors.inc()
        self._unlogged_errors += 1
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL_S:
            logger.warning(
                "%d shadow request(s) to %s failed since the last report; latest: %s: %s",
                self._unlogged_errors,
                self.url,
                type(error).__name__,
                error,
            )
            self._unlogged_errors = 0
            self._last_error_log = now


def parse_teacher_intents(payload: Any, count: int) -> list[str]:
    """Return the intents of a predict response that must hold ``count`` predictions.

    Raises
    ------
    ShadowResponseError
        If the response is not ``{"predictions": [{"intent": str, ...}, ...]}`` with ``count`` entries.
    """
    predictions = payload.get("predictions") if isinstance(payload, dict) else None
    if not isinstance(predictions, list):
        raise ShadowResponseError("the teacher's response has no list 'predictions'")
    if len(predictions) != count:
        raise ShadowResponseError(f"the teacher returned {len(predictions)} predictions for {count} texts")
    intents = []
    for index, prediction in enumerate(predictions):
        intent = prediction.get("intent") if isinstance(prediction, dict) else None
        if not isinstance(intent, str):
            raise ShadowResponseError(f"the teacher's prediction {index} has no string 'intent'")
        intents.append(intent)
    return intents
