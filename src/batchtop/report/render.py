"""The report document as text (for a terminal or a budget mail) and as CSV of `by_day`.

Both render the document `report.document.build` made and compute nothing but sums
for the what-if's per-target line. Money columns go through `display.money_column`,
so the rows of each column add up to its total as printed.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import Any, TextIO

from batchtop.display import clean, money_column, usd_amount
from batchtop.timefmt import human_duration

CSV_COLUMNS = ("day", "requests_succeeded", "batch_cost_usd", "realtime_cost_usd", "saved_usd")


def write_csv(doc: dict[str, Any], out: TextIO) -> None:
    """`by_day`, one row per UTC day; an unknown amount is an empty cell, never 0."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for day in doc["by_day"]:
        writer.writerow(["" if day[c] is None else day[c] for c in CSV_COLUMNS])


def _pct(value: float | None, scale: float = 1.0) -> str:
    return "-" if value is None else f"{value * scale:.1f}%"


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else human_duration(seconds)


def _table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  " + "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out.write(line(headers) + "\n")
    out.writelines(line(r) + "\n" for r in rows)


def _money_columns(rows: Sequence[dict[str, Any]], keys: Sequence[str], totals: dict[str, Any] | None) -> list[list[str]]:
    """Each key's column as text, and (when totals are given) its total as the last cell."""
    cols = []
    for key in keys:
        values, total = money_column([r[key] for r in rows], totals[key] if totals is not None else None)
        cols.append(values + ([total] if totals is not None else []))
    return cols


def _period(doc: dict[str, Any]) -> str:
    since, until = doc["period"]["since"], doc["period"]["until"]
    if since is None and until is None:
        return "all of history"
    return f"{since or 'the start'} to {until or 'now'}"


def write_text(doc: dict[str, Any], out: TextIO) -> None:
    t = doc["totals"]
    out.write(f"batchtop report: {_period(doc)} (ended batches; prices as of {doc['prices_as_of']})\n")
    out.write(
        f"{t['batches']:,} batches, {t['requests_succeeded']:,} requests succeeded · batch {usd_amount(t['batch_cost_usd'])}"
        f" · real-time equivalent {usd_amount(t['realtime_cost_usd'])} · saved {usd_amount(t['saved_usd'])}"
        f" ({_pct(t['saved_pct'])}) · resubmissions {usd_amount(t['resubmission_cost_usd'])}"
        f" · first pass {_pct(t['first_pass_success_rate'], 100)} · avg batch {_duration(t['avg_batch_duration_s'])}\n"
    )
    if not t["complete"]:
        out.write("incomplete: models without a known price are left out of the money (add them under [prices])\n")

    models = doc["by_model"]
    out.write("\nBY MODEL\n")
    if not models:
        out.write("  (no batch ended in this period)\n")
    else:
        money = _money_columns(models, ("batch_cost_usd", "realtime_cost_usd", "resubmission_cost_usd", "saved_usd"), t)
        rows = [
            [clean(m["provider"]), clean(m["model"], limit=60), f"{m['batches']:,}", f"{m['requests_succeeded']:,}",
             *(col[i] for col in money), _pct(m["saved_pct"]), _pct(m["first_pass_success_rate"], 100),
             _pct(m["break_even_first_pass_rate"], 100) + (" !" if m["below_break_even"] else ""),
             _duration(m["avg_batch_duration_s"])]
            for i, m in enumerate(models)
        ]
        rows.append(["TOTAL", "", f"{t['batches']:,}", f"{t['requests_succeeded']:,}", *(col[-1] for col in money),
                     _pct(t["saved_pct"]), _pct(t["first_pass_success_rate"], 100), "", _duration(t["avg_batch_duration_s"])])
        _table(out, ["PROVIDER", "MODEL", "BATCHES", "SUCCEEDED", "BATCH", "REAL-TIME", "RESUBMISSIONS", "SAVED",
                     "SAVED%", "FIRST-PASS", "BREAK-EVEN", "AVG BATCH"], rows, set(range(2, 12)))
        for m in models:
            name = f"{clean(m['provider'])}:{clean(m['model'], limit=60)}"
            if not m["price_known"]:
                out.write(f"  {name}: no known price; add it under [prices] in the config\n")
            if m["below_break_even"]:
                out.write(
                    f"  ! {name}: first-pass success {_pct(m['first_pass_success_rate'], 100)} is below its break-even"
                    f" {_pct(m['break_even_first_pass_rate'], 100)}: resubmissions use up the batch discount\n"
                )
            elif m.get("warning"):
                out.write(f"  ! {name}: {m['warning']}\n")

    days = doc["by_day"]
    out.write("\nBY DAY (UTC, by batch end)\n")
    if days:
        money = _money_columns(days, ("batch_cost_usd", "realtime_cost_usd", "saved_usd"), t)
        rows = [[d["day"], f"{d['requests_succeeded']:,}", *(col[i] for col in money)] for i, d in enumerate(days)]
        rows.append(["TOTAL", f"{t['requests_succeeded']:,}", *(col[-1] for col in money)])
        _table(out, ["DAY", "SUCCEEDED", "BATCH", "REAL-TIME", "SAVED"], rows, {1, 2, 3, 4})
    else:
        out.write("  (nothing)\n")

    p = doc["projection"]
    out.write(f"\nPROJECTION (from {p['basis_days']} day{'s' if p['basis_days'] != 1 else ''}, x 30 a month, x 12 a year)\n")
    out.write(
        f"  monthly: batch {usd_amount(p['monthly_batch_cost_usd'])}, saved {usd_amount(p['monthly_saved_usd'])}"
        f" · annual: batch {usd_amount(p['annual_batch_cost_usd'])}, saved {usd_amount(p['annual_saved_usd'])}\n"
    )

    what_if = doc["what_if"]
    if what_if:
        out.write("\nWHAT-IF: the same tokens in batch on another model of the provider\n")
        money = _money_columns(what_if, ("batch_cost_usd", "to_batch_cost_usd", "extra_saved_usd"), None)
        rows = [
            [clean(w["provider"]), clean(w["model"], limit=60), clean(w["to_model"], limit=60),
             *(col[i] for col in money), _pct(w["extra_saved_pct"]), _pct(w["saved_pct_vs_realtime"])]
            for i, w in enumerate(what_if)
        ]
        _table(out, ["PROVIDER", "MODEL", "TO MODEL", "BATCH", "TO BATCH", "EXTRA SAVED", "EXTRA%", "CUT VS REAL-TIME"],
               rows, {3, 4, 5, 6, 7})
        for target in dict.fromkeys(w["to_model"] for w in what_if):
            mine = [w for w in what_if if w["to_model"] == target]
            extra = [w["extra_saved_usd"] for w in mine if w["extra_saved_usd"] is not None]
            unknown = len(mine) - len(extra)
            tail = f" ({unknown} model{'s' if unknown != 1 else ''} unknown)" if unknown else ""
            out.write(f"  all models to {clean(target, limit=60)}: extra saved {usd_amount(sum(extra)) if extra else 'unknown'}{tail}\n")
    out.writelines(f"note: {note}\n" for note in doc["notes"])
