"""What the header says about the console's engine, as a Rich `Text` (never markup).

The line must never claim work is moving when it is not: it shows the age of the
last tick that finished, and turns into a warning once none has finished within
`STALL_FACTOR` poll intervals. Error texts and other engines' names come from the
store or a provider, so they are cleaned and appended as plain text. No Textual here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rich.text import Text

from batchtop.display import clean
from batchtop.timefmt import human_duration

STALL_FACTOR = 3.0
"""No finished tick within this many poll intervals reads as a stalled engine."""

State = Literal["off", "starting", "running", "viewer", "error"]


@dataclass(frozen=True)
class EngineView:
    state: State
    poll_interval: float
    started_at: float | None = None
    """When the engine started here (monotonic seconds), if it runs here."""
    last_tick_at: float | None = None
    """When the last tick finished (monotonic seconds)."""
    summary: str = ""
    """What that tick did ("took 0.4s, submitted 1")."""
    provider_errors: int = 0
    detail: str = ""
    """Who holds the data dir (viewer) or the error (error): untrusted text."""


def stalled_for(view: EngineView, now: float) -> float | None:
    """Seconds without a finished tick, once that is past the stall limit; else None."""
    if view.state not in ("running", "error", "starting"):
        return None
    since = view.last_tick_at if view.last_tick_at is not None else view.started_at
    if since is None:
        return None
    quiet = now - since
    return quiet if quiet > STALL_FACTOR * view.poll_interval else None


def engine_text(view: EngineView, now: float) -> Text:
    """`engine running · last tick 3s ago (took 0.4s)`, or a warning when stalled."""
    text = Text()
    if view.state == "off":
        text.append("engine off", style="dim")
        return text
    if view.state == "viewer":
        text.append("viewer", style="bold yellow")
        text.append(f": engine is {clean(view.detail, limit=80)}")
        return text
    if view.state == "starting":
        text.append("engine starting…", style="dim")
    elif view.state == "error":
        text.append("engine error", style="bold red")
        text.append(f": {clean(view.detail, limit=120)}")
    else:
        text.append("engine running", style="bold green")
    if view.last_tick_at is not None and view.state != "starting":
        text.append(f" · last tick {human_duration(max(0.0, now - view.last_tick_at))} ago", style="dim")
        if view.summary:
            text.append(f" ({view.summary})", style="dim")
    if view.provider_errors:
        text.append(f" {view.provider_errors} provider error{'s' if view.provider_errors != 1 else ''}", style="bold red")
    quiet = stalled_for(view, now)
    if quiet is not None:
        text.append(
            f"  ⚠ NO TICK FOR {human_duration(quiet)} (poll every {human_duration(view.poll_interval)})",
            style="bold white on red",
        )
    return text
