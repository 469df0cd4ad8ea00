"""Fake model results: bodies, token usage and the JSONL result lines.

Every line built here validates against the SDK models (``ChatCompletion``,
``CreateEmbeddingResponse``, ``Response``, ``Completion``,
``MessageBatchIndividualResponse``); the tests check that line by line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import SimConfig
from .outcomes import BAD_REQUEST, output_tokens, short_hash, unit_hash
from .parsing import SimRequest
from .scripted import scripted


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one successful request."""

    input_total: int
    cached: int
    cache_write: int
    output: int
    capped: bool
    cache_write_1h: int = 0
    """The part of `cache_write` written to the 1-hour cache (Anthropic reports both kinds)."""


def usage_for(cfg: SimConfig, request: SimRequest, embeddings: bool = False) -> Usage:
    """Usage is a pure function of the request and the config snapshot."""
    total = request.input_tokens
    cached = int(total * min(max(cfg.cached_input_share, 0.0), 1.0))
    write = min(total - cached, int(total * min(max(cfg.cache_write_share, 0.0), 1.0)))
    if embeddings:
        return Usage(total, 0, 0, 0, False)
    out, capped = output_tokens(cfg, request.custom_id, request.max_tokens)
    write_1h = int(write * min(max(cfg.cache_write_1h_share, 0.0), 1.0))
    return Usage(total, cached, write, out, capped, write_1h)


def _text(request: SimRequest) -> str:
    return f"Simulated reply {short_hash(request.custom_id, size=4)} to {request.custom_id}."


# ---------------------------------------------------------------- OpenAI


def _chat_body(request: SimRequest, usage: Usage, created: int, tag: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{tag}",
        "object": "chat.completion",
        "created": created,
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _text(request), "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": "length" if usage.capped else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": usage.input_total,
            "completion_tokens": usage.output,
            "total_tokens": usage.input_total + usage.output,
            "prompt_tokens_details": {"cached_tokens": usage.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": "fp_sim",
    }


def _responses_body(request: SimRequest, usage: Usage, created: int, tag: str) -> dict[str, Any]:
    return {
        "id": f"resp_{tag}",
        "object": "response",
        "created_at": created,
        "completed_at": created,
        "status": "incomplete" if usage.capped else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if usage.capped else None,
        "error": None,
        "model": request.model,
        "output": [
            {
                "type": "message",
                "id": f"msg_{tag}",
                "status": "incomplete" if usage.capped else "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": _text(request), "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "max_output_tokens": request.max_tokens,
        "usage": {
            "input_tokens": usage.input_total,
            "input_tokens_details": {"cached_tokens": usage.cached, "cache_write_tokens": usage.cache_write},
            "output_tokens": usage.output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.input_total + usage.output,
        },
    }


def _embeddings_body(request: SimRequest, usage: Usage) -> dict[str, Any]:
    return {
        "object": "list",
        "model": request.model,
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": [round(unit_hash(request.custom_id, i, d) * 2 - 1, 6) for d in range(8)],
            }
            for i in range(request.n_inputs)
        ],
        "usage": {"prompt_tokens": usage.input_total, "total_tokens": usage.input_total},
    }


def _completions_body(request: SimRequest, usage: Usage, created: int, tag: str) -> dict[str, Any]:
    return {
        "id": f"cmpl-{tag}",
        "object": "text_completion",
        "created": created,
        "model": request.model,
        "choices": [
            {"index": 0, "text": _text(request), "logprobs": None, "finish_reason": "length" if usage.capped else "stop"}
        ],
        "usage": {
            "prompt_tokens": usage.input_total,
            "completion_tokens": usage.output,
            "total_tokens": usage.input_total + usage.output,
        },
    }


def openai_body(endpoint: str, request: SimRequest, usage: Usage, created: int, tag: str) -> dict[str, Any]:
    """The endpoint's normal response body for a successful request."""
    if endpoint == "/v1/chat/completions":
        return _chat_body(request, usage, created, tag)
    if endpoint == "/v1/responses":
        return _responses_body(request, usage, created, tag)
    if endpoint == "/v1/embeddings":
        return _embeddings_body(request, usage)
    return _completions_body(request, usage, created, tag)


def openai_error_body(request: SimRequest, status: int) -> dict[str, Any]:
    """``{"error": {...}}`` as the endpoint would answer a failing request."""
    if status == BAD_REQUEST:
        message = request.problem or f"Simulated invalid request for custom_id '{request.custom_id}'."
        return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_value"}}
    return {
        "error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": "server_error",
        }
    }


def openai_result_line(
    batch_id: str, endpoint: str, cfg: SimConfig, request: SimRequest, outcome: int, created: int
) -> dict[str, Any]:
    """One output-file line (outcome 0) or error-file line (outcome = HTTP status)."""
    tag = short_hash(batch_id, request.custom_id)
    script = scripted(cfg.scripted_errors, request.custom_id) if outcome else None
    if script is not None:
        status, body = script.status, {"error": dict(script.openai_error)}
    elif outcome:
        status, body = outcome, openai_error_body(request, outcome)
    else:
        usage = usage_for(cfg, request, embeddings=endpoint == "/v1/embeddings")
        status, body = 200, openai_body(endpoint, request, usage, created, tag)
    return {
        "id": f"batch_req_{tag}",
        "custom_id": request.custom_id,
        "response": {"status_code": status, "request_id": f"req_{tag}", "body": body},
        "error": None,
    }


_ABORT_MESSAGES = {
    "batch_expired": "This request could not be executed before the completion window expired.",
    "batch_cancelled": "This request was not executed because the batch was cancelled.",
}


def openai_abort_line(batch_id: str, request: SimRequest, code: str) -> dict[str, Any]:
    """Error-file line for a request that never ran (``batch_expired`` / ``batch_cancelled``)."""
    return {
        "id": f"batch_req_{short_hash(batch_id, request.custom_id)}",
        "custom_id": request.custom_id,
        "response": None,
        "error": {"code": code, "message": _ABORT_MESSAGES[code]},
    }


# ---------------------------------------------------------------- Anthropic


def anthropic_message(cfg: SimConfig, batch_id: str, request: SimRequest) -> dict[str, Any]:
    """A ``Message`` for a succeeded request; cache reads/writes come out of ``input_tokens``."""
    usage = usage_for(cfg, request)
    return {
        "id": f"msg_{short_hash(batch_id, request.custom_id)}",
        "type": "message",
        "role": "assistant",
        "model": request.model,
        "content": [{"type": "text", "text": _text(request)}],
        "stop_reason": "max_tokens" if usage.capped else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.input_total - usage.cached - usage.cache_write,
            "output_tokens": usage.output,
            "cache_creation_input_tokens": usage.cache_write,
            "cache_read_input_tokens": usage.cached,
            "cache_creation": {
                "ephemeral_5m_input_tokens": usage.cache_write - usage.cache_write_1h,
                "ephemeral_1h_input_tokens": usage.cache_write_1h,
            },
            "service_tier": "batch",
        },
    }


def anthropic_result_line(
    cfg: SimConfig, batch_id: str, request: SimRequest, outcome: int | str
) -> dict[str, Any]:
    """A ``MessageBatchIndividualResponse``; outcome is 0, an HTTP status, ``"canceled"`` or ``"expired"``."""
    script = scripted(cfg.scripted_errors, request.custom_id) if outcome not in (0, "canceled", "expired") else None
    if outcome in ("canceled", "expired"):
        result: dict[str, Any] = {"type": outcome}
    elif script is not None:
        result = script.anthropic_result
    elif outcome:
        if outcome == BAD_REQUEST:
            error = {
                "type": "invalid_request_error",
                "message": request.problem or f"Simulated invalid request for custom_id '{request.custom_id}'.",
            }
        else:
            error = {"type": "api_error", "message": "Internal server error"}
        result = {
            "type": "errored",
            "error": {"type": "error", "error": error, "request_id": f"req_{short_hash(batch_id, request.custom_id)}"},
        }
    else:
        result = {"type": "succeeded", "message": anthropic_message(cfg, batch_id, request)}
    return {"custom_id": request.custom_id, "result": result}
