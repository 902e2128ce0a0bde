"""Parse and check the body of ``POST /v1/predict``.

Every check raises :class:`RequestError`, which carries the HTTP status and a
machine-readable code, so that bad input gets a 4xx response that names the
bad value and the limit, and never reaches the model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Fields a predict request may contain. Unknown fields are rejected, so that
# a misspelt option such as "top_k" does not silently fall back to its default.
REQUEST_FIELDS = ("texts", "topK")
DEFAULT_TOP_K = 3


class RequestError(ValueError):
    """A request the server rejects with a 4xx status.

    Parameters
    ----------
    status
        HTTP status of the response.
    code
        Stable snake_case error code, also the ``kind`` label of ``mangakd_errors_total``.
    message
        Sentence that names the bad value, the limit and the fix.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class RequestLimits:
    """Limits that a predict request must stay within."""

    max_texts: int
    max_chars: int
    max_body_bytes: int


@dataclass(frozen=True)
class PredictRequest:
    """A checked predict request."""

    texts: list[str]
    top_k: int


def parse_predict_body(body: bytes, limits: RequestLimits) -> PredictRequest:
    """Decode a JSON body ``{"texts": [...], "topK": k}`` and check it against ``limits``.

    Raises
    ------
    RequestError
        413 if the body is too large. 400 if it is not a JSON object or
        ``texts`` is empty. 422 for a wrong type, an unknown field, too many
        texts, a text that is too long, or a text that is not valid Unicode.
    """
    if len(body) > limits.max_body_bytes:
        raise body_too_large(len(body), limits.max_body_bytes)
    payload = _decode_json(body)
    if not isinstance(payload, dict):
        raise RequestError(
            400,
            "invalid_request",
            f"the body is a JSON {_json_type(payload)}; send an object such as "
            '{"texts": ["set an alarm"], "topK": 3}',
        )
    unknown = sorted(set(payload) - set(REQUEST_FIELDS))
    if unknown:
        raise RequestError(
            422,
            "unknown_field",
            f"unknown field(s) {unknown}; a predict request takes only {list(REQUEST_FIELDS)}",
        )

    texts = _check_texts(payload.get("texts"), limits)
    top_k = _check_top_k(payload.get("topK"))
    return PredictRequest(texts=texts, top_k=top_k)


def body_too_large(size: int | None, limit: int) -> RequestError:
    """Return the 413 error for a body of ``size`` bytes (None: unknown) over ``limit``."""
    size_text = f"of {size} bytes " if size is not None else ""
    return RequestError(
        413,
        "body_too_large",
        f"the request body {size_text}exceeds the limit of {limit} bytes (--max-body-bytes); "
        "send fewer or shorter texts per request",
    )


def _decode_json(body: bytes) -> Any:
    if not body.strip():
        raise RequestError(
            400, "invalid_json", 'the request body is empty; send a JSON object {"texts": [...]}'
        )
    try:
        return json.loads(body)
    except UnicodeDecodeError as error:
        raise RequestError(
            400, "invalid_json", f"the request body is not UTF-8 text ({error.reason} at byte {error.start})"
        ) from error
    except json.JSONDecodeError as error:
        raise RequestError(
            400,
            "invalid_json",
            f"the request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}",
        ) from error
    except RecursionError as error:
        # json.loads recurses once per nesting level, so "[[[[..." of a few
        # thousand levels exhausts the interpreter stack.
        raise RequestError(
            400, "invalid_json", "the request body nests JSON arrays or objects too deeply to parse"
        ) from error


def _check_texts(texts: Any, limits: RequestLimits) -> list[str]:
    if texts is None:
        raise RequestError(
            422, "missing_field", 'the field "texts" is missing; send {"texts": ["one text", ...]}'
        )
    if not isinstance(texts, list):
        raise RequestError(
            422,
            "invalid_type",
            f'"texts" is a JSON {_json_type(texts)}; send a list of strings, even for one text',
        )
    if not texts:
        raise RequestError(400, "empty_texts", '"texts" is an empty list; send at least one text')
    if len(texts) > limits.max_texts:
        raise RequestError(
            422,
            "too_many_texts",
            f'"texts" has {len(texts)} entries; the limit is {limits.max_texts} per request '
            "(--max-texts), so split the request",
        )

    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(
                422,
                "invalid_type",
                f'"texts"[{index}] is a JSON {_json_type(text)}; every text must be a string',
            )
        if len(text) > limits.max_chars:
            raise RequestError(
                422,
                "text_too_long",
                f'"texts"[{index}] has {len(text)} characters; the limit is {limits.max_chars} '
                "characters per text (--max-chars), so shorten it",
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            # JSON escapes can spell a lone surrogate such as "\ud800", which
            # is no character at all and which the tokenizer cannot encode.
            raise RequestError(
                422,
                "invalid_text",
                f'"texts"[{index}] contains an unpaired surrogate at character {error.start}; '
                "send valid Unicode text",
            ) from error
    return texts


def _check_top_k(top_k: Any) -> int:
    # null counts as absent, as clients often serialise unset options that way.
    if top_k is None:
        return DEFAULT_TOP_K
    if isinstance(top_k, bool) or not isinstance(top_k, int):
        raise RequestError(
            422,
            "invalid_type",
            f'"topK" is a JSON {_json_type(top_k)} ({top_k!r}); send an integer of at least 1',
        )
    if top_k < 1:
        raise RequestError(422, "invalid_value", f'"topK" is {top_k}; send an integer of at least 1')
    return top_k


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
