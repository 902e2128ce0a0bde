"""Route handlers: ``POST /v1/predict``, ``/healthz``, ``/readyz`` and ``/metrics``.

Handlers raise :class:`~mangakd.server.validation.RequestError` for bad
input, and the middleware in :mod:`mangakd.server.app` turns it into the
JSON error response and counts it.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from mangakd.server.batcher import BatcherClosedError, InferenceError
from mangakd.server.metrics import PREDICT_ROUTE
from mangakd.server.state import Phase, ServerState
from mangakd.server.validation import body_too_large, parse_predict_body

logger = logging.getLogger(__name__)

STATE_KEY = web.AppKey("mangakd_state", ServerState)


def error_response(state: ServerState, status: int, code: str, message: str, **headers: str) -> web.Response:
    """Build the JSON error response ``{"error": {"code", "message"}}`` and count it by code."""
    state.metrics.errors.labels(kind=code).inc()
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


async def predict(request: web.Request) -> web.StreamResponse:
    """Classify the request's texts through the micro-batcher."""
    state = request.app[STATE_KEY]
    if not state.accepting or state.batcher is None:
        return error_response(
            state,
            503,
            "not_ready",
            f"the model is not ready (phase {state.phase.value}); retry when /readyz answers 200",
            **{"Retry-After": "1"},
        )

    limit = state.limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise body_too_large(request.content_length, limit)
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as error:
        # A chunked body has no Content-Length, so aiohttp stops reading at the limit.
        raise body_too_large(None, limit) from error
    parsed = parse_predict_body(body, state.limits)

    try:
        predictions = await state.batcher.predict(parsed.texts, parsed.top_k)
    except BatcherClosedError:
        return error_response(
            state, 503, "shutting_down", "the server is shutting down; retry on another replica"
        )
    except InferenceError as error:
        # The batcher logged the model's traceback once for the whole batch.
        return error_response(state, 500, "inference_failed", f"inference failed: {error}")
    state.metrics.observe_predictions(predictions)

    response = web.json_response(_predict_payload(state, predictions))
    shadow = state.shadow
    if shadow is not None and shadow.sample():
        # Send the reply before queueing the shadow request, so that shadowing
        # never adds to the client's latency.
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionResetError:
            logger.debug("client went away before the reply was sent; not shadowing")
            return response
        shadow.submit(parsed.texts, predictions)
    return response


def _predict_payload(state: ServerState, predictions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "predictions": [
            {
                "intent": prediction["intent"],
                "confidence": prediction["confidence"],
                "topK": [
                    {"intent": entry["intent"], "confidence": entry["confidence"]}
                    for entry in prediction["top_k"]
                ],
            }
            for prediction in predictions
        ],
        "model": {"name": state.config.name, "revision": state.config.revision},
    }


async def healthz(request: web.Request) -> web.Response:
    """Return 200 while the process runs, including while the model loads."""
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """Return 200 once the model is loaded and warmed up, and 503 while loading, draining or failed."""
    state = request.app[STATE_KEY]
    if state.phase is Phase.READY:
        return web.json_response({"status": Phase.READY.value})
    body: dict[str, Any] = {"status": state.phase.value}
    if state.load_error is not None:
        body["message"] = state.load_error
    return web.json_response(body, status=503)


async def metrics(request: web.Request) -> web.Response:
    """Return the server's metrics in the Prometheus text format."""
    state = request.app[STATE_KEY]
    return web.Response(body=state.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    """Register the server's routes on ``app``."""
    app.router.add_post(PREDICT_ROUTE, predict)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
