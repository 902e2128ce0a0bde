"""Predict responses, micro-batching, metrics and readiness of an in-process server on a real model."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper
import pytest
from server_support import BackgroundServer, get_json, metric_value, post_json, scrape

from mangakd.onnx_runtime import OnnxClassifier
from mangakd.server.app import create_app
from mangakd.server.config import ServerConfig
from mangakd.server.routes import STATE_KEY
from mangakd.server.state import load_classifier

# Probabilities of the same text differ between two batches only by the
# padding, which moves float32 logits by about 1e-6.
CONFIDENCE_TOLERANCE = 1e-5


def assert_matches(prediction: dict[str, Any], expected: dict[str, Any]) -> None:
    assert prediction["intent"] == expected["intent"]
    assert prediction["confidence"] == pytest.approx(expected["confidence"], abs=CONFIDENCE_TOLERANCE)
    assert [entry["intent"] for entry in prediction["topK"]] == [
        entry["intent"] for entry in expected["top_k"]
    ]
    for entry, expected_entry in zip(prediction["topK"], expected["top_k"]):
        assert entry["confidence"] == pytest.approx(expected_entry["confidence"], abs=CONFIDENCE_TOLERANCE)


@pytest.fixture(scope="module")
def server(make_config: Callable[..., ServerConfig]) -> Iterator[BackgroundServer]:
    # A long wait lets the concurrent requests of one test meet in one batch.
    config = make_config(max_batch_size=32, max_wait_ms=300, revision="7", model_name="intents-student")
    with BackgroundServer(lambda: create_app(config)) as running:
        assert running.call(_wait_ready(running)), "the model failed to load"
        yield running


async def _wait_ready(server: BackgroundServer) -> bool:
    assert server.app is not None
    state = server.app[STATE_KEY]
    await asyncio.wait_for(state.loaded.wait(), 60)
    return state.accepting


def test_predict_matches_onnx_classifier(
    server: BackgroundServer, reference: OnnxClassifier, texts: list[str]
) -> None:
    batch = texts[:20]
    expected = reference.predict(batch, top_k=3)

    status, answer = post_json(server.url + "/v1/predict", {"texts": batch, "topK": 3})

    assert status == 200
    assert len(answer["predictions"]) == len(batch)
    for prediction, expected_prediction in zip(answer["predictions"], expected):
        assert_matches(prediction, expected_prediction)
    assert answer["model"] == {"name": "intents-student", "revision": "7"}


def test_predict_top_k_default_and_all(
    server: BackgroundServer, texts: list[str], intents: list[str]
) -> None:
    _, default = post_json(server.url + "/v1/predict", {"texts": texts[:2]})
    _, every = post_json(server.url + "/v1/predict", {"texts": texts[:1], "topK": 50})

    for prediction in default["predictions"]:
        assert len(prediction["topK"]) == 3
        assert prediction["topK"][0]["intent"] == prediction["intent"]
    assert sorted(entry["intent"] for entry in every["predictions"][0]["topK"]) == sorted(intents)
    assert sum(entry["confidence"] for entry in every["predictions"][0]["topK"]) == pytest.approx(1.0)


def test_concurrent_requests_batched(
    server: BackgroundServer, reference: OnnxClassifier, texts: list[str]
) -> None:
    # Twelve requests of one to three different texts each, sent at once.
    groups = [texts[start : start + 1 + index % 3] for index, start in enumerate(range(0, 36, 3))]
    before = scrape(server.url)

    async def send_all() -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as session:

            async def send(group: list[str]) -> dict[str, Any]:
                async with session.post(
                    server.url + "/v1/predict", json={"texts": group, "topK": 2}
                ) as response:
                    assert response.status == 200
                    return await response.json()

            return await asyncio.gather(*(send(group) for group in groups))

    answers = asyncio.run(send_all())
    after = scrape(server.url)

    batches = metric_value(after, "mangakd_batch_size_count") - metric_value(
        before, "mangakd_batch_size_count"
    )
    batched_texts = metric_value(after, "mangakd_batch_size_sum") - metric_value(
        before, "mangakd_batch_size_sum"
    )
    singles = metric_value(after, "mangakd_batch_size_bucket", le="1.0") - metric_value(
        before, "mangakd_batch_size_bucket", le="1.0"
    )
    assert batched_texts == sum(len(group) for group in groups)
    assert batches < len(groups), f"{len(groups)} requests ran in {batches} batches"
    assert singles < batches, "no batch held more than one text"
    for group, answer in zip(groups, answers):
        expected = reference.predict(group, top_k=2)
        assert len(answer["predictions"]) == len(group)
        for prediction, expected_prediction in zip(answer["predictions"], expected):
            assert_matches(prediction, expected_prediction)


def test_request_larger_than_batch_kept_whole(
    server: BackgroundServer, reference: OnnxClassifier, texts: list[str]
) -> None:
    # 40 texts exceed max_batch_size 32, so the request runs as one batch of its own.
    batch = texts[:40]

    status, answer = post_json(server.url + "/v1/predict", {"texts": batch, "topK": 1})

    assert status == 200
    assert len(answer["predictions"]) == 40
    for prediction, expected in zip(answer["predictions"], reference.predict(batch, top_k=1)):
        assert_matches(prediction, expected)


def test_metrics_count_predictions(server: BackgroundServer, texts: list[str]) -> None:
    before = scrape(server.url)

    _, answer = post_json(server.url + "/v1/predict", {"texts": texts[:5]})
    after = scrape(server.url)

    for intent in {prediction["intent"] for prediction in answer["predictions"]}:
        count = sum(prediction["intent"] == intent for prediction in answer["predictions"])
        increase = metric_value(after, "mangakd_predictions_total", intent=intent) - metric_value(
            before, "mangakd_predictions_total", intent=intent
        )
        assert increase == count
    confidence_increase = metric_value(after, "mangakd_prediction_confidence_count") - metric_value(
        before, "mangakd_prediction_confidence_count"
    )
    requests_increase = metric_value(
        after, "mangakd_request_duration_seconds_count", route="/v1/predict", status="200"
    ) - metric_value(before, "mangakd_request_duration_seconds_count", route="/v1/predict", status="200")
    assert confidence_increase == 5
    assert requests_increase == 1
    assert metric_value(after, "mangakd_requests_in_flight") == 0
    assert (
        metric_value(
            after, "mangakd_model_info", revision="7", name="intents-student", model_file="model.onnx"
        )
        == 1
    )


def test_model_file_option_loads_that_file(
    export_dir: Path, tmp_path: Path, make_config: Callable[..., ServerConfig], texts: list[str]
) -> None:
    # The named file doubles the logits, so its output differs from the manifest's model.
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    model = onnx.load(str(copy / "model.onnx"))
    graph = model.graph
    producer = next(node for node in graph.node if "logits" in node.output)
    producer.output[list(producer.output).index("logits")] = "logits_single"
    graph.initializer.append(onnx.numpy_helper.from_array(np.array(2.0, dtype=np.float32), "logit_scale"))
    graph.node.append(onnx.helper.make_node("Mul", ["logits_single", "logit_scale"], ["logits"]))
    onnx.save(model, str(copy / "model.doubled.onnx"))
    reference = OnnxClassifier(export_dir, threads=1)

    classifier = load_classifier(make_config(export_dir=copy, model_file="model.doubled.onnx"))

    assert classifier.manifest.model == "model.doubled.onnx"
    assert np.allclose(classifier.logits(texts[:8]), 2 * reference.logits(texts[:8]), atol=1e-4)


def test_readyz_after_warm_up(make_config: Callable[..., ServerConfig], texts: list[str]) -> None:
    release = threading.Event()

    def slow_loader(config: ServerConfig) -> OnnxClassifier:
        # Loading waits for the test, so the loading phase can be observed.
        release.wait(60)
        return load_classifier(config)

    config = make_config()
    with BackgroundServer(lambda: create_app(config, loader=slow_loader)) as running:
        loading_status, loading_body = get_json(running.url + "/readyz")
        health_status, _ = get_json(running.url + "/healthz")
        predict_status, predict_body = post_json(running.url + "/v1/predict", {"texts": texts[:1]})

        release.set()
        ready = running.call(_wait_ready(running))
        ready_status, ready_body = get_json(running.url + "/readyz")

    assert loading_status == 503
    assert loading_body == {"status": "loading"}
    assert health_status == 200
    assert predict_status == 503
    assert predict_body["error"]["code"] == "not_ready"
    assert ready
    assert ready_status == 200
    assert ready_body == {"status": "ready"}


def test_readyz_reports_load_failure(make_config: Callable[..., ServerConfig]) -> None:
    def broken_loader(config: ServerConfig) -> OnnxClassifier:
        raise FileNotFoundError("model.onnx is missing")

    config = make_config()
    with BackgroundServer(lambda: create_app(config, loader=broken_loader)) as running:
        accepting = running.call(_wait_ready(running))
        status, body = get_json(running.url + "/readyz")

    assert not accepting
    assert status == 503
    assert body["status"] == "failed"
    assert "model.onnx is missing" in body["message"]
