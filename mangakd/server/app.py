"""The aiohttp application of the inference server.

:func:`create_app` wires the routes, the middlewares that time every request
and turn every error into JSON, and the start-up and clean-up hooks that load
the model in the background and stop the batcher and the shadow sender.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from mangakd.server.config import ServerConfig
from mangakd.server.metrics import PREDICT_ROUTE, UNMATCHED_ROUTE
from mangakd.server.routes import STATE_KEY, add_routes, error_response
from mangakd.server.state import ClassifierLoader, ServerState, load_classifier
from mangakd.server.validation import RequestError, body_too_large

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ROUTE_LIST = "POST /v1/predict, GET /healthz, GET /readyz, GET /metrics"


def route_label(request: web.Request) -> str:
    """Return the matched route's path template, or ``unmatched`` for requests no route matched."""
    resource = request.match_info.route.resource
    if resource is None or request.match_info.http_exception is not None:
        return UNMATCHED_ROUTE
    return resource.canonical


@web.middleware
async def observe_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time every request by route and status, and count predict requests in flight."""
    state = request.app[STATE_KEY]
    route = route_label(request)
    tracked = route == PREDICT_ROUTE
    if tracked:
        state.request_started()
    started = time.perf_counter()
    # Without a response (the handler was cancelled because the client went
    # away) the request is recorded with status 499, as nginx logs it.
    status = 499
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        state.metrics.request_duration.labels(route=route, status=str(status)).observe(
            time.perf_counter() - started
        )
        if tracked:
            state.request_finished()


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn bad input, unknown routes and unexpected failures into ``{"error": {"code", "message"}}`` responses."""
    state = request.app[STATE_KEY]
    try:
        return await handler(request)
    except RequestError as error:
        return error_response(state, error.status, error.code, error.message)
    except web.HTTPNotFound:
        return error_response(
            state, 404, "not_found", f"no route {request.method} {request.path}; the routes are {ROUTE_LIST}"
        )
    except web.HTTPMethodNotAllowed as error:
        allowed = ", ".join(sorted(error.allowed_methods))
        return error_response(
            state,
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.path}; use {allowed}",
            Allow=allowed,
        )
    except web.HTTPRequestEntityTooLarge:
        too_large = body_too_large(None, state.limits.max_body_bytes)
        return error_response(state, too_large.status, too_large.code, too_large.message)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(state, error.status, "http_error", error.reason)
    except asyncio.CancelledError:
        raise
    except Exception as error:  # any other failure is logged and returned as JSON
        logger.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(state, 500, "internal", f"internal error: {type(error).__name__}")


def create_app(config: ServerConfig, *, loader: ClassifierLoader = load_classifier) -> web.Application:
    """Build the server application for ``config``.

    The model loads in the background after start-up, so ``/healthz`` responds
    at once and ``/readyz`` turns 200 when loading and warm-up are done.

    Parameters
    ----------
    config
        Validated settings.
    loader
        Function that opens the classifier, run in a worker thread.

    Returns
    -------
    aiohttp.web.Application
        The application, with its :class:`~mangakd.server.state.ServerState` under ``app[STATE_KEY]``.
    """
    # The body limit is also checked by the handler with a clearer message;
    # aiohttp's own limit stops reading a chunked body that has no length.
    app = web.Application(middlewares=[observe_requests, json_errors], client_max_size=config.max_body_bytes)
    app[STATE_KEY] = ServerState(config, loader)
    add_routes(app)
    app.on_startup.append(_start_loading)
    app.on_cleanup.append(_close_state)
    return app


async def _start_loading(app: web.Application) -> None:
    app[STATE_KEY].start_loading()


async def _close_state(app: web.Application) -> None:
    await app[STATE_KEY].close()
