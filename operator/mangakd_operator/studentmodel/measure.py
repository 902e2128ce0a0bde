"""Read a revision's live metrics: scrape its pods' ``/metrics``, or query Prometheus.

Scraping. When a window starts (a canary step, a new analysis window, a
guard interval), :meth:`Measurer.baseline` scrapes every ready pod of the
revision and keeps the texts in memory. :meth:`Measurer.measure` scrapes
again and subtracts the baseline per pod
(:func:`mangakd.server.analysis.analyze_scrapes`), so the figures cover
the window only. A pod that restarted, or that has no baseline, counts
from its start.

NOTE: baselines live in the operator's memory. After an operator restart
the first analysis of a window counts every pod from its start, which
includes traffic from before the window.

Prometheus. With ``analysis.prometheusUrl`` set, the figures come from
``increase(...[Ns])`` over the seconds since the window started, for the
pods whose name starts with the revision's Deployment name
(``namespace="NS",pod=~"NAME-rN-.*"``). That needs the pods scraped by
Prometheus with the usual ``namespace`` and ``pod`` target labels.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping

from mangakd.server.analysis import AnalysisError, analyze_scrapes
from mangakd.server.prometheus_query import query_prometheus

from .analysis import Measurement, MeasureRequest
from .names import revision_deployment_name
from .observe import ModelObserved
from .revisions import parse_time

log = logging.getLogger(__name__)

# Baselines kept per operator process; older windows are dropped first.
MAX_BASELINES = 1000


class ScrapeError(RuntimeError):
    """A pod's /metrics endpoint could not be read."""


def scrape(url: str, timeout: float) -> str:
    """Return the text of one ``/metrics`` endpoint.

    Raises
    ------
    ScrapeError
        When the request fails or does not return 200.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8", errors="replace")  # type: ignore[no-any-return]
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ScrapeError(f"scraping {url} failed: {error}") from error


class Measurer:
    """Scrapes pods and keeps the baselines of open windows; one per operator process."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._baselines: dict[tuple[str, int, str], dict[str, str]] = {}
        self._lock = threading.Lock()

    def _pod_urls(self, observed: ModelObserved, revision: int, port: int) -> dict[str, str]:
        urls = {}
        for pod in observed.revision_pods(revision):
            endpoint = pod.endpoint(port)
            if pod.ready and endpoint is not None:
                urls[pod.name] = f"http://{endpoint[0]}:{endpoint[1]}/metrics"
        return urls

    def _scrape_all(self, urls: Mapping[str, str]) -> dict[str, str]:
        return {pod: scrape(url, self.timeout) for pod, url in urls.items()}

    def baseline(self, uid: str, request: MeasureRequest, observed: ModelObserved, port: int) -> None:
        """Scrape the revision's ready pods at the start of a window; a failed pod is left out."""
        texts = {}
        for pod, url in self._pod_urls(observed, request.revision, port).items():
            try:
                texts[pod] = scrape(url, self.timeout)
            except ScrapeError as error:
                log.warning("Baseline of pod %s left out, it counts from its start: %s", pod, error)
        with self._lock:
            for key in [key for key in self._baselines if key[:2] == (uid, request.revision)]:
                del self._baselines[key]
            self._baselines[(uid, request.revision, request.window_started_at)] = texts
            while len(self._baselines) > MAX_BASELINES:
                self._baselines.pop(next(iter(self._baselines)))

    def measure(
        self,
        uid: str,
        request: MeasureRequest,
        observed: ModelObserved,
        port: int,
        namespace: str,
        model: str,
        prometheus_url: str | None,
        now_seconds: float,
    ) -> Measurement:
        """Return the revision's figures for the window, or a measurement with ``error`` set."""
        started = parse_time(request.window_started_at)
        window = max(now_seconds - started.timestamp(), 1.0) if started is not None else 0.0
        try:
            if prometheus_url:
                selector = f'namespace="{namespace}",pod=~"{revision_deployment_name(model, request.revision)}-.*"'
                figures = asyncio.run(
                    query_prometheus(prometheus_url, selector, window=f"{int(window)}s", timeout_s=self.timeout)
                )
            else:
                urls = self._pod_urls(observed, request.revision, port)
                if not urls:
                    raise ScrapeError(f"revision {request.revision} has no ready pod to scrape")
                current = self._scrape_all(urls)
                with self._lock:
                    previous = self._baselines.get((uid, request.revision, request.window_started_at))
                figures = analyze_scrapes(current, previous)
        except (ScrapeError, AnalysisError) as error:
            return Measurement(request, None, window, str(error))
        return Measurement(request, figures, window)

