"""Delivering the event log to `[[webhooks]]` receivers, off the engine's path.

Each engine pass only kicks our threads (`Deliveries.kick`, no wait), one per receiver,
each with its own database connection, so a receiver that is down, slow or hanging
delays nothing but its own deliveries: not the engine, not another receiver. For each
receiver, in the order of the log:

- every event is POSTed as its JSON document, signed: `X-Batchtop-Signature:
  sha256=<hex HMAC-SHA256 of the raw body>` with the secret from `secret_env`. When
  that variable is unset or empty nothing is sent (a receiver never sees an unsigned
  event) and the status says why; the events wait.
- a 2xx moves the receiver's durable cursor past the event; a crash before that sends
  it again (at least once: receivers deduplicate on `id`, also in `X-Batchtop-Event-Id`).
- a network error, a timeout, a 5xx, 408 or 429 leaves the event pending and backs the
  receiver off exponentially (1 s doubling, jittered, capped at 5 min, at least its
  Retry-After): a receiver that is down loses nothing, however long it is down.
- any other answer (a 4xx, a redirect, which is not followed) is the receiver refusing
  that event: it is tried REJECT_TRIES times with the same backoff, then given up for
  that receiver, counted and alerted on, and the cursor moves on.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from batchtop import __version__
from batchtop.config import Webhook
from batchtop.store import events
from batchtop.store.alerts import Alert
from batchtop.timefmt import iso

log = logging.getLogger("batchtop.integrations.webhooks")

CONNECT_TIMEOUT = 3.0
TIMEOUT = 5.0
"""Seconds a POST may go without progress (connect, send, each read) before it counts as failed."""
BACKOFF_START = 1.0
MAX_BACKOFF = 300.0
REJECT_TRIES = 3
"""Tries of an event a receiver refuses (4xx other than 408/429) before it is given up."""
FAILING_AFTER = 3
"""Consecutive transient failures before the status alerts (one blip is not news)."""
REJECTED_ALERT_FOR = 86400.0
"""How long the status keeps alerting after a receiver had an event given up."""
MAX_PER_PASS = 500
"""Events sent to one receiver per engine pass; the rest follow on the next."""
PAGE = 100
PEEK = 512
"""Bytes of a refusing receiver's answer kept for the report (it is untrusted text)."""
SETTLE_GRACE = TIMEOUT + 1.0
"""How long a one-shot command (`tick`, `--once`) waits for its pass's deliveries."""
SECRET_MISSING = "not delivering: {env} is not set (events wait; unsigned events are never sent)"


def key(url: str) -> str:
    """The receiver's name in the store: a hash of its URL, which may hold a token."""
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def label(url: str) -> str:
    """The URL as the status shows it: scheme, host and port only (path, query and
    credentials may be secret)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def body(event: events.Event) -> bytes:
    """The raw body that is signed and sent: the event document, compact ASCII JSON."""
    return json.dumps(event.document(), separators=(",", ":")).encode()


def sign(secret: str, raw: bytes) -> str:
    """The `X-Batchtop-Signature` value for a body."""
    return "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def transient(status: int | None) -> bool:
    """Whether a failed try leaves the event pending for ever (network errors, 5xx,
    408, 429), rather than counting towards giving it up."""
    return status is None or status >= 500 or status in (408, 429)


@dataclass(frozen=True)
class Outcome:
    status: int | None
    error: str | None
    """None: delivered."""
    retry_after: float | None = None


def post(url: str, raw: bytes, headers: dict[str, str]) -> Outcome:
    """One POST (standard library client: no proxy from the environment, no redirect
    followed), CONNECT_TIMEOUT to connect, TIMEOUT without progress after; reads at most
    PEEK bytes of an answer that is not a 2xx."""
    import http.client
    import ssl

    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=CONNECT_TIMEOUT, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=CONNECT_TIMEOUT)
    try:
        conn.connect()
        if conn.sock is not None:
            conn.sock.settimeout(TIMEOUT)
        conn.request("POST", target, body=raw, headers=headers)
        response = conn.getresponse()
        status = response.status
        if 200 <= status < 300:
            return Outcome(status, None)
        text = " ".join(response.read(PEEK).decode("utf-8", "replace").split())[:200]
        reason = f"HTTP {status}" + (f": {text}" if text else "")
        return Outcome(status, reason, _retry_after(response.getheader("Retry-After")))
    except TimeoutError:
        return Outcome(None, "timed out")
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(None, f"{type(exc).__name__}: {exc}"[:200])
    finally:
        conn.close()


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return None if seconds is None or not seconds >= 0 else min(seconds, MAX_BACKOFF)


def backoff(failures: int, retry_after: float | None = None) -> float:
    """Seconds before the next try after `failures` failures in a row."""
    delay = min(MAX_BACKOFF, BACKOFF_START * 2.0 ** min(failures - 1, 20)) * (0.5 + random.random() / 2)
    return max(delay, retry_after or 0.0)


class Deliveries:
    """The engine's deliveries: one worker thread per receiver, so one that hangs or is
    backing off never delays another; each does one pass per kick."""

    def __init__(
        self, data_dir: Path, hooks: Sequence[Webhook], *, now: Callable[[], float] = time.time,
        url: str | None = None, schema: str = "batchtop",
    ) -> None:
        """`url`/`schema`: the engine's PostgreSQL store (each worker reads the log on a
        connection of its own); None: the data dir's SQLite file."""
        self.hooks = tuple(hooks)
        self._workers = [_Worker(data_dir, hook, now, url, schema) for hook in self.hooks]
        self._registered = False

    def register(self, db: Any) -> None:
        """Before the pass's changes: a receiver new to the store starts here (once per process)."""
        if not self._registered:
            for hook in self.hooks:
                events.receiver(db, key(hook.url), label(hook.url))
            self._registered = True

    def kick(self) -> None:
        """Ask every receiver's worker for a pass; returns at once."""
        for worker in self._workers:
            worker.kick()

    def settle(self, grace: float = SETTLE_GRACE) -> bool:
        """Wait up to `grace` seconds in all for the passes asked for so far, then stop
        the workers (what is still unsent goes on the next engine's pass: the cursors
        are durable). True when they all finished in time."""
        deadline = time.monotonic() + grace
        finished = [worker.settle(max(0.0, deadline - time.monotonic())) for worker in self._workers]
        return all(finished)


class _Worker:
    """One receiver's delivery thread: started on the first kick, one pass per kick."""

    def __init__(self, data_dir: Path, hook: Webhook, now: Callable[[], float], url: str | None, schema: str) -> None:
        self.data_dir = data_dir
        self.url = url
        self.schema = schema
        self.hook = hook
        self.now = now
        self._cond = threading.Condition()
        self._asked = 0
        self._done = 0
        self._stop = False
        self._thread: threading.Thread | None = None

    def kick(self) -> None:
        with self._cond:
            self._asked += 1
            if self._thread is None and not self._stop:
                self._thread = threading.Thread(target=self._run, name=f"batchtop-webhook-{label(self.hook.url)}", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def settle(self, grace: float) -> bool:
        deadline = time.monotonic() + grace
        with self._cond:
            target = self._asked
            while self._done < target and self._thread is not None and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            finished = self._done >= target
            self._stop = True
            self._cond.notify_all()
        return finished

    def _run(self) -> None:
        from batchtop.store.db import connect

        db = None
        try:
            db = connect(self.data_dir, create=False, url=self.url, schema=self.schema)
            while True:
                with self._cond:
                    while not self._stop and self._done >= self._asked:
                        self._cond.wait()
                    if self._stop:
                        return
                    target = self._asked
                try:
                    self._deliver_to(db, self.hook)
                except Exception:  # a failing pass must not kill the thread: the next kick tries again
                    log.exception("webhook %s: delivery pass failed", label(self.hook.url))
                with self._cond:
                    self._done = target
                    self._cond.notify_all()
        except Exception:
            log.exception("webhook %s: deliveries stopped", label(self.hook.url))
        finally:
            if db is not None:
                db.close()
            with self._cond:
                self._done = self._asked
                self._thread = None
                self._cond.notify_all()

    def _deliver_to(self, db: Any, hook: Webhook) -> None:
        name, shown = key(hook.url), label(hook.url)
        state = events.receiver(db, name, shown)
        now = self.now()
        if state.next_at is not None and state.next_at > now:
            return
        secret = os.environ.get(hook.secret_env, "")
        if not secret:
            problem = SECRET_MISSING.format(env=hook.secret_env)
            if state.last_error != problem or state.last_status != 0:
                events.refused(db, name, problem, now, alert=f"webhook {shown}: {problem}")
            return
        cursor, failures = state.cursor, state.failures
        head, tries = state.head, state.tries
        sent = 0
        while sent < MAX_PER_PASS:
            page = events.after(db, cursor, kinds=hook.wants(), limit=PAGE)
            if not page:
                return
            for event in page:
                if self._stop:
                    return
                raw = body(event)
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": f"batchtop/{__version__}",
                    "X-Batchtop-Event": event.kind,
                    "X-Batchtop-Event-Id": str(event.id),
                    "X-Batchtop-Signature": sign(secret, raw),
                }
                outcome = post(hook.url, raw, headers)
                now = self.now()
                if outcome.error is None:
                    events.delivered(db, name, event.id, now)
                    cursor, failures, head, tries = event.id, 0, None, 0
                    sent += 1
                    continue
                failures += 1
                tries = (tries if head == event.id else 0) + 1
                head = event.id
                if not transient(outcome.status) and tries >= REJECT_TRIES:
                    error = f"event {event.id} ({event.kind}) given up after {tries} tries: {outcome.error}"
                    events.rejected(db, name, event.id, error, outcome.status, now,
                                    alert=f"webhook {shown}: {error}")
                    log.warning("webhook %s: %s", shown, error)
                    cursor, head, tries = event.id, None, 0
                    sent += 1
                    continue
                retry_at = now + backoff(failures, outcome.retry_after)
                alert = None
                if failures == FAILING_AFTER or (failures == 1 and not transient(outcome.status)):
                    alert = f"webhook {shown}: delivery failing ({outcome.error})"
                events.failed(db, name, event.id, outcome.error, outcome.status, retry_at, now, tries=tries, alert=alert)
                return


def status_alerts(db: Any, hooks: Sequence[Webhook], now: float) -> list[Alert]:
    """The status's alerts for receivers that fail or refused events lately."""
    by_key = {key(h.url): h for h in hooks}
    out: list[Alert] = []
    for state in events.receivers(db, by_key):
        hook = by_key[state.webhook]
        failing = state.failures > 0 and (
            state.failures >= FAILING_AFTER or state.last_status == 0 or not transient(state.last_status)
        )
        if failing:
            pending = events.pending_count(db, state.cursor, hook.wants())
            waiting = f"{pending}{'+' if pending >= 10_000 else ''} event{'s' if pending != 1 else ''} wait"
            when = f", next try {iso(state.next_at)}" if state.next_at and state.next_at > now else ""
            tries = f"{state.failures} tries failed in a row" if state.last_status != 0 else "refused"
            out.append(Alert(
                "webhook_failing",
                f"webhook {state.label}: {tries} (last: {state.last_error} at {iso(state.last_error_at)});"
                f" {waiting}{when}",
                webhook=state.label,
            ))
        if state.rejected_at is not None and now - state.rejected_at < REJECTED_ALERT_FOR:
            out.append(Alert(
                "webhook_rejected",
                f"webhook {state.label}: {state.rejected} event{'s' if state.rejected != 1 else ''}"
                f" given up (the receiver refused them); last at {iso(state.rejected_at)}: {state.rejected_error}",
                webhook=state.label,
            ))
    return out
