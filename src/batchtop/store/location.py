"""Where a store is, in words that need no database driver: which URLs name a
PostgreSQL store, how one is shown (password as `***`), and the errors a PostgreSQL
store raises as the store's own.

Kept apart from `store.postgres` so a command on the SQLite file never imports psycopg
(a quarter of a second at every start, for a cron `--once`).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit


class PgUnavailable(Exception):
    """The PostgreSQL server did not answer in time, or refused for now (its writer
    lock held past `lock_timeout`, the connection lost): psycopg's OperationalError,
    its text scrubbed of the password. Part of `StoreBusy`: try again later."""


class PgIntegrityError(Exception):
    """A constraint of the PostgreSQL store refused a write (psycopg's IntegrityError)."""


DIALECT = "postgresql"
DEFAULT_SCHEMA = "batchtop"
LOCK_TIMEOUT_MS = 30_000
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).split(":", 1)[0].lower() in ("postgresql", "postgres")


def display_url(url: str) -> str:
    """The URL with its password shown as `***` (and a `password=` parameter too):
    what errors, logs and the status may print."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = re.sub(r"(?i)(^|&)(password)=[^&]*", r"\1\2=***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _password_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.password:
        return parts.password
    found = re.search(r"(?i)(?:^|&)password=([^&]*)", parts.query)
    return found.group(1) if found else None


def scrub(text: str, url: str) -> str:
    """An error message of libpq or the server, with the URL's password (if it shows
    up, in any form) and the URL itself replaced by their safe forms."""
    text = text.replace(url, display_url(url))
    password = _password_of(url)
    if password:
        for form in {password, unquote(password)}:
            if len(form) >= 3:
                text = text.replace(form, "***")
    return text


