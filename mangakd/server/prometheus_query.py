"""Read the canary figures from a Prometheus server instead of the pods.

Each counter is queried as ``sum(increase(NAME{SELECTOR}[WINDOW]))`` through
the HTTP API's ``/api/v1/query`` endpoint. The result covers the last window
of every pod that matches the selector, and ``increase()`` accounts for
counter resets when a pod restarts. :func:`mangakd.server.analysis.summarize`
then computes the figures exactly as for scrapes.
"""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import aiohttp
import numpy as np

from mangakd.server.analysis import AnalysisError, ServerCounters, summarize
from mangakd.server.metrics import (
    CONFIDENCE_BINS,
    PREDICT_ROUTE,
    REQUEST_DURATION,
    SHADOW_AGREEMENTS,
    SHADOW_CONFIDENCE_BIN,
    SHADOW_CONFIDENCE_SUM,
    SHADOW_DROPPED,
    SHADOW_ERRORS,
    SHADOW_SAMPLES,
)

# A Prometheus duration such as 30s, 5m or 1h30m.
_WINDOW = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


class PrometheusQueryError(AnalysisError):
    """Prometheus could not be reached or rejected a query."""


def build_queries(selector: str, window: str) -> dict[str, str]:
    """Return the PromQL query of each counter for a label selector and a window.

    Parameters
    ----------
    selector
        Label matchers such as ``namespace="ml",pod=~"intents-canary-.*"``, with or without braces.
    window
        Prometheus duration of the interval to analyse, such as ``5m``.

    Raises
    ------
    AnalysisError
        If ``window`` is not a Prometheus duration.
    """
    if not _WINDOW.match(window):
        raise AnalysisError(f"window is {window!r}; pass a Prometheus duration such as 30s, 5m or 1h")
    matchers = selector.strip().removeprefix("{").removesuffix("}").strip().rstrip(",")

    def increase(name: str, *extra: str) -> str:
        inner = ",".join(part for part in (matchers, *extra) if part)
        return f"increase({name}{{{inner}}}[{window}])"

    route = f'route="{PREDICT_ROUTE}"'
    succeeded = 'status="200"'
    requests = increase(f"{REQUEST_DURATION}_count", route)
    latency = increase(f"{REQUEST_DURATION}_bucket", route, succeeded)
    bins = increase(f"{SHADOW_CONFIDENCE_BIN}_total")
    confidence_sums = increase(f"{SHADOW_CONFIDENCE_SUM}_total")
    return {
        "requests": f"sum by (status) ({requests})",
        "latency": f"sum by (le) ({latency})",
        "shadow_samples": f"sum({increase(SHADOW_SAMPLES + '_total')})",
        "shadow_agreements": f"sum({increase(SHADOW_AGREEMENTS + '_total')})",
        "shadow_errors": f"sum({increase(SHADOW_ERRORS + '_total')})",
        "shadow_dropped": f"sum({increase(SHADOW_DROPPED + '_total')})",
        "bins": f"sum by (bin, agreed) ({bins})",
        "confidence_sums": f"sum by (bin) ({confidence_sums})",
    }


async def query_vector(session: aiohttp.ClientSession, base_url: str, query: str) -> list[dict[str, Any]]:
    """Run an instant query and return its vector result, a list of ``{"metric", "value"}``.

    Raises
    ------
    PrometheusQueryError
        If the request fails, Prometheus returns an error, or the result is not a vector.
    """
    url = base_url.rstrip("/") + "/api/v1/query"
    try:
        async with session.post(url, data={"query": query}) as response:
            payload = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise PrometheusQueryError(
            f"query {query!r} to {url} failed: {type(error).__name__}: {error}"
        ) from error

    if not isinstance(payload, dict) or payload.get("status") != "success":
        detail = payload.get("error") if isinstance(payload, dict) else payload
        raise PrometheusQueryError(f"Prometheus at {url} rejected query {query!r}: {detail}")
    data = payload.get("data") or {}
    if data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        raise PrometheusQueryError(
            f"query {query!r} returned result type {data.get('resultType')!r}; expected an instant vector"
        )
    result: list[dict[str, Any]] = data["result"]
    return result


def _value(entry: dict[str, Any]) -> float:
    try:
        value = float(entry["value"][1])
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise PrometheusQueryError(f"vector entry {entry!r} has no [timestamp, value] pair") from error
    # NaN comes from series with too few points in the window, which saw no increase.
    return 0.0 if math.isnan(value) else value


def _total(result: list[dict[str, Any]]) -> float:
    # increase() of a series that did not exist in the window returns nothing, which means 0.
    return float(sum(map(_value, result)))


def counters_from_results(results: dict[str, list[dict[str, Any]]]) -> ServerCounters:
    """Build :class:`ServerCounters` from the vector results of :func:`build_queries`' queries."""
    requests = server_errors = 0.0
    for entry in results["requests"]:
        value = _value(entry)
        requests += value
        if str(entry.get("metric", {}).get("status", "")).startswith("5"):
            server_errors += value

    latency = {float(entry["metric"]["le"]): _value(entry) for entry in results["latency"]}
    bin_agreed, bin_disagreed, bin_confidence_sum = (np.zeros(CONFIDENCE_BINS) for _ in range(3))
    for entry in results["bins"]:
        labels = entry.get("metric", {})
        index = _bin(labels.get("bin"))
        target = bin_agreed if labels.get("agreed") == "true" else bin_disagreed
        target[index] += _value(entry)
    for entry in results["confidence_sums"]:
        bin_confidence_sum[_bin(entry.get("metric", {}).get("bin"))] += _value(entry)

    return ServerCounters(
        requests=requests,
        server_errors=server_errors,
        latency_buckets=latency,
        shadow_samples=_total(results["shadow_samples"]),
        shadow_agreements=_total(results["shadow_agreements"]),
        shadow_errors=_total(results["shadow_errors"]),
        shadow_dropped=_total(results["shadow_dropped"]),
        bin_agreed=bin_agreed,
        bin_disagreed=bin_disagreed,
        bin_confidence_sum=bin_confidence_sum,
    )


def _bin(label: Any) -> int:
    if not isinstance(label, str) or not label.isdigit() or int(label) >= CONFIDENCE_BINS:
        raise PrometheusQueryError(
            f"confidence bin label {label!r} is not an integer from 0 to {CONFIDENCE_BINS - 1}"
        )
    return int(label)


async def query_prometheus(
    base_url: str,
    selector: str,
    *,
    window: str = "5m",
    session: aiohttp.ClientSession | None = None,
    timeout_s: float = 10.0,
) -> dict[str, float | int | None]:
    """Query Prometheus for the canary figures of the servers that match ``selector``.

    Parameters
    ----------
    base_url
        Prometheus server, such as ``http://prometheus.monitoring:9090``.
    selector
        Label matchers that pick the revision's pods, such as ``namespace="ml",pod=~"intents-canary-.*"``.
    window
        Interval to analyse, as a Prometheus duration.
    session
        Client session to reuse; None opens one for this call.
    timeout_s
        Timeout of each query in seconds.

    Returns
    -------
    dict
        The figures of :func:`mangakd.server.analysis.summarize`.

    Raises
    ------
    PrometheusQueryError
        If a query fails or returns something other than an instant vector.
    """
    queries = build_queries(selector, window)
    own_session = session is None
    client = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))
    try:
        answers = await asyncio.gather(*(query_vector(client, base_url, query) for query in queries.values()))
    finally:
        if own_session:
            await client.close()
    return summarize(counters_from_results(dict(zip(queries, answers))))
