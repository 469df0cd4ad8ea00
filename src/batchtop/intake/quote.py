"""`batchtop quote FILE...`: what a batch input would cost, batch vs real time, before enqueueing.

Lines are validated by the same code as `enqueue` (a bad file is rejected with the
same EnqueueError), then priced per model with `pricing.estimate`, the one estimator
that the status document's queued and in-flight figures and the budget check use too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from batchtop.display import clean, money_column
from batchtop.intake.files import _lines
from batchtop.intake.validation import iter_parsed
from batchtop.pricing.estimate import estimate_request, request_body
from batchtop.pricing.images import ANTHROPIC_ASSUMED_TOKENS, OPENAI_LARGEST_TILES
from batchtop.pricing.money import usd
from batchtop.pricing.table import PriceTable, Tokens, price_table
from batchtop.pricing.usage import mean_outputs
from batchtop.store.db import Connection

if TYPE_CHECKING:
    from batchtop.config import Config

NOTE = (
    "estimate: input ~ characters/4 of messages, system, input, prompt and tools, images by their "
    "own size; output = max_tokens (or kin) when set, an upper bound; else the observed mean, else 256"
)
URL_IMAGE_NOTE = (
    "images given by URL (or unreadable) are not fetched: each is assumed the largest the provider "
    f"bills (OpenAI 85 + 170 x {OPENAI_LARGEST_TILES} tiles at high detail, 85 at low; "
    f"Anthropic {ANTHROPIC_ASSUMED_TOKENS:,})"
)


@dataclass
class _Group:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    image_tokens: int = 0
    images_measured: int = 0
    images_assumed: int = 0
    tiered_batch: Decimal = Decimal(0)
    tiered_realtime: Decimal = Decimal(0)
    """Costs summed request by request, for a model priced by prompt-length tier."""


def quote(
    paths: list[str],
    config: Config,
    provider: str | None = None,
    *,
    db: Connection | None = None,
    stdin: BinaryIO | None = None,
    model: str | None = None,
) -> list[dict[str, Any]]:
    """One row per (provider, model): requests, estimated tokens, batch/real-time/saved USD.

    `db` (optional) lends observed mean outputs for requests without a max_tokens.
    Raises EnqueueError on any bad line (nothing is quoted), BatchtopError on an
    unreadable file, exactly as enqueue would.
    """
    means = mean_outputs(db) if db is not None else {}
    groups: dict[tuple[str, str], _Group] = {}
    table = price_table(config)
    for chunk in iter_parsed(_lines(paths, stdin), provider, model=model):
        for r in chunk:
            body = request_body(r.provider, json.loads(r.line))
            est = estimate_request(r.endpoint, body, means.get((r.provider, r.model)), provider=r.provider)
            group = groups.setdefault((r.provider, r.model), _Group())
            price = table.price(r.provider, r.model)
            if price is not None and price.tier_above is not None:  # each request at its own tier
                tokens = Tokens(input=est.input_tokens, output=est.output_tokens)
                group.tiered_batch += price.request_batch_cost(tokens)
                group.tiered_realtime += price.request_list_cost(tokens)
            group.requests += 1
            group.input_tokens += est.input_tokens
            group.output_tokens += est.output_tokens
            group.image_tokens += est.images.tokens
            group.images_measured += est.images.measured
            group.images_assumed += est.images.assumed
    return [_row(table, prov, name, g) for (prov, name), g in sorted(groups.items())]


def _row(table: PriceTable, provider: str, model: str, g: _Group) -> dict[str, Any]:
    price = table.price(provider, model)
    tokens = Tokens(input=g.input_tokens, output=g.output_tokens)
    batch = realtime = None
    if price is not None and price.tier_above is not None:
        batch, realtime = g.tiered_batch, g.tiered_realtime
    elif price is not None:
        batch, realtime = price.batch_cost(tokens), price.list_cost(tokens)
    return {
        "provider": provider,
        "model": model,
        "family": price.family if price is not None else None,
        "requests": g.requests,
        "input_tokens": g.input_tokens,
        "output_tokens": g.output_tokens,
        "image_tokens": g.image_tokens,
        "images_measured": g.images_measured,
        "images_assumed": g.images_assumed,
        "batch_usd": usd(batch),
        "realtime_usd": usd(realtime),
        "saved_usd": usd(realtime - batch) if realtime is not None and batch is not None else None,
        "price_known": price is not None,
    }


def unknown_price_warning(models: Iterable[tuple[str, str]]) -> str | None:
    """The stderr warning for models without a known price (their cost is unknown, not $0)."""
    names = sorted({(p, m) for p, m in models})
    if not names:
        return None
    listed = ", ".join(f"{clean(p)}:{clean(m)}" for p, m in names)
    return (
        f"batchtop: warning: no known price for {listed}; its cost is unknown (not $0) until the config "
        'names it under [prices.<provider>."<model>"]'
    )


def quote_warning(rows: list[dict[str, Any]]) -> str | None:
    """`unknown_price_warning` for the unpriced rows of a quote."""
    return unknown_price_warning((r["provider"], r["model"]) for r in rows if not r["price_known"])


def _dec(value: float | None) -> Decimal | None:
    return Decimal(str(value)) if value is not None else None


def render_quote(rows: list[dict[str, Any]], out: TextIO) -> None:
    """A plain text table with a total line. Each money column has one precision at
    which its rows add up to its total; unpriced models show "unknown" and the total
    says it covers the priced models only (the warning itself goes to stderr)."""
    headers = ["PROVIDER", "MODEL", "REQUESTS", "EST_INPUT_TOK", "EST_OUTPUT_TOK", "BATCH", "REALTIME", "SAVED"]
    complete = all(r["price_known"] for r in rows)
    money: list[tuple[list[str], str]] = []
    for key in ("batch_usd", "realtime_usd", "saved_usd"):
        values = [_dec(r[key]) for r in rows]
        known = [v for v in values if v is not None]
        total = sum(known, Decimal(0)) if known or complete else None
        money.append(money_column(values, total, unknown="unknown"))
    body = [
        [
            clean(r["provider"]),
            clean(r["model"]),
            f"{r['requests']:,}",
            f"{r['input_tokens']:,}",
            f"{r['output_tokens']:,}",
            *(column[0][i] for column in money),
        ]
        for i, r in enumerate(rows)
    ]
    total_line = ["TOTAL" if complete else "TOTAL (priced models only)", "", f"{sum(r['requests'] for r in rows):,}",
             f"{sum(r['input_tokens'] for r in rows):,}", f"{sum(r['output_tokens'] for r in rows):,}",
             *(column[1] or "unknown" for column in money)]
    table = [headers, *body, total_line]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    numeric = set(range(2, len(headers)))
    for line in table:
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))]
        out.write("  ".join(cells).rstrip() + "\n")
    out.write(NOTE + "\n")
    measured, assumed = sum(r["images_measured"] for r in rows), sum(r["images_assumed"] for r in rows)
    if measured or assumed:
        out.write(f"images: {measured:,} measured from their own dimensions, {assumed:,} assumed\n")
    if assumed:
        out.write(URL_IMAGE_NOTE + "\n")
