"""Micro-batching: merge concurrent predict requests into one model call.

A request's texts wait in a queue. One collector task takes whole requests
from the front of the queue until the batch contains ``max_batch_size`` texts or
the oldest request has waited ``max_wait_ms``, runs the batch in a single
worker thread, and hands each request back exactly its own predictions.
The event loop stays free while onnxruntime runs, and the model sees one
batch at a time, so its intra-op threads never compete with each other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# predict(texts, top_k) -> one prediction dict per text, in order, each with
# "intent", "confidence" and "top_k" sorted by descending confidence.
PredictFunction = Callable[[list[str], int], list[dict[str, Any]]]


@dataclass
class _Pending:
    texts: list[str]
    top_k: int
    future: asyncio.Future[list[dict[str, Any]]]
    enqueued_at: float = field(default_factory=time.monotonic)


class BatcherClosedError(RuntimeError):
    """A request reached the batcher after :meth:`MicroBatcher.close`."""


class InferenceError(RuntimeError):
    """The model failed on a batch; the original exception is the ``__cause__``."""


class MicroBatcher:
    """Collect predict requests into micro-batches and run them in a worker thread.

    Parameters
    ----------
    predict
        Function that classifies a list of texts; it runs in the worker thread.
    max_batch_size
        Maximum texts per batch. A batch only ever contains whole requests, so a
        request with more texts than this runs as a batch of its own.
    max_wait_ms
        Maximum time in milliseconds that the oldest queued request waits for
        the batch to fill. 0 runs whatever is queued at once.
    on_batch
        Called in the event loop after each batch with its text count and its
        duration in seconds, for metrics.
    """

    def __init__(
        self,
        predict: PredictFunction,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size is {max_batch_size}; pass at least 1")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms is {max_wait_ms}; pass 0 or more milliseconds")
        self._predict = predict
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_ms / 1000.0
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mangakd-inference")
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        """Start the collector task in the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._collect(), name="mangakd-batcher")

    async def predict(self, texts: Sequence[str], top_k: int) -> list[dict[str, Any]]:
        """Queue ``texts`` and return their predictions, each with at most ``top_k`` entries in ``top_k``.

        Raises
        ------
        BatcherClosedError
            If the batcher was closed.
        InferenceError
            If the predict function raised for the batch this request was in.
        """
        if self._closed:
            raise BatcherClosedError("the batcher is closed; the server is shutting down")
        self.start()
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(list(texts), top_k, future))
        self._arrived.set()
        return await future

    async def close(self) -> None:
        """Stop the collector after it has run every queued request, then stop the worker thread."""
        self._closed = True
        if self._task is not None:
            # The collector exits once the queue is empty; wake it in case it sleeps.
            self._arrived.set()
            await self._task
            self._task = None
        self._executor.shutdown(wait=True)

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue

            await self._wait_for_batch()
            batch = self._take_batch()
            await self._run(loop, batch)

    async def _wait_for_batch(self) -> None:
        # The deadline counts from the oldest request's arrival, so requests
        # that queued up behind a running batch leave without a second wait.
        deadline = self._queue[0].enqueued_at + self._max_wait_s
        while self._queued_texts() < self._max_batch_size and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _queued_texts(self) -> int:
        return sum(len(pending.texts) for pending in self._queue)

    def _take_batch(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        count = len(batch[0].texts)
        while self._queue and count + len(self._queue[0].texts) <= self._max_batch_size:
            pending = self._queue.popleft()
            batch.append(pending)
            count += len(pending.texts)
        return batch

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        # A caller that went away (client disconnect, handler cancelled) needs no result.
        batch = [pending for pending in batch if not pending.future.done()]
        if not batch:
            return
        texts = [text for pending in batch for text in pending.texts]
        top_k = max(pending.top_k for pending in batch)

        started = time.perf_counter()
        try:
            predictions = await loop.run_in_executor(self._executor, self._predict, texts, top_k)
        except Exception as error:  # onnxruntime raises its own exception types
            logger.exception(
                "inference failed for a batch of %d texts from %d requests", len(texts), len(batch)
            )
            failure = InferenceError(f"{type(error).__name__}: {error}")
            failure.__cause__ = error
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(failure)
            return
        duration = time.perf_counter() - started
        if self._on_batch is not None:
            self._on_batch(len(texts), duration)

        if len(predictions) != len(texts):
            mismatch = InferenceError(
                f"the model returned {len(predictions)} predictions for {len(texts)} texts"
            )
            logger.error("%s; failing the %d requests of the batch", mismatch, len(batch))
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(mismatch)
            return

        start = 0
        for pending in batch:
            own = predictions[start : start + len(pending.texts)]
            start += len(pending.texts)
            if not pending.future.done():
                pending.future.set_result([_trim_top_k(prediction, pending.top_k) for prediction in own])


def _trim_top_k(prediction: dict[str, Any], top_k: int) -> dict[str, Any]:
    return {**prediction, "top_k": prediction["top_k"][:top_k]}
