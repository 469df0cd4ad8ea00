"""`batchtop --once --format prometheus`: the status document as Prometheus text exposition.

A pure function of the document `status.collect` builds, like the text and JSON views,
so the three never disagree and `--no-refresh` stays a read of the store (nothing here
imports an SDK or Textual).

Shape rules, so that recording and alert rules stay simple:
- one series per label set: a family is either labelled or not, never an unlabelled
  total beside its labelled series (`sum()` gives the total);
- counters come from the store's cumulative rollups, so they only grow (until the
  store itself is reset, which Prometheus treats as a counter reset);
- a model with no known price has no cost series at all: a 0 would read as "free";
- no sample timestamps: node_exporter's textfile collector refuses them.

Label values are model names and the like, which come from input files and providers:
they are cleaned of control characters (`display.clean`, the file may end up on a
terminal) and escaped as the exposition format requires.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from batchtop.display import clean
from batchtop.store.alerts import LOST_BATCH, QUOTA
from batchtop.views.status_model import Status, whole_second

PREFIX = "batchtop_"
LABEL_LIMIT = 200
"""Longest label value written; longer ones are cut (with an ellipsis)."""

ALERT_KINDS = ("failure_rate", "dead_letters", "unknown_submissions", QUOTA, LOST_BATCH)
"""Alert kinds always exported (at 0 when not raised), so a rule on them never sees an
absent series; any other kind present in the document is exported too."""

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    """One metric family: its samples summed per label set, so each set appears once."""

    name: str
    kind: str  # "gauge" | "counter"
    help: str
    samples: dict[Labels, float] = field(default_factory=dict)

    def add(self, value: float | None, **labels: str) -> None:
        if value is None:
            return
        key = _key(labels)
        self.samples[key] = self.samples.get(key, 0) + value

    def set_default(self, value: float, **labels: str) -> None:
        self.samples.setdefault(_key(labels), value)


def _key(labels: Mapping[str, object]) -> Labels:
    """Label values as they will be shown (cleaned, bounded): two values that clean to
    the same text are one label set, so their samples are summed, never repeated."""
    return tuple(sorted((k, clean(v, limit=LABEL_LIMIT)) for k, v in labels.items()))


def escape_label(value: str) -> str:
    """A label value as the exposition format wants it: `\\`, `"` and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    """The exposition text (format 0.0.4): HELP and TYPE once per family, then its
    samples sorted by label set, so that two runs over the same store diff cleanly."""
    lines: list[str] = []
    for family in families:
        name = PREFIX + family.name
        lines.append(f"# HELP {name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {name} {family.kind}")
        for labels, value in sorted(family.samples.items()):
            inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels)
            lines.append(f"{name}{{{inner}}} {_number(value)}" if inner else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def families(doc: Status) -> list[Family]:
    """The metric families of one status document."""
    queued = Family("queued_requests", "gauge", "Requests queued in buffers, not yet submitted.")
    queued_bytes = Family("queued_bytes", "gauge", "Bytes of the requests queued in buffers.")
    in_flight = Family("batches_in_flight", "gauge", "Batches submitted whose results are not all ingested yet.")
    requests = Family(
        "requests_total", "counter",
        "Ended batch attempts of requests, by outcome: succeeded, or failed (errored, expired or cancelled).",
    )
    cost = Family(
        "cost_usd_total", "counter",
        "US dollars: kind=batch is what batches cost (every attempt), kind=realtime_equivalent what the succeeded"
        " work would have cost at real-time prices. Models without a known price are left out.",
    )
    estimate = Family(
        "estimated_cost_usd", "gauge",
        "Estimated batch cost of work not yet ended: stage=queued (in buffers) or stage=in_flight (submitted)."
        " Models without a known price are left out.",
    )
    dead = Family("dead_letters", "gauge", "Requests that used up their attempts (batchtop dead-letters lists them).")
    unknown = Family("unknown_submissions", "gauge", "Submissions that could not be matched at the provider.")
    alerts = Family("alerts", "gauge", "Alerts raised, by kind (as batchtop --once lists them).")
    provider_poll = Family(
        "last_poll_timestamp_seconds", "gauge", "Unix time of the last successful poll of each provider."
    )
    generated = Family("status_generated_timestamp_seconds", "gauge", "Unix time this status was read from the store.")

    # Every (provider, model) the store knows of gets its gauges, at 0 when idle, so a
    # graph shows a drop to zero rather than a gap.
    known: set[tuple[str, str]] = set()
    for b in doc.buffers:
        known.add((b.provider, b.model))
        queued.add(b.queued, provider=b.provider, model=b.model)
        queued_bytes.add(b.bytes, provider=b.provider, model=b.model)
    for batch in doc.batches:
        known.add((batch.provider, batch.model))
        if not batch.ingested:
            in_flight.add(1, provider=batch.provider, model=batch.model)
    for m in doc.savings.by_model:
        labels = {"provider": m.provider, "model": m.model}
        known.add((m.provider, m.model))
        succeeded = int(m.requests_succeeded)
        requests.add(succeeded, outcome="succeeded", **labels)
        requests.add(max(0, int(m.attempts) - succeeded), outcome="failed", **labels)
        if m.price_known:
            cost.add(m.batch_cost_usd, kind="batch", **labels)
            cost.add(m.realtime_cost_usd, kind="realtime_equivalent", **labels)
    for provider, model in known:
        for family in (queued, queued_bytes, in_flight):
            family.set_default(0, provider=provider, model=model)
    for e in doc.in_flight_estimate.by_model:
        if e.price_known and e.usd is not None:
            estimate.add(e.usd, provider=e.provider, model=e.model, stage=e.stage)

    dead.add(doc.dead_letters)
    unknown.add(doc.unknown_submissions)
    raised: dict[str, int] = defaultdict(int)
    for a in doc.alerts:
        raised[a.kind] += 1
    for kind in (*ALERT_KINDS, *raised):
        alerts.set_default(raised.get(kind, 0), kind=kind)
    # times to the second, as the JSON shows them: the two outputs read the same
    for name, p in doc.providers.items():
        provider_poll.add(whole_second(p.polled_at), provider=name)
    generated.add(whole_second(doc.generated_at))
    return [queued, queued_bytes, in_flight, requests, cost, estimate, dead, unknown, alerts, provider_poll, generated]


def exposition(doc: Status) -> str:
    """The status document as Prometheus text exposition."""
    return render(families(doc))
