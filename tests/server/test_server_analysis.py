"""Parsing scrapes, interval differences, quantiles, and the Prometheus HTTP API query."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from server_support import BackgroundServer, post_json, scrape

from mangakd.server.analysis import (
    AnalysisError,
    ServerCounters,
    analyze_scrapes,
    counters_since,
    histogram_quantile,
    merge_counters,
    parse_exposition,
    summarize,
)
from mangakd.server.app import create_app
from mangakd.server.config import ServerConfig
from mangakd.server.prometheus_query import (
    PrometheusQueryError,
    build_queries,
    query_prometheus,
)
from mangakd.server.routes import STATE_KEY


@pytest.fixture(scope="module")
def server(make_config: Callable[..., ServerConfig]) -> Iterator[BackgroundServer]:
    with BackgroundServer(lambda: create_app(make_config(max_wait_ms=0))) as running:
        assert running.app is not None
        state = running.app[STATE_KEY]
        running.call(state.loaded.wait())
        assert state.accepting, f"the model failed to load: {state.load_error}"
        yield running


def test_interval_counts_requests_between_scrapes(server: BackgroundServer, texts: list[str]) -> None:
    post_json(server.url + "/v1/predict", {"texts": texts[:2]})
    first = parse_exposition(scrape(server.url))
    for index in range(3):
        post_json(server.url + "/v1/predict", {"texts": [texts[index]]})
    post_json(server.url + "/v1/predict", {"texts": []})
    second = parse_exposition(scrape(server.url))

    interval = counters_since(second, first)
    figures = summarize(interval)

    # Three successful requests and one rejected (400) request fall into the interval.
    assert interval.requests == 4
    assert interval.server_errors == 0
    assert interval.latency_buckets[math.inf] == 3
    assert figures["requests"] == 4
    assert figures["error_rate"] == 0.0
    assert second.requests - first.requests == 4
    assert first.start_time == second.start_time


def test_p95_from_real_scrape(server: BackgroundServer, texts: list[str]) -> None:
    for index in range(5):
        post_json(server.url + "/v1/predict", {"texts": [texts[index]]})
    counters = parse_exposition(scrape(server.url))
    bounds = sorted(counters.latency_buckets)

    p95 = summarize(counters)["p95_latency_ms"]

    assert p95 is not None
    assert 0 < p95 <= bounds[-2] * 1000
    assert p95 == pytest.approx(histogram_quantile(0.95, counters.latency_buckets) * 1000)


def test_restart_resets_interval() -> None:
    before = ServerCounters(requests=50, shadow_samples=20, start_time=100.0)
    after_restart = ServerCounters(requests=60, shadow_samples=5, start_time=200.0)
    went_down = ServerCounters(requests=10, shadow_samples=4)

    assert counters_since(after_restart, before) is after_restart
    assert counters_since(went_down, ServerCounters(requests=50, shadow_samples=20)) is went_down
    assert counters_since(after_restart, None) is after_restart


def test_merge_and_analyze_two_pods(server: BackgroundServer, texts: list[str]) -> None:
    scrape_a = scrape(server.url)
    post_json(server.url + "/v1/predict", {"texts": texts[:3]})
    scrape_b = scrape(server.url)
    counters_a, counters_b = parse_exposition(scrape_a), parse_exposition(scrape_b)

    merged = merge_counters([counters_a, counters_b])
    # Pod "a" has no previous scrape, so it counts from its start; pod "b"
    # counts from scrape_a, one request.
    figures = analyze_scrapes({"a": scrape_a, "b": scrape_b}, previous={"b": scrape_a})

    assert merged.requests == counters_a.requests + counters_b.requests
    assert (
        merged.latency_buckets[math.inf]
        == counters_a.latency_buckets[math.inf] + counters_b.latency_buckets[math.inf]
    )
    assert figures["requests"] == counters_a.requests + 1


def test_histogram_quantile_interpolates() -> None:
    buckets = {0.01: 50.0, 0.02: 90.0, 0.05: 100.0, math.inf: 100.0}

    # Rank 95 of 100 lies halfway through the 10 observations in (0.02, 0.05].
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.035)
    # Rank 25 lies halfway through the first bucket, whose lower bound is 0.
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.005)
    # A rank in the +Inf bucket returns the highest finite bound.
    assert histogram_quantile(0.99, {0.01: 50.0, 0.02: 90.0, math.inf: 100.0}) == 0.02
    assert histogram_quantile(0.95, {0.01: 0.0, math.inf: 0.0}) is None
    with pytest.raises(AnalysisError, match="no \\+Inf bucket"):
        histogram_quantile(0.95, {0.01: 1.0})
    with pytest.raises(AnalysisError, match="quantile is 1.5"):
        histogram_quantile(1.5, buckets)


def test_ece_from_bins() -> None:
    agreed = np.zeros(15)
    disagreed = np.zeros(15)
    sums = np.zeros(15)
    # Bin 14: 8 texts of confidence 0.95, 6 agreed. Bin 7: 2 texts of confidence 0.5, both agreed.
    agreed[14], disagreed[14], sums[14] = 6, 2, 8 * 0.95
    agreed[7], sums[7] = 2, 2 * 0.5
    counters = ServerCounters(
        shadow_samples=10,
        shadow_agreements=8,
        bin_agreed=agreed,
        bin_disagreed=disagreed,
        bin_confidence_sum=sums,
    )

    figures = summarize(counters)

    assert figures["agreement"] == pytest.approx(0.8)
    assert figures["ece"] == pytest.approx((abs(7.6 - 6) + abs(1.0 - 2)) / 10)
    assert summarize(ServerCounters())["agreement"] is None
    assert summarize(ServerCounters())["ece"] is None


def test_parse_rejects_bad_text() -> None:
    with pytest.raises(AnalysisError, match="Prometheus text format"):
        parse_exposition('mangakd_shadow_samples_total{bin="1" 3\n')
    with pytest.raises(AnalysisError, match="bin label '15'"):
        parse_exposition('mangakd_shadow_confidence_sum_total{bin="15"} 3\n')


def vector(*entries: tuple[dict[str, str], float]) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": labels, "value": [1.7e9, str(value)]} for labels, value in entries],
        },
    }


def canned_answer(query: str) -> dict[str, Any]:
    """Return fixed counts for each query of build_queries, shaped as Prometheus returns increase() results."""
    if "mangakd_request_duration_seconds_count" in query:
        return vector(({"status": "200"}, 180.0), ({"status": "500"}, 2.0), ({"status": "422"}, 18.0))
    if "mangakd_request_duration_seconds_bucket" in query:
        return vector(
            ({"le": "0.01"}, 100.0), ({"le": "0.02"}, 160.0), ({"le": "0.05"}, 180.0), ({"le": "+Inf"}, 180.0)
        )
    if "mangakd_shadow_samples_total" in query:
        return vector(({}, 40.0))
    if "mangakd_shadow_agreements_total" in query:
        return vector(({}, 30.0))
    if "mangakd_shadow_errors_total" in query or "mangakd_shadow_dropped_total" in query:
        return vector()
    if "mangakd_shadow_confidence_bin_total" in query:
        return vector(
            ({"bin": "14", "agreed": "true"}, 28.0),
            ({"bin": "14", "agreed": "false"}, 2.0),
            ({"bin": "9", "agreed": "true"}, 2.0),
            ({"bin": "9", "agreed": "false"}, 8.0),
        )
    if "mangakd_shadow_confidence_sum_total" in query:
        return vector(({"bin": "14"}, 29.0), ({"bin": "9"}, 6.5))
    return {"status": "error", "errorType": "bad_data", "error": f"unexpected query {query}"}


def test_query_prometheus_api() -> None:
    received: list[str] = []

    async def handle_query(request: web.Request) -> web.Response:
        form = await request.post()
        query = str(form["query"])
        received.append(query)
        return web.json_response(canned_answer(query))

    def make_prometheus() -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v1/query", handle_query)
        return app

    selector = 'namespace="ml",pod=~"intents-canary-.*"'
    with BackgroundServer(make_prometheus) as prometheus:
        figures = asyncio.run(query_prometheus(prometheus.url, "{" + selector + "}", window="2m"))

    assert sorted(received) == sorted(build_queries(selector, "2m").values())
    for query in received:
        assert selector in query
        assert "[2m]" in query
    assert figures["samples"] == 40
    assert figures["agreement"] == pytest.approx(30 / 40)
    assert figures["ece"] == pytest.approx((abs(29 - 28) + abs(6.5 - 2)) / 40)
    assert figures["requests"] == 200
    assert figures["error_rate"] == pytest.approx(2 / 200)
    # Rank 0.95 * 180 = 171 lies 11/20 of the way through (0.02, 0.05].
    assert figures["p95_latency_ms"] == pytest.approx((0.02 + 0.03 * 11 / 20) * 1000)


def test_query_prometheus_errors() -> None:
    async def reject(request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 9"}, status=400
        )

    async def matrix(request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "data": {"resultType": "matrix", "result": []}})

    def make_prometheus() -> web.Application:
        app = web.Application()
        app.router.add_post("/reject/api/v1/query", reject)
        app.router.add_post("/matrix/api/v1/query", matrix)
        return app

    with BackgroundServer(make_prometheus) as prometheus:
        with pytest.raises(PrometheusQueryError, match="parse error at char 9"):
            asyncio.run(query_prometheus(prometheus.url + "/reject", 'job="x"'))
        with pytest.raises(PrometheusQueryError, match="'matrix'"):
            asyncio.run(query_prometheus(prometheus.url + "/matrix", 'job="x"'))
    with pytest.raises(AnalysisError, match="window is '5 minutes'"):
        build_queries('job="x"', "5 minutes")
