"""Prometheus metrics of the inference server, in a registry of its own.

Each :class:`ServerMetrics` owns a ``CollectorRegistry``, so several servers
in one process (as in the tests) keep separate counts, and ``/metrics`` shows
only the server's own series plus its process statistics.
:mod:`mangakd.server.analysis` reads these names back from scrapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)

# Metric names as they appear in the exposition. prometheus_client adds the
# "_total" suffix to counters and "_bucket", "_sum" and "_count" to histograms.
REQUEST_DURATION = "mangakd_request_duration_seconds"
PREDICTIONS = "mangakd_predictions"
PREDICTION_CONFIDENCE = "mangakd_prediction_confidence"
BATCH_SIZE = "mangakd_batch_size"
INFERENCE_DURATION = "mangakd_inference_duration_seconds"
ERRORS = "mangakd_errors"
IN_FLIGHT = "mangakd_requests_in_flight"
MODEL = "mangakd_model"
SHADOW_SAMPLES = "mangakd_shadow_samples"
SHADOW_AGREEMENTS = "mangakd_shadow_agreements"
SHADOW_ERRORS = "mangakd_shadow_errors"
SHADOW_DROPPED = "mangakd_shadow_dropped"
SHADOW_CONFIDENCE_BIN = "mangakd_shadow_confidence_bin"
SHADOW_CONFIDENCE_SUM = "mangakd_shadow_confidence_sum"

PREDICT_ROUTE = "/v1/predict"
# Route label of requests that matched no route, so that scanners probing
# random paths cannot create one time series per path.
UNMATCHED_ROUTE = "unmatched"

# Equal-width confidence bins, the same 15 bins as the offline ECE in mangakd.metrics.
CONFIDENCE_BINS = 15

# Latency buckets in seconds. They are dense from 1 ms to 100 ms, where a
# small encoder's latency falls, because a quantile is interpolated within a bucket
# and is only as precise as the bucket is narrow.
LATENCY_BUCKETS = (
    0.001,
    0.002,
    0.003,
    0.004,
    0.005,
    0.006,
    0.008,
    0.01,
    0.0125,
    0.015,
    0.02,
    0.025,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def confidence_bucket_edges(n_bins: int = CONFIDENCE_BINS) -> tuple[float, ...]:
    """Return the upper edges 1/n, 2/n, ..., 1 of ``n_bins`` equal-width confidence bins."""
    return tuple((index + 1) / n_bins for index in range(n_bins))


class ServerMetrics:
    """The server's metrics, registered in ``self.registry``.

    Parameters
    ----------
    model_name, revision, model_file
        Labels of the ``mangakd_model_info`` series. The model file may be
        a placeholder until the model is loaded.
    """

    def __init__(self, *, model_name: str, revision: str, model_file: str) -> None:
        self.registry = CollectorRegistry()
        # CPU seconds, resident memory and start time of this process, read
        # from /proc. The start time distinguishes a restarted pod from a running one.
        ProcessCollector(registry=self.registry)

        self.request_duration = Histogram(
            REQUEST_DURATION,
            "Time from receiving a request to returning its response, in seconds.",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            PREDICTIONS, "Texts classified, by predicted intent.", ["intent"], registry=self.registry
        )
        self.confidence = Histogram(
            PREDICTION_CONFIDENCE,
            "Calibrated confidence of the predicted intent, per text.",
            buckets=confidence_bucket_edges(),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            BATCH_SIZE,
            "Texts per micro-batch. A request larger than the maximum batch size forms a batch of its "
            "own, which onnxruntime runs in chunks of the maximum batch size.",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.inference_duration = Histogram(
            INFERENCE_DURATION,
            "Time of one micro-batch in onnxruntime, tokenisation included, in seconds.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(ERRORS, "Error responses, by error code.", ["kind"], registry=self.registry)
        self.in_flight = Gauge(
            IN_FLIGHT, "Predict requests received and not yet answered.", registry=self.registry
        )
        self.model = Info(MODEL, "The served model.", registry=self.registry)
        self.describe_model(model_name=model_name, revision=revision, model_file=model_file)

        self.shadow_samples = Counter(
            SHADOW_SAMPLES, "Texts whose prediction was compared with the teacher's.", registry=self.registry
        )
        self.shadow_agreements = Counter(
            SHADOW_AGREEMENTS,
            "Shadowed texts where student and teacher chose the same intent.",
            registry=self.registry,
        )
        self.shadow_errors = Counter(
            SHADOW_ERRORS,
            "Shadow requests that failed: teacher unreachable, timed out, non-200 or malformed answer.",
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            SHADOW_DROPPED,
            "Sampled requests not shadowed because the shadow queue was full.",
            registry=self.registry,
        )
        self.shadow_confidence_bin = Counter(
            SHADOW_CONFIDENCE_BIN,
            f"Shadowed texts by bin of the student's confidence ({CONFIDENCE_BINS} equal-width bins, "
            "bin i covers (i/15, (i+1)/15]) and by agreement with the teacher.",
            ["bin", "agreed"],
            registry=self.registry,
        )
        self.shadow_confidence_sum = Counter(
            SHADOW_CONFIDENCE_SUM,
            "Sum of the student's confidence over the shadowed texts of each bin.",
            ["bin"],
            registry=self.registry,
        )
        # Every bin is exported from the start, so each series is present in
        # both scrapes of a difference, even when its first count arrives between them.
        for index in range(CONFIDENCE_BINS):
            self.shadow_confidence_sum.labels(bin=str(index))
            for agreed in ("true", "false"):
                self.shadow_confidence_bin.labels(bin=str(index), agreed=agreed)

    def describe_model(self, *, model_name: str, revision: str, model_file: str) -> None:
        """Set the labels of the ``mangakd_model_info`` series."""
        self.model.info({"name": model_name, "revision": revision, "model_file": model_file})

    def declare_intents(self, intents: Sequence[str]) -> None:
        """Export a zero count for every intent, so each has a series before its first prediction."""
        for intent in intents:
            self.predictions.labels(intent=intent)

    def observe_predictions(self, predictions: Sequence[dict[str, Any]]) -> None:
        """Count the predicted intents and record their confidences."""
        for prediction in predictions:
            self.predictions.labels(intent=prediction["intent"]).inc()
            self.confidence.observe(prediction["confidence"])

    def observe_shadow(self, bin_index: int, confidence: float, agreed: bool) -> None:
        """Count one shadowed text in its confidence bin."""
        self.shadow_samples.inc()
        if agreed:
            self.shadow_agreements.inc()
        label = str(bin_index)
        self.shadow_confidence_bin.labels(bin=label, agreed="true" if agreed else "false").inc()
        self.shadow_confidence_sum.labels(bin=label).inc(confidence)

    def exposition(self) -> bytes:
        """Return the registry in the Prometheus text format."""
        return generate_latest(self.registry)
