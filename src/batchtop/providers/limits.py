"""What each provider's batch API accepts: endpoints, id rules and caps.

Pure data, so validation, the flush policy and the simulator agree on one truth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPENAI = "openai"
ANTHROPIC = "anthropic"
GEMINI = "gemini"
PROVIDERS = (OPENAI, ANTHROPIC, GEMINI)

ANTHROPIC_ENDPOINT = "/v1/messages"
GEMINI_ENDPOINT = "generateContent"
"""Gemini Batch Mode runs one method, `models.generateContent`, for every request of a
batch (the batch itself is `{model}:batchGenerateContent`)."""

GEMINI_INLINE_MAX_BYTES = 20 * 1000 * 1000
"""Above this a Gemini batch goes as an uploaded JSONL file rather than inline requests
(ai.google.dev batch-mode docs: inline 'keeps the total request size under 20MB')."""
GEMINI_KEY_MAX = 512
"""Our own bound on a Gemini line's `key` (the docs give none): it is stored and
shown like a custom_id, so it stays a short label, not a payload."""


@dataclass(frozen=True)
class BatchCaps:
    max_requests: int
    max_bytes: int


CAPS: dict[str, BatchCaps] = {
    OPENAI: BatchCaps(max_requests=50_000, max_bytes=200 * 1000 * 1000),
    ANTHROPIC: BatchCaps(max_requests=100_000, max_bytes=256 * 1000 * 1000),
    # the input file may be up to 2 GB (docs); no request-count cap is documented, so
    # Anthropic's 100,000 keeps one batch's ingest the size the others' are
    GEMINI: BatchCaps(max_requests=100_000, max_bytes=2 * 1000 * 1000 * 1000),
}

# The endpoints `batches.create` takes (openai 3.51.0), and the field each body needs.
OPENAI_ENDPOINTS: dict[str, str] = {
    "/v1/chat/completions": "messages",
    "/v1/responses": "input",
    "/v1/embeddings": "input",
    "/v1/completions": "prompt",
    "/v1/moderations": "input",
    "/v1/images/generations": "prompt",
    "/v1/images/edits": "prompt",
    "/v1/videos": "prompt",
}

ANTHROPIC_CUSTOM_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
OPENAI_CUSTOM_ID_MAX = 512
