"""Reading `usage_rollup`: the few rows the engine keeps per provider x model.

The rollup is split by (first attempt?, succeeded?), so every savings figure is a sum
over at most four rows per model: nothing here ever scans `attempts`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from decimal import Decimal

from batchtop.pricing.table import Tokens

DEFAULT_OUTPUT_TOKENS = 256
"""Output tokens assumed per request when neither the request nor history says more."""


@dataclass
class ModelUsage:
    """One model's usage, split the ways the savings figures need."""

    provider: str
    model: str
    attempts: int = 0
    succeeded: int = 0
    first_attempts: int = 0
    first_succeeded: int = 0
    ok_tokens: Tokens = field(default_factory=Tokens)
    failed_tokens: Tokens = field(default_factory=Tokens)

    @property
    def failed(self) -> int:
        return self.attempts - self.succeeded

    @property
    def tokens(self) -> Tokens:
        return self.ok_tokens + self.failed_tokens

    @property
    def mean_output(self) -> Decimal | None:
        """Mean output tokens per succeeded attempt, None before the first success."""
        return Decimal(self.ok_tokens.output) / self.succeeded if self.succeeded else None


def read_usage(db: sqlite3.Connection) -> list[ModelUsage]:
    """Every model's usage, ordered by provider then model."""
    models: dict[tuple[str, str], ModelUsage] = {}
    for provider, model, first, ok, attempts, inp, cached, write, out, write_1h in db.execute(
        "SELECT provider, model, first_attempt, succeeded, attempts, input_tokens, cached_input_tokens,"
        " cache_creation_input_tokens, output_tokens, cache_creation_1h_input_tokens FROM usage_rollup"
    ):
        usage = models.get((provider, model))
        if usage is None:
            usage = models[(provider, model)] = ModelUsage(provider, model)
        tokens = Tokens(inp, cached, write, out, write_1h)
        usage.attempts += attempts
        if ok:
            usage.succeeded += attempts
            usage.ok_tokens += tokens
        else:
            usage.failed_tokens += tokens
        if first:
            usage.first_attempts += attempts
            if ok:
                usage.first_succeeded += attempts
    return [models[k] for k in sorted(models)]


def mean_outputs(db: sqlite3.Connection) -> dict[tuple[str, str], Decimal]:
    """Observed mean output tokens per succeeded attempt, keyed by (provider, model)."""
    return {(u.provider, u.model): m for u in read_usage(db) if (m := u.mean_output) is not None}
