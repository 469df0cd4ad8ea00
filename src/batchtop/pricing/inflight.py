"""What queued and in-flight work will cost, before any result is back.

One estimator everywhere: `quote` estimates each line with `pricing.estimate`, and
enqueue stores the same per-request figures summed per buffer (`buffer_estimates`).
Here those sums are scaled to what each stage holds, from counters only (buffers'
queued/queued_bytes, batches' total/bytes), never by reading the requests: input
tokens in proportion to bytes, capped outputs (max_tokens and kin) in proportion to
requests, and uncapped outputs at the model's observed mean per success, else the
default. A whole buffer queued (or one batch holding it) is exactly what `quote` said.
Buffers enqueued before those sums existed fall back to bytes / 4 and the mean.
All of it at batch prices and the plain input price (no cache discount assumed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING, Any

from batchtop.pricing.money import usd
from batchtop.pricing.table import PriceTable, Tokens, price_table
from batchtop.pricing.usage import DEFAULT_OUTPUT_TOKENS, mean_outputs
from batchtop.store import pricing_queries
from batchtop.store.pricing_queries import EstimateSums

if TYPE_CHECKING:
    from batchtop.config import Config
    from batchtop.store.db import Connection

BYTES_PER_TOKEN = 4
BASIS = (
    "estimate, as quote makes it: input ~ characters/4 of what the model reads, images by their size; "
    f"output = max_tokens (or kin) when set, else the model's observed mean per success, else "
    f"{DEFAULT_OUTPUT_TOKENS}; batch prices"
)
OLD_STORE_BASIS = (
    "; requests enqueued before this estimate was kept at enqueue: input ~ bytes/4 of the line, "
    f"output = the observed mean, else {DEFAULT_OUTPUT_TOKENS}"
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
    from_bytes: bool = False
    """Some of it was estimated from bytes: enqueued before `buffer_estimates` existed."""


_Sums = EstimateSums


def input_tokens_from_bytes(size: int) -> int:
    return _ceil(Decimal(size) / BYTES_PER_TOKEN)


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(ROUND_CEILING))


def scaled_tokens(sums: _Sums | None, requests: int, size: int, mean: Decimal | None) -> Tokens:
    """Tokens of `requests` requests of `size` bytes drawn from a buffer with these sums."""
    per_output = mean if mean is not None else Decimal(DEFAULT_OUTPUT_TOKENS)
    if sums is None:
        return Tokens(input=input_tokens_from_bytes(size), output=_ceil(per_output * requests))
    share = Decimal(requests) / sums.requests
    inp = _ceil(Decimal(sums.input_tokens) * size / sums.bytes) if sums.bytes else 0
    out = _ceil(share * (sums.capped_output_tokens + sums.uncapped_outputs * per_output))
    return Tokens(input=inp, output=out)


def estimate_work(
    db: Connection, table: PriceTable, *, provider: str | None = None, queued: bool = True
) -> list[WorkEstimate]:
    """Per-model estimates of batches not yet ingested, and (if `queued`) of queued requests."""
    means = mean_outputs(db)
    sources = [("in_flight", pricing_queries.in_flight_rows(db, provider))]
    if queued:
        sources.append(("queued", pricing_queries.queued_rows(db, provider)))
    merged: dict[tuple[str, str, str], list[int]] = {}
    for stage, rows in sources:
        for r in rows:
            if r.requests <= 0:
                continue
            tokens = scaled_tokens(r.sums, r.requests, r.bytes, means.get((r.provider, r.model)))
            entry = merged.setdefault((stage, r.provider, r.model), [0, 0, 0, 0])
            entry[0] += r.requests
            entry[1] += tokens.input
            entry[2] += tokens.output
            entry[3] |= r.sums is None
    out: list[WorkEstimate] = []
    for (stage, prov, model), (requests, inp, output, from_bytes) in merged.items():
        price = table.price(prov, model)
        cost = price.batch_cost(Tokens(input=inp, output=output)) if price is not None else None
        out.append(WorkEstimate(stage, prov, model, requests, inp, output, cost, bool(from_bytes)))
    return out


def estimate_batch_cost(
    db: Connection, config: Config, provider: str, model: str, requests: int, size_bytes: int
) -> Decimal | None:
    """The estimated batch-price cost of a batch about to be submitted (for the budget check)."""
    price = price_table(config).price(provider, model)
    if price is None:
        return None
    sums = pricing_queries.enqueued_sums(db, provider, model)
    tokens = scaled_tokens(sums, requests, size_bytes, mean_outputs(db).get((provider, model)))
    return price.batch_cost(tokens)


def sum_known(items: list[WorkEstimate]) -> tuple[Decimal, bool]:
    """(cost of the priced items, whether every item was priced)."""
    total = sum((i.cost for i in items if i.cost is not None), Decimal(0))
    return total, all(i.cost is not None for i in items)


@dataclass(frozen=True)
class ModelEstimate:
    """One `in_flight_estimate.by_model` entry: one model's work at one stage."""

    stage: str  # "queued" | "in_flight"
    provider: str
    model: str
    requests: int
    input_tokens: int
    output_tokens: int
    usd: float | None
    price_known: bool


@dataclass(frozen=True)
class InFlightEstimate:
    """What queued and in-flight work will cost at batch prices, an estimate.

    `usd` and `in_flight_usd` (for `in_flight_estimate_usd`) are what is in flight:
    submitted, not yet ingested; `queued_usd` (for `queued_estimate_usd`) what waits in
    buffers. Each sums the priced models and is None when work is there but none of it
    has a price; `complete` is false when some model has no price.
    """

    usd: float | None
    in_flight_usd: float | None
    queued_usd: float | None
    total_usd: float | None
    complete: bool
    by_model: tuple[ModelEstimate, ...] = ()
    basis: str | None = None
    """How the figures were made; None only for a data dir without a store."""
    estimate: bool = True

    def to_json(self) -> dict[str, Any]:
        """`{"usd", "in_flight_usd", "queued_usd", "total_usd", "complete", "estimate": true, "by_model", "basis"}`."""
        doc: dict[str, Any] = {
            "usd": self.usd,
            "in_flight_usd": self.in_flight_usd,
            "queued_usd": self.queued_usd,
            "total_usd": self.total_usd,
            "complete": self.complete,
            "estimate": self.estimate,
            "by_model": [asdict(m) for m in self.by_model],
        }
        if self.basis is not None:
            doc["basis"] = self.basis
        return doc


NO_WORK = InFlightEstimate(usd=0.0, in_flight_usd=0.0, queued_usd=0.0, total_usd=0.0, complete=True)
"""The estimate of a data dir without a store."""


def in_flight_estimate(db: Connection, config: Config) -> dict[str, Any]:
    """`in_flight_cost(db, config)` as its JSON object (see `InFlightEstimate`)."""
    return in_flight_cost(db, config).to_json()


def in_flight_cost(db: Connection, config: Config) -> InFlightEstimate:
    """The estimate of everything queued or in flight, per model and summed per stage."""
    items = estimate_work(db, price_table(config))

    def stage_sum(stage: str | None) -> float | None:
        chosen = [i for i in items if stage is None or i.stage == stage]
        total, complete = sum_known(chosen)
        return usd(total) if complete or any(i.cost is not None for i in chosen) else None

    flying = stage_sum("in_flight")
    return InFlightEstimate(
        usd=flying,
        in_flight_usd=flying,
        queued_usd=stage_sum("queued"),
        total_usd=stage_sum(None),
        complete=all(i.cost is not None for i in items),
        by_model=tuple(
            ModelEstimate(i.stage, i.provider, i.model, i.requests, i.input_tokens, i.output_tokens, usd(i.cost),
                          i.cost is not None)
            for i in items
        ),
        basis=BASIS + (OLD_STORE_BASIS if any(i.from_bytes for i in items) else ""),
    )
