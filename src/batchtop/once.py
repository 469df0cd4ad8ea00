"""`batchtop --once`: the console's status as text or JSON, then exit.

Reads the store only (plus one engine tick when refreshing); never imports Textual.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from batchtop import paths
from batchtop.config import Config, load_config
from batchtop.exitcodes import Exit
from batchtop.store import Store
from batchtop.store import views
from batchtop.timefmt import human_duration, iso


def status(store: Store, config: Config, now: float) -> dict[str, Any]:
    """The status document (the `--once --json` schema)."""
    buffers = [
        {
            "name": b.name,
            "provider": b.provider,
            "endpoint": b.endpoint,
            "model": b.model,
            "queued": b.queued,
            "bytes": b.bytes,
            "oldest_enqueued_at": iso(b.oldest_enqueued_at),
            "earliest_deadline": iso(b.earliest_deadline),
            "flush_due_at": iso(b.flush_due_at),
            "held_reason": b.held_reason,
        }
        for b in views.buffers(store.db, config)
    ]
    return {"generated_at": iso(now), "buffers": buffers}


def _table(out: TextIO, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip() + "\n")
    for r in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n")


def render_text(doc: dict[str, Any], out: TextIO, now: float) -> None:
    out.write(f"batchtop status at {doc['generated_at']}\n\nBUFFERS\n")
    rows = []
    for b in doc["buffers"]:
        oldest = b["oldest_enqueued_at"]
        rows.append(
            [
                b["provider"],
                b["endpoint"],
                b["model"],
                str(b["queued"]),
                f"{b['bytes']:,}",
                b["flush_due_at"] or "-",
                b["earliest_deadline"] or "-",
            ]
        )
    if rows:
        _table(out, ["PROVIDER", "ENDPOINT", "MODEL", "QUEUED", "BYTES", "FLUSH DUE", "DEADLINE"], rows)
    else:
        out.write("(no queued requests)\n")


def run_once(
    data_dir: Path,
    *,
    config_path: str | None,
    as_json: bool,
    refresh: bool,
    fail_on_alert: bool,
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    config = load_config(paths.config_file(config_path))
    now = time.time()
    if not (data_dir / paths.DB_NAME).exists():
        doc: dict[str, Any] = {"generated_at": iso(now), "buffers": []}  # nothing enqueued yet; create nothing
    else:
        with Store(data_dir, create=False) as store:
            doc = status(store, config, now)
    if as_json:
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        render_text(doc, out, now)
    return Exit.OK
