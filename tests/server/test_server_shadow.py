"""Shadowing to teacher server processes, and the agreement and ECE read back from real scrapes.

Two teachers run as ``python -m mangakd.server`` processes. One serves the
student's own export, so every shadowed text must agree. The other serves
the same model with its label list rotated by one, so every text gets
another intent and none agree.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from model_fixtures import relabel_export_dir
from server_support import (
    BackgroundServer,
    ServerProcess,
    metric_value,
    post_json,
    scrape,
    wait_for_metric,
)

from mangakd.metrics import agreement, calibration_bins, expected_calibration_error
from mangakd.server.analysis import parse_exposition, summarize
from mangakd.server.app import create_app
from mangakd.server.config import ServerConfig
from mangakd.server.routes import STATE_KEY

GROUP_SIZE = 4
GROUPS = 10


@pytest.fixture(scope="module")
def teachers(
    export_dir: Path, intents: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Start the same-model and the rotated-label teacher processes together and return their URLs."""
    root = tmp_path_factory.mktemp("teachers")
    rotated = relabel_export_dir(export_dir, root / "rotated", intents[1:] + intents[:1])
    processes = {
        "same": ServerProcess(export_dir, root / "same.log", "--revision", "teacher"),
        "rotated": ServerProcess(rotated, root / "rotated.log", "--revision", "rotated"),
    }
    try:
        for process in processes.values():
            process.wait_until_ready()
        yield {name: process.url for name, process in processes.items()}
    finally:
        for process in processes.values():
            process.stop()


@contextmanager
def running_student(config: ServerConfig) -> Iterator[BackgroundServer]:
    """Run an in-process student server for ``config`` and wait until its model is loaded."""
    with BackgroundServer(lambda: create_app(config)) as running:
        assert running.app is not None
        state = running.app[STATE_KEY]
        running.call(state.loaded.wait())
        assert state.accepting, f"the student failed to load: {state.load_error}"
        yield running


def send_groups(url: str, texts: list[str]) -> list[dict[str, Any]]:
    """Send GROUPS requests of GROUP_SIZE texts with every label's confidence; return the predictions."""
    predictions = []
    for index in range(GROUPS):
        group = texts[index * GROUP_SIZE : (index + 1) * GROUP_SIZE]
        status, answer = post_json(url + "/v1/predict", {"texts": group, "topK": 50})
        assert status == 200, answer
        predictions.extend(answer["predictions"])
    return predictions


def probabilities(predictions: list[dict[str, Any]], intents: list[str]) -> np.ndarray:
    """Rebuild the (n_texts, n_intents) probability matrix from responses that list every intent."""
    rows = np.zeros((len(predictions), len(intents)))
    for row, prediction in zip(rows, predictions):
        for entry in prediction["topK"]:
            row[intents.index(entry["intent"])] = entry["confidence"]
    return rows


@pytest.mark.parametrize("teacher", ["same", "rotated"])
def test_shadow_agreement_and_ece(
    teacher: str,
    teachers: dict[str, str],
    make_config: Callable[..., ServerConfig],
    texts: list[str],
    intents: list[str],
) -> None:
    config = make_config(teacher_url=teachers[teacher], shadow_sample_rate=1.0, shadow_seed=0)
    with running_student(config) as student:
        predictions = send_groups(student.url, texts)
        text = wait_for_metric(student.url, "mangakd_shadow_samples_total", len(predictions))
    # The teacher's own predictions, requested directly in the same groups, are the reference labels.
    teacher_predictions = send_groups(teachers[teacher], texts)
    probs = probabilities(predictions, intents)
    teacher_ids = np.array([intents.index(prediction["intent"]) for prediction in teacher_predictions])
    student_ids = probs.argmax(axis=1)

    counters = parse_exposition(text)
    figures = summarize(counters)
    bins = calibration_bins(probs, teacher_ids, n_bins=15)

    assert metric_value(text, "mangakd_shadow_errors_total") == 0
    assert figures["samples"] == GROUPS * GROUP_SIZE
    assert figures["agreement"] == pytest.approx(agreement(student_ids, teacher_ids), abs=1e-12)
    assert figures["ece"] == pytest.approx(
        expected_calibration_error(probs, teacher_ids, n_bins=15), abs=1e-9
    )
    assert np.array_equal(counters.bin_agreed + counters.bin_disagreed, bins.counts)
    assert np.array_equal(counters.bin_agreed, bins.correct)
    if teacher == "same":
        assert figures["agreement"] == 1.0
    else:
        # Every intent moved one place in the rotated label list, so no text can agree.
        assert figures["agreement"] == 0.0


def test_shadow_sampling_follows_seed(
    teachers: dict[str, str], make_config: Callable[..., ServerConfig], texts: list[str]
) -> None:
    requests, rate, seed = 30, 0.4, 11
    draws = random.Random(seed)
    expected = sum(draws.random() < rate for _ in range(requests))
    config = make_config(teacher_url=teachers["same"], shadow_sample_rate=rate, shadow_seed=seed)

    with running_student(config) as student:
        for index in range(requests):
            post_json(student.url + "/v1/predict", {"texts": [texts[index]]})
        text = wait_for_metric(student.url, "mangakd_shadow_samples_total", expected)

    assert 0 < expected < requests
    assert metric_value(text, "mangakd_shadow_samples_total") == expected


def test_shadow_errors_counted(make_config: Callable[..., ServerConfig], texts: list[str]) -> None:
    # A port that was just free, so the teacher connection is refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = make_config(teacher_url=f"http://127.0.0.1:{closed_port}", shadow_sample_rate=1.0)

    with running_student(config) as student:
        statuses = [post_json(student.url + "/v1/predict", {"texts": [texts[i]]})[0] for i in range(3)]
        text = wait_for_metric(student.url, "mangakd_shadow_errors_total", 3)

    assert statuses == [200, 200, 200]
    assert metric_value(text, "mangakd_shadow_samples_total") == 0


def test_shadow_queue_full_drops(make_config: Callable[..., ServerConfig], texts: list[str]) -> None:
    # A teacher that does not respond until released keeps the only sender
    # busy. One sample waits in the queue of size one, and the rest are dropped.
    release = asyncio.Event()

    async def stalled_predict(request: web.Request) -> web.Response:
        await release.wait()
        body = await request.json()
        return web.json_response(
            {"predictions": [{"intent": "alarm", "confidence": 1.0}] * len(body["texts"])}
        )

    def make_teacher() -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/predict", stalled_predict)
        return app

    requests = 6
    with BackgroundServer(make_teacher) as teacher:
        config = make_config(
            teacher_url=teacher.url, shadow_sample_rate=1.0, shadow_queue_size=1, shadow_concurrency=1
        )
        with running_student(config) as student:
            statuses = [
                post_json(student.url + "/v1/predict", {"texts": [texts[i]]})[0] for i in range(requests)
            ]
            stalled = scrape(student.url)
            teacher.loop.call_soon_threadsafe(release.set)
            text = wait_for_metric(student.url, "mangakd_shadow_samples_total", 1)

    # Every reply arrived while the teacher was stalled, so shadowing never held one back.
    assert statuses == [200] * requests
    assert metric_value(stalled, "mangakd_shadow_dropped_total") >= requests - 2
    assert metric_value(stalled, "mangakd_shadow_samples_total") == 0
    assert metric_value(text, "mangakd_shadow_errors_total") == 0
