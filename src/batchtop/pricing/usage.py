"""Reading `usage_rollup`: the few rows the engine keeps per provider x model.

The rollup is split by (first attempt?, succeeded?), so every savings figure is a sum
over at most four rows per model: nothing here ever scans `attempts`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from batchtop.pricing.table import UPPER_TIER, Tokens

if TYPE_CHECKING:
    from batchtop.store.db import Connection

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
    upper_ok_tokens: Tokens = field(default_factory=Tokens)
    """The part of `ok_tokens` from requests over the model's prompt tier (Gemini Pro's
    200k): priced at the upper tier, the rest at the base one."""
    upper_failed_tokens: Tokens = field(default_factory=Tokens)
    """The same part of `failed_tokens`."""

    def add(self, first_attempt: bool, succeeded: bool, tier: str, attempts: int, tokens: Tokens) -> None:
        """One rollup row (of one first attempt? x succeeded? x tier kind) into this usage."""
        upper = tier == UPPER_TIER
        self.attempts += attempts
        if succeeded:
            self.succeeded += attempts
            self.ok_tokens += tokens
            if upper:
                self.upper_ok_tokens += tokens
        else:
            self.failed_tokens += tokens
            if upper:
                self.upper_failed_tokens += tokens
        if first_attempt:
            self.first_attempts += attempts
            if succeeded:
                self.first_succeeded += attempts

    @property
    def failed(self) -> int:
        return self.attempts - self.succeeded

    @property
    def tokens(self) -> Tokens:
        return self.ok_tokens + self.failed_tokens

    @property
    def upper_tokens(self) -> Tokens:
        """The part of `tokens` at the upper prompt tier."""
        return self.upper_ok_tokens + self.upper_failed_tokens

    @property
    def mean_output(self) -> Decimal | None:
        """Mean output tokens per succeeded attempt, None before the first success."""
        return Decimal(self.ok_tokens.output) / self.succeeded if self.succeeded else None


def read_usage(db: Connection) -> list[ModelUsage]:
    """Every model's usage, ordered by provider then model."""
    # imported here: the store imports this module (enqueue's estimate) while it loads
    from batchtop.store import pricing_queries

    models: dict[tuple[str, str], ModelUsage] = {}
    for row in pricing_queries.usage_rows(db):
        usage = models.get((row.provider, row.model))
        if usage is None:
            usage = models[(row.provider, row.model)] = ModelUsage(row.provider, row.model)
        tokens = Tokens(row.input_tokens, row.cached_input_tokens, row.cache_creation_input_tokens,
                        row.output_tokens, row.cache_creation_1h_input_tokens)
        usage.add(row.first_attempt, row.succeeded, row.tier, row.attempts, tokens)
    return [models[k] for k in sorted(models)]


def mean_outputs(db: Connection) -> dict[tuple[str, str], Decimal]:
    """Observed mean output tokens per succeeded attempt, keyed by (provider, model)."""
    return {(u.provider, u.model): m for u in read_usage(db) if (m := u.mean_output) is not None}
