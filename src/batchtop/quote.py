"""`batchtop quote FILE...`: what a batch input would cost, batch vs real time, before enqueueing.

Lines are validated by the same code as `enqueue` (a bad file is rejected with the
same EnqueueError), then priced per model with `pricing.estimate`'s token guesses.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from batchtop.intake import _lines
from batchtop.pricing.estimate import estimate_request, request_body
from batchtop.pricing.money import fmt_usd, usd
from batchtop.pricing.table import Tokens, price_table
from batchtop.pricing.usage import mean_outputs
from batchtop.validation import iter_parsed

if TYPE_CHECKING:
    from batchtop.config import Config

NOTE = (
    "estimate: input ~ characters/4 of messages, system, input, prompt and tools; output = "
    "max_tokens (or kin) when set, an upper bound; else the observed mean, else 256"
)


@dataclass
class _Group:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


def quote(
    paths: list[str],
    config: Config,
    provider: str | None = None,
    *,
    db: sqlite3.Connection | None = None,
    stdin: BinaryIO | None = None,
) -> list[dict[str, Any]]:
    """One row per (provider, model): requests, estimated tokens, batch/real-time/saved USD.

    `db` (optional) lends observed mean outputs for requests without a max_tokens.
    Raises EnqueueError on any bad line (nothing is quoted), BatchtopError on an
    unreadable file, exactly as enqueue would.
    """
    means = mean_outputs(db) if db is not None else {}
    groups: dict[tuple[str, str], _Group] = {}
    for chunk in iter_parsed(_lines(paths, stdin), provider):
        for r in chunk:
            body = request_body(r.provider, json.loads(r.line))
            est = estimate_request(r.endpoint, body, means.get((r.provider, r.model)))
            group = groups.setdefault((r.provider, r.model), _Group())
            group.requests += 1
            group.input_tokens += est.input_tokens
            group.output_tokens += est.output_tokens
    table = price_table(config)
    rows: list[dict[str, Any]] = []
    for (prov, model), g in sorted(groups.items()):
        price = table.price(prov, model)
        tokens = Tokens(input=g.input_tokens, output=g.output_tokens)
        batch = price.batch_cost(tokens) if price is not None else None
        realtime = price.list_cost(tokens) if price is not None else None
        rows.append(
            {
                "provider": prov,
                "model": model,
                "family": price.family if price is not None else None,
                "requests": g.requests,
                "input_tokens": g.input_tokens,
                "output_tokens": g.output_tokens,
                "batch_usd": usd(batch),
                "realtime_usd": usd(realtime),
                "saved_usd": usd(realtime - batch) if realtime is not None and batch is not None else None,
                "price_known": price is not None,
            }
        )
    return rows


def _money(value: float | None) -> str:
    return fmt_usd(Decimal(str(value))) if value is not None else "unknown"


def render_quote(rows: list[dict[str, Any]], out: TextIO) -> None:
    """A plain text table with a total line; unpriced models say so and mark the total incomplete."""
    headers = ["PROVIDER", "MODEL", "REQUESTS", "EST_INPUT_TOK", "EST_OUTPUT_TOK", "BATCH", "REALTIME", "SAVED"]
    body = [
        [
            r["provider"],
            r["model"],
            f"{r['requests']:,}",
            f"{r['input_tokens']:,}",
            f"{r['output_tokens']:,}",
            _money(r["batch_usd"]),
            _money(r["realtime_usd"]),
            _money(r["saved_usd"]),
        ]
        for r in rows
    ]
    known = [r for r in rows if r["price_known"]]
    complete = len(known) == len(rows)
    total = ["TOTAL" if complete else "TOTAL (priced models only)", "", f"{sum(r['requests'] for r in rows):,}",
             f"{sum(r['input_tokens'] for r in rows):,}", f"{sum(r['output_tokens'] for r in rows):,}"]
    for key in ("batch_usd", "realtime_usd", "saved_usd"):
        total.append(fmt_usd(sum((Decimal(str(r[key])) for r in known), Decimal(0))) if known else "unknown")
    table = [headers, *body, total]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers))]
    numeric = set(range(2, len(headers)))
    for line in table:
        cells = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))]
        out.write("  ".join(cells).rstrip() + "\n")
    out.write(NOTE + "\n")
    unknown = [f"{r['provider']}:{r['model']}" for r in rows if not r["price_known"]]
    if unknown:
        out.write(f"no known price for {', '.join(unknown)}: add it under [prices.<provider>.\"<model>\"] in the config\n")
