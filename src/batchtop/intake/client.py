"""The Python API: enqueue from a service, with the CLI's validation and store.

    from batchtop import Client

    with Client() as bt:                      # the default data dir, or Client(data_dir=...)
                                              # or Client(store="postgresql://batchtop@db/batchtop")
        cid = bt.enqueue({"custom_id": "q-1", "method": "POST", "url": "/v1/chat/completions",
                          "body": {"model": "gpt-4o-mini", "messages": [...]}}, sla="36h")
        bt.enqueue_many(lines, deadline="2026-11-27T09:00:00Z")

Each call is one transaction: durable when it returns, all or nothing, and a bad
request raises `EnqueueError` naming the field.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from batchtop import paths
from batchtop.config import TIERS, TierConfig
from batchtop.errors import EnqueueError, LineError
from batchtop.intake.validation import parse_lines, parse_object
from batchtop.store import Store
from batchtop.timefmt import checked_deadline, parse_duration, parse_time


def resolve_deadline(sla: str | float | None, deadline: str | float | None, now: float) -> float | None:
    """Unix seconds by which results are needed, from --sla (a duration) or --deadline (a time)."""
    if sla is not None and deadline is not None:
        raise ValueError("give --sla or --deadline, not both")
    if sla is not None:
        return now + parse_duration(sla)
    if deadline is not None:
        return checked_deadline(parse_time(deadline) if isinstance(deadline, str) else deadline, now)
    return None


def tier_deadline(
    tier: str | None, sla: str | float | None, deadline: str | float | None, now: float, tiers: TierConfig
) -> float | None:
    """The deadline of a request enqueued with this tier: `--sla`/`--deadline` win over
    the tier's default SLA (`[tiers]`); `low` and no tier have none of their own."""
    if tier is not None and tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r} (one of {', '.join(TIERS)})")
    own = resolve_deadline(sla, deadline, now)
    if own is not None or tier is None:
        return own
    sla_s = tiers.sla(tier)
    return None if sla_s is None else now + sla_s


def _api_deadline(
    sla: str | float | None, deadline: str | float | None, now: float, tier: str | None = None,
    tiers: TierConfig | None = None,
) -> float | None:
    """resolve_deadline for the Python API: the ValueError names the argument, as the
    CLI's names its option."""
    try:
        return tier_deadline(tier, sla, deadline, now, tiers or TierConfig())
    except ValueError as exc:
        name = "sla" if sla is not None else "deadline" if deadline is not None else "tier"
        raise ValueError(f"{name}: {exc}") from None


class Client:
    """A handle on one store for enqueueing. Thread-compatible: one per thread."""

    SOURCE = "<python>"

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        config: str | os.PathLike[str] | None = None,
        store: str | Literal[False] | None = None,
    ) -> None:
        """`config`: the TOML config whose `[tiers]` gives the tiers' SLAs and whose
        `[store]` the store (the default config file when not given). `store`: a
        PostgreSQL URL (any libpq URI) of a shared store; None: `$BATCHTOP_STORE`, else
        the config's `[store] url`, else the data dir's SQLite file; False: that file,
        whatever the environment and config say."""
        from batchtop.config import load_config, resolve_store

        self._config_path = config
        self._tiers: TierConfig | None = None
        url: str | None = None
        schema = "batchtop"
        if store is not False:
            loaded = load_config(paths.config_file(config), required=config is not None)
            self._tiers = loaded.tiers
            resolved = resolve_store(loaded, store)
            url, schema = resolved.store.url, resolved.store.schema
        self._store = Store(paths.data_dir(data_dir), url=url, schema=schema)

    def _tier_config(self, tier: str | None) -> TierConfig | None:
        if tier is None:
            return None
        if self._tiers is None:
            from batchtop.config import load_config

            self._tiers = load_config(paths.config_file(self._config_path), required=self._config_path is not None).tiers
        return self._tiers

    @property
    def data_dir(self) -> Path:
        return self._store.data_dir

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enqueue(
        self,
        request: Mapping[str, Any] | str,
        *,
        sla: str | float | None = None,
        deadline: str | float | None = None,
        provider: str | None = None,
        model: str | None = None,
        tier: str | None = None,
    ) -> str:
        """Enqueue one native batch line (a dict or its JSON text); returns its custom_id
        (a Gemini line's key). `model` is a Gemini line's model when it names none;
        `tier` (critical, high, normal, low) gives its default deadline and picks its lane."""
        now = time.time()
        when = _api_deadline(sla, deadline, now, tier, self._tier_config(tier))
        if isinstance(request, str):
            parsed = parse_lines([(self.SOURCE, 1, request)], provider, model)
            if not parsed:
                raise EnqueueError([LineError(self.SOURCE, 1, "", "empty request")])
        else:
            result = parse_object(dict(request), self.SOURCE, 1, None, provider, model)
            if isinstance(result, list):
                raise EnqueueError(result)
            parsed = [result]
        self._store.enqueue(parsed, deadline=when, now=now, tier=tier)
        return parsed[0].custom_id

    def enqueue_many(
        self,
        requests: Iterable[Mapping[str, Any] | str],
        *,
        sla: str | float | None = None,
        deadline: str | float | None = None,
        provider: str | None = None,
        model: str | None = None,
        tier: str | None = None,
    ) -> list[str]:
        """Enqueue many lines in one transaction: all of them, or none and an EnqueueError."""
        now = time.time()
        when = _api_deadline(sla, deadline, now, tier, self._tier_config(tier))
        lines = (
            (self.SOURCE, i, r if isinstance(r, str) else json.dumps(r, ensure_ascii=False, separators=(",", ":")))
            for i, r in enumerate(requests, 1)
        )
        parsed = parse_lines(lines, provider, model)
        self._store.enqueue(parsed, deadline=when, now=now, tier=tier)
        return [p.custom_id for p in parsed]
