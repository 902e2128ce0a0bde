"""Bad input gets a 4xx JSON error that names the value and the limit, never a 5xx; invalid settings are rejected."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server_support import BackgroundServer, metric_value, request, scrape

from mangakd.server import main
from mangakd.server.app import create_app
from mangakd.server.config import ConfigError, ServerConfig
from mangakd.server.routes import STATE_KEY

MAX_TEXTS = 4
MAX_CHARS = 50
MAX_BODY_BYTES = 2000


@pytest.fixture(scope="module")
def server(make_config: Callable[..., ServerConfig]) -> Iterator[BackgroundServer]:
    config = make_config(max_texts=MAX_TEXTS, max_chars=MAX_CHARS, max_body_bytes=MAX_BODY_BYTES)
    with BackgroundServer(lambda: create_app(config)) as running:
        assert running.app is not None
        state = running.app[STATE_KEY]
        running.call(state.loaded.wait())
        assert state.accepting, f"the model failed to load: {state.load_error}"
        yield running


def predict_body(payload: object) -> bytes:
    return json.dumps(payload).encode()


# (case, body, expected status, expected code, text the message must contain)
BAD_BODIES = [
    ("too many texts", predict_body({"texts": ["hi"] * 5}), 422, "too_many_texts", f"limit is {MAX_TEXTS}"),
    ("text too long", predict_body({"texts": ["a" * 51]}), 422, "text_too_long", f"limit is {MAX_CHARS}"),
    (
        "body too large",
        predict_body({"texts": ["a" * 2100]}),
        413,
        "body_too_large",
        f"limit of {MAX_BODY_BYTES}",
    ),
    ("malformed json", b'{"texts": ["set an alarm"', 400, "invalid_json", "not valid JSON"),
    ("empty body", b"", 400, "invalid_json", "empty"),
    ("not utf-8", b'{"texts": ["\xff\xfe"]}', 400, "invalid_json", "UTF-8"),
    ("deep nesting", b"[" * 1999, 400, "invalid_json", "too deeply"),
    ("array body", predict_body(["set an alarm"]), 400, "invalid_request", "JSON array"),
    ("empty list", predict_body({"texts": []}), 400, "empty_texts", "empty list"),
    ("missing texts", predict_body({"topK": 2}), 422, "missing_field", '"texts" is missing'),
    ("texts a string", predict_body({"texts": "set an alarm"}), 422, "invalid_type", "JSON string"),
    ("text a number", predict_body({"texts": ["ok", 7]}), 422, "invalid_type", '"texts"[1]'),
    ("topK a string", predict_body({"texts": ["ok"], "topK": "3"}), 422, "invalid_type", '"topK"'),
    ("topK a boolean", predict_body({"texts": ["ok"], "topK": True}), 422, "invalid_type", "boolean"),
    ("topK zero", predict_body({"texts": ["ok"], "topK": 0}), 422, "invalid_value", "at least 1"),
    ("unknown field", predict_body({"texts": ["ok"], "top_k": 2}), 422, "unknown_field", "top_k"),
    ("lone surrogate", b'{"texts": ["\\ud800 alarm"]}', 422, "invalid_text", "surrogate"),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_body_rejected(
    server: BackgroundServer, body: bytes, status: int, code: str, fragment: str
) -> None:
    answer_status, headers, answer = request(
        "POST", server.url + "/v1/predict", body, {"Content-Type": "application/json"}
    )
    error = json.loads(answer)["error"]

    assert answer_status == status
    assert headers["Content-Type"].startswith("application/json")
    assert error["code"] == code
    assert fragment in error["message"]


def test_chunked_body_too_large(server: BackgroundServer) -> None:
    # A generator body makes urllib send chunks without a Content-Length.
    chunks = (b'{"texts": ["' + b"a" * 500 for _ in range(6))
    status, _, answer = request(
        "POST",
        server.url + "/v1/predict",
        chunks,
        {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    error = json.loads(answer)["error"]

    assert status == 413
    assert error["code"] == "body_too_large"
    assert str(MAX_BODY_BYTES) in error["message"]


def test_unknown_route_404(server: BackgroundServer) -> None:
    status, _, answer = request("GET", server.url + "/v2/classify")
    error = json.loads(answer)["error"]

    assert status == 404
    assert error["code"] == "not_found"
    assert "/v2/classify" in error["message"]
    assert "POST /v1/predict" in error["message"]


def test_wrong_method_405(server: BackgroundServer) -> None:
    status, headers, answer = request("GET", server.url + "/v1/predict")
    error = json.loads(answer)["error"]

    assert status == 405
    assert error["code"] == "method_not_allowed"
    assert "use POST" in error["message"]
    assert headers["Allow"] == "POST"


def test_errors_counted_by_kind(server: BackgroundServer) -> None:
    before = scrape(server.url)

    request("POST", server.url + "/v1/predict", predict_body({"texts": []}))
    after = scrape(server.url)

    increase = metric_value(after, "mangakd_errors_total", kind="empty_texts") - metric_value(
        before, "mangakd_errors_total", kind="empty_texts"
    )
    server_errors = sum(
        metric_value(after, "mangakd_request_duration_seconds_count", status=status)
        for status in ("500", "503")
    )
    assert increase == 1
    assert (
        metric_value(after, "mangakd_request_duration_seconds_count", route="/v1/predict", status="400") >= 1
    )
    assert server_errors == 0


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"max_batch_size": 0}, "--max-batch-size"),
        ({"max_wait_ms": -1.0}, "--max-wait-ms"),
        ({"shadow_sample_rate": 1.5}, "--shadow-sample-rate"),
        ({"teacher_url": "teacher:8080"}, "--teacher-url"),
        ({"port": 70000}, "--port"),
        ({"model_file": "../model.onnx"}, "--model-file"),
        ({"revision": " "}, "--revision"),
    ],
)
def test_invalid_settings_rejected(
    make_config: Callable[..., ServerConfig], overrides: dict[str, object], fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        make_config(**overrides)


def test_main_exit_code_2(tmp_path: Path, export_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing_dir = main([str(tmp_path / "no-export"), "--port", "0"])
    missing_file = main([str(export_dir), "--port", "0", "--model-file", "model.int8.onnx"])
    rate_without_teacher = main([str(export_dir), "--port", "0", "--shadow-sample-rate", "0.5"])
    errors = capsys.readouterr().err

    assert missing_dir == 2
    assert missing_file == 2
    assert rate_without_teacher == 2
    assert "no-export" in errors
    assert "model.int8.onnx" in errors
    assert "--teacher-url is missing" in errors
