"""An estimate of what queued and in-flight work will cost, before any result is back.

Only counters are read (buffers.queued/queued_bytes, batches.total/bytes of batches
not yet ingested, usage_rollup), never the requests. Input tokens are guessed as
bytes / 4 of the native lines (an over-estimate: the line's JSON wrapper counts too),
output tokens as the model's observed mean per success, else a default; all of it at
the plain input price, no cache discount assumed. It is labelled an estimate.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any

from batchtop.pricing.money import usd
from batchtop.pricing.table import PriceTable, Tokens, price_table
from batchtop.pricing.usage import DEFAULT_OUTPUT_TOKENS, mean_outputs

if TYPE_CHECKING:
    from batchtop.config import Config

BYTES_PER_TOKEN = 4
BASIS = (
    f"estimate: input tokens ~ bytes/{BYTES_PER_TOKEN} at the plain input price; output tokens = "
    f"the model's observed mean per success, else {DEFAULT_OUTPUT_TOKENS} per request; batch prices"
)

# A batch whose status is `failed` was rejected whole by the provider (validation) and is billed nothing.
_IN_FLIGHT = (
    "SELECT provider, model, sum(total), sum(bytes) FROM batches"
    " WHERE ingested_at IS NULL AND status != 'failed' {where} GROUP BY provider, model"
)
_QUEUED = (
    "SELECT provider, model, sum(queued), sum(queued_bytes) FROM buffers"
    " WHERE queued > 0 {where} GROUP BY provider, model"
)


@dataclass(frozen=True)
class WorkEstimate:
    """The estimated cost of some not-yet-ingested requests of one model."""

    stage: str  # "queued" | "in_flight"
    provider: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost: Decimal | None  # batch price; None when the model has no known price


def input_tokens_from_bytes(size: int) -> int:
    return int((Decimal(size) / BYTES_PER_TOKEN).to_integral_value(ROUND_CEILING))


def estimate_work(
    db: sqlite3.Connection, table: PriceTable, *, provider: str | None = None, queued: bool = True
) -> list[WorkEstimate]:
    """Per-model estimates of batches not yet ingested, and (if `queued`) of queued requests."""
    means = mean_outputs(db)
    where, args = ("AND provider = ?", (provider,)) if provider is not None else ("", ())
    sources = [("in_flight", _IN_FLIGHT)] + ([("queued", _QUEUED)] if queued else [])
    out: list[WorkEstimate] = []
    for stage, sql in sources:
        for prov, model, requests, size in db.execute(sql.format(where=where), args):
            if (requests or 0) > 0:
                out.append(_estimate(table, means.get((prov, model)), stage, prov, model, int(requests), int(size or 0)))
    return out


def _estimate(
    table: PriceTable, mean: Decimal | None, stage: str, provider: str, model: str, requests: int, size: int
) -> WorkEstimate:
    per_request = mean if mean is not None else Decimal(DEFAULT_OUTPUT_TOKENS)
    output = int((per_request * requests).to_integral_value(ROUND_CEILING))
    tokens = Tokens(input=input_tokens_from_bytes(size), output=output)
    price = table.price(provider, model)
    cost = price.batch_cost(tokens) if price is not None else None
    return WorkEstimate(stage, provider, model, requests, tokens.input, tokens.output, cost)


def estimate_batch_cost(
    db: sqlite3.Connection, config: Config, provider: str, model: str, requests: int, size_bytes: int
) -> Decimal | None:
    """The estimated batch-price cost of a batch about to be submitted (for the budget check)."""
    mean = mean_outputs(db).get((provider, model))
    return _estimate(price_table(config), mean, "queued", provider, model, requests, size_bytes).cost


def sum_known(items: list[WorkEstimate]) -> tuple[Decimal, bool]:
    """(cost of the priced items, whether every item was priced)."""
    total = sum((i.cost for i in items if i.cost is not None), Decimal(0))
    return total, all(i.cost is not None for i in items)


def in_flight_estimate(db: sqlite3.Connection, config: Config) -> dict[str, Any]:
    """`{"usd", "complete", "estimate": true, "queued_usd", "in_flight_usd", "by_model", "basis"}`.

    `usd` (for `in_flight_estimate_usd`) sums the priced models; `complete` is false when
    some queued or in-flight model has no price, and `usd` is null when none has one.
    """
    items = estimate_work(db, price_table(config))
    total, complete = sum_known(items)
    known = complete or any(i.cost is not None for i in items)
    queued, _ = sum_known([i for i in items if i.stage == "queued"])
    flying, _ = sum_known([i for i in items if i.stage == "in_flight"])
    return {
        "usd": usd(total) if known else None,
        "complete": complete,
        "estimate": True,
        "queued_usd": usd(queued) if known else None,
        "in_flight_usd": usd(flying) if known else None,
        "by_model": [
            {
                "stage": i.stage,
                "provider": i.provider,
                "model": i.model,
                "requests": i.requests,
                "input_tokens": i.input_tokens,
                "output_tokens": i.output_tokens,
                "usd": usd(i.cost),
                "price_known": i.cost is not None,
            }
            for i in items
        ],
        "basis": BASIS,
    }
