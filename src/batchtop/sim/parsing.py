"""Parsing batch inputs into compact per-request records.

Only what the simulator needs to fake a result is kept (ids, model, token
estimate, caps), never the request bodies, so a 200 MB input file does not
turn into a gigabyte of Python dicts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

#: Endpoints whose results the simulator can fake.
OPENAI_ENDPOINTS = ("/v1/chat/completions", "/v1/responses", "/v1/embeddings", "/v1/completions")

#: Anthropic's documented custom_id pattern.
ANTHROPIC_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

_MAX_REPORTED_ERRORS = 25


@dataclass(slots=True)
class SimRequest:
    """One request of a batch, reduced to what shapes its fake result."""

    custom_id: str
    model: str
    input_tokens: int
    max_tokens: int | None = None
    n_inputs: int = 1
    problem: str | None = None
    """Why the request itself is invalid; it then errors with a 400 when run."""


class InvalidBatch(ValueError):
    """An Anthropic create body the API would refuse with a 400."""


def estimate_tokens(*parts: Any) -> int:
    """Deterministic token estimate: serialized length // 4 + 5."""
    text = "".join(
        p if isinstance(p, str) else json.dumps(p, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
        for p in parts
        if p is not None
    )
    return len(text) // 4 + 5


def _iter_lines(content: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield ``(1-based line number, line)`` without splitting the whole file at once."""
    start, number, size = 0, 0, len(content)
    while start < size:
        end = content.find(b"\n", start)
        if end < 0:
            end = size
        number += 1
        yield number, content[start:end]
        start = end + 1


def _openai_request(custom_id: str, endpoint: str, body: dict[str, Any]) -> SimRequest:
    model = body.get("model")
    problem = None if isinstance(model, str) and model else "you must provide a model parameter"
    model = model if isinstance(model, str) else ""
    max_tokens: Any = None
    n_inputs = 1
    if endpoint == "/v1/chat/completions":
        messages = body.get("messages")
        if problem is None and not isinstance(messages, list):
            problem = "Missing required parameter: 'messages'."
        tokens = estimate_tokens(messages)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    elif endpoint == "/v1/responses":
        tokens = estimate_tokens(body.get("instructions"), body.get("input"))
        max_tokens = body.get("max_output_tokens")
    elif endpoint == "/v1/embeddings":
        value = body.get("input")
        if problem is None and value in (None, "", []):
            problem = "Missing required parameter: 'input'."
        tokens = estimate_tokens(value)
        if isinstance(value, list) and value and not all(isinstance(v, int) for v in value):
            n_inputs = len(value)
    else:  # /v1/completions
        tokens = estimate_tokens(body.get("prompt"))
        max_tokens = body.get("max_tokens", 16)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
        max_tokens = None
    return SimRequest(custom_id, model, tokens, max_tokens, n_inputs, problem)


def parse_openai_input(
    content: bytes, endpoint: str, max_requests: int
) -> tuple[list[SimRequest], list[dict[str, Any]]]:
    """Validate a batch input file the way the Batch API does.

    Returns the requests and the batch-level errors (``BatchError`` dicts); any
    error means the batch turns ``failed`` after validation.
    """
    requests: list[SimRequest] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    first_model: str | None = None

    def fail(code: str, message: str, line: int | None, param: str | None = None) -> None:
        if len(errors) < _MAX_REPORTED_ERRORS:
            errors.append({"code": code, "message": message, "param": param, "line": line})

    count = 0
    for number, raw in _iter_lines(content):
        if not raw.strip():
            continue
        count += 1
        if count > max_requests:
            errors[:] = []
            fail("too_many_tasks", f"The batch input file has more than {max_requests} requests.", None)
            return [], errors
        try:
            line = json.loads(raw)
        except ValueError:
            fail("invalid_json_line", "This line is not parseable as valid JSON.", number)
            continue
        if not isinstance(line, dict):
            fail("invalid_json_line", "Each line must be a JSON object.", number)
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            fail("missing_required_parameter", "Missing required parameter: 'custom_id'.", number, "custom_id")
            continue
        if custom_id in seen:
            fail("duplicate_custom_id", f"The custom_id '{custom_id}' is duplicated.", number, "custom_id")
            continue
        seen.add(custom_id)
        if line.get("method") != "POST":
            fail("invalid_method", "The 'method' of each request must be 'POST'.", number, "method")
            continue
        if line.get("url") != endpoint:
            fail(
                "url_mismatch",
                f"The provided URL '{line.get('url')}' does not match the batch endpoint '{endpoint}'.",
                number,
                "url",
            )
            continue
        body = line.get("body")
        if not isinstance(body, dict):
            fail("missing_required_parameter", "Missing required parameter: 'body'.", number, "body")
            continue
        request = _openai_request(custom_id, endpoint, body)
        if request.model:
            if first_model is None:
                first_model = request.model
            elif request.model != first_model:
                fail(
                    "model_mismatch",
                    f"The model '{request.model}' does not match the batch model '{first_model}'.",
                    number,
                    "body.model",
                )
                continue
        requests.append(request)
    if count == 0:
        fail("empty_file", "The batch input file is empty.", None)
    return requests, errors


def parse_anthropic_requests(payload: Any, max_requests: int) -> list[SimRequest]:
    """Check a ``{"requests": [...]}`` body; raise :class:`InvalidBatch` on what the API rejects.

    Problems inside ``params`` do not reject the batch; that request errors instead.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
        raise InvalidBatch("requests: Field required")
    items = payload["requests"]
    if not items:
        raise InvalidBatch("requests: List should have at least 1 item")
    if len(items) > max_requests:
        raise InvalidBatch(f"requests: List should have at most {max_requests} items")
    seen: set[str] = set()
    out: list[SimRequest] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidBatch(f"requests.{index}: Input should be an object")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not ANTHROPIC_CUSTOM_ID.match(custom_id):
            raise InvalidBatch(f"requests.{index}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
        if custom_id in seen:
            raise InvalidBatch(f"requests.{index}.custom_id: Duplicate custom_id '{custom_id}'")
        seen.add(custom_id)
        params = item.get("params")
        if not isinstance(params, dict):
            raise InvalidBatch(f"requests.{index}.params: Field required")
        model = params.get("model")
        max_tokens = params.get("max_tokens")
        problem = None
        for name in ("model", "max_tokens", "messages"):
            if name not in params:
                problem = f"{name}: Field required"
                break
        if problem is None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
            problem = "max_tokens: Input should be a valid positive integer"
        out.append(
            SimRequest(
                custom_id=custom_id,
                model=model if isinstance(model, str) else "",
                input_tokens=estimate_tokens(params.get("system"), params.get("messages")),
                max_tokens=max_tokens if problem is None else None,
                problem=problem,
            )
        )
    return out
