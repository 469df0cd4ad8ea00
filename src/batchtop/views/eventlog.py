"""`batchtop events`: the event log as JSON lines, once or followed.

Reads the database only (no SDK, no engine): a data dir without one prints nothing
and is left as it is; `--follow` then waits for the engine to create it. Each line is
the exact document a webhook receives (ASCII JSON: provider text in it cannot reach
the terminal as an escape sequence).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TextIO

from batchtop import paths

FOLLOW_EVERY = 0.5
"""Seconds between looks at the log while following."""


def write_events(
    data_dir: Path,
    out: TextIO,
    *,
    since: float | None = None,
    after: int = 0,
    follow: bool = False,
    every: float = FOLLOW_EVERY,
    url: str | None = None,
    schema: str = "batchtop",
) -> int:
    """Print the events after id `after` (and at or after `since`), oldest first; with
    `follow`, keep printing new ones until interrupted (KeyboardInterrupt, which the
    caller turns into a clean exit). Returns the last id printed. `url`/`schema`: a
    PostgreSQL store instead of the data dir's file."""
    from batchtop.integrations.webhooks import body
    from batchtop.store import Store, events
    from batchtop.store.db import has_database

    db_file = data_dir / paths.DB_NAME
    while not (db_file.exists() if url is None else has_database(data_dir, url, schema)):
        if not follow:
            return after
        time.sleep(every)
    with Store(data_dir, create=False, url=url, schema=schema) as store:
        last = after
        if since is not None:
            last = max(last, events.first_id_since(store.db, since))
        while True:
            page = events.after(store.db, last, since=since)
            for event in page:
                out.write(body(event).decode() + "\n")
                last = event.id
            out.flush()
            if not page and not follow:
                return last
            if not page:
                time.sleep(every)
